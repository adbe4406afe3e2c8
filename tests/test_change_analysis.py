"""How sure the model is that anything changed, and where: answer scoring, the change probability, change maps and
boxes through the pipeline, on tiny random models (reference values are computed the slow, obvious way)."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from modeling_onediff.pipeline_onediff import (
    NO_CHANGE_ANSWERS,
    change_box_in_pixels,
    change_box_on_grid,
    change_point_in_pixels,
    pixel_difference,
)
from onediff_idc.processing.phrasing import TEMPLATES
from tiny import chat_inputs, random_image, random_pairs, tiny_config, tiny_model_and_processor, tiny_processor


@pytest.fixture(scope="module")
def model_and_processor():
    return tiny_model_and_processor("clip-llama", seed=3)


def full_pass_log_probability(model, inputs, row: int, answer: list[int]) -> float:
    """log P(answer | prompt) of one row from a single forward pass over prompt + answer, without any cache."""
    real = inputs["attention_mask"][row].bool()
    prompt = inputs["input_ids"][row][real]
    ids = torch.cat([prompt, torch.tensor(answer)]).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=inputs["pixel_values"][row : row + 1]).logits[0].float()
    log_probs = logits[len(prompt) - 1 : -1].log_softmax(-1)
    return float(log_probs.gather(-1, torch.tensor(answer).unsqueeze(-1)).sum())


def test_answer_scores_equal_a_full_pass_and_generation_scores(model_and_processor):
    model, processor = model_and_processor
    pairs = random_pairs(2)
    # different prompt lengths, so the batch is left-padded as in batched generation
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
        )
        for q in ("What changed?", "Describe every difference between the two images, please.")
    ]
    inputs = processor(images=pairs, text=texts, padding=True, padding_side="left", return_tensors="pt")
    assert (inputs["attention_mask"] == 0).any()
    generated = model.generate(
        **inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True
    )
    new_tokens = generated.sequences[:, inputs["input_ids"].shape[1] :]
    answers = [new_tokens[0].tolist(), new_tokens[1, :3].tolist()]
    scores = model.answer_log_probabilities(
        answers, inputs["input_ids"], inputs["pixel_values"], attention_mask=inputs["attention_mask"]
    )
    assert scores.shape == (2, 2)
    embeds, _ = model.embed_pairs(inputs["input_ids"], inputs["pixel_values"])
    from_embeds = model.answer_log_probabilities(answers, attention_mask=inputs["attention_mask"], inputs_embeds=embeds)
    torch.testing.assert_close(from_embeds, scores)
    for row in range(2):
        for k, answer in enumerate(answers):
            assert scores[row, k].item() == pytest.approx(
                full_pass_log_probability(model, inputs, row, answer), abs=1e-4
            )
    # greedy decoding's own raw logits give the same score to what it generated
    step_log_probs = torch.stack(generated.logits, dim=1).float().log_softmax(-1)
    own = step_log_probs[0].gather(-1, new_tokens[0].unsqueeze(-1)).sum()
    assert scores[0, 0].item() == pytest.approx(own.item(), abs=1e-4)


def test_answer_scores_reject_empty_answers(model_and_processor):
    model, processor = model_and_processor
    inputs = chat_inputs(processor, random_pairs(1))
    for answers in ([], [[5], []]):
        with pytest.raises(ValueError, match="non-empty"):
            model.answer_log_probabilities(answers, inputs["input_ids"], inputs["pixel_values"])


@pytest.fixture(scope="module")
def pipe(model_and_processor):
    model, processor = model_and_processor
    return pipeline("image-difference-captioning", model=model, processor=processor)


def test_change_probability_is_one_minus_the_no_change_answers(pipe, model_and_processor):
    model, processor = model_and_processor
    before, after = random_image(10, size=50), random_image(11, size=40)
    answers = ["nothing has changed", "no change"]
    result = pipe({"before": before, "after": after}, no_change_answers=answers, return_change_probability=True)
    inputs = chat_inputs(processor, [(before, after)], prompt="Describe the difference between the two images.")
    end = processor.tokenizer.eos_token_id
    ids = [processor.tokenizer(a, add_special_tokens=False)["input_ids"] + [end] for a in answers]
    expected = 1.0 - sum(np.exp(full_pass_log_probability(model, inputs, 0, a)) for a in ids)
    assert result["change_probability"] == pytest.approx(expected, abs=1e-5)
    assert set(result) == {"generated_text", "change_probability", "warnings"}  # 50x50 vs 40x40: resized


def test_generator_no_change_phrasings_are_scored():
    # the default model learnt the generators' phrasings: each must count as a "no change" answer
    assert set(TEMPLATES["none"]) <= set(NO_CHANGE_ANSWERS)


def test_threshold_skips_pairs_judged_unchanged_and_batches_agree(pipe):
    pairs = [{"before": a, "after": b} for a, b in random_pairs(4)]
    # a random model gives long answers almost no probability: a one-word answer keeps the four pairs apart
    settings = {
        "max_new_tokens": 4,
        "min_new_tokens": 4,
        "no_change_answers": ["no"],
        "return_change_probability": True,
    }
    plain = [pipe(p, **settings) for p in pairs]
    probabilities = sorted(r["change_probability"] for r in plain)
    assert len(set(probabilities)) == 4
    threshold = (probabilities[1] + probabilities[2]) / 2  # two pairs below, two above
    batched = pipe(pairs, batch_size=4, change_threshold=threshold, **settings)
    for one, thresholded in zip(plain, batched):
        assert thresholded["change_probability"] == pytest.approx(one["change_probability"], abs=1e-5)
        if one["change_probability"] < threshold:
            assert thresholded["generated_text"] == "no change"
        else:
            assert thresholded["generated_text"] == one["generated_text"]
    assert sum(r["generated_text"] == "no change" for r in batched) == 2
    none_captioned = pipe(pairs[:2], batch_size=2, change_threshold=1.0, **settings)
    assert [r["generated_text"] for r in none_captioned] == ["no change", "no change"]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_threshold_must_be_a_probability(pipe, bad):
    with pytest.raises(ValueError, match="change_threshold"):
        pipe({"before": random_image(0), "after": random_image(1)}, change_threshold=bad)


def test_box_around_the_peak_on_a_known_map():
    change_map = np.zeros((6, 8))
    change_map[1:3, 2:5] = 0.6  # the blob holding the peak
    change_map[2, 3] = 1.0
    change_map[5, 7] = 0.55  # strong but not connected to the peak: left out
    change_map[4, 0] = 0.2  # weak
    assert change_box_on_grid(change_map) == (2, 1, 5, 3)
    assert change_box_on_grid(change_map, threshold=0.9) == (3, 2, 4, 3)
    with pytest.raises(ValueError, match="2-D"):
        change_box_on_grid(np.zeros(4))


def grown_extent(difference: np.ndarray, grid: int = 8) -> np.ndarray:
    """A change extent on a `grid` x `grid` patch grid: each patch's mean pixel difference."""
    side = difference.shape[0] // grid
    return difference.reshape(grid, side, grid, side).mean(axis=(1, 3))


