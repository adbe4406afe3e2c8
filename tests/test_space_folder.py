"""spaces_demo/ runs as a Hugging Face Space as it is: its README names the model, its requirements.txt alone
installs what the app and the checkpoint's remote code import."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import RepoCard

from onediff_idc.spaces_demo.app import SPACE_MODEL
from tiny import save_tiny_model

SPACE = Path(__file__).resolve().parents[1] / "spaces_demo"


def test_the_space_names_the_model_it_runs():
    card = RepoCard.load(SPACE / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == [SPACE_MODEL]
    requirements = (SPACE / "requirements.txt").read_text()
    import gradio

    assert (
        f"gradio=={gradio.__version__}" in requirements
        and f"sdk_version: {gradio.__version__}" in (SPACE / "README.md").read_text()
    )


@pytest.mark.slow
def test_a_clean_venv_from_requirements_txt_alone_runs_the_app(tmp_path):
    venv = tmp_path / "space-venv"
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # this machine's CPU build of torch first (a Space takes its own from the index); then the file, alone
    steps = [[*install, "torch==2.13.0"], [*install, "-r", str(SPACE / "requirements.txt")]]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            if any(word in result.stderr for word in ("No matching distribution", "Could not find a version")):
                pytest.skip(f"the Space's venv cannot be built offline here: {result.stderr.strip()[-300:]}")
            raise AssertionError(result.stderr[-3000:])
    model = save_tiny_model(tmp_path / "model")
    # outside the repository, without the package: only what requirements.txt installed
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import app\n"
        "assert 'onediff_idc' not in sys.modules\n"
        "demo = app.build_demo(sys.argv[2])\n"
        "print(type(demo).__name__, sorted(app.task_prompts()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(python), "-c", script, str(SPACE), str(model)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Blocks ['difference']" in result.stdout  # the package's task prompts are absent: the fallback
