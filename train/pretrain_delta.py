"""Change supervision of the Visual Delta Module: this project's step between stage 1 and stage 2.

    python train/pretrain_delta.py --config train/configs/default/pretrain_delta.yaml

Generated pairs (`onediff data build`) carry their ground-truth change as JSON (`type`, `color`, `shape`, ...). This
step trains the delta module alone to state that change: every field gets a linear classifier reading its own delta
query (field k -> query k), so after training each query token holds one fact about the change, which stage 2's
language model only has to put into words. Learning *where* the change is and *what* it is through the language
model's loss alone is slow on a CPU: a stage-2-only probe of 180 steps learned the captions' wording and none of the
images (0% change accuracy). Here a step costs no language model at all.

The vision tower is frozen, so the patch features the delta module reads (`delta_feature_layers`) are computed once
and cached on disk (float16, memory-mapped) and every epoch after the first only runs the delta module. A zoomed
delta module (`delta_zoom_patches`) reads only its k patches, chosen by a fixed rule: those and the change statistics
are cached once more, compactly, and held in memory (`DeltaInputs`). The heads
are thrown away; the output is an ordinary OneDiff checkpoint whose delta module changed. With `word_targets`, the
delta projector learns too: delta token k is pulled onto the language model's input embedding of field k's value,
so stage 2 starts with the change spelled out in words the language model already reads (`WordTargets`).
`report.json` holds the validation accuracy per field and per change type, and how far each vision layer's features
move under each kind of change (`difference_norms`: does a blur or a flip survive in what the delta module sees?).
"""

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from modeling_onediff import OneDiffConfig
from modeling_onediff.modeling_onediff import (
    OneDiffDeltaInputs,
    mirror_distances,
    patch_pixel_statistics,
    pixel_summary,
)
from onediff_idc.processing.schema import load_diffcap, with_head_changes
from onediff_idc.train.common import (
    ModelArguments,
    RunProgress,
    find_resume_checkpoint,
    load_model_and_processor,
    make_accelerator,
    parse_recipe,
    restore_checkpoint,
    save_checkpoint,
    save_final,
    tracker_config,
    training_record,
)


