"""Stage 2 of OneDiff: multi-task instruction tuning on DiffCap with TRL's SFTTrainer.

    accelerate launch train/sft.py --config train/configs/tiny_cpu/sft.yaml
    accelerate launch --config_file train/configs/accelerate/fsdp2.yaml train/sft.py \
        --config train/configs/onediff_7b/sft.yaml

Every row carries its task's prompt (processing/prompts.py); rows become chat conversations (user: both images and
the prompt; assistant: the caption) and the loss falls on the caption only. Full fine-tuning, or LoRA on the
language model (`use_peft: true`) with the delta module and projectors trained in full beside it. Optional
evaluation loss on a second split, resume from the last checkpoint, and a final folder (`<output_dir>/final`, LoRA
merged) that loads with `pipeline("image-difference-captioning", model=..., trust_remote_code=True)`.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import concatenate_datasets
from peft import LoraConfig, get_peft_model
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from modeling_onediff import OneDiffForConditionalGeneration
from modeling_onediff.pipeline_onediff import DEFAULT_PROMPT
from onediff_idc.processing.phrasing import canonical_caption
from onediff_idc.processing.schema import with_head_changes
from onediff_idc.train.common import (
    LOG_FILE,
    JsonLinesTracker,
    ModelArguments,
    OneDiffCollator,
    forget_log_after,
    load_model_and_processor,
    load_pairs,
    parse_recipe,
    present_new_parts,
    save_final,
    training_record,
)

# LoRA goes on the decoder's attention and MLP projections only: the delta module has q_proj/v_proj too
DECODER_LINEAR_LAYERS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass
class OneDiffSFTArguments:
    dataset_path: str = field(default=None, metadata={"help": "DiffCap dataset folder (onediff data build/convert)"})
    extra_dataset_path: list[str] | None = field(
        default=None, metadata={"help": "more DiffCap folders whose training splits join the training rows"}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "split to train on"})
    dataset_eval_split: str | None = field(default=None, metadata={"help": "split for evaluation loss (optional)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "train on the first N rows only"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "evaluate on the first N rows only"})
    use_peft: bool = field(default=False, metadata={"help": "LoRA on the language model instead of full tuning"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default=DECODER_LINEAR_LAYERS, metadata={"help": "regex of LoRA'd modules"})
    train_vision_tower: bool = field(default=False, metadata={"help": "also fine-tune the vision tower (full FT)"})
    freeze_language_model: bool = field(
        default=False,
        metadata={"help": "train only the delta module and projectors (LLaVA-style alignment before LoRA/full SFT)"},
    )
    generic_prompt_fraction: float = field(
        default=0.0,
        metadata={"help": "share of training rows whose task prompt becomes the pipeline's default prompt"},
    )
    phrase_true_change: bool = field(
        default=False,
        metadata={
            "help": "verbalisation, for a model with `delta_change_fields` and no image tokens: the delta tokens "
            "hold each row's true change (its `change` column), no image is read, and only LoRA and the value "
            "embeddings learn, so the language model learns to say exactly what the tokens say"
        },
    )
    canonical_phrasing: bool = field(
        default=False,
        metadata={
            "help": "with `phrase_true_change`: the target caption is the change's one canonical wording "
            "(processing/phrasing.py `canonical_caption`) instead of the row's sampled reference, whose mixture of "
            "templates greedy decoding blends into captions that state no change exactly"
        },
    )

    def __post_init__(self):
        if self.dataset_path is None:
            raise ValueError("`dataset_path` is required (a DiffCap dataset folder)")
        if not 0.0 <= self.generic_prompt_fraction <= 1.0:
            raise ValueError(f"`generic_prompt_fraction` must be in [0, 1], got {self.generic_prompt_fraction!r}")
        if self.freeze_language_model and self.use_peft:
            raise ValueError("`freeze_language_model` and `use_peft` contradict each other: LoRA trains the LM")
        if self.phrase_true_change and not self.use_peft:
            raise ValueError("`phrase_true_change` trains LoRA and the value embeddings: set `use_peft: true`")
        if self.canonical_phrasing and not self.phrase_true_change:
            raise ValueError("`canonical_phrasing` is a setting of `phrase_true_change`: set it too")


def mix_in_generic_prompt(dataset, fraction: float, seed: int):
    """Gives a seeded `fraction` of the rows the pipeline's default prompt instead of their task prompt, so a model
    tuned on task prompts also answers `pipeline(...)` / `onediff caption` called without one. Only the prompt
    column is replaced (no image is copied)."""
    if fraction == 0.0:
        return dataset
    chosen = np.random.default_rng(seed).random(len(dataset)) < fraction
    prompts = [DEFAULT_PROMPT if pick else prompt for pick, prompt in zip(chosen, dataset["prompt"])]
    return dataset.remove_columns("prompt").add_column("prompt", prompts)


def with_known_change(dataset, config):
    """The rows of `dataset` (None passes) whose ground-truth `change` the model's change fields can state; an
    error if none can."""
    if dataset is None:
        return None
    kept = dataset.filter(config.knows_change, input_columns="change")
    if len(kept) < len(dataset):
        print(f"phrase_true_change: {len(dataset) - len(kept)} of {len(dataset)} rows have no change the model states")
    if len(kept) == 0:
        raise ValueError("`phrase_true_change` needs rows with a ground-truth `change` (generated pairs); none has one")
    return kept


def with_canonical_completions(dataset):
    """`dataset` (None passes) with each row's completion replaced by its change's canonical caption."""
    if dataset is None:
        return None
    captions = [canonical_caption(change) for change in dataset["change"]]
    return dataset.remove_columns("completion").add_column("completion", captions)


class JsonLinesCallback(TrainerCallback):
    """SFTTrainer's logs also go to `<output_dir>/log.jsonl`, one JSON line per log, as the custom loops write it
    (with `report_to` the trackers get them as well, under `<output_dir>/runs`)."""

    def __init__(self, output_dir: str | Path):
        self.tracker = JsonLinesTracker(Path(output_dir) / LOG_FILE)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.tracker.log(logs, step=state.global_step)


def parse(argv: list[str] | None) -> tuple[ModelArguments, OneDiffSFTArguments, SFTConfig]:
    return parse_recipe((ModelArguments, OneDiffSFTArguments, SFTConfig), argv)


def main(argv: list[str] | None = None) -> Path:
    model_args, args, config = parse(argv)
    # data problems surface before any model is loaded
    columns = ("change",) if args.phrase_true_change else ()
    folders = [args.dataset_path, *(args.extra_dataset_path or [])]
    train = concatenate_datasets([load_pairs(path, args.dataset_train_split, None, columns) for path in folders])
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    train = mix_in_generic_prompt(train, args.generic_prompt_fraction, config.seed)
    evaluation = None
    if args.dataset_eval_split:
        evaluation = load_pairs(args.dataset_path, args.dataset_eval_split, args.max_eval_samples, columns)
    if args.phrase_true_change:  # only pairs with a change the model states can be phrased from it
        if model_args.model_name_or_path is None:
            raise ValueError("`phrase_true_change` starts from a checkpoint with change heads (pretrain_delta's)")
        fields = OneDiffForConditionalGeneration.config_class.from_pretrained(
            model_args.model_name_or_path
        ).with_overrides(**model_args.model_config_overrides)
        # the heads' part of each ground truth is what their tokens carry (names and texts are not a head's class)
        train, evaluation = (None if split is None else with_head_changes(split) for split in (train, evaluation))
        train, evaluation = (with_known_change(split, fields) for split in (train, evaluation))
        if args.canonical_phrasing:
            train, evaluation = (with_canonical_completions(split) for split in (train, evaluation))
    resume = config.resume_from_checkpoint
    if resume in ("true", "True", "latest", True):
        resume = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
        if resume is None:
            raise ValueError(f"resume_from_checkpoint: no checkpoint in {config.output_dir}")

    config.max_length = None  # truncation would cut image placeholders (hf-integration.md)
    config.remove_unused_columns = False  # the collator reads images/prompt/completion itself
    config.dataset_kwargs = {**(config.dataset_kwargs or {}), "skip_prepare_dataset": True}

    model, processor = load_model_and_processor(model_args)
    new_parts = present_new_parts(model)
    if args.phrase_true_change and (not model.config.delta_change_fields or model.config.use_image_tokens):
        raise ValueError(
            "`phrase_true_change` needs a model with `delta_change_fields` and `use_image_tokens: false` "
            "(train/pretrain_delta.py with `change_bottleneck: true` makes one)"
        )
    peft_config = None
    if args.use_peft:
        model.requires_grad_(False)
        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=args.lora_target_modules,
            modules_to_save=new_parts,
        )
    elif args.freeze_language_model:
        # a frozen LM cannot learn the captions' prior on its own: lowering the loss needs the visual tokens
        model.requires_grad_(False)
        for part in new_parts:
            getattr(model.model, part).requires_grad_(True)
        if args.train_vision_tower:
            model.model.vision_tower.requires_grad_(True)
    elif not args.train_vision_tower:
        model.model.vision_tower.requires_grad_(False)
    model.model.freeze_unused_vision_parameters()
    if model.model.change_heads is not None:
        # the heads choose the delta tokens by argmax, so no caption loss reaches them or the delta module: they
        # learn in pretrain_delta and stay as they are; only the language model (LoRA) and the value embeddings
        # learn here. With LoRA the adapter still carries them, as everything trained on top of the base.
        if peft_config is not None:
            model = get_peft_model(model, peft_config)
            peft_config = None
        for name, parameter in model.named_parameters():
            if ("delta_module" in name or "change_heads.classifiers" in name) and parameter.requires_grad:
                parameter.requires_grad_(False)

    # the Trainer would push what it saves (with LoRA: the adapter alone); the merged final/ is pushed below instead
    push_final, config.push_to_hub = config.push_to_hub, False
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        data_collator=OneDiffCollator(processor, model.config if args.phrase_true_change else None),
        peft_config=peft_config,
        callbacks=[JsonLinesCallback(config.output_dir)],
    )
    if resume is not None and trainer.accelerator.is_main_process:
        step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        forget_log_after(Path(config.output_dir) / LOG_FILE, step)  # those steps run and log again
    trainer.train(resume_from_checkpoint=resume)

    final = Path(config.output_dir) / "final"
    data = {"dataset_path": folders}
    if trainer.accelerator.is_main_process:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        if args.use_peft:
            trained.save_pretrained(Path(config.output_dir) / "adapter")  # LoRA + delta module + projectors
            trained = trained.merge_and_unload()
        save_final(trained, processor, final, training_record("train/sft.py", model_args, args, config, **data))
        if push_final:
            from onediff_idc.model_card import push_checkpoint

            repo_id = config.hub_model_id or Path(config.output_dir).name
            print(f"pushed {final}: {push_checkpoint(final, repo_id, private=bool(config.hub_private_repo))}")
    trainer.accelerator.wait_for_everyone()
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
