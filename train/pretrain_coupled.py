"""Stage 1 of OneDiff: Coupled Sample Training (Hu et al., arXiv 2407.05645), a custom loop on accelerate.

    accelerate launch train/pretrain_coupled.py --config train/configs/tiny_cpu/pretrain_coupled.yaml
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 train/pretrain_coupled.py --config ...   # 2-process CPU DDP

Two single-image caption samples (the `captions` split of a DiffCap dataset) are merged on the fly into one pseudo
pair: both images as before/after, the two captions joined as the target. The vision tower and the language model
stay frozen; the Visual Delta Module and both projectors learn to carry what is in each image to the language model.
Checkpoints are accelerate's own (`save_state` of model, optimizer, scheduler, RNG and the registered run progress,
named and rotated by its `ProjectConfiguration`) every `save_steps`; `--resume latest` continues exactly from the
newest complete one (`skip_first_batches`), also after a kill mid-save. Losses go to accelerate's trackers: always
log.jsonl, plus `report_to` (e.g. tensorboard, under output_dir/runs). The final folder is an ordinary OneDiff
checkpoint.
"""

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_scheduler

from onediff_idc.processing.prompts import TASK_PROMPTS
from onediff_idc.processing.schema import load_diffcap
from onediff_idc.train.common import (
    ModelArguments,
    OneDiffCollator,
    RunProgress,
    find_resume_checkpoint,
    load_model_and_processor,
    make_accelerator,
    parse_recipe,
    present_new_parts,
    restore_checkpoint,
    save_checkpoint,
    save_final,
    tracker_config,
    training_record,
)


@dataclass
class CoupledTrainingArguments:
    dataset_path: str = field(metadata={"help": "DiffCap dataset folder (onediff data build output)"})
    output_dir: str = field(metadata={"help": "checkpoints, log.jsonl and final/ go here"})
    dataset_split: str = field(default="captions", metadata={"help": "split of single-image captions"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N captions"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "pseudo pairs per device and step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "passes over the captions (2 per pseudo pair)"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; overrides num_train_epochs if > 0"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: none)"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on a GPU that has it), no, bf16, fp16"})
    seed: int = field(default=42, metadata={"help": "seed of initialisation, pairing and dropout"})
    logging_steps: int = field(default=10, metadata={"help": "log the mean loss every N optimizer steps"})
    save_steps: int = field(default=500, metadata={"help": "checkpoint every N optimizer steps (0: only at the end)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (>= 2: a kill mid-save leaves one)"})
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"help": "trackers besides log.jsonl, as in TrainingArguments: none, all, tensorboard, wandb, ..."},
    )
    resume: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder to continue from"})
    stop_after_steps: int | None = field(
        default=None, metadata={"help": "stop (after checkpointing) at this step, e.g. to split a run into sessions"}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})

    def __post_init__(self):
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"`mixed_precision` must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")


class CoupledPairs(Dataset):
    """Pseudo pairs of an epoch-wise reshuffled caption split: item k of epoch e joins captions p_e[2k], p_e[2k+1].

    The pairing depends only on (seed, epoch), so a resumed run sees exactly the batches the interrupted one would
    have seen.
    """

    def __init__(self, captions, seed: int, epochs: int):
        self.captions, self.seed, self.epochs = captions, seed, epochs
        self.pairs_per_epoch = len(captions) // 2
        if self.pairs_per_epoch == 0:
            raise ValueError("Coupled Sample Training needs at least 2 captions")
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.pairs_per_epoch * self.epochs

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.captions))}
        return self._orders[epoch]

    def __getitem__(self, index: int) -> dict:
        epoch, k = divmod(index, self.pairs_per_epoch)
        order = self._order(epoch)
        first, second = self.captions[int(order[2 * k])], self.captions[int(order[2 * k + 1])]
        return {
            "images": [first["images"][0], second["images"][0]],
            "prompt": TASK_PROMPTS["caption_pair"],
            "completion": f"First image: {first['completion']}. Second image: {second['completion']}.",
        }


def parse(argv: list[str] | None) -> tuple[ModelArguments, CoupledTrainingArguments]:
    return parse_recipe((ModelArguments, CoupledTrainingArguments), argv)


