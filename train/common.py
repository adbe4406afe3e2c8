"""What both training stages share: model loading, the batch collator and the final checkpoint."""

import os
import sys
from dataclasses import dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path

import torch
import yaml
from trl import TrlParser
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from onediff_idc.processing.schema import load_diffcap

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelArguments:
    """Where the model comes from: a OneDiff checkpoint, or pretrained towers assembled into one."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "OneDiff checkpoint folder (save_pretrained output) to start from"}
    )
    vision_model_name_or_path: str | None = field(
        default=None, metadata={"help": "vision tower folder (with its image processor), to assemble a new model"}
    )
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "causal LM folder (with its tokenizer), to assemble a new model"}
    )
    model_config_overrides: dict = field(
        default_factory=dict,
        metadata={"help": "OneDiffConfig fields when assembling from towers, e.g. {num_delta_queries: 32}"},
    )
    model_dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})

    def __post_init__(self):
        for name in ("model_name_or_path", "vision_model_name_or_path", "text_model_name_or_path"):
            if getattr(self, name) is not None:
                setattr(self, name, os.path.expanduser(os.path.expandvars(getattr(self, name))))
        towers = (self.vision_model_name_or_path, self.text_model_name_or_path)
        if (self.model_name_or_path is None) == (towers == (None, None)):
            raise ValueError(
                "Give either `model_name_or_path` (a OneDiff checkpoint) or both `vision_model_name_or_path` and "
                "`text_model_name_or_path` (towers to assemble)"
            )
        if self.model_name_or_path is None and None in towers:
            raise ValueError(
                "Assembling from towers needs both `vision_model_name_or_path` and `text_model_name_or_path`"
            )
        for name in ("model_name_or_path", "vision_model_name_or_path", "text_model_name_or_path"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_dir():
                raise ValueError(f"`{name}`: no folder at {path}")
        if self.model_name_or_path is not None and not (Path(self.model_name_or_path) / "config.json").is_file():
            raise ValueError(f"`model_name_or_path`: {self.model_name_or_path} holds no config.json")
        if self.model_dtype not in DTYPES:
            raise ValueError(f"`model_dtype` must be one of {sorted(DTYPES)}, got {self.model_dtype!r}")


def parse_recipe(dataclass_types: tuple, argv: list[str] | None) -> tuple:
    """TrlParser over `--config recipe.yaml` plus command-line overrides, with unknown recipe keys reported (with
    a close match) before any dataclass runs its own checks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        recipe = Path(argv[argv.index("--config") + 1])
        if not recipe.is_file():
            raise ValueError(f"Recipe not found: {recipe}")
        config = yaml.safe_load(recipe.read_text()) or {}
        if not isinstance(config, dict):
            raise ValueError(f"Recipe {recipe} must be a YAML mapping")
        known = {f.name for cls in dataclass_types for f in fields(cls)} | {"env"}
        unknown = sorted(set(config) - known)
        if unknown:
            hints = [
                f"{key} (did you mean {close[0]}?)" if (close := get_close_matches(key, known, 1)) else key
                for key in unknown
            ]
            raise ValueError(f"Unknown key(s) in recipe {recipe}: {', '.join(hints)}")
    return TrlParser(dataclass_types).parse_args_and_config(argv)


# What OneDiff adds to its two pretrained towers: stage 1 trains these alone, stage 2 trains them in full beside LoRA
NEW_PARTS = ("delta_module", "image_projector", "delta_projector")


def present_new_parts(model: OneDiffForConditionalGeneration) -> list[str]:
    """The new parts this model has (the image-tokens-only ablation has no delta module)."""
    return [part for part in NEW_PARTS if getattr(model.model, part) is not None]


def load_model_and_processor(args: ModelArguments) -> tuple[OneDiffForConditionalGeneration, OneDiffProcessor]:
    dtype = DTYPES[args.model_dtype]
    if args.model_name_or_path is not None:
        model = OneDiffForConditionalGeneration.from_pretrained(args.model_name_or_path, dtype=dtype)
        processor = OneDiffProcessor.from_pretrained(args.model_name_or_path)
    else:
        model = OneDiffForConditionalGeneration.from_vision_text_pretrained(
            args.vision_model_name_or_path, args.text_model_name_or_path, dtype=dtype, **args.model_config_overrides
        )
        processor = OneDiffProcessor.from_vision_text_pretrained(
            args.vision_model_name_or_path, args.text_model_name_or_path, model.config
        )
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if isinstance(end_of_turn, int) and end_of_turn != processor.tokenizer.unk_token_id and end_of_turn not in eos:
        model.generation_config.eos_token_id = [*eos, end_of_turn]  # the chat template ends answers with it
    return model, processor


def load_pairs(path: str, split: str, max_samples: int | None = None):
    """A split of a DiffCap dataset with the columns training needs (no image is decoded here)."""
    dataset = load_diffcap(path, splits=(split,))[split]
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"Split {split!r} of {path} is empty")
    return dataset.select_columns(["images", "prompt", "completion"])


class OneDiffCollator:
    """Turns rows (`images`, `prompt`, `completion`) into a training batch with the chat template the pipeline uses.

    Rows become conversations (user: both images + prompt, assistant: completion) and go through TRL's own vision
    collator: prompt left-padded, completion right-padded, loss on the completion (and its end-of-turn) only.
    """

    def __init__(self, processor: OneDiffProcessor):
        self.collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)

    def __call__(self, rows: list[dict]) -> dict:
        examples = [
            {
                "images": list(row["images"]),
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "completion": [{"role": "assistant", "content": row["completion"]}],
            }
            for row in rows
        ]
        for example in examples:
            if len(example["images"]) != 2:
                raise ValueError(f"A training pair needs 2 images, got {len(example['images'])}")
        return self.collator(examples)


def save_final(model, processor: OneDiffProcessor, out: str | Path) -> Path:
    """A plain save_pretrained folder that loads with AutoModel / AutoProcessor / the pipeline anywhere."""
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
