"""`towers.cached_build`, the mechanism that assembles the default model on first use: sealed, and built once when
processes race for it."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from onediff_idc import towers

RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from onediff_idc import towers

    folder, log, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    def build(tmp):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\\n")
        for i in range(5):  # a slow build: the other process arrives while this one writes
            (tmp / f"part{i}.bin").write_bytes(bytes([i]) * 100_000)
            time.sleep(0.2)

    while time.time() < start:  # both processes ask at the same moment
        time.sleep(0.01)
    print(towers.cached_build(folder, "source-1", build))
    """
)


def test_processes_that_ask_at_once_build_the_folder_once(tmp_path):
    folder, log = tmp_path / "cache" / "default", tmp_path / "builds.log"
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    start = __import__("time").time() + 3  # after both interpreters have imported the package
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), str(folder), str(log), str(start)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]
    assert outputs == [str(folder)] * 2
    assert len(log.read_text().split()) == 1  # the second waited for the first's build and took it
    manifest = json.loads((folder / "onediff_manifest.json").read_text())
    assert sorted(manifest["files"]) == [f"part{i}.bin" for i in range(5)]
    assert not folder.with_name("default.partial").exists()


def test_an_interrupted_build_never_looks_complete(tmp_path):
    folder = tmp_path / "built"

    def failing(tmp: Path):
        (tmp / "half.bin").write_bytes(b"h")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        towers.cached_build(folder, "source-1", failing)
    assert not folder.exists()
    built = towers.cached_build(folder, "source-1", lambda tmp: (tmp / "whole.bin").write_bytes(b"w") and None)
    assert sorted(p.name for p in built.iterdir()) == ["onediff_manifest.json", "whole.bin"]
