import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onediff_idc.cli import main
from tiny import random_image, tiny_model_and_processor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model, processor = tiny_model_and_processor()
    model.save_pretrained(root / "ckpt")
    processor.save_pretrained(root / "ckpt")
    random_image(0).save(root / "a.png")
    random_image(1).save(root / "b.png")
    return root


def test_caption_prints_the_pipeline_caption(checkpoint, capsys):
    from transformers import pipeline

    args = [str(checkpoint / "a.png"), str(checkpoint / "b.png"), "--model", str(checkpoint / "ckpt")]
    assert main(["caption", *args, "--max-new-tokens", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    pipe = pipeline("image-difference-captioning", model=str(checkpoint / "ckpt"), trust_remote_code=True)
    expected = pipe({"before": str(checkpoint / "a.png"), "after": str(checkpoint / "b.png")}, max_new_tokens=5)
    assert printed["caption"] == expected["generated_text"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["caption", "missing.png", "B", "--model", "CKPT"], "before image not found"),
        (["caption", "A", "B", "--model", "/nonexistent"], "No OneDiff checkpoint"),
        (["caption", "A", "NOT_IMAGE", "--model", "CKPT"], "Could not read the after image"),
    ],
)
def test_caption_errors_are_one_line_and_exit_2(checkpoint, capsys, argv, message):
    not_image = checkpoint / "notes.txt"
    not_image.write_text("hello")
    names = {"A": checkpoint / "a.png", "B": checkpoint / "b.png", "CKPT": checkpoint / "ckpt", "NOT_IMAGE": not_image}
    argv = [str(names.get(a, a)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_is_installed():
    script = shutil.which("onediff") or str(Path(sys.executable).parent / "onediff")
    proc = subprocess.run([script, "caption", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--max-new-tokens" in proc.stdout


def test_caption_without_model_and_without_shipped_weights_says_so(checkpoint, capsys, monkeypatch, tmp_path):
    from onediff_idc import default_model

    monkeypatch.setattr(default_model, "WEIGHTS_DIR", tmp_path / "no-weights")
    assert main(["caption", str(checkpoint / "a.png"), str(checkpoint / "b.png")]) == 2
    assert "pass --model DIR" in capsys.readouterr().err


def test_export_copies_a_checkpoint_that_loads_and_refuses_a_non_empty_folder(checkpoint, capsys, tmp_path):
    from modeling_onediff import OneDiffForConditionalGeneration

    out = tmp_path / "exported"
    assert main(["export", "--out", str(out), "--model", str(checkpoint / "ckpt")]) == 0
    assert {p.name for p in (checkpoint / "ckpt").iterdir()} | {"README.md"} == {p.name for p in out.iterdir()}
    OneDiffForConditionalGeneration.from_pretrained(out)
    assert main(["export", "--out", str(out), "--model", str(checkpoint / "ckpt")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "other"), "--model", str(tmp_path)]) == 2
    assert "not a OneDiff checkpoint" in capsys.readouterr().err