def test_the_box_covers_the_changed_pixels_not_only_where_the_module_looked():
    difference = np.zeros((64, 64))
    difference[10:29, 21:40] = 1.0  # an object spanning 3x3 patches of 8 px
    change_map = np.zeros((8, 8))
    change_map[2, 3] = 1.0  # the module read one of its patches
    assert change_box_in_pixels(change_map, grown_extent(difference), difference) == (21, 10, 40, 29)
    assert change_box_on_grid(change_map) == (3, 2, 4, 3)  # the map alone: one patch


def test_the_box_holds_both_places_of_a_move_and_leaves_out_weak_changes():
    difference = np.zeros((64, 64))
    difference[8:16, 8:16] = 1.0  # where the object was
    difference[44:60, 40:56] = 0.9  # where it went: as strong
    difference[30:32, 0:2] = 0.45  # a little noise: joins no box
    change_map = np.zeros((8, 8))
    change_map[1, 1] = 1.0
    extent = grown_extent(difference)
    assert change_box_in_pixels(change_map, extent, difference) == (8, 8, 56, 60)
    assert change_box_in_pixels(change_map, extent, difference, strong_share=1.0) == (8, 8, 16, 16)
    # the looked-at patch lies outside every changed region: the nearest region is taken
    elsewhere = np.zeros((8, 8))
    elsewhere[7, 0] = 1.0
    assert change_box_in_pixels(elsewhere, extent, difference, strong_share=1.2) == (40, 44, 56, 60)


