"""The embedded default model: shipped weights, `onediff caption` without --model, `onediff export`.

Needs the pinned tower packages (`onediff setup`, which CI runs) and the trained weights in
onediff_idc/default_weights/; the model card test needs neither.
"""

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from PIL import Image

from onediff_idc import default_model, towers
from onediff_idc.processing.phrasing import parse_caption
from tiny import tiny_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _ready() -> bool:
    try:
        installed = all(distribution(p.package).version == p.version for p in towers.PINNED)
    except PackageNotFoundError:
        return False
    return installed and all((default_model.WEIGHTS_DIR / name).is_file() for name in default_model.SHIPPED)


needs_model = pytest.mark.skipif(not _ready(), reason="tower packages (onediff setup) or shipped weights absent")


def _ground_truths() -> dict[str, dict]:
    rows = re.findall(r"^\| `(\w+)` \| `(\{.*?\})` \|", (EXAMPLES / "README.md").read_text(), flags=re.M)
    return {name: json.loads(change) for name, change in rows}


def _onediff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from onediff_idc.cli import main; raise SystemExit(main())", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, env={**os.environ})


def test_the_model_card_ships_beside_the_weights():
    card = (REPO / "MODEL_CARD.md").read_text()
    assert (default_model.WEIGHTS_DIR / default_model.CARD_NAME).read_text() == card
    assert card.startswith("---\n") and "model-index:" in card.split("\n---\n")[0]


@needs_model
def test_the_cached_default_is_rebuilt_when_the_code_it_carries_changes(tmp_path, monkeypatch):
    """The cached default folder carries the package's remote code; an updated package must not keep serving the old
    code from the cache (its pipeline would lack what the new one returns)."""
    import shutil

    code = tmp_path / "modeling_onediff"
    shutil.copytree(default_model.REMOTE_CODE_DIR, code)
    monkeypatch.setattr(default_model, "REMOTE_CODE_DIR", code)
    before = default_model.default_source_sha256()
    assert default_model.default_source_sha256() == before
    with open(code / "pipeline_onediff.py", "a") as handle:
        handle.write("\n# a change\n")
    assert default_model.default_source_sha256() != before
    assert {p.name for p in code.glob("*_onediff.py")} == {
        "configuration_onediff.py",
        "modeling_onediff.py",
        "processing_onediff.py",
        "pipeline_onediff.py",
        "image_reading_onediff.py",
    }


def test_shipped_weights_stay_under_the_cap():
    size = sum(p.stat().st_size for p in default_model.WEIGHTS_DIR.rglob("*") if p.is_file())
    assert 0 < size <= default_model.MAX_SHIPPED_BYTES


