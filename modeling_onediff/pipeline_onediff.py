"""The `image-difference-captioning` pipeline: two images in, a sentence about what changed out.

pipe = pipeline("image-difference-captioning", model=DIR, trust_remote_code=True)
pipe({"before": "a.png", "after": "b.png"})            # -> {"generated_text": "..."}
pipe([{"before": a, "after": b}, ...], batch_size=8)   # batched, left-padded generation
pipe(pair, return_change_probability=True)             # + "change_probability": 0.97
pipe(pair, return_change_map=True)                     # + "change_map" (grid), "change_box" and "change_point"
pipe(pairs, change_threshold=0.5)                      # pairs judged unchanged are not captioned
pipe(pair, return_change_fields=True)                  # + "change_fields" (models with change heads)

Images are read as the picture a viewer shows (image_reading_onediff.py); a pair whose sizes differ is brought to one
frame first (`OneDiffProcessor.frame_pair`) and its result says so in "warnings".
"""

import copy
from collections import deque

import numpy as np
import torch
from transformers import GenerationConfig, Pipeline

from .image_reading_onediff import FramedPair, ImageReadError, check_min_side, read_image

DEFAULT_PROMPT = "Describe the difference between the two images."
# What a model says when nothing changed: the phrasings of the package's generators (which the default model learnt)
# and the usual ones of CLEVR-Change and Spot-the-Diff. The change probability is one minus their summed probability.
NO_CHANGE_ANSWERS = (
    "no change was made",
    "nothing has changed",
    "there is no difference",
    "the two images are the same",
    "no change",
    "the scene is unchanged",
    "the scene remains the same",
    "there is no change",
    "nothing was modified",
)
BOX_THRESHOLD = 0.5  # without a change extent: the box holds the patches around the map's peak with this share of it
# With a change extent (`delta_zoom_patches`), the box grows from the map's peak over the patches that changed, then
# shrinks to the pixels that did (`change_box_in_pixels`). Chosen on the wild and the generated validation splits.
EXTENT_THRESHOLD = 0.3  # a patch changed when its extent is at least this share of the largest
EXTENT_NOISE = 6.0  # ... and this many times the median patch's (camera and light jitter change every patch a little)
STRONG_SHARE = 0.6  # another region of changed patches joins when its peak is this share of the looked-at one's
PIXEL_SHARE = 0.05  # within those patches (grown by one), the pixels whose difference is this share of the largest
PIXEL_NOISE = 3.0  # ... and this many times the median pixel's
POINT_SMOOTHING = 7  # the change point: the most changed pixel, averaged over a square this many pixels wide


def change_box_on_grid(change_map: np.ndarray, threshold: float = BOX_THRESHOLD) -> tuple[int, int, int, int]:
    """
    The patch-grid box `(column0, row0, column1, row1)` (ends exclusive) around the map's maximum: the 4-connected
    region of patches holding at least `threshold` times the maximum that contains it.
    """
    if change_map.ndim != 2 or change_map.size == 0:
        raise ValueError(f"A change map is a 2-D grid, got shape {change_map.shape}")
    peak = np.unravel_index(int(np.argmax(change_map)), change_map.shape)
    strong = np.pad(change_map >= threshold * change_map[peak], 1)  # a False border: no bounds checks below
    seen, queue = {peak}, deque([peak])
    while queue:
        row, column = queue.popleft()
        for neighbour in ((row - 1, column), (row + 1, column), (row, column - 1), (row, column + 1)):
            if neighbour not in seen and strong[neighbour[0] + 1, neighbour[1] + 1]:
                seen.add(neighbour)
                queue.append(neighbour)
    rows, columns = zip(*seen)
    return min(columns), min(rows), max(columns) + 1, max(rows) + 1


def _regions(mask: np.ndarray) -> list[set[tuple[int, int]]]:
    """The 8-connected regions of a boolean grid's True cells."""
    regions, seen = [], set()
    for start in zip(*np.nonzero(mask)):
        start = (int(start[0]), int(start[1]))
        if start in seen:
            continue
        region, queue = {start}, deque([start])
        while queue:
            row, column = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    r, c = row + dr, column + dc
                    if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c] and (r, c) not in region:
                        region.add((r, c))
                        queue.append((r, c))
        seen |= region
        regions.append(region)
    return regions


