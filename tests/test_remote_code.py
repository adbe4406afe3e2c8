"""Checkpoints load from their own remote code, in a clean process, from another directory, offline."""

import json
import textwrap

import pytest
import torch
from clean_process import run_clean
from transformers import pipeline

from modeling_onediff import OneDiffForConditionalGeneration
from tiny import random_image, tiny_model_and_processor

REMOTE_CODE_FILES = {
    "configuration_onediff.py",
    "modeling_onediff.py",
    "processing_onediff.py",
    "pipeline_onediff.py",
    "image_reading_onediff.py",
}

CLEAN_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_onediff"] = None  # the installed package must not be importable: remote code only
    import torch
    from PIL import Image
    from transformers import (AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline)

    ckpt, before, after = sys.argv[1:4]
    CONTENT = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What changed?"}]
    result = {}
    config = AutoConfig.from_pretrained(ckpt, trust_remote_code=True)
    result["config"] = type(config).__module__ + "." + type(config).__name__
    processor = AutoProcessor.from_pretrained(ckpt, trust_remote_code=True)
    result["processor"] = type(processor).__module__ + "." + type(processor).__name__
    images = [(Image.open(before), Image.open(after))]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": CONTENT}], add_generation_prompt=True, tokenize=False)
    inputs = processor(images=images, text=[prompt], return_tensors="pt")
    for name, auto in (("AutoModel", AutoModel), ("AutoModelForImageTextToText", AutoModelForImageTextToText)):
        model = auto.from_pretrained(ckpt, trust_remote_code=True).eval()
        out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        result[name] = {"class": type(model).__module__ + "." + type(model).__name__,
                        "tokens": out[0, inputs["input_ids"].shape[1]:].tolist()}
    pipe = pipeline("image-difference-captioning", model=ckpt, trust_remote_code=True)
    result["pipeline_class"] = type(pipe).__module__ + "." + type(pipe).__name__
    pair = {"before": before, "after": after, "prompt": "What changed?"}
    result["pipeline"] = pipe(pair, max_new_tokens=6, min_new_tokens=6)
    print("RESULT" + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    model, processor = tiny_model_and_processor("siglip-qwen2")
    ckpt = root / "ckpt"
    model.save_pretrained(ckpt)
    processor.save_pretrained(ckpt)
    before, after = root / "before.png", root / "after.png"
    random_image(1).save(before)
    random_image(2).save(after)
    return model, processor, ckpt, before, after


def test_checkpoint_holds_exactly_the_remote_code_files(checkpoint):
    _, _, ckpt, _, _ = checkpoint
    assert {p.name for p in ckpt.glob("*.py")} == REMOTE_CODE_FILES
    config = json.loads((ckpt / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_onediff.OneDiffConfig",
        "AutoModel": "modeling_onediff.OneDiffForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_onediff.OneDiffForConditionalGeneration",
    }
    assert config["custom_pipelines"]["image-difference-captioning"]["impl"] == (
        "pipeline_onediff.ImageDifferenceCaptioningPipeline"
    )
    assert json.loads((ckpt / "processor_config.json").read_text())["auto_map"]["AutoProcessor"] == (
        "processing_onediff.OneDiffProcessor"
    )


def test_clean_process_loads_every_entry_point_and_matches(checkpoint, tmp_path):
    model, processor, ckpt, before, after = checkpoint
    result = run_clean(CLEAN_PROCESS, [ckpt, before, after], tmp_path)

    for key in ("config", "processor", "pipeline_class"):
        assert result[key].startswith("transformers_modules."), result[key]
    assert result["config"].endswith("configuration_onediff.OneDiffConfig")
    assert result["processor"].endswith("processing_onediff.OneDiffProcessor")
    assert result["pipeline_class"].endswith("pipeline_onediff.ImageDifferenceCaptioningPipeline")

    from PIL import Image

    prompt = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What changed?"}],
            }
        ],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = processor(images=[(Image.open(before), Image.open(after))], text=[prompt], return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    expected = expected[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(set(expected)) > 2
    for name in ("AutoModel", "AutoModelForImageTextToText"):
        assert result[name]["class"].startswith("transformers_modules.")
        assert result[name]["class"].endswith("modeling_onediff.OneDiffForConditionalGeneration")
        assert result[name]["tokens"] == expected

    in_process = pipeline("image-difference-captioning", model=model, processor=processor)
    pair = {"before": str(before), "after": str(after), "prompt": "What changed?"}
    assert result["pipeline"] == in_process(pair, max_new_tokens=6, min_new_tokens=6)
    assert result["pipeline"]["generated_text"] == processor.decode(expected, skip_special_tokens=True).strip()


def test_reloaded_in_process_weights_are_identical(checkpoint):
    model, _, ckpt, _, _ = checkpoint
    loaded = OneDiffForConditionalGeneration.from_pretrained(ckpt)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    # loading puts fresh parameters in place: the deliberately frozen vision parameters must stay frozen
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and frozen == {name for name, p in loaded.named_parameters() if not p.requires_grad}
