"""Tiny random OneDiff models, tokenizers and images, built offline: for the tests and the tiny CPU recipes.

    python -m onediff_idc.train.tiny_model --out runs/tiny-model [--pair clip-llama]

writes a randomly initialised OneDiff checkpoint (CLIP-vision + Llama, or SigLIP-vision + Qwen2, a few layers of
width 32) with a byte-level BPE tokenizer trained on the DiffCap phrasings: small enough to train in seconds.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

from modeling_onediff import OneDiffConfig, OneDiffForConditionalGeneration, OneDiffProcessor

CORPUS = [
    "the red cube moved to the left of the small blue sphere",
    "a green cylinder was added behind the large metal cube",
    "the yellow rubber sphere is gone",
    "the brightness increased strongly and the image got darker",
    "nothing has changed between the two images",
    "Describe the difference between the two images.",
    "What changed? Before: After: Changes:",
    "user assistant system",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
# the tiny language model's chat format: ChatML as SmolLM2 writes it, without a default system prompt
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
IMAGE_SIZE, PATCH_SIZE = 32, 8  # 4x4 patch grid


def _corpus() -> list[str]:
    from onediff_idc.processing.phrasing import SLOTS, TEMPLATES
    from onediff_idc.processing.prompts import TASK_PROMPTS

    words = [w for slot in SLOTS.values() for ws in slot.surfaces.values() for w in ws]
    templates = [t for ts in TEMPLATES.values() for t in ts]
    return CORPUS + list(TASK_PROMPTS.values()) + templates + [" ".join(words)]


def tiny_tokenizer(with_placeholders: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) with ChatML tokens and (by default) the OneDiff placeholders."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_corpus() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<pad>", bos_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return OneDiffProcessor.prepare_tokenizer(fast) if with_placeholders else fast


def tiny_text_config(kind: str, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=None,
        eos_token_id=0,
        bos_token_id=0,
        initializer_range=0.5,  # large random weights: greedy outputs vary token to token, so comparisons bite
    )
    if kind == "llama":
        return LlamaConfig(**common, tie_word_embeddings=False)
    return Qwen2Config(**common, tie_word_embeddings=True)


def tiny_vision(kind: str):
    common = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    if kind == "clip":
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        )
        return CLIPVisionConfig(**common), processor
    return SiglipVisionConfig(**common), SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


TOWER_PAIRS = {"clip-llama": ("clip", "llama"), "siglip-qwen2": ("siglip", "qwen2")}


def tiny_config(pair: str = "clip-llama", tokenizer=None, **overrides) -> OneDiffConfig:
    vision_kind, text_kind = TOWER_PAIRS[pair]
    tokenizer = tokenizer or tiny_tokenizer()
    vision_config, _ = tiny_vision(vision_kind)
    kwargs = dict(
        vision_config=vision_config,
        text_config=tiny_text_config(text_kind, len(tokenizer)),
        delta_feature_layers=[1, 2, 3],
        vision_feature_layer=-2,
        num_delta_queries=4,
        delta_hidden_size=32,
        delta_num_hidden_layers=2,
        delta_num_attention_heads=4,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        delta_token_id=tokenizer.convert_tokens_to_ids("<delta>"),
        initializer_range=0.2,
    )
    kwargs.update(overrides)
    return OneDiffConfig(**kwargs)


def tiny_processor(config: OneDiffConfig, pair: str = "clip-llama", tokenizer=None) -> OneDiffProcessor:
    _, image_processor = tiny_vision(TOWER_PAIRS[pair][0])
    return OneDiffProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer or tiny_tokenizer(),
        patch_size=config.vision_config.patch_size,
        image_token_pooling=config.image_token_pooling,
        num_delta_tokens=config.num_delta_tokens,
        use_image_tokens=config.use_image_tokens,
    )


def tiny_model_and_processor(pair: str = "clip-llama", seed: int = 0, **overrides):
    import torch

    tokenizer = tiny_tokenizer()
    config = tiny_config(pair, tokenizer=tokenizer, **overrides)
    torch.manual_seed(seed)
    model = OneDiffForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tiny_processor(config, pair, tokenizer)


def random_image(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def chat_inputs(processor: OneDiffProcessor, pairs: list, prompt: str = "What changed?"):
    """The model's inputs for image pairs and one question, through the chat template the pipeline uses
    (left-padded for batched generation)."""
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": prompt}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return processor(images=pairs, text=[text] * len(pairs), padding=True, padding_side="left", return_tensors="pt")


def random_pairs(n: int) -> list[tuple[Image.Image, Image.Image]]:
    return [(random_image(2 * i), random_image(2 * i + 1)) for i in range(n)]


def save_image(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def save_tiny_model(out: str | Path, pair: str = "clip-llama", seed: int = 0, **overrides) -> Path:
    """Writes a tiny random OneDiff checkpoint (model, processor, remote code) to `out`."""
    model, processor = tiny_model_and_processor(pair, seed=seed, **overrides)
    model.generation_config.eos_token_id = [
        processor.tokenizer.eos_token_id,
        processor.tokenizer.convert_tokens_to_ids("<|im_end|>"),
    ]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a tiny random OneDiff checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--pair", default="clip-llama", choices=sorted(TOWER_PAIRS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(save_tiny_model(args.out, args.pair, args.seed))


if __name__ == "__main__":
    main()
