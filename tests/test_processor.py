import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from modeling_onediff import OneDiffProcessor
from tiny import random_image, tiny_model_and_processor


@pytest.fixture(scope="module")
def processor():
    return tiny_model_and_processor()[1]


def count(ids, token_id):
    return int((torch.as_tensor(ids) == token_id).sum())


def pair(seed=0):
    return (random_image(seed), random_image(seed + 1))


def test_placeholders_expand_to_feature_counts(processor):
    batch = processor(
        images=[pair()], text=["Before: <image> After: <image> <delta> what changed?"], return_tensors="pt"
    )
    assert batch["pixel_values"].shape == (1, 2, 3, 32, 32)
    assert count(batch["input_ids"], processor.image_token_id) == 2 * 16  # 4x4 patches per image
    assert count(batch["input_ids"], processor.delta_token_id) == processor.num_delta_tokens


def test_prompt_without_placeholders_gets_the_image_block(processor):
    plain = processor(images=[pair()], text=["what changed?"])
    explicit = processor(images=[pair()], text=[processor.image_block + "what changed?"])
    assert plain["input_ids"] == explicit["input_ids"]


def test_chat_template_renders_the_same_block(processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == f"<|im_start|>user\n{processor.image_block}Q<|im_end|>\n<|im_start|>assistant\n"


def test_text_only_calls_and_padding_sides(processor):
    right = processor(text=["a", "the red cube moved"], padding=True, padding_side="right", return_tensors="pt")
    left = processor(text=["a", "the red cube moved"], padding=True, padding_side="left", return_tensors="pt")
    assert "pixel_values" not in right
    assert right["attention_mask"][0, 0] == 1 and right["attention_mask"][0, -1] == 0
    assert left["attention_mask"][0, 0] == 0 and left["attention_mask"][0, -1] == 1
    with pytest.raises(ValueError, match="no images"):
        processor(text=["<image> hi"])


def test_truncation_that_cuts_placeholders_is_an_error(processor):
    ok = processor(images=[pair()], text=["what?"], truncation=True, max_length=200)
    assert len(ok["input_ids"][0]) <= 200
    with pytest.raises(ValueError, match="truncation cut them"):
        processor(images=[pair()], text=["what?"], truncation=True, max_length=20)


def test_numpy_and_tensor_images_match_pil(processor):
    before, after = pair(4)
    from_pil = processor(images=[(before, after)], text=["q"], return_tensors="pt")["pixel_values"]
    from_np = processor(images=[(np.asarray(before), np.asarray(after))], text=["q"], return_tensors="pt")
    torch.testing.assert_close(from_pil, from_np["pixel_values"])


@pytest.mark.parametrize(
    "images, text, message",
    [
        ([(random_image(0),)], ["q"], "has 1 image"),
        ([(random_image(0), random_image(1), random_image(2))], ["q"], "has 3 image"),
        (random_image(0), ["q"], "single image"),
        ([pair(), pair(2)], ["only one prompt"], "2 image pairs but 1 prompts"),
        ([(random_image(0), "not an image")], ["q"], "Could not read the after image of sample 0"),  # a path
        ([(random_image(0), {"x": 1})], ["q"], "not an image"),
        ([pair()], [""], "empty"),
        ([pair()], ["   "], "empty"),
        ([pair()], ["<image> only one"], "holds 1 <image> and 0 <delta>"),
        ([pair()], [3], "must hold strings"),
        ([], ["q"], "non-empty list"),
    ],
)
def test_bad_inputs_raise_value_errors(processor, images, text, message):
    with pytest.raises(ValueError, match=message):
        processor(images=images, text=text)


def test_truncated_image_file_is_a_clear_error(processor, tmp_path):
    path = tmp_path / "cut.png"
    random_image(0, size=64).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="before image of sample 0 cannot be decoded"):
        processor(images=[(Image.open(path), random_image(1))], text=["q"])


def test_processor_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, OneDiffProcessor)
    assert (loaded.patch_size, loaded.num_delta_tokens, loaded.image_token_pooling) == (8, 4, 1)
    assert loaded.chat_template == processor.chat_template
    a = processor(images=[pair()], text=["q"], return_tensors="pt")
    b = loaded(images=[pair()], text=["q"], return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"])
    torch.testing.assert_close(a["pixel_values"], b["pixel_values"])


def test_tokenizer_without_placeholders_is_refused(processor):
    with pytest.raises(ValueError, match="prepare_tokenizer"):
        OneDiffProcessor(
            image_processor=processor.image_processor,
            tokenizer=processor.tokenizer,
            patch_size=8,
            image_token="<not-a-token>",
        )