@needs_model
def test_caption_without_model_prints_the_readme_captions_of_the_examples(tmp_path):
    """The README's command on every example pair prints what the README shows (greedy decoding is deterministic),
    and that is the pair's true change."""
    readme = (REPO / "README.md").read_text()
    for name, truth in _ground_truths().items():
        before, after = EXAMPLES / f"{name}_before.png", EXAMPLES / f"{name}_after.png"
        result = _onediff("caption", str(before), str(after), "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        caption = json.loads(result.stdout)["caption"]
        assert f"{name}: {caption}" in readme, f"README does not show what `onediff caption` prints for {name}"
        # The bar: the default model states exactly what examples/README.md says happened (no change included)
        assert parse_caption(caption) == truth, (name, caption, truth)


@needs_model
def test_export_writes_a_hub_ready_folder_that_loads_anywhere(tmp_path):
    out = tmp_path / "exported"
    result = _onediff("export", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "README.md").read_text() == (REPO / "MODEL_CARD.md").read_text()
    assert {"config.json", "model.safetensors", "modeling_onediff.py", "pipeline_onediff.py"} <= {
        p.name for p in out.iterdir()
    }
    before, after = (str(EXAMPLES / f"scene_color_{role}.png") for role in ("before", "after"))
    script = f"""
import json
from transformers import AutoModel, AutoProcessor, pipeline
model = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True)
processor = AutoProcessor.from_pretrained({str(out)!r}, trust_remote_code=True)
pipe = pipeline("image-difference-captioning", model={str(out)!r}, trust_remote_code=True)
result = pipe({{"before": {before!r}, "after": {after!r}}})
print(json.dumps({{"model": type(model).__name__, "caption": result["generated_text"]}}))
"""
    clean = subprocess.run(
        [sys.executable, "-P", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert clean.returncode == 0, clean.stderr
    loaded = json.loads(clean.stdout.strip().splitlines()[-1])
    assert loaded["model"] == "OneDiffForConditionalGeneration"
    printed = _onediff("caption", before, after, "--json", cwd=tmp_path)
    assert loaded["caption"] == json.loads(printed.stdout)["caption"]  # the exported folder is the default model
    again = _onediff("export", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr


@needs_model
def test_random_towers_base_has_the_architecture_but_none_of_the_pretrained_weights(tmp_path):
    """The ablation "same recipe, randomly initialised towers" must differ from the base in weights alone."""
    from safetensors import safe_open

    pretrained = default_model.assemble_base(progress=False)
    random_base = default_model.assemble_base(tmp_path / "random", progress=False, random_towers=True)
    assert random_base != pretrained

    from modeling_onediff import OneDiffConfig

    def config(folder):  # as loaded: the cached base may predate a config field or another transformers version
        loaded = OneDiffConfig.from_pretrained(folder).to_dict()
        return {k: v for k, v in loaded.items() if k != "transformers_version"}

    assert config(random_base) == config(pretrained)
    assert (random_base / "tokenizer.json").read_bytes() == (pretrained / "tokenizer.json").read_bytes()
    with (
        safe_open(random_base / "model.safetensors", "pt") as drawn,
        safe_open(pretrained / "model.safetensors", "pt") as loaded,
    ):
        assert set(drawn.keys()) == set(loaded.keys())
        for name in sorted(loaded.keys()):
            fresh, trained = drawn.get_tensor(name), loaded.get_tensor(name)
            assert fresh.shape == trained.shape, name
            # constants (biases at 0, norms at 1) may coincide; no drawn tensor, tower or new part, equals a trained one
            if fresh.float().std() > 0:
                assert not (fresh == trained).all(), f"{name} kept its pretrained weights"


@needs_model
def test_base_without_delta_module_keeps_the_towers_and_drops_the_module(tmp_path):
    """The ablation "no delta module (image tokens only)": same towers, no delta module, no delta placeholders."""
    from safetensors import safe_open

    from modeling_onediff import OneDiffProcessor

    full = default_model.assemble_base(progress=False)
    image_tokens_only = default_model.assemble_base(tmp_path / "nodelta", progress=False, use_delta_module=False)
    assert json.loads((image_tokens_only / "config.json").read_text())["use_delta_module"] is False
    with (
        safe_open(image_tokens_only / "model.safetensors", "pt") as ablated,
        safe_open(full / "model.safetensors", "pt") as loaded,
    ):
        names = set(loaded.keys())
        delta_parts = {name for name in names if ".delta_" in name}
        assert delta_parts and set(ablated.keys()) == names - delta_parts
        for name in sorted(names - delta_parts):
            if ".vision_tower." in name or ".language_model." in name:
                kept, pretrained = ablated.get_tensor(name), loaded.get_tensor(name)
                if name.endswith("embed_tokens.weight"):  # the 2 placeholder rows are drawn, the vocabulary kept
                    kept, pretrained = kept[:-2], pretrained[:-2]
                assert (kept == pretrained).all(), name
    processor = OneDiffProcessor.from_pretrained(image_tokens_only)
    pair = [Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")]
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What changed?"}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    input_ids = processor(images=pair, text=prompt, return_tensors="pt")["input_ids"]
    assert processor.delta_token_id not in input_ids and processor.image_token_id in input_ids


def test_config_overrides_name_only_the_onediff_fields_that_changed(tmp_path):
    base = tiny_config().to_dict()
    trained = tiny_config(
        delta_change_fields={"type": ["add", "none"]}, use_image_tokens=False, delta_zoom_patches=4
    ).to_dict()
    trained["text_config"]["vocab_size"] += 1  # the towers' own configs are never overridden
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "trained.json").write_text(json.dumps(trained))
    overrides = default_model.config_overrides(tmp_path / "trained.json", tmp_path / "base.json")
    assert overrides == {
        "delta_change_fields": {"type": ["add", "none"]},
        "use_image_tokens": False,
        "delta_zoom_patches": 4,
    }
    assert tiny_config(**overrides).to_dict() == {**base, **overrides}  # applying them gives the trained config


def test_the_photo_examples_are_what_their_script_makes():
    """examples/make_photo_examples.py rewrites exactly the committed pairs (an identical pair stays identical)."""
    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        from make_photo_examples import example_pairs
    finally:
        sys.path.remove(str(EXAMPLES))
    pairs = example_pairs()
    assert set(pairs) <= set(_ground_truths())
    for name, images in pairs.items():
        for role, made in zip(("before", "after"), images):
            with Image.open(EXAMPLES / f"{name}_{role}.png") as committed:
                assert np.array_equal(np.asarray(committed.convert("RGB")), np.asarray(made)), (name, role)
    before, after = (np.asarray(Image.open(EXAMPLES / f"photo_identical_{role}.png")) for role in ("before", "after"))
    assert np.array_equal(before, after)


@needs_model
def test_replace_reading_swaps_the_delta_module_and_classifiers_and_keeps_the_phrasing(tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    dest = tmp_path / "weights"
    shutil.copytree(default_model.WEIGHTS_DIR, dest)
    shipped = load_file(dest / "adapter_model.safetensors")
    overrides = json.loads((dest / default_model.CONFIG_OVERRIDES).read_text())
    base_config = json.loads((default_model.assemble_base(progress=False) / "config.json").read_text())
    prefix = default_model.ADAPTER_PREFIX
    reading = {k.removeprefix(prefix): v for k, v in shipped.items() if ".delta_module." in k or ".classifiers." in k}
    assert reading and all(k.startswith(default_model.READING_PREFIXES) for k in reading)
    # a heads run that reads one more vision layer: its own layer embeddings and other weights everywhere
    trained = {k: torch.randn(v.shape, dtype=torch.float32) for k, v in reading.items()}
    trained["model.delta_module.layer_embeddings"] = torch.randn(
        4, reading["model.delta_module.layer_embeddings"].shape[1]
    )
    trained["model.change_heads.value_embeddings.weight"] = torch.randn(3, 5)  # not the phrasing's: must not ship
    heads = tmp_path / "heads"
    heads.mkdir()
    save_file(trained, heads / "model.safetensors")
    config = {**base_config, **overrides, "delta_feature_layers": [0, 4, 8, 12], "use_image_tokens": True}
    (heads / "config.json").write_text(json.dumps(config))

    default_model.replace_reading(heads, dest)
    swapped = load_file(dest / "adapter_model.safetensors")
    assert set(swapped) == set(shipped)
    for name, value in swapped.items():
        if name.removeprefix(prefix) in reading:
            assert torch.equal(value, trained[name.removeprefix(prefix)].half()), name
        else:  # LoRA and the value embeddings the phrasing learned
            assert torch.equal(value, shipped[name]), name
    overrides.pop("delta_no_change_logit_bias", None)  # calibrated for the old heads
    assert json.loads((dest / default_model.CONFIG_OVERRIDES).read_text()) == {
        **overrides,
        "delta_feature_layers": [0, 4, 8, 12],
    }

    config["delta_change_fields"] = {**config["delta_change_fields"], "size": ["tiny", "huge"]}
    (heads / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="other change fields"):
        default_model.replace_reading(heads, dest)


def test_set_schema_writes_the_training_pairs_schema_beside_the_shipped_overrides(tmp_path):
    import shutil

    from modeling_onediff import OneDiffConfig
    from onediff_idc.processing.build import BuildSpec, build
    from onediff_idc.processing.schema import load_diffcap

    dest = tmp_path / "weights"
    dest.mkdir()
    shutil.copy(default_model.WEIGHTS_DIR / default_model.CONFIG_OVERRIDES, dest)
    shipped = json.loads((dest / default_model.CONFIG_OVERRIDES).read_text())
    spec = BuildSpec(seed=4, scene_pairs=12, photo_pairs=26, caption_samples=0, eval_fraction=0.2, resolution=48)
    build(spec, tmp_path / "data", progress=False)
    default_model.set_change_schema(tmp_path / "data", dest)
    written = json.loads((dest / default_model.CONFIG_OVERRIDES).read_text())
    changes = load_diffcap(tmp_path / "data", ("train",))["train"]["change"]
    assert written["delta_change_schema"] == OneDiffConfig.change_schema(changes)
    assert written["delta_change_distinct"] == OneDiffConfig.change_distinct(changes)
    decoding = ("delta_change_schema", "delta_change_distinct")
    assert {k: v for k, v in written.items() if k not in decoding} == {
        k: v for k, v in shipped.items() if k not in decoding
    }
    # heads whose values the data does not know cannot take its schema
    shipped["delta_change_fields"]["color"] = ["red"]
    (dest / default_model.CONFIG_OVERRIDES).write_text(json.dumps(shipped))
    with pytest.raises(ValueError, match="delta_change_schema"):
        default_model.set_change_schema(tmp_path / "data", dest)


@needs_model
def test_every_file_format_of_a_photograph_is_no_change_against_the_photograph(tmp_path):
    """One held-out photograph written in every format test_image_reading.py reads (16-bit, float, ICC profiles,
    EXIF rotation, palette, transparency, HEIC ...): the default model sees no change against the 8-bit original."""
    from test_image_reading import CASES

    from onediff_idc.checkpoints import load_pipeline

    pairs = []
    for case, (data, shown) in CASES.items():
        Image.fromarray(shown).save(tmp_path / f"{case}-original.png")
        (tmp_path / f"{case}.img").write_bytes(data)
        pairs.append({"before": str(tmp_path / f"{case}-original.png"), "after": str(tmp_path / f"{case}.img")})
    pipe = load_pipeline(default_model.default_model_dir())
    results = pipe(pairs, batch_size=8, max_new_tokens=24)
    captions = {case: result["generated_text"] for case, result in zip(CASES, results)}
    wrong = {case: caption for case, caption in captions.items() if parse_caption(caption) != {"type": "none"}}
    assert not wrong, wrong


@needs_model
def test_a_photograph_and_its_16_bit_grayscale_copy_is_a_saturation_change_told_quietly(tmp_path):
    """`onediff caption` of a colour photograph and its 16-bit grayscale copy (read clipped, the copy was all white)
    names the colour going; stderr stays empty; a 1x1 image beside the photograph is refused in one line."""
    from test_image_reading import CASES, original

    original().save(tmp_path / "photo.png")
    (tmp_path / "gray16.png").write_bytes(CASES["png_gray16"][0])
    result = _onediff("caption", str(tmp_path / "photo.png"), str(tmp_path / "gray16.png"), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert parse_caption(result.stdout.strip())["type"] == "saturation", result.stdout
    assert parse_caption(result.stdout.strip()).get("direction") == "decrease", result.stdout
    Image.new("RGB", (1, 1), (128, 128, 128)).save(tmp_path / "dot.png")
    refused = _onediff("caption", str(tmp_path / "photo.png"), str(tmp_path / "dot.png"), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == "" and refused.stderr.count("\n") == 1
    assert "after image: too small: 1x1 pixels" in refused.stderr
