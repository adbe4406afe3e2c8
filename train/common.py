"""What the training loops share: model loading, the batch collator, accelerate's checkpointing and trackers, and
the final checkpoint."""

import json
import os
import re
import shutil
import sys
from dataclasses import MISSING, dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.tracking import GeneralTracker
from accelerate.utils import ProjectConfiguration
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
        metadata={
            "help": "OneDiffConfig fields to set, e.g. {delta_zoom_patches: 16}: when assembling from towers, or on "
            "a checkpoint (parameters the change adds start fresh)"
        },
    )
    model_dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})
    chat_template_file: str | None = field(
        default=None,
        metadata={
            "help": "Jinja file of the language model's chat format, when assembling from a text tower whose "
            "tokenizer has none (e.g. train/configs/onediff_7b/vicuna_v1.jinja for Vicuna-7B v1.5)"
        },
    )

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
        if self.chat_template_file is not None:
            if self.model_name_or_path is not None:
                raise ValueError("`chat_template_file` applies when assembling from towers; a checkpoint has its own")
            if not Path(self.chat_template_file).is_file():
                raise ValueError(f"`chat_template_file`: no file at {self.chat_template_file}")
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
NEW_PARTS = ("delta_module", "image_projector", "delta_projector", "change_heads")


def present_new_parts(model: OneDiffForConditionalGeneration) -> list[str]:
    """The new parts this model has (the image-tokens-only ablation has no delta module)."""
    return [part for part in NEW_PARTS if getattr(model.model, part) is not None]


def load_model_and_processor(args: ModelArguments) -> tuple[OneDiffForConditionalGeneration, OneDiffProcessor]:
    dtype = DTYPES[args.model_dtype]
    if args.model_name_or_path is not None:
        overrides = args.model_config_overrides
        config = OneDiffForConditionalGeneration.config_class.from_pretrained(args.model_name_or_path)
        had_heads = bool(config.delta_change_fields)
        config = config.with_overrides(**overrides)
        # an override may reshape a new part (another number of vision layers or queries): that part starts fresh,
        # and transformers' load report names it
        model = OneDiffForConditionalGeneration.from_pretrained(
            args.model_name_or_path, config=config, dtype=dtype, ignore_mismatched_sizes=bool(overrides)
        )
        processor = OneDiffProcessor.from_pretrained(args.model_name_or_path)
        if model.model.change_heads is not None and not had_heads:  # heads added by the overrides start at words
            model.model.change_heads.init_value_embeddings(
                model.get_input_embeddings(), processor.tokenizer, config.delta_change_fields
            )
        # the token counts follow the (possibly overridden) config
        processor.num_delta_tokens = model.config.num_delta_tokens
        processor.use_image_tokens = model.config.use_image_tokens
    else:
        model = OneDiffForConditionalGeneration.from_vision_text_pretrained(
            args.vision_model_name_or_path, args.text_model_name_or_path, dtype=dtype, **args.model_config_overrides
        )
        template = Path(args.chat_template_file).read_text() if args.chat_template_file else None
        processor = OneDiffProcessor.from_vision_text_pretrained(
            args.vision_model_name_or_path, args.text_model_name_or_path, model.config, chat_template=template
        )
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if isinstance(end_of_turn, int) and end_of_turn != processor.tokenizer.unk_token_id and end_of_turn not in eos:
        model.generation_config.eos_token_id = [*eos, end_of_turn]  # the chat template ends answers with it
    return model, processor


def load_pairs(path: str, split: str, max_samples: int | None = None, columns: tuple[str, ...] = ()):
    """A split of a DiffCap dataset with the columns training needs (and `columns`; no image is decoded here)."""
    dataset = load_diffcap(path, splits=(split,))[split]
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"Split {split!r} of {path} is empty")
    return dataset.select_columns(["images", "prompt", "completion", *columns])