def test_jitter_everywhere_does_not_widen_the_box():
    rng = np.random.default_rng(0)
    difference = rng.uniform(0.0, 0.1, (64, 64))  # a camera that shook a little: every pixel differs a little
    difference[24:40, 16:32] = 1.0  # and one object changed
    change_map = np.zeros((8, 8))
    change_map[3, 2] = 1.0
    extent = grown_extent(difference)
    assert change_box_in_pixels(change_map, extent, difference) == (16, 24, 32, 40)
    # measured against the largest change alone, the jitter around the object joins the box
    wide = change_box_in_pixels(change_map, extent, difference, pixel_noise=0.0)
    assert wide[0] < 16 and wide[2] > 32


def test_the_change_point_is_the_most_changed_pixel_of_the_looked_at_patch():
    difference = np.zeros((64, 64))
    difference[18:21, 29:32] = 1.0  # a small change in the corner of patch (row 2, column 3) of 8 px
    difference[50:60, 50:60] = 5.0  # a larger one elsewhere: the point stays in the patch the module looked at
    difference[16, 24] = 3.0  # one noisy pixel: the averaging keeps it from winning
    change_map = np.zeros((8, 8))
    change_map[2, 3] = 1.0
    x, y = change_point_in_pixels(change_map, difference)
    assert 29 <= x < 32 and 18 <= y < 21  # on the small change, not beside it where the averaged square still holds it
    assert change_point_in_pixels(change_map, difference, smoothing=1) == (24, 16)  # unsmoothed: the noise wins
    assert change_point_in_pixels(change_map, np.zeros((64, 64))) == (28, 20)  # nothing changed: the patch's centre
    edge = np.zeros((64, 64))
    edge[0, 0] = 1.0  # at the image's corner: the window is padded by the edge's own pixels
    corner = np.zeros((8, 8))
    corner[0, 0] = 1.0
    assert change_point_in_pixels(corner, edge) == (0, 0)


def test_without_a_pixel_difference_the_box_is_the_patches():
    extent = np.zeros((8, 8))
    extent[2:4, 5] = 1.0  # features changed where no pixel did (numerically): the changed patches
    change_map = np.zeros((8, 8))
    change_map[2, 5] = 1.0
    assert change_box_in_pixels(change_map, extent, np.zeros((64, 64))) == (40, 16, 48, 32)
    with pytest.raises(ValueError, match="one 2-D grid"):
        change_box_in_pixels(change_map, np.zeros((4, 4)), np.zeros((64, 64)))


