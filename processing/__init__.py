"""DiffCap data (installed as `onediff_idc.processing`): benchmark converters and offline pair generators that
write one `datasets.DatasetDict` schema (design.md, "Data"). Built out by the data issue."""