class OneDiffCollator:
    """Turns rows (`images`, `prompt`, `completion`) into a training batch with the chat template the pipeline uses.

    Rows become conversations (user: both images + prompt, assistant: completion) and go through TRL's own vision
    collator: prompt left-padded, completion right-padded, loss on the completion (and its end-of-turn) only.

    With `config` (of a model with `delta_change_fields`) the batch phrases the true change: `change_labels` from
    each row's `change` column replace the change heads' choice and the pixels are dropped (a model without image
    tokens needs none to put a given change into words), so no vision tower runs.
    """

    def __init__(self, processor: OneDiffProcessor, config=None):
        self.collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
        self.config = config  # the model's OneDiffConfig, to phrase the true change (None: the pairs' images)

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
        batch = self.collator(examples)
        if self.config is not None:
            del batch["pixel_values"]
            batch["change_labels"] = torch.tensor([self.config.encode_change(row["change"]) for row in rows])
        return batch


def save_final(model, processor: OneDiffProcessor, out: str | Path, training: dict | None = None) -> Path:
    """A plain save_pretrained folder that loads with AutoModel / AutoProcessor / the pipeline anywhere; with
    `training` (see `training_record`) it also records how it was made and gets a model card (README.md)."""
    from onediff_idc.model_card import record_training, write_model_card

    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if training is not None:
        record_training(out, **training)
        write_model_card(out)
    return out


def set_fields(instance) -> dict:
    """The fields of a dataclass instance whose value differs from the field's default: what a recipe set."""
    values = {}
    for f in fields(instance):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        value = getattr(instance, f.name)
        if not f.name.startswith("_") and (default is MISSING or value != default):
            values[f.name] = value
    return values


def training_record(
    script: str, model_args: ModelArguments, *arguments, dataset_path: str | list[str] | None = None
) -> dict:
    """What a `final/` folder records of its making: the script, every argument, where it started, the base models
    (the towers, or those the starting checkpoint records) and the data (one folder or several)."""
    from onediff_idc.model_card import TRAINING_RECORD, hub_name

    start = model_args.model_name_or_path
    if start is None:
        base_models = [hub_name(model_args.vision_model_name_or_path), hub_name(model_args.text_model_name_or_path)]
    else:
        record = Path(start) / TRAINING_RECORD
        base_models = json.loads(record.read_text()).get("base_models", []) if record.is_file() else [hub_name(start)]
    return {
        "script": script,
        "arguments": tracker_config(*(set_fields(a) for a in (model_args, *arguments))),
        "start": start,
        "base_models": base_models,
        "datasets": [
            Path(path).name for path in ([dataset_path] if isinstance(dataset_path, str) else dataset_path or [])
        ],
    }


# ---- accelerate's checkpointing and trackers, as both custom loops use them ----------------------------------------

COMPLETE_MARKER = "checkpoint_complete.json"  # written last: a folder without it was cut short (a kill mid-save)
LOG_FILE = "log.jsonl"  # every stage's log, one JSON line per log call


class RunProgress:
    """Where a run stands (step, data position, reports): registered with `accelerator.register_for_checkpointing`,
    so `save_state` / `load_state` carry it beside the model, optimizer, scheduler and RNG states."""

    def __init__(self, **values):
        self.values = dict(values)

    def __getitem__(self, key: str):
        return self.values[key]

    def __setitem__(self, key: str, value) -> None:
        self.values[key] = value

    def state_dict(self) -> dict:
        return dict(self.values)

    def load_state_dict(self, state: dict) -> None:
        self.values = dict(state)


class JsonLinesTracker(GeneralTracker):
    """An accelerate tracker that appends every `accelerator.log(values, step)` to `<output_dir>/log.jsonl` as one
    JSON line; always on, beside whatever `report_to` asks for (TensorBoard, W&B, ...)."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.with_name("run_config.json").write_text(json.dumps(values, indent=1, default=str) + "\n")

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")


def report_to_trackers(report_to: list[str] | str | None) -> list[str]:
    """`report_to` as transformers' TrainingArguments read it ("none", "all", or integration names)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if names in ([], ["none"]):
        return []
    return ["all"] if "all" in names else names


