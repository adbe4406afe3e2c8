"""`onediff data build`: the generated part of DiffCap, written as one DatasetDict.

Splits `train` / `validation` / `test` hold pairs (scene changes and photo edits, change types balanced by
round-robin); split `captions` holds single scene images with captions for Coupled Sample Training; a split of size
0 is left out. Every sample
draws from its own random generator seeded by (seed, split, source, index): the same seed gives a byte-identical
dataset whatever `num_proc` is, and the splits never share a sample.
"""

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from tqdm.auto import tqdm

from .photo_edits import photo_edit_pair
from .phrasing import PHOTO_EDIT_TYPES, SCENE_CHANGE_TYPES
from .prompts import SOURCE_TASKS
from .scenes import scene_caption_sample, scene_change_pair
from .schema import FEATURES, NO_CHANGE, PAIR_SPLITS, make_row, save_diffcap

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2, "captions": 3}
SOURCE_IDS = {"scene-change": 0, "photo-edit": 1, "scene-caption": 2}
SCENE_TYPES = (*SCENE_CHANGE_TYPES, "none")
PHOTO_TYPES = (*PHOTO_EDIT_TYPES, "none")
CHUNK = 512


@dataclass(frozen=True)
class BuildSpec:
    seed: int = 0
    scene_pairs: int = 6000  # train; validation and test get eval_fraction of it each
    photo_pairs: int = 3900
    caption_samples: int = 4000
    eval_fraction: float = 0.1
    resolution: int = 224
    num_references: int = 3
    eval_only: bool = False  # only validation and test: a held-out set drawn with a seed never used in training
    photos: str | None = None  # a `onediff data photos` folder: its photographs join the packages' samples
    photos_only: bool = False  # photo edits of the `photos` folder's photographs alone
    # scene pairs cycle through these change types ("none": unchanged, jittered); default all of SCENE_TYPES. A type
    # named twice is drawn twice as often: more pairs of the decisions a model finds hard
    scene_types: tuple[str, ...] | None = None
    photo_types: tuple[str, ...] | None = None  # the same for photo pairs; default all of PHOTO_TYPES

    def __post_init__(self):
        for name in ("scene_pairs", "photo_pairs", "caption_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.eval_fraction <= 1:
            raise ValueError(f"`eval_fraction` must be in [0, 1], got {self.eval_fraction}")
        if not 32 <= self.resolution <= 1024:
            raise ValueError(f"`resolution` must be between 32 and 1024 pixels, got {self.resolution}")
        if self.photos_only and self.photos is None:
            raise ValueError("`photos_only` needs `photos` (a `onediff data photos` folder)")
        if self.scene_types is not None:
            unknown = sorted(set(self.scene_types) - set(SCENE_TYPES))
            if not self.scene_types or unknown:
                raise ValueError(f"`scene_types` must name some of {SCENE_TYPES}, got {list(self.scene_types)}")
        if self.photo_types is not None:
            unknown = sorted(set(self.photo_types) - set(PHOTO_TYPES))
            if not self.photo_types or unknown:
                raise ValueError(f"`photo_types` must name some of {PHOTO_TYPES}, got {list(self.photo_types)}")
        if self.num_references < 1:
            raise ValueError(f"`num_references` must be >= 1, got {self.num_references}")

    def split_size(self, split: str, train_size: int) -> int:
        return train_size if split in ("train", "captions") else round(train_size * self.eval_fraction)


def _sample(args: tuple) -> dict:
    """Builds one row; module-level so that worker processes can run it."""
    spec, split, source, index = args
    rng = np.random.default_rng([spec.seed, SPLIT_IDS[split], SOURCE_IDS[source], index])
    if source == "scene-change":
        types = spec.scene_types or SCENE_TYPES
        change_type = types[index % len(types)]
        pair = scene_change_pair(rng, change_type, spec.resolution, spec.num_references)
    elif source == "photo-edit":
        types = spec.photo_types or PHOTO_TYPES
        change_type = types[index % len(types)]
        pair = photo_edit_pair(
            rng, change_type, split, spec.resolution, spec.num_references, spec.photos, spec.photos_only
        )
    else:
        change_type = ""
        pair = scene_caption_sample(rng, spec.resolution)
    return make_row(
        id=f"{source}/{split}/{index:06d}",
        source=source,
        task=SOURCE_TASKS[source],
        images=pair["images"],
        references=pair["references"],
        change_type=NO_CHANGE if change_type == "none" else change_type,
        change=pair["change"],
        change_regions=pair.get("regions"),
    )


def build_dataset(spec: BuildSpec, num_proc: int = 1, progress: bool = True) -> DatasetDict:
    jobs = {split: [] for split in (*PAIR_SPLITS, "captions")}
    for split in PAIR_SPLITS:
        if spec.eval_only and split == "train":
            continue
        for source, train_size in (("scene-change", spec.scene_pairs), ("photo-edit", spec.photo_pairs)):
            jobs[split] += [(spec, split, source, i) for i in range(spec.split_size(split, train_size))]
    if not spec.eval_only:
        jobs["captions"] = [(spec, "captions", "scene-caption", i) for i in range(spec.caption_samples)]

    total = sum(len(j) for j in jobs.values())
    bar = tqdm(total=total, desc="generating pairs", unit="sample", disable=not progress)
    pool = multiprocessing.get_context("spawn").Pool(num_proc) if num_proc > 1 else None
    try:
        splits = {}
        for split, split_jobs in jobs.items():
            chunks = []
            for start in range(0, len(split_jobs), CHUNK):
                batch = split_jobs[start : start + CHUNK]
                rows = pool.map(_sample, batch, chunksize=8) if pool else [_sample(job) for job in batch]
                chunks.append(Dataset.from_list(rows, features=FEATURES))
                bar.update(len(batch))
            if chunks:  # an empty split is left out: datasets cannot reload a saved empty split
                splits[split] = concatenate_datasets(chunks)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return DatasetDict(splits)


def build(spec: BuildSpec, out: str | Path, num_proc: int = 1, progress: bool = True) -> DatasetDict:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    dataset = build_dataset(spec, num_proc=num_proc, progress=progress)
    save_diffcap(dataset, out, progress=progress)
    return dataset
