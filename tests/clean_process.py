"""Runs a test script in a clean Python process: offline, no PYTHONPATH, an empty HF home, an unrelated folder."""

import json
import os
import subprocess
import sys
from pathlib import Path


def run_clean(script: str, args: list, tmp_path: Path) -> dict:
    """Runs `script` with `args`; it prints `RESULT<json>` as its last output, which is returned."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), TRANSFORMERS_VERBOSITY="error")
    path = tmp_path / "clean_process.py"
    path.write_text(script)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir(exist_ok=True)
    # -P: the script's folder is not put on sys.path either; cwd is an unrelated directory
    proc = subprocess.run(
        [sys.executable, "-P", str(path), *map(str, args)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])
