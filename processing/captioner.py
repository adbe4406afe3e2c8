"""Difference captions for pairs built by models (retrieval-mined pairs, InstructPix2Pix edits): one interface.

A captioner turns what is known about a pair into several reference difference captions:
- an edit instruction ("make it snowy"), for InstructPix2Pix pairs;
- a caption of each image ("a red car on a street" / "a blue car on a street"), for mined pairs.

`TemplateCaptioner` needs no model. `LLMCaptioner` asks any local transformers causal LM (the paper used an LLM;
the default model's SmolLM2-135M-Instruct works offline here) with the prompts in `PROMPTS`, samples several
answers, cleans them and rejects (and counts) empty, over-long, duplicate and, for edited pairs, "no difference"
answers. Nothing is downloaded: the model comes from a local path.
"""

import re
from collections import Counter

import numpy as np

from .phrasing import says_no_change

# The prompts, documented here and nowhere else.
PROMPTS = {
    "instruction": (
        'An image was edited with this instruction: "{instruction}".\n'
        "In one short sentence, describe how the edited image differs from the original. "
        "Do not repeat the instruction word for word and do not say that nothing changed."
    ),
    "captions": (
        "Image A shows: {before_caption}\nImage B shows: {after_caption}\n"
        "In one short sentence, say what is different in image B compared with image A."
    ),
}
INSTRUCTION_TEMPLATES = (
    "the image was edited to {instruction}",
    "someone edited the photo to {instruction}",
    "the edit: {instruction}",
    "the picture was changed to {instruction}",
    "{instruction}",
)
CAPTION_TEMPLATES = (
    "the first image shows {before_caption} while the second shows {after_caption}",
    "{before_caption} became {after_caption}",
    "before: {before_caption}; after: {after_caption}",
    "the scene changed from {before_caption} to {after_caption}",
)


def _kind(pair: dict) -> str:
    if pair.get("instruction"):
        return "instruction"
    if pair.get("before_caption") and pair.get("after_caption"):
        return "captions"
    raise ValueError("A pair needs an 'instruction', or a 'before_caption' and an 'after_caption'")


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


class TemplateCaptioner:
    """Rewrites the instruction or the two captions with fixed phrasings; needs no model."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.stats: Counter = Counter()

    def caption(self, pair: dict, num_references: int = 3) -> list[str]:
        kind = _kind(pair)
        templates = INSTRUCTION_TEMPLATES if kind == "instruction" else CAPTION_TEMPLATES
        values = {k: _lower_first(v) for k, v in pair.items() if isinstance(v, str)}
        order = self.rng.permutation(len(templates))
        references = [templates[order[i % len(templates)]].format(**values) for i in range(num_references)]
        self.stats["accepted"] += len(references)
        return references


class LLMCaptioner:
    """Asks a local causal LM for difference captions; cleans and validates every answer."""

    def __init__(
        self,
        model_path: str,
        max_words: int = 30,
        max_new_tokens: int = 48,
        temperature: float = 0.8,
        attempts: int = 3,
        seed: int = 0,
        device: str = "cpu",
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
        except OSError as error:
            raise ValueError(f"Cannot load a causal LM from {model_path}: {error}") from error
        self.max_words, self.max_new_tokens, self.temperature = max_words, max_new_tokens, temperature
        self.attempts, self.device = attempts, device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        torch.manual_seed(seed)
        self.stats: Counter = Counter()

    def _prompt(self, pair: dict) -> str:
        message = PROMPTS[_kind(pair)].format(**{k: v.strip() for k, v in pair.items() if isinstance(v, str)})
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False
            )
        return message + "\nAnswer:"

    def clean(self, text: str) -> str:
        text = text.strip().split("\n")[0].strip()
        text = re.sub(r"^(answer|caption|difference|image b)\s*:\s*", "", text, flags=re.IGNORECASE)
        text = text.strip(" \"'`")
        match = re.match(r"(.+?[.!?])(\s|$)", text)  # the first sentence
        return (match.group(1) if match else text).strip()

    def validate(self, text: str, pair: dict, accepted: list[str]) -> str | None:
        """Why `text` is rejected, or None."""
        if not text:
            return "empty"
        if len(text.split()) > self.max_words:
            return "over-long"
        if pair.get("instruction") and says_no_change(text):
            return "says no difference for an edited pair"
        if text.lower() in {a.lower() for a in accepted}:
            return "duplicate"
        return None

    def caption(self, pair: dict, num_references: int = 3) -> list[str]:
        import torch

        inputs = self.tokenizer(self._prompt(pair), return_tensors="pt", add_special_tokens=False).to(self.device)
        accepted: list[str] = []
        for _ in range(self.attempts):
            with torch.no_grad():
                outputs = self.model.generate(
                    **inputs,
                    do_sample=True,
                    temperature=self.temperature,
                    max_new_tokens=self.max_new_tokens,
                    num_return_sequences=num_references,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
            for sequence in outputs[:, inputs["input_ids"].shape[1] :]:
                text = self.clean(self.tokenizer.decode(sequence, skip_special_tokens=True))
                reason = self.validate(text, pair, accepted)
                if reason:
                    self.stats[f"rejected: {reason}"] += 1
                    continue
                self.stats["accepted"] += 1
                accepted.append(text)
            if len(accepted) >= num_references:
                break
        if not accepted:
            self.stats["pairs without any valid caption"] += 1
        return accepted[:num_references]


def load_captioner(name: str, model_path: str | None = None, seed: int = 0, device: str = "cpu"):
    if name == "template":
        return TemplateCaptioner(seed)
    if name == "llm":
        if model_path is None:
            raise ValueError("The LLM captioner needs --captioner-model PATH (a local causal LM folder)")
        return LLMCaptioner(model_path, seed=seed, device=device)
    raise ValueError(f"Unknown captioner {name!r}: template or llm")