def change_box_in_pixels(
    change_map: np.ndarray,
    change_extent: np.ndarray,
    difference: np.ndarray,
    extent_threshold: float = EXTENT_THRESHOLD,
    strong_share: float = STRONG_SHARE,
    pixel_share: float = PIXEL_SHARE,
    extent_noise: float = EXTENT_NOISE,
    pixel_noise: float = PIXEL_NOISE,
) -> tuple[int, int, int, int]:
    """
    The box `(x0, y0, x1, y1)` (ends exclusive) around the change, in pixels of the processed images, from where the
    delta module looked (`change_map`, on the patch grid), how much every patch changed (`change_extent`, the zoom's
    score, same grid) and how much every pixel did (`difference`, `(height, width)`: `pixel_difference`):

    1. the regions of patches whose extent is at least `extent_threshold` of the largest and `extent_noise` times the
       median (when most patches reach half the largest, the whole picture changed, brighter or mirrored, or nothing
       did: the box is the frame): the one holding the map's peak (or nearest it), and every other whose strongest
       patch reaches `strong_share` of that one's (the two places of a move);
    2. within them, grown by one patch, the pixels whose difference is at least `pixel_share` of the largest there
       and `pixel_noise` times the median pixel's (a jittered camera moves every edge a little); when no pixel
       stands out so (nothing changed, or the whole picture did: brighter, blurred), the patches themselves.

    The map alone covers only the few patches the module read; an object spans more, and a patch is coarse for a
    button on a page.
    """
    if change_map.shape != change_extent.shape or change_map.ndim != 2:
        raise ValueError(f"change map {change_map.shape} and extent {change_extent.shape} must be one 2-D grid")
    grid_height, grid_width = change_map.shape
    height, width = difference.shape
    peak = np.unravel_index(int(np.argmax(change_map)), change_map.shape)
    largest = change_extent.max()
    if largest <= 0 or (change_extent >= largest / 2).mean() > 0.5:  # the whole picture changed (or nothing did)
        return 0, 0, width, height
    cut = min(largest, max(extent_threshold * largest, extent_noise * np.median(change_extent)))
    regions = _regions(change_extent >= cut)
    looked = [r for r in regions if peak in r] or [
        min(regions, key=lambda r: min(abs(a - peak[0]) + abs(b - peak[1]) for a, b in r))
    ]
    strongest = max(change_extent[cell] for cell in looked[0])
    kept = set().union(*looked, *(r for r in regions if max(change_extent[c] for c in r) >= strong_share * strongest))
    grid = np.zeros(change_map.shape, dtype=bool)
    for row, column in kept:
        grid[max(0, row - 1) : row + 2, max(0, column - 1) : column + 2] = True
    rows, columns = (np.arange(height) * grid_height) // height, (np.arange(width) * grid_width) // width
    inside = grid[rows[:, None], columns[None, :]]  # each pixel's patch
    everywhere, difference = difference, np.where(inside, difference, 0.0)
    noise = pixel_noise * np.median(everywhere)
    if noise >= difference.max():  # no pixel stands out (nothing, or the whole picture, changed): the patches' box
        patch_rows, patch_columns = zip(*kept)
        return (
            min(patch_columns) * width // grid_width,
            min(patch_rows) * height // grid_height,
            (max(patch_columns) + 1) * width // grid_width,
            (max(patch_rows) + 1) * height // grid_height,
        )
    ys, xs = np.nonzero(difference >= max(pixel_share * difference.max(), noise))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def change_point_in_pixels(
    change_map: np.ndarray, difference: np.ndarray, smoothing: int = POINT_SMOOTHING
) -> tuple[int, int]:
    """
    The pixel `(x, y)` of the processed images where the pair changed most within the patch the delta module looked
    at most (`change_map`'s peak): `difference` (`pixel_difference`, `(height, width)`) averaged over `smoothing`
    pixels square, so that one noisy pixel does not win. The patch's centre when none of its pixels changed. A patch
    is 14 pixels wide: its centre misses a button, a word or the thin edge of an object the patch overlaps.
    """
    grid_height, grid_width = change_map.shape
    height, width = difference.shape
    row, column = np.unravel_index(int(np.argmax(change_map)), change_map.shape)
    y0, y1 = row * height // grid_height, (row + 1) * height // grid_height
    x0, x1 = column * width // grid_width, (column + 1) * width // grid_width
    half = smoothing // 2
    padded = np.pad(difference.astype(np.float64), half, mode="edge")
    sums = padded.cumsum(0).cumsum(1)
    sums = np.pad(sums, ((1, 0), (1, 0)))  # sums[i, j]: the sum of padded[:i, :j]
    ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]  # window of pixel (y, x): padded[y : y + 2h + 1]
    side = 2 * half + 1
    window = sums[ys + side, xs + side] - sums[ys, xs + side] - sums[ys + side, xs] + sums[ys, xs]
    if window.max() <= 0:
        return (x0 + x1) // 2, (y0 + y1) // 2
    # a change smaller than the square gives a plateau of equal sums, some of it beside the change: of the plateau,
    # the pixel that itself changed most
    plateau = window >= window.max() * (1 - 1e-9)
    y, x = np.unravel_index(int(np.argmax(np.where(plateau, difference[y0:y1, x0:x1], -np.inf))), window.shape)
    return int(x0 + x), int(y0 + y)


