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
    assert set(result) == {"generated_text"} and result["generated_text"]


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
