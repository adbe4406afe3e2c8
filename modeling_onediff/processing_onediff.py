"""OneDiff processor: an existing transformers image processor and a tokenizer, for image pairs.

`OneDiffProcessor(images=[(before, after), ...], text=[...])` resizes both images of every pair with the wrapped
image processor into `pixel_values` of shape `(batch_size, 2, channels, height, width)` and expands each prompt's
`<image>` placeholders to one token per image feature and its `<delta>` placeholder to one token per delta query.

Images are read as the picture a viewer shows (`image_reading_onediff`: EXIF orientation, 16-bit and float images
scaled by their range, ICC profiles to sRGB, transparency on white), and the two images of a pair whose sizes differ
are brought to one frame first (`OneDiffProcessor.frame_pair`): the image processor resizes each image on its own, so
without it the patches of the two would cover parts of the scene that do not correspond.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import get_image_size, infer_channel_dimension_format, is_valid_image
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import AddedToken
from transformers.utils import logging

from .image_reading_onediff import ImageReadError, check_min_side, frame_pair, read_image

logger = logging.get_logger(__name__)

IMAGE_ITEMS_MARKER = "{#- OneDiff: image items -> placeholders -#}"


def chat_template_with_image_items(language_model_template: str, image_token: str, delta_token: str) -> str:
    """
    The language model's own chat template, preceded by a block that turns every message's content list into text:
    the first image item becomes "Before: <image>\n", the second "After: <image>\n" then "Changes: <delta>\n" (the
    block the processor prepends to plain prompts), text items their text. The language model's template then
    renders strings as it always does, with its own role markers, system prompt and end-of-turn token, so the
    trained end of an answer is the one its tokenizer knows. A template that already has the block is kept as is.
    """
    if IMAGE_ITEMS_MARKER in language_model_template:
        return language_model_template
    image, delta = f"'{image_token}\\n'", f"'Changes: {delta_token}\\n'"
    block = (
        IMAGE_ITEMS_MARKER + "{%- set onediff = namespace(messages=[]) -%}"
        "{%- for message in messages -%}"
        "{%- if message['content'] is string or message['content'] is none -%}{%- set text = message['content'] -%}"
        "{%- else -%}{%- set part = namespace(text='', images=0) -%}"
        "{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{%- set part.images = part.images + 1 -%}"
        "{%- set part.text = part.text + ('Before: ' if part.images == 1 else 'After: ') + " + image + " -%}"
        "{%- if part.images == 2 -%}{%- set part.text = part.text + " + delta + " -%}{%- endif -%}"
        "{%- elif item['type'] == 'text' -%}{%- set part.text = part.text + item['text'] -%}{%- endif -%}"
        "{%- endfor -%}{%- set text = part.text -%}{%- endif -%}"
        "{%- set onediff.messages = onediff.messages + [dict(message, content=text)] -%}"
        "{%- endfor -%}{%- set messages = onediff.messages -%}"
    )
    return block + language_model_template


def _as_predicate(error: ImageReadError) -> str:
    """The reader's sentence after "The before image of sample 0": "cannot be decoded: ...", "is too large: ..."."""
    text = str(error)
    return text if text.startswith("cannot") else f"is {text}"


class OneDiffProcessorKwargs(ProcessingKwargs, total=False):
    _defaults = {"text_kwargs": {"padding": False}, "images_kwargs": {}}


