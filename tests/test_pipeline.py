import pytest
from transformers import pipeline

from modeling_onediff import ImageDifferenceCaptioningPipeline
from tiny import random_image, tiny_model_and_processor

GENERATION = {"max_new_tokens": 6, "min_new_tokens": 6}


@pytest.fixture(scope="module")
def pipe():
    model, processor = tiny_model_and_processor("clip-llama")
    return pipeline("image-difference-captioning", model=model, processor=processor)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(6):
        path = root / f"{i}.png"
        random_image(i, size=40 + 8 * i).save(path)  # different sizes: the processor resizes
        paths.append(str(path))
    return paths


def test_pipeline_is_registered_and_captions(pipe, image_files):
    assert isinstance(pipe, ImageDifferenceCaptioningPipeline)
    result = pipe({"before": image_files[0], "after": image_files[1]}, **GENERATION)
    assert set(result) == {"generated_text", "warnings"} and result["generated_text"]
    assert result["warnings"] == ["sizes differ: before 40x40, after 48x48; the after image was resized to 40x40"]


def test_batched_pipeline_equals_one_by_one(pipe, image_files):
    inputs = [
        {"before": image_files[0], "after": image_files[1]},
        {"before": image_files[2], "after": image_files[3], "prompt": "What changed between them, in a few words?"},
        {"before": image_files[4], "after": image_files[5], "prompt": "Changes?"},
    ]
    one_by_one = [pipe(item, **GENERATION) for item in inputs]
    batched = pipe(inputs, batch_size=3, **GENERATION)
    assert batched == one_by_one
    assert len({r["generated_text"] for r in one_by_one}) > 1
    assert pipe.processor.tokenizer.padding_side == "right"  # the processor's own tokenizer is left as it was


def test_prompt_changes_the_input(pipe, image_files):
    pair = {"before": image_files[0], "after": image_files[1]}
    default = pipe.preprocess(pair)
    custom = pipe.preprocess(pair, prompt="Name the moved object.")
    assert (
        default["input_ids"].shape != custom["input_ids"].shape or (default["input_ids"] != custom["input_ids"]).any()
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"before": "/nonexistent/a.png", "after": "x"}, "Could not read the before image"),
        ({"before": "IMG_TEXT", "after": "IMG_OK"}, "Could not read the before image"),
        ({"before": "IMG_OK", "after": "IMG_TRUNCATED"}, "Could not read the after image"),
        ({"before": "IMG_OK"}, "takes {'before': image, 'after': image}"),
        ("IMG_OK", "takes {'before': image, 'after': image}"),
    ],
)
def test_bad_inputs_raise_clear_errors_and_the_next_call_works(pipe, image_files, tmp_path, bad, message):
    text_file = tmp_path / "notes.png"
    text_file.write_text("this is not a png")
    truncated = tmp_path / "cut.png"
    random_image(0, size=64).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    names = {"IMG_TEXT": str(text_file), "IMG_OK": image_files[0], "IMG_TRUNCATED": str(truncated)}
    if isinstance(bad, dict):
        bad = {k: names.get(v, v) for k, v in bad.items()}
    else:
        bad = names[bad]
    with pytest.raises(ValueError, match=message):
        pipe(bad, **GENERATION)
    assert pipe({"before": image_files[0], "after": image_files[1]}, **GENERATION)["generated_text"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from tiny import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("itt") / "model"))


def chat(before, after, question: str = "What changed?") -> list[dict]:
    content = [{"type": "image", "url": before}, {"type": "image", "url": after}, {"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def test_image_text_to_text_pipeline_answers_a_chat_with_two_images(saved_model, image_files):
    standard = pipeline("image-text-to-text", model=saved_model, trust_remote_code=True)
    ours = pipeline("image-difference-captioning", model=saved_model, trust_remote_code=True)
    settings = {"max_new_tokens": 6, "min_new_tokens": 6}
    for before, after, question in ((image_files[0], image_files[1], "What changed?"), (*image_files[2:4], "Diff?")):
        (answer,) = standard(text=chat(before, after, question), return_full_text=False, **settings)
        expected = ours({"before": before, "after": after}, prompt=question, **settings)["generated_text"]
        assert answer["generated_text"].strip() == expected
    (full,) = standard(text=chat(image_files[0], image_files[1]), **settings)
    assert full["generated_text"][-1]["role"] == "assistant"
    with pytest.raises(ValueError, match="needs exactly 2"):
        content = [{"type": "image", "url": image_files[0]}, {"type": "text", "text": "?"}]
        standard(text=[{"role": "user", "content": content}], **settings)


def test_processor_chat_template_tokenizes_with_the_images(pipe, image_files):
    from PIL import Image

    processor = pipe.processor
    messages = chat(image_files[0], image_files[1], "Which object moved?")
    from_chat = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    pair = [(Image.open(image_files[0]), Image.open(image_files[1]))]
    by_hand = processor(images=pair, text=[text], return_tensors="pt")
    assert set(from_chat) == {"input_ids", "attention_mask", "pixel_values"}
    for key in by_hand:
        assert (from_chat[key] == by_hand[key]).all(), key
    with pytest.raises(ValueError, match="Could not read the after image"):
        processor.apply_chat_template(chat(image_files[0], "/nowhere/b.png"), tokenize=True, return_dict=True)