@dataclass
class DeltaTrainingArguments:
    dataset_path: str = field(metadata={"help": "DiffCap dataset folder with a `change` column (onediff data build)"})
    output_dir: str = field(
        metadata={"help": "features/, checkpoints/, log.jsonl, runs/ (trackers), report.json and final/ go here"}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "split to train on"})
    dataset_eval_split: str | None = field(default="validation", metadata={"help": "split to report on (or none)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N training pairs"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "pairs per step"})
    num_train_epochs: int = field(default=8, metadata={"help": "passes over the training pairs"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps spent warming up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: none)"})
    feature_batch_size: int = field(default=16, metadata={"help": "pairs per vision-tower call when caching"})
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "where cached vision features live (default output_dir/features); shareable"}
    )
    extra_dataset_path: list[str] | None = field(
        default=None,
        metadata={
            "help": "more DiffCap folders whose training splits join the training pairs (e.g. more pairs of the "
            "change types a model confuses, the wild kinds), each with its own feature cache; needs a zoomed delta "
            "module"
        },
    )
    extra_feature_cache_dir: list[str] | None = field(
        default=None,
        metadata={"help": "the extra folders' feature caches, in order (default output_dir/features-extra[-N])"},
    )
    logging_steps: int = field(default=20, metadata={"help": "log the mean loss every N steps"})
    seed: int = field(default=0, metadata={"help": "seed of the heads' initialisation and the shuffling"})
    word_targets: bool = field(
        default=False,
        metadata={
            "help": "also train the delta projector so that delta token k lands on the language model's input "
            "embedding of field k's value (a word the language model can copy into the caption)"
        },
    )
    change_bottleneck: bool = field(
        default=False,
        metadata={
            "help": "train the model's own change heads instead of throwaway ones: a checkpoint without them becomes "
            "one with `delta_change_fields` (the training data's fields and values) and no image tokens, whose "
            "delta tokens are the embeddings of the values its heads choose (stage 2: sft.py phrase_true_change)"
        },
    )
    save_steps: int = field(
        default=0, metadata={"help": "also checkpoint every N steps, mid-epoch (0: at the end of every epoch only)"}
    )
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (>= 2: a kill mid-save leaves one)"})
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"help": "trackers besides log.jsonl, as in TrainingArguments: none, all, tensorboard, wandb, ..."},
    )
    resume: str | None = field(
        default=None, metadata={"help": "'latest' or a checkpoint folder (output_dir/checkpoints/...) to continue"}
    )
    stop_after_epochs: int | None = field(
        default=None, metadata={"help": "stop (after checkpointing) at this epoch, e.g. to split a run into sessions"}
    )

    def __post_init__(self):
        for name in ("per_device_train_batch_size", "num_train_epochs", "feature_batch_size", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.save_steps < 0:
            raise ValueError(f"`save_steps` must be >= 0, got {self.save_steps}")
        for name in ("extra_dataset_path", "extra_feature_cache_dir"):  # one folder may be given as a string
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        extras, caches = self.extra_dataset_path or [], self.extra_feature_cache_dir
        if caches is not None and len(caches) != len(extras):
            raise ValueError(
                f"`extra_feature_cache_dir` names {len(caches)} caches for {len(extras)} `extra_dataset_path` folders"
            )
        if self.change_bottleneck and self.word_targets:
            raise ValueError(
                "`word_targets` trains the delta projector, which a `change_bottleneck` model does not have"
            )


def change_labels(changes: list[str]) -> tuple[dict[str, list[str]], np.ndarray]:
    """The class vocabulary of every field and the label matrix `(pairs, fields)`, -100 where a pair lacks a field."""
    if not changes or any(not change for change in changes):
        raise ValueError("Change supervision needs every pair's ground-truth `change` (generated data has it)")
    parsed = [json.loads(change) for change in changes]
    vocab = {
        name: sorted({str(c[name]) for c in parsed if name in c}) for name in sorted({k for c in parsed for k in c})
    }
    return vocab, label_matrix(parsed, vocab)


def known_changes(split, vocab: dict[str, list[str]]) -> tuple:
    """The pairs of `split` whose every change value occurs in `vocab` (the training pairs'), and their labels."""
    changes = [json.loads(c) for c in split["change"]]
    keep = [i for i, change in enumerate(changes) if all(str(v) in vocab.get(k, ()) for k, v in change.items())]
    return split.select(keep), label_matrix([changes[i] for i in keep], vocab)


def label_matrix(changes: list[dict], vocab: dict[str, list[str]]) -> np.ndarray:
    """Class indices `(pairs, fields)` in `vocab`, -100 where a pair lacks a field."""
    labels = np.full((len(changes), len(vocab)), -100, dtype=np.int64)
    for row, change in enumerate(changes):
        for column, (name, values) in enumerate(vocab.items()):
            if name in change:
                labels[row, column] = values.index(str(change[name]))
    return labels


class ChangeHeads(nn.Module):
    """One linear classifier per change field; field k reads delta query k."""

    def __init__(self, vocab: dict[str, list[str]], width: int, num_queries: int):
        super().__init__()
        if len(vocab) > num_queries:
            raise ValueError(f"{len(vocab)} change fields need as many delta queries; the model has {num_queries}")
        self.fields = list(vocab)
        self.classifiers = nn.ModuleList(nn.Linear(width, len(values)) for values in vocab.values())

    def forward(self, queries: torch.Tensor) -> list[torch.Tensor]:
        return [classifier(queries[:, k]) for k, classifier in enumerate(self.classifiers)]

    def loss(self, queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return fields_loss(self(queries), targets)


def fields_loss(logits: tuple[torch.Tensor, ...], targets: torch.Tensor) -> torch.Tensor:
    """Sum over the fields present in the batch of each head's cross-entropy (-100: the pair lacks the field)."""
    return sum(
        F.cross_entropy(scores, targets[:, k], ignore_index=-100)
        for k, scores in enumerate(logits)
        if (targets[:, k] != -100).any()
    )


class WordTargets:
    """The language model's input embedding of every change field's values, as targets for the delta tokens.

    Delta token k (the delta projector's output for query k) is pulled towards the embedding of field k's true value
    (the mean over the value's word pieces, e.g. " color cast"), so the language model finds the change spelled out
    in words it already knows and only has to phrase it: copying from the context is what a pretrained LM does well.
    """

    def __init__(self, vocab: dict[str, list[str]], embeddings: torch.Tensor, tokenizer):
        self.tables = []
        for values in vocab.values():
            rows = []
            for value in values:
                ids = tokenizer(" " + value.replace("_", " "), add_special_tokens=False)["input_ids"]
                rows.append(embeddings[ids].float().mean(0))
            self.tables.append(torch.stack(rows).detach())

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Squared distance to the true value's embedding, relative to that embedding's squared norm."""
        losses = []
        for k, table in enumerate(self.tables):
            present = labels[:, k] != -100
            if present.any():
                target = table[labels[present, k]]
                losses.append(((tokens[present, k] - target).pow(2).sum(-1) / target.pow(2).sum(-1)).mean())
        return sum(losses)

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per field, the value whose embedding is nearest (cosine) to delta token k: `(batch, fields)`."""
        return torch.stack(
            [
                F.normalize(tokens[:, k], dim=-1).matmul(F.normalize(table, dim=-1).T).argmax(-1)
                for k, table in enumerate(self.tables)
            ],
            dim=1,
        )


READING = "as-viewed, framed"  # how caches read the pairs (`pair_pixel_values`): caches read otherwise are rebuilt


def pair_pixel_values(processor, pairs: list) -> torch.Tensor:
    """Both images of every pair as the pipeline sees them, `(2 * pairs, channels, height, width)`: read as a viewer
    shows them (EXIF orientation, 16-bit, colour profile: a dataset decodes only the stored pixels, and a JPEG stored
    turned with its EXIF tag is no change to a viewer) and framed together when their sizes differ."""
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("Every pair needs exactly 2 images")
    return processor(images=[tuple(pair) for pair in pairs], return_tensors="pt")["pixel_values"].flatten(0, 1)


def pair_patch_states(vision, processor, pairs: list, layers: list[int]) -> torch.Tensor:
    """The frozen tower's patch tokens (CLS/register tokens dropped) of `layers` for both images of every pair:
    `(pairs, 2, layers, patches, width)`."""
    pixel_values = pair_pixel_values(processor, pairs).to(vision.dtype)
    with torch.no_grad():
        hidden = vision(pixel_values, output_hidden_states=True).hidden_states
    grid = (pixel_values.shape[-2] // vision.config.patch_size) * (pixel_values.shape[-1] // vision.config.patch_size)
    prefix = hidden[0].shape[1] - grid
    stacked = torch.stack([hidden[layer][:, prefix:] for layer in layers], dim=1)  # (2B, L, N, D)
    return stacked.unflatten(0, (len(pairs), 2))


def pair_pixel_statistics(processor, pairs: list, patch_size: int, detail: bool = False) -> torch.Tensor:
    """`patch_pixel_statistics` of both images of every pair, as the model computes them from the processor's pixel
    values: `(pairs, 2, patches, statistics)`."""
    statistics = patch_pixel_statistics(pair_pixel_values(processor, pairs), patch_size, detail)
    return statistics.unflatten(0, (len(pairs), 2))


def pixel_cache_name(config, name: str) -> str:
    """The file of split `name`'s pixel statistics in a feature cache: with `delta_pixel_detail` a file of its own."""
    return f"{name}.pixels-detail.npy" if config.delta_pixel_detail else f"{name}.pixels.npy"


def rows_fingerprint(dataset) -> str:
    """Which pairs these are: every id and the encoded images of the first and the last row. Unlike the dataset's
    own fingerprint, it survives columns being added or the folder being reloaded."""
    from datasets import Image, List

    digest = hashlib.sha256("\n".join(dataset["id"]).encode())
    ends = dataset.select([0, len(dataset) - 1]).select_columns(["images"])
    for row in ends.cast_column("images", List(Image(decode=False))):
        for image in row["images"]:
            digest.update(image["bytes"] or b"")
    return digest.hexdigest()


def cache_features(model, processor, dataset, path: Path, batch_size: int, save_every: int = 20) -> np.ndarray:
    """Patch features of `delta_feature_layers` for both images of every pair: `(pairs, 2, layers, patches, width)`.

    Reused when the same vision tower, layers and rows made it (a fingerprint sits beside the array). An interrupted
    caching continues from its last save (every `save_every` batches) instead of starting over."""
    layers = model.config.resolved_delta_feature_layers
    vision = model.model.vision_tower
    digest = hashlib.sha256()
    for tensor in vision.state_dict().values():
        digest.update(tensor.flatten()[:1024].float().numpy().tobytes())  # the first 4 KB, without copying all
    digest.update(json.dumps([layers, len(dataset), READING]).encode())
    digest.update(rows_fingerprint(dataset).encode())
    fingerprint = digest.hexdigest()
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file() and json.loads(meta.read_text()).get("fingerprint") == fingerprint:
        return np.load(path, mmap_mode="r")

    def encode(rows: list) -> np.ndarray:
        return pair_patch_states(vision, processor, rows, layers).half().numpy()

    first = encode([dataset[0]["images"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npy")
    progress = path.with_name(path.stem + ".partial.json")  # rows written so far: an interrupted caching resumes
    shape = (len(dataset), *first.shape[1:])
    done = 0
    if partial.is_file() and progress.is_file():
        state = json.loads(progress.read_text())
        if state.get("fingerprint") == fingerprint and tuple(state.get("shape", ())) == shape:
            done = int(state["rows_done"])
    if done:
        array = np.load(partial, mmap_mode="r+")
    else:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    starts = range(done, len(dataset), batch_size)
    for count, start in enumerate(tqdm(starts, desc=f"caching vision features ({path.stem})", mininterval=30), 1):
        rows = dataset[start : start + batch_size]["images"]
        array[start : start + len(rows)] = encode(rows)
        if count % save_every == 0:
            array.flush()  # the rows reach the disk before the progress file says so
            state = {"fingerprint": fingerprint, "shape": shape, "rows_done": start + len(rows)}
            progress.with_suffix(".tmp").write_text(json.dumps(state))
            progress.with_suffix(".tmp").replace(progress)
    array.flush()
    del array
    partial.replace(path)  # only a complete array gets the final name
    progress.unlink(missing_ok=True)
    meta.write_text(json.dumps({"fingerprint": fingerprint, "layers": layers}) + "\n")
    return np.load(path, mmap_mode="r")


def cache_pixel_statistics(model, processor, dataset, path: Path, batch_size: int = 64) -> Path:
    """Every pair's `pair_pixel_statistics` (float32, `(pairs, 2, patches, statistics)`) saved at `path`, for a model
    with `delta_pixel_statistics`; reused when the same processor and rows made it. Cheap (no tower runs): a few
    minutes for 22,000 pairs, so an interrupted run starts over."""
    patch_size, detail = model.config.vision_config.patch_size, model.config.delta_pixel_detail
    digest = hashlib.sha256(processor.image_processor.to_json_string().encode())
    digest.update(json.dumps([patch_size, len(dataset), READING, *(["detail"] if detail else [])]).encode())
    digest.update(rows_fingerprint(dataset).encode())
    fingerprint = digest.hexdigest()
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file() and json.loads(meta.read_text()).get("fingerprint") == fingerprint:
        return path
    parts = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=f"pixel statistics ({path.stem})", mininterval=30):
        pairs = dataset[start : start + batch_size]["images"]
        parts.append(pair_pixel_statistics(processor, pairs, patch_size, detail))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "wb") as handle:
        np.save(handle, torch.cat(parts).numpy())
    path.with_suffix(".tmp").replace(path)  # only a complete array gets the final name
    meta.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return path


class DeltaInputs:
    """
    The delta module's inputs (`OneDiffDeltaInputs`) of the cached pairs, batch by batch.

    Without a zoom they are computed per batch from the memory-mapped tower features. With `delta_zoom_patches` they
    are computed once (`zoomed_inputs`: the k kept patches, their relative change, global statistics and alignment,
    ~1/14 of the features at 16 of 256 patches) and held in memory: the full cache (27 GB for 22,000 pairs) does not
    fit in RAM, and reading it at random limited training (a step of 32 pairs on 2 cores, measured side by side:
    17.1 pairs/s from the memory-mapped features, 45.7 from the compact inputs).
    """

    def __init__(
        self,
        module,
        features: np.ndarray,
        zoomed: dict[str, np.ndarray] | None = None,
        layers: list[int] | None = None,
        pixels: np.ndarray | None = None,
    ):
        self.module, self.features, self.zoomed = module, features, zoomed
        self.layers = layers  # positions of the module's layers in the cache's, when the cache holds more layers
        self.pixels = pixels  # `cache_pixel_statistics`, with `delta_pixel_statistics`
        side = math.isqrt(features.shape[3])
        self.patch_grid = (side, side)  # the cache holds the processor's square crops

    def __len__(self) -> int:
        return len(self.zoomed["patches"]) if self.zoomed is not None else len(self.features)

    @classmethod
    def join(cls, parts: list["DeltaInputs"]) -> "DeltaInputs":
        """The pairs of several zoomed `DeltaInputs` (of one module, from different caches), in order, in memory."""
        if any(part.zoomed is None for part in parts):
            raise ValueError("Only a zoomed delta module's inputs can be joined (`delta_zoom_patches`)")
        names = parts[0].zoomed.keys()
        zoomed = {name: np.concatenate([part.zoomed[name] for part in parts]) for name in names}
        return cls(parts[0].module, parts[0].features, zoomed)

    def batch(self, indices: np.ndarray) -> OneDiffDeltaInputs:
        if self.zoomed is not None:
            pick = torch.from_numpy(np.asarray(indices))

            def rows(name: str) -> torch.Tensor | None:  # parts the design does not use were not cached
                return torch.from_numpy(self.zoomed[name])[pick] if name in self.zoomed else None

            before_after = rows("before_after").float()
            return OneDiffDeltaInputs(
                before=before_after[:, 0],
                after=before_after[:, 1],
                patch_grid=self.patch_grid,
                patches=rows("patches").long(),
                relative=rows("relative"),
                global_statistics=rows("global"),
                alignment=rows("alignment"),
                pixel_statistics=rows("pixel_statistics"),
                pixel_change=rows("pixel_change"),
                pixel_distance=rows("pixel_distance"),
                mirror=rows("mirror"),
                pixel_summary=rows("pixel_summary"),
            )
        batch = torch.from_numpy(np.asarray(self.features[np.sort(indices)])).float()  # sorted: sequential reads
        batch = batch[torch.from_numpy(np.argsort(np.argsort(indices)))]
        if self.layers is not None:
            batch = batch[:, :, self.layers]
        pixels = None if self.pixels is None else torch.from_numpy(np.asarray(self.pixels[indices]))
        with torch.no_grad():
            return self.module.prepare_inputs(batch[:, 0], batch[:, 1], self.patch_grid, pixels)


def delta_inputs(
    module, features: np.ndarray, features_path: Path, batch_size: int = 64, pixels_path: Path | None = None
) -> DeltaInputs:
    """`DeltaInputs` of `module` over cached `features` (saved at `features_path` by `cache_features`, and with
    `delta_pixel_statistics` the pairs' pixel statistics at `pixels_path` by `cache_pixel_statistics`); with a zoom,
    its inputs are cached beside them, keyed by the caches' fingerprints and the settings that choose them."""
    config = module.config
    meta = json.loads(features_path.with_suffix(".json").read_text())
    layers = cached_layer_positions(meta["layers"], config.resolved_delta_feature_layers)
    pixels, pixel_settings = None, {}
    if config.delta_pixel_statistics:
        if pixels_path is None:
            raise ValueError("The delta module reads pixel statistics (`delta_pixel_statistics`): pass `pixels_path`")
        pixels = np.load(pixels_path, mmap_mode="r")
        if len(pixels) != len(features):
            raise ValueError(f"{pixels_path} holds {len(pixels)} pairs, the feature cache {len(features)}")
        pixel_settings = {
            "pixels": json.loads(pixels_path.with_suffix(".json").read_text())["fingerprint"],
            "pixel_inputs": ["statistics", "change", "distance"],  # what a zoomed cache holds of them
        }
    if not config.delta_zoom_patches:
        return DeltaInputs(module, features, layers=layers, pixels=pixels)
    settings = {
        **pixel_settings,
        "features": meta["fingerprint"],
        **({"layers": config.resolved_delta_feature_layers} if layers is not None else {}),
        **{
            name: getattr(config, name)
            for name in (
                "delta_zoom_patches",
                "delta_shift_tolerance",
                "delta_difference_prior",
                "delta_global_difference",
                "delta_alignment",
            )
        },
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = features_path.with_name(f"{features_path.stem}.zoom-{key}.npz")
    if not path.is_file():
        zoomed = zoomed_inputs(
            DeltaInputs(module, features, layers=layers, pixels=pixels),
            batch_size,
            desc=f"zooming ({features_path.stem})",
        )
        with open(path.with_suffix(".tmp"), "wb") as handle:
            np.savez(handle, **zoomed)
        path.with_suffix(".tmp").replace(path)  # only a complete cache gets the final name
    with np.load(path) as stored:
        inputs = DeltaInputs(module, features, {name: stored[name] for name in stored.files})

    def every_pair(summarise) -> np.ndarray:  # a summary of every patch's statistics, 1,024 pairs at a time
        chunks = (torch.from_numpy(np.array(pixels[i : i + 1024])) for i in range(0, len(pixels), 1024))
        return torch.cat([summarise(chunk) for chunk in chunks]).numpy()

    # from every patch's statistics (cheap): not part of the zoom's cache
    if config.delta_mirror_statistics:
        inputs.zoomed["mirror"] = every_pair(lambda chunk: mirror_distances(chunk, inputs.patch_grid))
    if config.delta_pixel_detail:
        inputs.zoomed["pixel_summary"] = every_pair(
            lambda chunk: pixel_summary(chunk, config.vision_config.num_channels)
        )
    return inputs


def cached_delta_inputs(model, processor, split, cache_dir: Path, name: str, batch_size: int) -> DeltaInputs:
    """`delta_inputs` of `split` from its caches in `cache_dir`: the tower's features (`name.npy`, `cache_features`)
    and, with `delta_pixel_statistics`, the pixel statistics beside them (`name.pixels.npy`)."""
    path = cache_dir / f"{name}.npy"
    features = cache_features(model, processor, split, path, batch_size)
    pixels = None
    if model.config.delta_pixel_statistics:
        pixels = cache_pixel_statistics(model, processor, split, cache_dir / pixel_cache_name(model.config, name))
    return delta_inputs(model.model.delta_module, features, path, pixels_path=pixels)


def cached_layer_positions(cached: list[int], wanted: list[int]) -> list[int] | None:
    """Where each of `wanted`'s vision layers sits in a cache of `cached` layers (None: the cache holds exactly these),
    so that designs reading different layers share one cache of their union."""
    if list(cached) == list(wanted):
        return None
    missing = sorted(set(wanted) - set(cached))
    if missing:
        raise ValueError(
            f"The feature cache holds vision layers {cached}; the model reads {wanted} (missing {missing})"
        )
    return [list(cached).index(layer) for layer in wanted]


def zoomed_inputs(inputs: DeltaInputs, batch_size: int, desc: str) -> dict[str, np.ndarray]:
    """Every pair's zoomed `OneDiffDeltaInputs` as arrays: the kept patches' features in float16 (the cache's own
    values), their indices, and float32 relative change, global statistics and alignment (from every patch), and
    with `delta_pixel_statistics` the kept patches' pixel statistics and their relative and absolute change."""
    parts: dict[str, list] = {
        name: [] for name in ("before_after", "patches", "relative", "global", "alignment", "pixel_statistics")
    }
    parts["pixel_change"], parts["pixel_distance"] = [], []
    for start in tqdm(range(0, len(inputs), batch_size), desc=desc, mininterval=30):
        batch = inputs.batch(np.arange(start, min(start + batch_size, len(inputs))))
        parts["before_after"].append(torch.stack([batch.before, batch.after], dim=1).half().numpy())
        parts["patches"].append(batch.patches.short().numpy())
        if batch.relative is not None:
            parts["relative"].append(batch.relative.numpy())
        if batch.global_statistics is not None:
            parts["global"].append(batch.global_statistics.numpy())
        if batch.alignment is not None:
            parts["alignment"].append(batch.alignment.numpy())
        if batch.pixel_change is not None:
            parts["pixel_statistics"].append(batch.pixel_statistics.numpy())
            parts["pixel_change"].append(batch.pixel_change.numpy())
            parts["pixel_distance"].append(batch.pixel_distance.numpy())
    return {name: np.concatenate(arrays) for name, arrays in parts.items() if arrays}


def delta_queries(model, inputs: DeltaInputs, indices: np.ndarray) -> torch.Tensor:
    return model.model.delta_module.attend(inputs.batch(indices)).last_hidden_state


def predict_fields(model, heads, inputs: DeltaInputs, count: int, batch_size: int, words=None) -> tuple:
    """The heads' class per field for the first `count` cached pairs `(count, fields)`, and with `words` the delta
    tokens' nearest value words (else None)."""
    model.eval()
    predictions, word_predictions = [], []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            queries = delta_queries(model, inputs, np.arange(start, min(start + batch_size, count)))
            predictions.append(torch.stack([lg.argmax(-1) for lg in heads(queries)], dim=1).numpy())
            if words is not None:
                word_predictions.append(words.predict(model.model.delta_projector(queries)).numpy())
    model.train()
    return np.concatenate(predictions), (np.concatenate(word_predictions) if words is not None else None)


def evaluate_heads(model, heads, inputs: DeltaInputs, labels, change_types, batch_size: int, words=None) -> dict:
    """Validation scores of the heads' predictions; with `words`, also of the delta tokens' nearest value words."""
    predictions, word_predictions = predict_fields(model, heads, inputs, len(labels), batch_size, words)
    report = score_fields(predictions, labels, change_types, heads.fields)
    if words is not None:
        report["words"] = score_fields(word_predictions, labels, change_types, heads.fields)
    return report


def score_fields(predictions: np.ndarray, labels: np.ndarray, change_types: list[str], fields: list[str]) -> dict:
    present = labels != -100
    right = (predictions == labels) | ~present
    report = {"exact": float(right.all(1).mean()), "pairs": len(labels), "fields": {}, "by_change_type": {}}
    for k, name in enumerate(fields):
        if present[:, k].any():
            report["fields"][name] = float(right[present[:, k], k].mean())
    for change_type in sorted(set(change_types)):
        rows = np.array([t == change_type for t in change_types])
        report["by_change_type"][change_type] = {"exact": float(right[rows].all(1).mean()), "pairs": int(rows.sum())}
    return report


def difference_norms(features: np.ndarray, change_types: list[str], layers: list[int]) -> dict:
    """Mean relative size |B - A| / |A| of the patch features per change type and vision layer."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for index, change_type in enumerate(change_types):
        pair = np.asarray(features[index], dtype=np.float32)  # (2, L, N, D)
        ratio = np.linalg.norm(pair[1] - pair[0], axis=(1, 2)) / np.linalg.norm(pair[0], axis=(1, 2))
        sums[change_type] = sums.get(change_type, 0) + ratio
        counts[change_type] = counts.get(change_type, 0) + 1
    return {t: {f"layer_{layer}": round(float(v), 4) for layer, v in zip(layers, sums[t] / counts[t])} for t in sums}


def parse(argv: list[str] | None) -> tuple[ModelArguments, DeltaTrainingArguments]:
    return parse_recipe((ModelArguments, DeltaTrainingArguments), argv)


def main(argv: list[str] | None = None) -> Path:
    model_args, args = parse(argv)
    splits = (args.dataset_train_split, *([args.dataset_eval_split] if args.dataset_eval_split else []))
    # the heads learn the closed-vocabulary part of every ground truth (names and texts are not their classes)
    data = {name: with_head_changes(split) for name, split in load_diffcap(args.dataset_path, splits=splits).items()}
    train = data[args.dataset_train_split]
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    split = args.dataset_train_split
    extras = [with_head_changes(load_diffcap(path, splits=(split,))[split]) for path in args.extra_dataset_path or []]
    changes = list(train["change"]) + [change for extra in extras for change in extra["change"]]
    vocab, labels = change_labels(changes)
    output_dir = Path(args.output_dir)
    resume_from = find_resume_checkpoint(output_dir / "checkpoints", args.resume)

    accelerator, checkpoints = make_accelerator(output_dir, args.report_to, args.save_total_limit, cpu=True)
    if accelerator.num_processes > 1:
        raise ValueError("pretrain_delta runs in one process (its features are cached): start it with python")
    start = model_args.model_name_or_path
    if args.change_bottleneck and not (start and OneDiffConfig.from_pretrained(start).delta_change_fields):
        # the training data's fields and values become the model's: loading builds the heads (their values'
        # embeddings started at the words) and drops the image tokens, the processor following
        model_args.model_config_overrides = {
            "delta_change_fields": vocab,
            # which fields and values each type has: the heads decode only changes that exist (most likely jointly)
            "delta_change_schema": OneDiffConfig.change_schema(changes),
            "delta_change_distinct": OneDiffConfig.change_distinct(changes),  # a change to the value it had is none
            "use_image_tokens": False,
            **model_args.model_config_overrides,
        }
    torch.manual_seed(args.seed)
    model, processor = load_model_and_processor(model_args)
    if extras and not model.config.delta_zoom_patches:
        raise ValueError("`extra_dataset_path` joins zoomed inputs in memory: it needs `delta_zoom_patches`")
    model.requires_grad_(False)
    model.model.delta_module.requires_grad_(True)
    if model.model.change_heads is not None:  # the model's own heads: they ship with it
        heads = model.model.change_heads
        heads.classifiers.requires_grad_(True)
        vocab = model.config.delta_change_fields
        labels = np.array([model.config.encode_change(change) for change in changes])  # absent: own class
    else:
        heads = ChangeHeads(vocab, model.config.delta_hidden_size, model.config.num_delta_queries)
    words = None
    if args.word_targets:
        words = WordTargets(vocab, model.get_input_embeddings().weight, processor.tokenizer)
        model.model.delta_projector.requires_grad_(True)
    cache_dir = Path(args.feature_cache_dir) if args.feature_cache_dir else output_dir / "features"
    split_name, feature_batch = args.dataset_train_split, args.feature_batch_size
    train_inputs = cached_delta_inputs(model, processor, train, cache_dir, split_name, feature_batch)
    if extras:  # each its own cache; the zoomed inputs of all are joined in memory
        parts = [train_inputs]
        for index, extra in enumerate(extras):
            default = output_dir / ("features-extra" if index == 0 else f"features-extra-{index}")
            extra_dir = Path(args.extra_feature_cache_dir[index]) if args.extra_feature_cache_dir else default
            parts.append(cached_delta_inputs(model, processor, extra, extra_dir, split_name, feature_batch))
        train_inputs = DeltaInputs.join(parts)
        del parts  # the joined copy is the one training reads

    evaluation = None
    if args.dataset_eval_split:
        eval_split, eval_labels = known_changes(data[args.dataset_eval_split], vocab)  # drop unseen values
        if model.model.change_heads is not None:  # "absent" is a class the heads must get right too
            eval_labels = np.array([model.config.encode_change(change) for change in eval_split["change"]])
        eval_inputs = cached_delta_inputs(
            model, processor, eval_split, cache_dir, args.dataset_eval_split, feature_batch
        )
        evaluation = (eval_inputs, eval_labels, eval_split["change_type"])

    # what learns, as one module: checkpoints hold these (a few MB), not the frozen towers
    parts = {"delta_module": model.model.delta_module, "delta_projector": model.model.delta_projector, "heads": heads}
    learning = nn.ModuleDict({name: part for name, part in parts.items() if part is not None})
    trainable = [p for p in learning.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_inputs) / args.per_device_train_batch_size)
    total_steps = steps_per_epoch * args.num_train_epochs
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=round(args.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    learning, optimizer, scheduler = accelerator.prepare(learning, optimizer, scheduler)
    progress = RunProgress(step=0, report={"vocab": vocab, "epochs": []})
    restore_checkpoint(accelerator, checkpoints, resume_from, progress)
    step = progress["step"]
    if resume_from is not None:
        print(f"resumed from {resume_from} at step {step} (epoch {step / steps_per_epoch:.2f})")
    accelerator.init_trackers("pretrain_delta", config=tracker_config(model_args, args))

    label_tensor = torch.from_numpy(labels)
    stop_epoch = min(args.num_train_epochs, args.stop_after_epochs or args.num_train_epochs)
    bar = tqdm(total=total_steps, initial=step, desc="delta supervision")
    window, window_start, last_checkpoint = [], time.perf_counter(), resume_from
    model.train()
    while step < stop_epoch * steps_per_epoch:
        # pairs in a fresh order every epoch; the step fixes the batch, so a resumed run continues exactly
        epoch, in_epoch = divmod(step, steps_per_epoch)
        order = np.random.default_rng([args.seed, epoch]).permutation(len(train_inputs))
        size = args.per_device_train_batch_size
        indices = order[in_epoch * size : (in_epoch + 1) * size]
        queries = delta_queries(model, train_inputs, indices)
        targets = label_tensor[indices]
        loss = fields_loss(heads(queries), targets)
        if words is not None:
            loss = loss + words.loss(model.model.delta_projector(queries), targets)
        accelerator.backward(loss)
        if args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        window.append(loss.item())
        bar.update(1)
        end_of_epoch = step % steps_per_epoch == 0
        checkpoint_now = end_of_epoch or (args.save_steps and step % args.save_steps == 0)
        if len(window) == args.logging_steps or checkpoint_now:  # a window never spans a checkpoint
            record = {
                "epoch": step / steps_per_epoch,
                "loss": sum(window) / len(window),
                "learning_rate": scheduler.get_last_lr()[0],
                "pairs_per_second": len(window) * size / (time.perf_counter() - window_start),
            }
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            accelerator.log(record, step=step)
            window, window_start = [], time.perf_counter()
        if end_of_epoch and evaluation is not None:
            scores = evaluate_heads(model, heads, *evaluation, size, words)
            progress["report"]["epochs"].append({"epoch": epoch + 1, **scores})
            accelerator.log({"eval_exact": scores["exact"]}, step=step)
            bar.write(f"epoch {epoch + 1}: validation exact {scores['exact']:.3f} fields {scores['fields']}")
            if words is not None:
                bar.write(f"  delta tokens' nearest value words: exact {scores['words']['exact']:.3f}")
        if checkpoint_now:
            progress["step"] = step
            last_checkpoint = save_checkpoint(accelerator, progress)
    bar.close()
    accelerator.end_training()
    if step < total_steps:
        print(f"stopped after epoch {stop_epoch} of {args.num_train_epochs}; continue with --resume latest")
        return last_checkpoint

    report = progress["report"]
    if evaluation is not None:
        report["difference_norms"] = difference_norms(
            evaluation[0].features, evaluation[2], model.config.resolved_delta_feature_layers
        )
    (output_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    datasets = [args.dataset_path, *(args.extra_dataset_path or [])]
    training = training_record("train/pretrain_delta.py", model_args, args, dataset_path=datasets)
    return save_final(model, processor, output_dir / "final", training)


if __name__ == "__main__":
    main(sys.argv[1:])
