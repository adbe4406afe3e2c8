"""transformers' own common model tests (`ModelTesterMixin`), taken from the installed version's source distribution.

`tests/test_modeling_common.py` ships in transformers' sdist; it is downloaded once per version into
`$ONEDIFF_CACHE/transformers-tests/<version>/` (never committed: not our code) and imported as a package. Two sibling
modules it imports are not in the sdist: `tests/exporters/test_export.py` (the torch.export suite) and
`tests/generation/test_utils.py` (`GenerationTesterMixin`). The first is replaced by an empty mixin (those tests are not
run); for the second, point `ONEDIFF_TRANSFORMERS_GENERATION_TESTS` at that file from transformers' repository at the
installed version's tag to run the generation suite too, otherwise it is an empty mixin and the generation paths are
covered by `tests/test_generation_paths.py`.
"""

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

GENERATION_TESTS_ENV = "ONEDIFF_TRANSFORMERS_GENERATION_TESTS"
EMPTY_MIXIN = '"""Not in transformers\' source distribution: {what}."""\n\n\nclass {name}:\n    pass\n'


def _write(path: Path, data: bytes) -> None:
    """Atomic and idempotent: pytest-xdist workers collect this module at the same time."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def _cache_root() -> Path:
    return Path(os.environ.get("ONEDIFF_CACHE", Path.home() / ".cache" / "onediff")) / "transformers-tests"


def _download_common_tests(version: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*command, f"transformers=={version}", "-d", tmp], check=True, capture_output=True, timeout=600)
        (sdist,) = Path(tmp).glob("transformers-*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = archive.getmember(f"transformers-{version}/tests/test_modeling_common.py")
            source = archive.extractfile(member).read()
    _write(target / "test_modeling_common.py", source)


def load_common_tests() -> tuple[ModuleType, bool]:
    """
    Returns transformers' `test_modeling_common` module for the installed version and whether the real
    `GenerationTesterMixin` is inside it. Raises `RuntimeError` when the sdist cannot be downloaded.
    """
    version = transformers.__version__
    generation_tests = os.environ.get(GENERATION_TESTS_ENV)
    package = f"transformers_common_tests_{version.replace('.', '_')}" + ("_gen" if generation_tests else "")
    root = _cache_root() / version
    folder = root / package
    if not (folder / "test_modeling_common.py").exists():
        try:
            _download_common_tests(version, folder)
        except (subprocess.SubprocessError, OSError, KeyError, ValueError) as error:
            raise RuntimeError(f"could not download transformers=={version}'s source distribution: {error}") from error
    _write(folder / "__init__.py", b"")
    for sub, module, name, what in (
        ("exporters", "test_export.py", "ExportTesterMixin", "the torch.export suite, not run"),
        ("generation", "test_utils.py", "GenerationTesterMixin", f"the generation suite; set {GENERATION_TESTS_ENV}"),
    ):
        _write(folder / sub / "__init__.py", b"")
        _write(folder / sub / module, EMPTY_MIXIN.format(name=name, what=what).encode())
    if generation_tests:
        # the real suite, with its sibling test modules (their helpers; empty stand-ins would hide real failures)
        for sibling in Path(generation_tests).parent.glob("*.py"):
            _write(folder / "generation" / sibling.name, sibling.read_bytes())
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f"{package}.test_modeling_common")
    return module, bool(generation_tests)