def pixel_difference(pixel_values: torch.Tensor) -> torch.Tensor:
    """How much every pixel of a pair changed, `(batch_size, height, width)`: |B - A| summed over the channels of the
    processed (normalised) images `(batch_size, 2, channels, height, width)`."""
    return (pixel_values[:, 1].float() - pixel_values[:, 0].float()).abs().sum(dim=1)


class ImageDifferenceCaptioningPipeline(Pipeline):
    """
    Captions the difference between a before and an after image.

    Inputs: `{"before": image, "after": image, "prompt": str (optional)}` or a list of them, where an image is a PIL
    image, a local path, an http(s) URL, a base64 `data:` URI or bytes, read as the picture a viewer shows (EXIF
    orientation, 16-bit and float images by their range, ICC profile to sRGB, transparency on white; HEIC with
    pillow-heif). An image smaller than one patch of the vision tower is refused. Output: `{"generated_text": str}`,
    with `"warnings"` (a list of sentences) when the pair's sizes differed and it was brought to one frame (the after
    image resized, or both letterboxed: `OneDiffProcessor.frame_pair`), plus on request:

    - `return_change_probability=True`: `"change_probability"`, how sure the model is that anything changed: one
      minus the probability the language model gives the "no change" answers (`no_change_answers`) after the prompt;
      for a model with change heads (`delta_change_fields` with a `type` field that has a `none` value), one minus
      the probability its type head gives "none", the decision its caption phrases.
    - `change_threshold=p`: pairs whose change probability is below `p` are not captioned; their `generated_text` is
      "no change" (implies `return_change_probability`).
    - `return_change_map=True`: `"change_map"`, where the Visual Delta Module looked (a patch-grid array summing to
      1), and `"change_box"`, `[x0, y0, x1, y1]` around its peak in pixels of the *after* image as given (mapped back
      through the framing of a pair of different sizes); with a zoomed delta module also `"change_point"`, `[x, y]`:
      the most changed pixel of the patch it looked at most (`change_point_in_pixels`).
    - `return_change_fields=True` (models with `delta_change_fields`): `"change_fields"`, the change its heads chose
      and its caption phrases, e.g. `{"type": "color", "color": "red", "new_value": "blue", ...}` (absent fields
      left out).
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Batches are padded by the base class with `self.tokenizer`; decoder-only generation needs left padding.
        # A shallow copy keeps the processor's own tokenizer (used for training) as it was.
        self.tokenizer = copy.copy(self.processor.tokenizer)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is not None:
            self._generation_defaults["pad_token_id"] = self.tokenizer.pad_token_id

    def _sanitize_parameters(
        self,
        prompt=None,
        timeout=None,
        max_new_tokens=None,
        generate_kwargs=None,
        return_change_probability=None,
        change_threshold=None,
        no_change_answers=None,
        return_change_map=None,
        return_change_fields=None,
        **kwargs,
    ):
        preprocess_params, generate_params = {}, dict(generate_kwargs or {})
        if prompt is not None:
            preprocess_params["prompt"] = prompt
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if max_new_tokens is not None:
            generate_params["max_new_tokens"] = max_new_tokens
        generate_params.update(kwargs)
        forward_params = {"generate_kwargs": generate_params}
        if change_threshold is not None:
            if not 0.0 <= float(change_threshold) <= 1.0:
                raise ValueError(f"`change_threshold` is a probability in [0, 1], got {change_threshold}")
            forward_params["change_threshold"] = float(change_threshold)
            return_change_probability = True
        if return_change_probability:
            answers = no_change_answers or NO_CHANGE_ANSWERS
            if isinstance(answers, str) or not all(isinstance(a, str) and a.strip() for a in answers):
                raise ValueError("`no_change_answers` must be a list of non-empty strings")
            forward_params["no_change_answers"] = tuple(answers)
        if return_change_map:
            forward_params["return_change_map"] = True
        if return_change_fields:
            if not getattr(self.model.config, "delta_change_fields", None):
                raise ValueError("`return_change_fields` needs a model with change heads (`delta_change_fields`)")
            forward_params["return_change_fields"] = True
        return preprocess_params, forward_params, {}

    def __call__(self, inputs, **kwargs):
        """Captions one pair (a dict) or several (a list of dicts)."""
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs, prompt=None, timeout=None):
        if not isinstance(inputs, dict) or "before" not in inputs or "after" not in inputs:
            raise ValueError(
                "image-difference-captioning takes {'before': image, 'after': image} (or a list of them); "
                f"got {type(inputs).__name__}{' with keys ' + str(sorted(inputs)) if isinstance(inputs, dict) else ''}"
            )
        images = []
        for role in ("before", "after"):
            try:
                image = read_image(inputs[role], timeout=timeout)
                check_min_side(image.size, self.processor.patch_size)
            except ImageReadError as error:  # unreadable, truncated, missing, too large or too small
                raise ValueError(f"Could not read the {role} image: {error}") from error
            images.append(image)
        framed = self.processor.frame_pair(*images)
        prompt = inputs.get("prompt", prompt) or DEFAULT_PROMPT
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        model_inputs = self.processor(images=[(framed.before, framed.after)], text=[text], return_tensors="pt")
        # the framing as numbers (batches carry tensors): the warnings and the change box in the after image's pixels
        model_inputs["framing"] = torch.tensor([framed.as_row()], dtype=torch.float32)  # MPS has no float64
        return model_inputs

    def _no_change_type(self) -> tuple[int, int] | None:
        """With change heads whose `type` field has a `none` value: that field's index and the value's."""
        fields = getattr(self.model.config, "delta_change_fields", None) or {}
        if "none" not in fields.get("type", ()):
            return None
        return list(fields).index("type"), fields["type"].index("none")

    def _answer_ids(self, answers: tuple[str, ...]) -> list[list[int]]:
        """Each answer as the model would write it: its tokens, then the end of the turn."""
        end = self.tokenizer.eos_token_id
        if end is None:
            raise ValueError("The tokenizer has no EOS token, so answers cannot be scored as complete")
        return [self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [end] for answer in answers]

    def _forward(
        self,
        model_inputs,
        generate_kwargs=None,
        no_change_answers=None,
        change_threshold=None,
        return_change_map=False,
        return_change_fields=False,
    ):
        framing = model_inputs.pop("framing")
        input_ids, attention_mask = model_inputs["input_ids"], model_inputs.get("attention_mask")
        batch_size, prompt_length = input_ids.shape
        outputs = {"captioned": torch.ones(batch_size, dtype=torch.bool), "framing": framing}
        if no_change_answers or return_change_map or return_change_fields:
            # one encoding of the batch serves the answer scores, the change map and generation
            inputs_embeds, visual = self.model.embed_pairs(
                input_ids, model_inputs["pixel_values"], output_delta_attentions=return_change_map
            )
            generation_inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds}
            if attention_mask is not None:
                generation_inputs["attention_mask"] = attention_mask
        else:
            generation_inputs = model_inputs
        if no_change_answers:
            no_change_type = self._no_change_type()
            if no_change_type is not None:
                field, value = no_change_type
                no_change = visual.change_logits[field].double().softmax(-1)[:, value]
            else:
                log_probabilities = self.model.answer_log_probabilities(
                    self._answer_ids(no_change_answers), attention_mask=attention_mask, inputs_embeds=inputs_embeds
                )
                no_change = log_probabilities.double().exp().sum(-1)  # float64: keeps 1 - p apart from 1 for tiny p
            outputs["change_probability"] = (1.0 - no_change).clamp(0.0, 1.0).cpu()
            if change_threshold is not None:
                outputs["captioned"] = outputs["change_probability"] >= change_threshold
        if return_change_fields:
            outputs["change_classes"] = self.model.model.change_heads.choose(visual.change_logits).cpu()
        if return_change_map:
            maps = self.model.get_delta_attention_maps(image_outputs=visual)
            outputs["change_map"] = maps.change.float().cpu()
            if maps.change_extent is not None:  # the box grows over what changed (`change_box_in_pixels`)
                outputs["change_extent"] = maps.change_extent.cpu()
                outputs["pixel_difference"] = pixel_difference(model_inputs["pixel_values"]).cpu()

        captioned = outputs["captioned"]
        pad = self.tokenizer.pad_token_id or 0
        outputs["generated_sequence"] = torch.full((batch_size, 1), pad, dtype=torch.long)
        if captioned.any():
            generate_kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}), return_dict_in_generate=False)
            rows = captioned.nonzero().squeeze(1)
            sub_batch = {key: value[rows] for key, value in generation_inputs.items()}
            new_tokens = self.model.generate(**sub_batch, **generate_kwargs)[:, prompt_length:].cpu()
            outputs["generated_sequence"] = torch.full((batch_size, new_tokens.shape[1]), pad, dtype=torch.long)
            outputs["generated_sequence"][rows] = new_tokens
        return outputs

    def postprocess(self, model_outputs):
        if model_outputs["captioned"][0]:
            text = self.processor.decode(model_outputs["generated_sequence"][0], skip_special_tokens=True).strip()
        else:
            text = "no change"
        result = {"generated_text": text}
        framed = FramedPair.from_row(model_outputs["framing"][0].tolist())
        if framed.warnings:
            result["warnings"] = framed.warnings
        if "change_probability" in model_outputs:
            result["change_probability"] = float(model_outputs["change_probability"][0])
        if "change_classes" in model_outputs:
            result["change_fields"] = self.model.config.decode_change(model_outputs["change_classes"][0].tolist())
        if "change_map" in model_outputs:
            change_map = model_outputs["change_map"][0].numpy()
            result["change_map"] = change_map
            if "change_extent" in model_outputs:
                difference = model_outputs["pixel_difference"][0].numpy()
                box = change_box_in_pixels(change_map, model_outputs["change_extent"][0].numpy(), difference)
                in_frame = self.processor.grid_box_to_pixels(box, difference.shape, framed.frame_size)
                x, y = change_point_in_pixels(change_map, difference)
                pixel = self.processor.grid_box_to_pixels((x, y, x + 1, y + 1), difference.shape, framed.frame_size)
                x0, y0, x1, y1 = framed.box_in_after(pixel)
                result["change_point"] = [(x0 + x1) / 2, (y0 + y1) / 2]
            else:
                box = change_box_on_grid(change_map)
                in_frame = self.processor.grid_box_to_pixels(box, change_map.shape, framed.frame_size)
            result["change_box"] = framed.box_in_after(in_frame)
        return result
