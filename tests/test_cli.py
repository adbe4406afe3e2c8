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


def damage(folder: Path, how: str) -> None:
    if how == "weights missing":
        (folder / "model.safetensors").unlink()
    elif how == "weights truncated":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "weights of another size":  # a valid file whose tensors do not fit the config
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        name = next(k for k in tensors if k.endswith("embed_tokens.weight"))
        tensors[name] = tensors[name][:-3].clone()
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    elif how == "config not JSON":
        (folder / "config.json").write_text("{not json")
    elif how == "another kind of model":  # e.g. the language model's own folder
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config["text_config"]))
    elif how == "processor missing":
        (folder / "tokenizer.json").unlink()
    elif how == "tokenizer damaged":
        (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')


DAMAGE = {
    "weights missing": "has no weights",
    "weights truncated": "Could not load the OneDiff checkpoint",
    "weights of another size": "Could not load the OneDiff checkpoint",
    "config not JSON": "config.json is damaged",
    "another kind of model": "holds a llama model, not a OneDiff checkpoint",
    "processor missing": "lacks its processor",
    "tokenizer damaged": "Could not load the OneDiff checkpoint",
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_checkpoint_that_does_not_load_is_one_line_with_the_fix(checkpoint, tmp_path, how):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint / "ckpt", folder)
    damage(folder, how)
    command = ["onediff", "caption", str(checkpoint / "a.png"), str(checkpoint / "b.png"), "--model", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Loading weights" not in line]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert DAMAGE[how] in lines[0] and "export/download it again" in lines[0]
