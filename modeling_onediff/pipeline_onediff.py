"""The `image-difference-captioning` pipeline: two images in, a sentence about what changed out.

pipe = pipeline("image-difference-captioning", model=DIR, trust_remote_code=True)
pipe({"before": "a.png", "after": "b.png"})            # -> {"generated_text": "..."}
pipe([{"before": a, "after": b}, ...], batch_size=8)   # batched, left-padded generation
"""

import copy

from transformers import GenerationConfig, Pipeline
from transformers.image_utils import load_image

DEFAULT_PROMPT = "Describe the difference between the two images."


class ImageDifferenceCaptioningPipeline(Pipeline):
    """
    Captions the difference between a before and an after image.

    Inputs: `{"before": image, "after": image, "prompt": str (optional)}` or a list of them, where an image is a PIL
    image, a local path or anything `transformers.image_utils.load_image` reads. Output: `{"generated_text": str}`.
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

    def _sanitize_parameters(self, prompt=None, timeout=None, max_new_tokens=None, generate_kwargs=None, **kwargs):
        preprocess_params, forward_params = {}, dict(generate_kwargs or {})
        if prompt is not None:
            preprocess_params["prompt"] = prompt
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if max_new_tokens is not None:
            forward_params["max_new_tokens"] = max_new_tokens
        forward_params.update(kwargs)
        return preprocess_params, {"generate_kwargs": forward_params}, {}

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
                image = load_image(inputs[role], timeout=timeout)
                image.load()
            except Exception as error:  # unreadable, truncated or missing files all land here
                raise ValueError(f"Could not read the {role} image: {error}") from error
            images.append(image)
        prompt = inputs.get("prompt", prompt) or DEFAULT_PROMPT
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.processor(images=[images], text=[text], return_tensors="pt")

    def _forward(self, model_inputs, generate_kwargs=None):
        generate_kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}), return_dict_in_generate=False)
        prompt_length = model_inputs["input_ids"].shape[1]
        generated = self.model.generate(**model_inputs, **generate_kwargs)
        return {"generated_sequence": generated[:, prompt_length:]}

    def postprocess(self, model_outputs):
        text = self.processor.decode(model_outputs["generated_sequence"][0], skip_special_tokens=True)
        return {"generated_text": text.strip()}