class OneDiffProcessor(ProcessorMixin):
    r"""
    Processor for OneDiff: wraps an image processor (e.g. `CLIPImageProcessorPil`, `SiglipImageProcessorPil`) and a
    tokenizer.

    Args:
        image_processor: any transformers image processor that outputs a fixed size.
        tokenizer: the language model's tokenizer, holding the placeholder tokens (see `prepare_tokenizer`).
        patch_size (`int`): patch size of the vision tower.
        image_token_pooling (`int`, defaults to 1): the model's `image_token_pooling`.
        num_delta_tokens (`int`, defaults to 32): the model's `num_delta_tokens` (its `num_delta_queries`, or the
            number of `delta_change_fields`).
        use_image_tokens (`bool`, defaults to `True`): the model's `use_image_tokens`; `False` expands the image
            placeholders to nothing.
        image_token (`str`, defaults to `"<image>"`), delta_token (`str`, defaults to `"<delta>"`): placeholders.
        chat_template (`str`, *optional*): the language model's chat template (Jinja); defaults to the tokenizer's
            own. Either way image items are rendered as the placeholders (`chat_template_with_image_items`). A
            tokenizer without a chat template and no `chat_template` is an error: the answer's end-of-turn would be
            a guess.
    """

    image_token = "<image>"
    delta_token = "<delta>"

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        patch_size: int | None = None,
        image_token_pooling: int = 1,
        num_delta_tokens: int = 32,
        use_image_tokens: bool = True,
        image_token: str = "<image>",
        delta_token: str = "<delta>",
        chat_template: str | None = None,
        **kwargs,
    ):
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"`patch_size` must be the vision tower's patch size (a positive int), got {patch_size!r}")
        if not isinstance(image_token_pooling, int) or image_token_pooling < 1:
            raise ValueError(f"`image_token_pooling` must be a positive integer, got {image_token_pooling!r}")
        if not isinstance(num_delta_tokens, int) or num_delta_tokens < 0:  # 0: a model without delta module
            raise ValueError(f"`num_delta_tokens` must be a non-negative integer, got {num_delta_tokens!r}")
        self.patch_size = patch_size
        self.image_token_pooling = image_token_pooling
        if not isinstance(use_image_tokens, bool):
            raise ValueError(f"`use_image_tokens` must be a bool, got {use_image_tokens!r}")
        self.num_delta_tokens = num_delta_tokens
        self.use_image_tokens = use_image_tokens
        self.image_token = image_token
        self.delta_token = delta_token
        if tokenizer is not None:
            for token in (image_token, delta_token):
                if token not in tokenizer.get_vocab():
                    raise ValueError(
                        f"The tokenizer has no {token!r} token; call OneDiffProcessor.prepare_tokenizer(tokenizer) "
                        "and resize the model's embeddings to len(tokenizer)"
                    )
            self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
            self.delta_token_id = tokenizer.convert_tokens_to_ids(delta_token)
        if chat_template is None and tokenizer is not None:
            chat_template = tokenizer.chat_template
            if isinstance(chat_template, dict):  # named templates: the default one
                chat_template = chat_template.get("default")
            if not chat_template:
                raise ValueError(
                    f"The language model's tokenizer ({type(tokenizer).__name__}) has no chat template, so OneDiff "
                    "cannot know how its turns and answers end. Pass `chat_template=` (the Jinja template the language "
                    "model was tuned with; for training recipes `chat_template_file:`), or use an instruction-tuned "
                    "language model whose tokenizer has one."
                )
        if chat_template is not None:
            chat_template = chat_template_with_image_items(chat_template, image_token, delta_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    @property
    def image_block(self) -> str:
        """What precedes a prompt that names no placeholder (the chat template renders the same block)."""
        return f"Before: {self.image_token}\nAfter: {self.image_token}\nChanges: {self.delta_token}\n"

    @classmethod
    def prepare_tokenizer(cls, tokenizer, image_token: str = "<image>", delta_token: str = "<delta>"):
        """Adds the placeholder tokens as special tokens (if missing) and a pad token (the EOS) if there is none."""
        missing = [t for t in (image_token, delta_token) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    @classmethod
    def from_vision_text_pretrained(
        cls, vision_model_name_or_path: str | Path, text_model_name_or_path: str | Path, config=None, **kwargs
    ) -> "OneDiffProcessor":
        """
        Builds the processor from the towers' folders: the vision folder's image processor, the text folder's
        tokenizer (placeholders added). `config` (a `OneDiffConfig`) supplies patch size, pooling and delta count.
        """
        image_processor = AutoImageProcessor.from_pretrained(vision_model_name_or_path)
        tokenizer = cls.prepare_tokenizer(AutoTokenizer.from_pretrained(text_model_name_or_path))
        if config is not None:
            kwargs.setdefault("patch_size", config.vision_config.patch_size)
            kwargs.setdefault("image_token_pooling", config.image_token_pooling)
            kwargs.setdefault("num_delta_tokens", config.num_delta_tokens)
            kwargs.setdefault("use_image_tokens", config.use_image_tokens)
        else:
            vision_config = AutoConfig.from_pretrained(vision_model_name_or_path)
            vision_config = getattr(vision_config, "vision_config", None) or vision_config
            kwargs.setdefault("patch_size", vision_config.patch_size)
        processor = cls(image_processor=image_processor, tokenizer=tokenizer, **kwargs)
        if config is not None and (config.image_token_id, config.delta_token_id) != (
            processor.image_token_id,
            processor.delta_token_id,
        ):
            raise ValueError(
                f"Placeholder ids differ between the config ({config.image_token_id}, {config.delta_token_id}) and "
                f"the tokenizer ({processor.image_token_id}, {processor.delta_token_id})"
            )
        return processor

    def num_image_tokens(self, height: int, width: int) -> int:
        """Image tokens per image for processed images of this size (patch grid after pooling; 0 without image
        tokens)."""
        if not self.use_image_tokens:
            return 0
        pool = self.image_token_pooling
        return -(-(height // self.patch_size) // pool) * -(-(width // self.patch_size) // pool)

    def grid_box_to_pixels(
        self, box: tuple[int, int, int, int], grid_size: tuple[int, int], image_size: tuple[int, int]
    ) -> list[int]:
        """
        A box on the patch grid, `(column0, row0, column1, row1)` with exclusive ends, as `[x0, y0, x1, y1]` in
        pixels of the image as it was given (`image_size` is its `(width, height)`), undoing the image processor's
        resize and centre crop.
        """
        grid_height, grid_width = grid_size
        width, height = image_size
        processor = self.image_processor
        size = getattr(processor, "size", None) or {}
        if not getattr(processor, "do_resize", True):
            resized = (width, height)
        elif size.get("height") and size.get("width"):
            resized = (size["width"], size["height"])
        elif size.get("shortest_edge"):
            scale = size["shortest_edge"] / min(width, height)
            resized = (round(width * scale), round(height * scale))
        else:
            raise ValueError(f"Cannot map patch boxes back through an image processor resizing to {size}")
        left = top = 0
        seen_width, seen_height = resized  # the region of the resized image the patches cover
        crop = getattr(processor, "crop_size", None) or {}
        if getattr(processor, "do_center_crop", False) and crop.get("height") and crop.get("width"):
            left, top = (resized[0] - crop["width"]) // 2, (resized[1] - crop["height"]) // 2
            seen_width, seen_height = crop["width"], crop["height"]
        column0, row0, column1, row1 = box
        x0, x1 = ((left + c * seen_width / grid_width) * width / resized[0] for c in (column0, column1))
        y0, y1 = ((top + r * seen_height / grid_height) * height / resized[1] for r in (row0, row1))
        return [max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1))]

    def __call__(self, images=None, text=None, **kwargs: Unpack[OneDiffProcessorKwargs]) -> BatchFeature:
        """
        Args:
            images: a list of `(before, after)` pairs (PIL images, numpy arrays or tensors), or a single pair.
            text: one prompt per pair (a string for a single pair). A prompt holds two `<image>` and one `<delta>`
                placeholder, or none, in which case `image_block` is prepended. Without images, plain text is
                tokenized (as TRL's collator does for completions).
            kwargs: tokenizer arguments (`padding`, `padding_side`, `truncation`, `max_length`, `add_special_tokens`,
                `return_tensors` ...) and image processor arguments.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` and (with images) `pixel_values` of shape
            `(batch_size, 2, channels, height, width)`.
        """
        if images is None and text is None:
            raise ValueError("OneDiffProcessor needs `images` (pairs), `text`, or both")
        output_kwargs = self._merge_kwargs(
            OneDiffProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        return_tensors = output_kwargs["text_kwargs"].pop("return_tensors", None)
        output_kwargs["images_kwargs"].pop("return_tensors", None)

        pairs = None if images is None else self._validate_pairs(images)
        if text is None:
            texts = [""] * len(pairs)
        else:
            texts = [text] if isinstance(text, str) else list(text)
            for i, prompt in enumerate(texts):
                if not isinstance(prompt, str):
                    raise ValueError(f"`text` must hold strings; item {i} is a {type(prompt).__name__}")
                if not prompt.strip():
                    raise ValueError(f"Prompt {i} is empty; give an instruction such as 'What changed?'")

        data = {}
        if pairs is None:
            for i, prompt in enumerate(texts):
                if self.image_token in prompt or self.delta_token in prompt:
                    raise ValueError(f"Prompt {i} holds {self.image_token}/{self.delta_token} but no images were given")
            expanded = texts
        else:
            if len(pairs) != len(texts):
                raise ValueError(f"Got {len(pairs)} image pairs but {len(texts)} prompts; give one prompt per pair")
            pixel_values = self._process_images(pairs, output_kwargs["images_kwargs"])
            num_image_tokens = self.num_image_tokens(*pixel_values.shape[-2:])
            expanded = [self.expand_placeholders(prompt, num_image_tokens, i) for i, prompt in enumerate(texts)]
            data["pixel_values"] = pixel_values

        try:
            text_inputs = self.tokenizer(expanded, **output_kwargs["text_kwargs"])
        finally:
            # A fast tokenizer keeps the last call's truncation/padding in its backend, and save_pretrained writes it
            # into tokenizer.json: a processor saved after one truncating call would truncate every later prompt.
            backend = getattr(self.tokenizer, "_tokenizer", None)
            if backend is not None:
                backend.no_truncation()
                backend.no_padding()
        if pairs is not None:
            self._check_placeholders_survived(text_inputs["input_ids"], num_image_tokens)
        data.update(text_inputs)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _validate_pairs(self, images) -> list[tuple]:
        if is_valid_image(images) and not isinstance(images, (list, tuple)):
            raise ValueError("OneDiff needs two images per sample (before, after); got a single image")
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError(f"`images` must be a non-empty list of (before, after) pairs, got {type(images).__name__}")
        if all(not isinstance(item, (list, tuple)) for item in images):
            images = [images]  # a single pair given flat
        pairs = []
        for i, pair in enumerate(images):
            if not isinstance(pair, (list, tuple)):
                raise ValueError(f"Sample {i} of `images` must be a (before, after) pair, got {type(pair).__name__}")
            if len(pair) != 2:
                raise ValueError(f"Sample {i} has {len(pair)} image(s); OneDiff needs exactly 2 (before, after)")
            pair = [self._read(image, i, role) for role, image in zip(("before", "after"), pair)]
            if all(isinstance(image, Image.Image) for image in pair) and pair[0].size != pair[1].size:
                framed = self.frame_pair(*pair)
                logger.warning_once(
                    "OneDiffProcessor: pairs whose two images differ in size are brought to one frame (the after image "
                    "resized, or both letterboxed); see OneDiffProcessor.frame_pair"
                )
                pair = [framed.before, framed.after]
            pairs.append(tuple(pair))
        return pairs

    def _read(self, image, index: int, role: str):
        """A path or URL (as chat messages give them: `{"type": "image", "url": ...}`) read, a PIL image converted
        to the RGB picture it shows; either checked to be at least one patch on each side."""
        if isinstance(image, (str, Path)):
            try:
                image = read_image(image)
            except ImageReadError as error:  # missing, unreadable or not an image: say which one
                raise ValueError(f"Could not read the {role} image of sample {index} ({image}): {error}") from error
        elif isinstance(image, Image.Image):
            try:  # decodes a lazily opened image (truncated files fail here), refuses a huge one, converts to RGB
                image = read_image(image)
            except ImageReadError as error:
                raise ValueError(f"The {role} image of sample {index} {_as_predicate(error)}") from error
        elif not is_valid_image(image):
            raise ValueError(
                f"The {role} image of sample {index} is a {type(image).__name__}, not an image (PIL image, numpy "
                "array, tensor, path or URL)"
            )
        if isinstance(image, Image.Image):
            width, height = image.size
        else:
            height, width = get_image_size(image, infer_channel_dimension_format(image))
        try:
            check_min_side((width, height), self.patch_size)
        except ImageReadError as error:
            raise ValueError(f"The {role} image of sample {index} is {error}") from error
        return image

    @staticmethod
    def frame_pair(before: Image.Image, after: Image.Image):
        """
        What the processor does with a pair of different sizes, before its image processor sees it: aspect ratios
        within 3% — the after image is resized to the before image's size; otherwise both are letterboxed the same
        way (scaled to fit one square, centred on black). Returns a `FramedPair`: the two images, the sizes, how the
        after image maps into the frame (`box_in_after`) and `warnings`, what was done in words. The pipeline calls it
        itself and returns the warnings with the caption.
        """
        return frame_pair(before, after)

    def _process_images(self, pairs: list[tuple], images_kwargs: dict) -> torch.Tensor:
        flat = [image for pair in pairs for image in pair]
        pixel_values = self.image_processor(flat, return_tensors="pt", **images_kwargs)["pixel_values"]
        if isinstance(pixel_values, list):
            shapes = {tuple(p.shape) for p in pixel_values}
            if len(shapes) != 1:
                raise ValueError(f"The image processor returned images of different sizes {shapes}; use a fixed size")
            pixel_values = torch.stack([torch.as_tensor(np.asarray(p)) for p in pixel_values])
        return pixel_values.unflatten(0, (len(pairs), 2))  # (B, 2, C, H, W)

    def expand_placeholders(self, prompt: str, num_image_tokens: int, index: int = 0) -> str:
        """`prompt` with each `<image>` repeated `num_image_tokens` times and `<delta>` `num_delta_tokens` times
        (`image_block` first if it names neither); `index` names the prompt in errors."""
        n_image, n_delta = prompt.count(self.image_token), prompt.count(self.delta_token)
        if (n_image, n_delta) == (0, 0):
            prompt = self.image_block + prompt
        elif (n_image, n_delta) != (2, 1):
            raise ValueError(
                f"Prompt {index} holds {n_image} {self.image_token} and {n_delta} {self.delta_token} placeholders; "
                f"a pair needs 2 {self.image_token} and 1 {self.delta_token} (or none, to prepend them)"
            )
        prompt = prompt.replace(self.image_token, self.image_token * num_image_tokens)
        return prompt.replace(self.delta_token, self.delta_token * self.num_delta_tokens)

    def _check_placeholders_survived(self, input_ids, num_image_tokens: int) -> None:
        expected = (2 * num_image_tokens, self.num_delta_tokens)
        for i, ids in enumerate(input_ids):
            ids = np.asarray(ids)
            found = (int((ids == self.image_token_id).sum()), int((ids == self.delta_token_id).sum()))
            if found != expected:
                raise ValueError(
                    f"Sample {i} holds {found[0]} image and {found[1]} delta tokens after tokenization, expected "
                    f"{expected[0]} and {expected[1]}: truncation cut them; raise `max_length` above "
                    f"{sum(expected)} plus the prompt"
                )


__all__ = ["OneDiffProcessor"]
