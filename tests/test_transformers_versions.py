"""The model under whichever transformers is installed: KV-cache naming, no deprecation warnings of ours, and
checkpoints saved by every supported version (tests/fixtures/checkpoints/) loading, generating and training here.

transformers 5.24 renamed the KV cache from `past_key_values` to `cache` (forward arguments and output fields); a
model that hard-codes either name breaks on the other version (5.24: every forward raised a TypeError; 5.23: a
`cache=` argument is swallowed by `**kwargs` and the KV cache is lost without an error).
"""

import dataclasses
import json
import logging
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from clean_process import run_clean
from PIL import Image
from transformers import pipeline
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from modeling_onediff.modeling_onediff import CACHE_NAME
from tiny import chat_inputs, random_image, random_pairs, tiny_model_and_processor

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
SUPPORTED = ("5.23.0", "5.24.0")  # the ends of pyproject.toml's range; CI runs the suite on both


def prompt_inputs(processor, n: int = 2):
    return chat_inputs(processor, random_pairs(n))


def test_cache_name_is_the_installed_librarys():
    library = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    assert CACHE_NAME in library and {"cache", "past_key_values"} - {CACHE_NAME} - library
    expected = "past_key_values" if transformers.__version__.startswith("5.23.") else "cache"
    assert expected == CACHE_NAME


def test_forward_with_use_cache_returns_the_cache_and_continues_from_it():
    model, processor = tiny_model_and_processor("clip-llama")
    inputs = prompt_inputs(processor, n=1)
    with torch.no_grad():
        full = model(**inputs, use_cache=True)
        cache = getattr(full, CACHE_NAME)
        assert isinstance(cache, Cache) and cache.get_seq_length() == inputs["input_ids"].shape[1]
        assert full[CACHE_NAME] is cache  # dict access too: generation reads outputs[name]
        # one more token through the cache equals the same token at the end of a full forward
        next_token = full.logits[:, -1:].argmax(-1)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(next_token)], dim=1)
        stepped = model(input_ids=next_token, attention_mask=mask, use_cache=True, **{CACHE_NAME: cache})
        whole = model(
            input_ids=torch.cat([inputs["input_ids"], next_token], dim=1),
            pixel_values=inputs["pixel_values"],
            attention_mask=mask,
        )
    torch.testing.assert_close(stepped.logits[:, -1], whole.logits[:, -1], atol=1e-4, rtol=1e-4)


def test_the_old_cache_name_is_still_accepted():
    model, processor = tiny_model_and_processor("clip-llama")
    inputs = prompt_inputs(processor, n=1)
    with torch.no_grad():
        cache = getattr(model(**inputs, use_cache=True), CACHE_NAME)
        token = torch.tensor([[5]])
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(token)], dim=1)
        old = model(input_ids=token, attention_mask=mask, past_key_values=cache)
        assert getattr(old, CACHE_NAME).get_seq_length() == inputs["input_ids"].shape[1] + 1


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_no_deprecation_warnings_from_our_code(tmp_path):
    """Forward, generation with and without cache, the attention maps and the pipeline say nothing deprecated."""
    model, processor = tiny_model_and_processor("siglip-qwen2")
    inputs = prompt_inputs(processor)
    records = _Records()
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                model(**inputs, use_cache=True)
                with_cache = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
                without = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False, use_cache=False)
                model.get_delta_attention_maps(inputs["pixel_values"])
            pipe = pipeline("image-difference-captioning", model=model, processor=processor)
            random_image(1).save(tmp_path / "a.png")
            random_image(2).save(tmp_path / "b.png")
            pipe({"before": str(tmp_path / "a.png"), "after": str(tmp_path / "b.png")}, max_new_tokens=4)
    finally:
        library_logger.removeHandler(records)
    assert torch.equal(with_cache, without)
    said = [str(w.message) for w in caught] + records.messages
    assert not [m for m in said if "deprecat" in m.lower()], said


CLEAN_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_onediff"] = None  # the checkpoint's own remote code only
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    ckpt = sys.argv[1]
    expected = json.load(open(f"{ckpt}/expected.json"))
    processor = AutoProcessor.from_pretrained(ckpt, trust_remote_code=True)
    model = AutoModel.from_pretrained(ckpt, trust_remote_code=True).eval()
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": expected["prompt"]}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    images = [(Image.open(f"{ckpt}/before.png"), Image.open(f"{ckpt}/after.png"))]
    inputs = processor(images=images, text=[text], return_tensors="pt")
    n = len(expected["tokens"])
    result = {}
    for use_cache in (True, False):
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=use_cache)
        result[f"tokens_cache_{use_cache}"] = out[0, inputs["input_ids"].shape[1]:].tolist()
    # one training step: every trainable parameter gets a gradient and the loss on the same batch goes down
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    batch = processor(images=images, text=[text + "the red cube moved"], return_tensors="pt")
    losses = []
    for _ in range(2):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    result.update(losses=losses, missing_grads=missing)
    print("RESULT" + json.dumps(result))
    """
)


def _fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("transformers-*"))


def test_a_fixture_checkpoint_exists_for_each_end_of_the_supported_range():
    assert {p.name for p in _fixtures()} == {f"transformers-{v}" for v in SUPPORTED}


@pytest.mark.parametrize("ckpt", _fixtures(), ids=lambda p: p.name)
def test_checkpoint_saved_by_a_supported_version_loads_generates_and_trains(ckpt, tmp_path):
    expected = json.loads((ckpt / "expected.json").read_text())
    result = run_clean(CLEAN_PROCESS, [ckpt], tmp_path)
    assert result["tokens_cache_True"] == expected["tokens"]
    assert result["tokens_cache_False"] == expected["tokens"]
    assert result["missing_grads"] == []
    assert result["losses"][1] < result["losses"][0]

    # and today's package code reads the same weights to the same tokens
    model = OneDiffForConditionalGeneration.from_pretrained(ckpt).eval()
    processor = OneDiffProcessor.from_pretrained(ckpt)
    inputs = chat_inputs(
        processor, [(Image.open(ckpt / "before.png"), Image.open(ckpt / "after.png"))], expected["prompt"]
    )
    n = len(expected["tokens"])
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    assert out[0, inputs["input_ids"].shape[1] :].tolist() == expected["tokens"]