def make_accelerator(
    output_dir: str | Path, report_to, save_total_limit: int | None, **kwargs
) -> tuple[Accelerator, Path]:
    """An Accelerator that names and rotates checkpoints itself (`<output_dir>/checkpoints/checkpoint_<i>`, the
    newest `save_total_limit` kept) and logs to log.jsonl plus the `report_to` trackers (`<output_dir>/runs`)."""
    if save_total_limit is not None and save_total_limit < 2:
        # accelerate deletes the oldest checkpoint before writing the next: with one kept, a kill mid-save loses both
        raise ValueError(f"`save_total_limit` must be >= 2 so that a kill mid-save leaves one, got {save_total_limit}")
    output_dir = Path(output_dir)
    project = ProjectConfiguration(
        project_dir=str(output_dir),
        logging_dir=str(output_dir / "runs"),
        automatic_checkpoint_naming=True,
        total_limit=save_total_limit,
    )
    trackers = [JsonLinesTracker(output_dir / LOG_FILE), *report_to_trackers(report_to)]
    # an earlier run in this process (a notebook, a test) leaves accelerate's singleton state with its own mixed
    # precision, which a new Accelerator may not change; transformers' Trainer clears it the same way
    AcceleratorState._reset_state()
    return Accelerator(project_config=project, log_with=trackers, **kwargs), output_dir / "checkpoints"


def _checkpoint_number(path: Path) -> int:
    return int(re.fullmatch(r"checkpoint_(\d+)", path.name).group(1))


def checkpoint_folders(checkpoints: Path) -> list[Path]:
    """accelerate's `checkpoint_<i>` folders, oldest first (complete or not)."""
    found = [p for p in checkpoints.glob("checkpoint_*") if re.fullmatch(r"checkpoint_\d+", p.name)]
    return sorted(found, key=_checkpoint_number)


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    return [p for p in checkpoint_folders(checkpoints) if (p / COMPLETE_MARKER).is_file()]


def save_checkpoint(accelerator: Accelerator, progress: RunProgress) -> Path:
    """`accelerator.save_state()`, then the marker that says the folder is whole (with the progress, for people)."""
    folder = Path(accelerator.save_state())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker = folder / COMPLETE_MARKER
        marker.with_suffix(".tmp").write_text(json.dumps(progress.state_dict(), default=str) + "\n")
        marker.with_suffix(".tmp").replace(marker)
    accelerator.wait_for_everyone()
    return folder


def find_resume_checkpoint(checkpoints: Path, resume: str | None) -> Path | None:
    """The checkpoint `--resume` names ('latest': the newest complete one), checked before any model loads; None to
    start fresh, which refuses a folder that already holds complete checkpoints of another run."""
    complete = complete_checkpoints(checkpoints)
    if resume is None:
        if complete:
            raise ValueError(
                f"{checkpoints} holds checkpoints of an earlier run: continue it with --resume latest, or choose "
                "another output_dir"
            )
        return None
    if resume == "latest":
        if not complete:
            raise ValueError(f"--resume latest: no complete checkpoint in {checkpoints}")
        return complete[-1]
    path = Path(resume)
    if not (path / COMPLETE_MARKER).is_file():
        raise ValueError(f"--resume: {path} is not a complete checkpoint folder ({COMPLETE_MARKER} missing)")
    return path


def restore_checkpoint(accelerator: Accelerator, checkpoints: Path, resume_from: Path | None, progress: RunProgress):
    """
    Registers `progress` for checkpointing, drops folders a kill cut short (they would block accelerate's
    numbering), loads `resume_from` if given (and drops log.jsonl lines of the steps after it: they run and log
    again), and sets accelerate's checkpoint counter past every folder kept.
    """
    accelerator.register_for_checkpointing(progress)
    if accelerator.is_main_process:
        for folder in checkpoint_folders(checkpoints):
            if not (folder / COMPLETE_MARKER).is_file():
                shutil.rmtree(folder, ignore_errors=True)
    accelerator.wait_for_everyone()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        if accelerator.is_main_process:
            forget_log_after(checkpoints.parent / LOG_FILE, progress["step"])
    kept = checkpoint_folders(checkpoints)
    accelerator.project_configuration.iteration = _checkpoint_number(kept[-1]) + 1 if kept else 0


def forget_log_after(log: Path, step: int) -> None:
    """After a resume, drops log.jsonl lines of steps past the checkpoint: those steps run again and log again."""
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


def tracker_config(*arguments) -> dict:
    """The run's arguments (dataclass instances or dicts) as trackers take hyperparameters: scalars as they are,
    anything else as text."""
    config = {}
    for group in arguments:
        for key, value in (group if isinstance(group, dict) else vars(group)).items():
            config[key] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    return config