def main(argv: list[str] | None = None) -> Path:
    model_args, args = parse(argv)
    # everything that can be wrong is checked before any model is loaded
    captions = load_diffcap(args.dataset_path, splits=(args.dataset_split,))[args.dataset_split]
    if args.max_train_samples is not None:
        captions = captions.select(range(min(args.max_train_samples, len(captions))))
    image_counts = pyarrow.compute.list_value_length(captions.with_format("arrow")["images"])  # no image decoded
    if not pyarrow.compute.all(pyarrow.compute.equal(image_counts, 1)).as_py():
        raise ValueError(f"Split {args.dataset_split!r} must hold single-image caption samples")
    output_dir = Path(args.output_dir)
    resume_from = find_resume_checkpoint(output_dir / "checkpoints", args.resume)

    cuda = torch.cuda.is_available()
    precision = args.mixed_precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    accelerator, checkpoints = make_accelerator(
        output_dir,
        args.report_to,
        args.save_total_limit,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=precision,
    )
    set_seed(args.seed)

    model, processor = load_model_and_processor(model_args)
    model.requires_grad_(False)
    for part in present_new_parts(model):
        getattr(model.model, part).requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]

    micro_batches_per_epoch = math.ceil(
        (len(captions) // 2) / (args.per_device_train_batch_size * accelerator.num_processes)
    )
    steps_per_epoch = max(1, micro_batches_per_epoch // args.gradient_accumulation_steps)
    max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    epochs = math.ceil(max_steps / steps_per_epoch) + 1
    dataset = CoupledPairs(captions.select_columns(["images", "completion"]), args.seed, epochs)
    loader = DataLoader(
        dataset,
        batch_size=args.per_device_train_batch_size,
        shuffle=False,  # the pairing is the shuffle: deterministic, hence resumable
        collate_fn=OneDiffCollator(processor),
        num_workers=args.dataloader_num_workers,
    )
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.warmup_steps * accelerator.num_processes,
        num_training_steps=max_steps * accelerator.num_processes,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    progress = RunProgress(step=0, micro_batches=0, max_steps=max_steps)
    restore_checkpoint(accelerator, checkpoints, resume_from, progress)
    step, micro_batches_done = progress["step"], progress["micro_batches"]
    if resume_from is not None:
        accelerator.print(f"resumed from {resume_from} at step {step}")
    batches = accelerator.skip_first_batches(loader, micro_batches_done) if micro_batches_done else loader
    accelerator.init_trackers("pretrain_coupled", config=tracker_config(model_args, args))

    last_checkpoint = resume_from
    bar = tqdm(total=max_steps, initial=step, desc="coupled pretraining", disable=not accelerator.is_main_process)
    model.train()
    window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
    stop_at = min(max_steps, args.stop_after_steps or max_steps)
    for batch in batches:
        if step >= stop_at:
            break
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        micro_batches_done += 1
        window_loss += accelerator.gather(loss.detach()).mean().item() / args.gradient_accumulation_steps
        window_samples += batch["input_ids"].shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        step += 1
        window_steps += 1
        bar.update(1)
        if step % args.logging_steps == 0 or step == stop_at:
            elapsed = time.perf_counter() - window_start
            record = {
                "loss": window_loss / window_steps,
                "learning_rate": scheduler.get_last_lr()[0],
                "samples_per_second": window_samples / elapsed,
            }
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            accelerator.log(record, step=step)
            window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
        if (args.save_steps and step % args.save_steps == 0) or step == stop_at:
            progress["step"], progress["micro_batches"] = step, micro_batches_done
            last_checkpoint = save_checkpoint(accelerator, progress)
    bar.close()

    if step < max_steps:
        accelerator.print(f"stopped at step {step} of {max_steps}; continue with --resume latest")
        accelerator.end_training()
        return last_checkpoint
    final = output_dir / "final"
    if accelerator.is_main_process:
        training = training_record("train/pretrain_coupled.py", model_args, args, dataset_path=args.dataset_path)
        save_final(accelerator.unwrap_model(model), processor, final, training)
        info = {"distributed_type": str(accelerator.distributed_type), "num_processes": accelerator.num_processes}
        (output_dir / "run_info.json").write_text(json.dumps({**info, "steps": step}) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
