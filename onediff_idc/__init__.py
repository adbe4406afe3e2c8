"""OneDiff command line and glue: `onediff caption | ...` (see `onediff --help`)."""

__version__ = "0.1.0"