def test_a_zoomed_models_pipeline_boxes_a_pasted_square_exactly(tmp_path):
    """Through the pipeline of a zoomed model (random weights): the box is the pasted square in the after image's
    pixels, wherever the module's attention peaked, at the after image's own size."""
    from PIL import Image

    from tiny import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "zoomed", num_delta_queries=4, delta_zoom_patches=4)
    pipe = pipeline("image-difference-captioning", model=str(model_dir), trust_remote_code=True)
    before = Image.new("RGB", (96, 96), (120, 130, 140))
    after = before.copy()
    after.paste((250, 20, 20), (30, 42, 66, 78))  # 36x36 px: 3x3 patches of the 32 px frame's 4x4 grid, at least
    result = pipe({"before": before, "after": after}, return_change_map=True, max_new_tokens=2)
    # the processed frame is 32 px: resizing smears the edges by one of its pixels (3 px here), no more
    assert all(abs(got - want) <= 3 for got, want in zip(result["change_box"], [30, 42, 66, 78])), result
    x, y = result["change_point"]  # the most changed pixel of the looked-at patch: on the square
    assert 30 - 3 <= x <= 66 + 3 and 42 - 3 <= y <= 78 + 3, result
    processor = pipe.processor
    pixel_values = processor(images=[(before, after)], return_tensors="pt")["pixel_values"]
    assert pixel_difference(pixel_values).shape == (1, *pixel_values.shape[-2:])


def test_grid_boxes_map_back_through_resize_and_centre_crop():
    siglip = tiny_processor(tiny_config("siglip-qwen2"), "siglip-qwen2")  # plain resize to 32x32
    assert siglip.grid_box_to_pixels((0, 0, 4, 4), (4, 4), (200, 100)) == [0, 0, 200, 100]
    assert siglip.grid_box_to_pixels((1, 2, 3, 3), (4, 4), (200, 100)) == [50, 50, 150, 75]
    clip = tiny_processor(tiny_config("clip-llama"), "clip-llama")  # shortest edge to 32, centre crop 32x32
    # a 200x100 image becomes 64x32, of which columns 16..48 are kept: the grid covers x in 50..150
    assert clip.grid_box_to_pixels((0, 0, 4, 4), (4, 4), (200, 100)) == [50, 0, 150, 100]
    assert clip.grid_box_to_pixels((2, 0, 3, 1), (4, 4), (200, 100)) == [100, 0, 125, 25]


def test_pipeline_returns_a_change_map_and_a_box_in_after_pixels(pipe, model_and_processor):
    model, processor = model_and_processor
    before, after = random_image(20, size=60), random_image(21, size=90)
    result = pipe({"before": before, "after": after}, return_change_map=True, max_new_tokens=3)
    change_map = result["change_map"]
    assert change_map.shape == (4, 4)  # 32 px / 8 px patches
    assert change_map.sum() == pytest.approx(1.0, abs=1e-5) and (change_map >= 0).all()
    inputs = chat_inputs(processor, [(before, after)])
    expected_map = model.get_delta_attention_maps(inputs["pixel_values"]).change[0].numpy()
    np.testing.assert_allclose(change_map, expected_map, atol=1e-6)
    box = result["change_box"]
    assert box == processor.grid_box_to_pixels(change_box_on_grid(expected_map), (4, 4), (90, 90))
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= 90 and 0 <= y0 < y1 <= 90


def test_change_fields_leave_the_caption_as_it_was(pipe):
    """With the change fields, the batch is encoded once and generation starts from those embeddings: the captions
    are the ones plain generation from the pixels gives."""
    pairs = [{"before": a, "after": b} for a, b in random_pairs(3)]
    settings = {"max_new_tokens": 5, "min_new_tokens": 5}
    plain = [r["generated_text"] for r in pipe(pairs, batch_size=3, **settings)]
    for extra in ({"return_change_probability": True}, {"return_change_map": True}):
        assert [r["generated_text"] for r in pipe(pairs, batch_size=3, **settings, **extra)] == plain


def test_a_change_of_the_whole_picture_is_boxed_whole():
    rng = np.random.default_rng(1)
    difference = rng.uniform(0.9, 1.1, (64, 64))  # brighter everywhere: no patch stands out
    change_map = np.zeros((8, 8))
    change_map[4, 4] = 1.0
    assert change_box_in_pixels(change_map, grown_extent(difference), difference) == (0, 0, 64, 64)
    assert change_box_in_pixels(change_map, np.zeros((8, 8)), np.zeros((64, 64))) == (0, 0, 64, 64)  # nothing
