"""The DiffCap schema: one `datasets.DatasetDict` for every source (design.md, "Data").

`images` / `prompt` / `completion` are the names TRL's vision collator reads. `references` keeps every reference
caption, `change_type` the benchmark's or generator's change type ("" where none is known), `change` the JSON
ground truth of a generated pair ("" for benchmark data) and `change_regions` where a generated pair changed: boxes
`[x0, y0, x1, y1]` in pixels (ends exclusive) of the pair's images, the changed object in the before and/or the after
image; empty for global edits, unchanged pairs and benchmark data. Folders written before `change_regions` existed
load with it empty.

On disk a DiffCap dataset is a Hub dataset repository: Parquet shards per source and split
(`<source>/<split>-00000-of-00001.parquet`) and a dataset card (README.md) whose `configs` name every source and
`all` (the default), so `datasets.load_dataset(folder, "scene-change")` reads it offline and `onediff data push`
publishes it as is. Folders of the earlier `save_to_disk` layout (dataset_dict.json) still load.
"""

import hashlib
import io
import json
import math
from pathlib import Path

from datasets import (
    DatasetDict,
    Features,
    Image,
    List,
    Value,
    disable_progress_bars,
    enable_progress_bars,
    load_dataset,
    load_from_disk,
)
from PIL import Image as PILImage

from modeling_onediff.image_reading_onediff import ImageReadError, read_image

from .prompts import prompt_for

FEATURES = Features(
    {
        "id": Value("string"),
        "source": Value("string"),
        "task": Value("string"),
        "images": List(Image()),
        "prompt": Value("string"),
        "completion": Value("string"),
        "references": List(Value("string")),
        "change_type": Value("string"),
        "change": Value("string"),
        "change_regions": List(List(Value("int32"))),
    }
)
ADDED_LATER = ("change_regions",)  # columns older folders lack: loaded empty
PAIR_SPLITS = ("train", "validation", "test")
NO_CHANGE = "no_change"


# What a pair's change heads learn of its ground truth (`change`): the closed-vocabulary facts a glance at the pair
# settles. The rest of a ground truth stays in the data for captions and judges but is not a head's class: names of
# objects (open vocabulary, named from the stamps' words, not a fixed list), an element's label and its old and new
# text (read, not classified), and how a pair was made (nuisance, quality, motion, template).
HEAD_FIELDS = (
    "type",
    "size",
    "color",
    "material",
    "shape",
    "new_value",
    "direction",
    "strength",
    "axis",
    "position",
    "to",
    "element",
)


def head_change(change: str | dict) -> dict:
    """The part of a ground-truth `change` (a dict or its JSON) that change heads learn: its `HEAD_FIELDS`."""
    if isinstance(change, str):
        change = json.loads(change)
    return {name: change[name] for name in HEAD_FIELDS if name in change}


def with_head_changes(split):
    """`split` (a Dataset) whose `change` column holds only what change heads learn (`head_change`, as JSON); pairs
    without a ground truth keep their empty one. Cheap: the images are not rewritten."""
    changes = [json.dumps(head_change(change)) if change else change for change in split["change"]]
    return split.remove_columns("change").add_column("change", changes)


def open_image(path: Path) -> PILImage.Image | str:
    """The decoded RGB image, or why it cannot be read (corrupt, truncated, not an image): callers count and list
    unreadable files instead of failing on them."""
    try:
        return read_image(path)  # as a viewer shows it: EXIF orientation, bit depth, ICC profile, alpha on white
    except ImageReadError as error:
        return str(error)
    except Exception as error:  # PIL raises many exception types for bad files
        return f"{type(error).__name__}: {error}"


def png_bytes(image: PILImage.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def make_row(
    id: str,
    source: str,
    task: str,
    images: list,
    references: list[str],
    change_type: str = "",
    change: dict | None = None,
    allow_uncaptioned: bool = False,
    change_regions: list | None = None,
) -> dict:
    """A row of the schema; images are PIL images (stored as PNG) or `{"bytes", "path"}` dicts. Rows of mined
    pairs awaiting a captioner may have no reference (`allow_uncaptioned`): their completion is empty."""
    if not references and not allow_uncaptioned:
        raise ValueError(f"Row {id} has no reference caption")
    return {
        "id": id,
        "source": source,
        "task": task,
        "images": [png_bytes(i) if isinstance(i, PILImage.Image) else i for i in images],
        "prompt": prompt_for(task),
        "completion": references[0] if references else "",
        "references": list(references),
        "change_type": change_type,
        "change": "" if change is None else json.dumps(change, sort_keys=True),
        "change_regions": [[int(v) for v in box] for box in change_regions or []],
    }


def validate_dataset(dataset_dict: DatasetDict, splits: tuple[str, ...] = ()) -> None:
    """Raises ValueError naming what differs from the schema (missing splits, columns or wrong types)."""
    missing_splits = [s for s in splits if s not in dataset_dict]
    if missing_splits:
        raise ValueError(f"Dataset lacks split(s) {missing_splits}; it has {list(dataset_dict)}")
    for name, split in dataset_dict.items():
        missing = [c for c in FEATURES if c not in split.features]
        if missing:
            raise ValueError(f"Split {name!r} lacks column(s) {missing} of the DiffCap schema")
        wrong = [c for c in FEATURES if split.features[c] != FEATURES[c]]
        if wrong:
            details = ", ".join(f"{c}: {split.features[c]} (expected {FEATURES[c]})" for c in wrong)
            raise ValueError(f"Split {name!r} has columns of the wrong type: {details}")


DEFAULT_CONFIG = "all"
SHARD_BYTES = 500 * 2**20  # Parquet shards of at most about this much Arrow data


def load_diffcap(path: str | Path, splits: tuple[str, ...] = ()) -> DatasetDict:
    """Loads a dataset written by `onediff data build/convert` (either layout), with clear errors for missing or
    foreign folders."""
    path = Path(path)
    if (path / "dataset_dict.json").is_file():  # the earlier save_to_disk layout
        dataset_dict = load_from_disk(str(path))
    elif (path / "README.md").is_file() and any(path.glob("*/*.parquet")):
        dataset_dict = load_dataset(str(path), DEFAULT_CONFIG, cache_dir=str(_arrow_cache_for(path)))
    else:
        raise ValueError(
            f"No DiffCap dataset at {path} (neither Parquet shards with a README.md card nor dataset_dict.json); "
            "build one with `onediff data`"
        )
    for name, split in dataset_dict.items():
        for column in ADDED_LATER:
            if column not in split.column_names:
                split = split.add_column(column, [[]] * len(split), feature=FEATURES[column])
        dataset_dict[name] = split
    validate_dataset(dataset_dict, splits)
    return dataset_dict


def _arrow_cache_for(path: Path) -> Path:
    """A datasets cache folder of this folder's own: datasets 5.2 keys the Arrow cache of a local folder by its name
    and configs, not its files, so two folders called `out` would share (and return) one cache. The key here is the
    folder's absolute path and every shard's size and modification time."""
    from datasets import config

    digest = hashlib.sha256(str(path.resolve()).encode())
    for shard in sorted(path.glob("*/*.parquet")):
        stat = shard.stat()
        digest.update(f"{shard.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return Path(config.HF_DATASETS_CACHE) / "onediff-diffcap" / digest.hexdigest()[:20]


def source_runs(split) -> list[tuple[str, int, int]]:
    """(source, start, stop) of each source's rows in a split, in order; every writer keeps a source's rows together."""
    sources = split["source"]
    runs = []
    for index, source in enumerate(sources):
        if runs and runs[-1][0] == source:
            runs[-1][2] = index + 1
        else:
            runs.append([source, index, index + 1])
    names = [run[0] for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"The rows of a source must be contiguous in a split; got the order {names}")
    return [tuple(run) for run in runs]


def save_diffcap(
    dataset_dict: DatasetDict, out: str | Path, num_proc: int | None = None, progress: bool = True
) -> None:
    """Writes the Hub layout (Parquet shards + dataset card with configs); the same rows give byte-identical files."""
    validate_dataset(dataset_dict)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not progress:
        disable_progress_bars()
    files: dict[str, dict[str, list[str]]] = {}  # source -> split -> shard paths
    counts: dict[str, dict[str, int]] = {}
    try:
        for split_name, split in dataset_dict.items():
            for source, start, stop in source_runs(split):
                rows = split.select(range(start, stop))
                num_shards = max(1, math.ceil(rows.data.nbytes / SHARD_BYTES))
                for index in range(num_shards):
                    relative = f"{source}/{split_name}-{index:05d}-of-{num_shards:05d}.parquet"
                    (out / source).mkdir(exist_ok=True)
                    rows.shard(num_shards, index, contiguous=True).to_parquet(str(out / relative))
                    files.setdefault(source, {}).setdefault(split_name, []).append(relative)
                counts.setdefault(source, {})[split_name] = stop - start
    finally:
        if not progress:
            enable_progress_bars()
    dataset_card(files, counts).save(out / "README.md")


def dataset_card(files: dict[str, dict[str, list[str]]], counts: dict[str, dict[str, int]]):
    """The dataset card: one config per source and `all` (the default, every source), and what the columns hold."""
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = list(dict.fromkeys(split for by_split in files.values() for split in by_split))
    configs = [
        {
            "config_name": DEFAULT_CONFIG,
            "default": True,
            "data_files": [
                {"split": split, "path": [f"{source}/{split}-*.parquet" for source in files if split in files[source]]}
                for split in splits
            ],
        }
    ]
    for source, by_split in files.items():
        configs.append(
            {
                "config_name": source,
                "data_files": [{"split": split, "path": f"{source}/{split}-*.parquet"} for split in by_split],
            }
        )
    table = ["| config | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for source, by_split in counts.items():
        table.append(f"| `{source}` | " + " | ".join(str(by_split.get(split, "")) for split in splits) + " |")
    data = DatasetCardData(
        pretty_name="DiffCap (OneDiff image difference captioning)",
        task_categories=["image-text-to-text"],
        tags=["image-difference-captioning", "change-captioning", "onediff"],
        language=["en"],
        license="other",
        configs=configs,
    )
    columns = "\n".join(f"| `{name}` | `{feature}` |" for name, feature in FEATURES.items())
    body = f"""
# DiffCap (OneDiff)

Image pairs and what changed between them, in the schema of the `onediff-idc` package (Hu et al., arXiv
2407.05645): written by `onediff data build` (generated scene changes and photo edits) or `onediff data convert`
(public benchmarks). Rows per config and split:

{chr(10).join(table)}

```python
from datasets import load_dataset

pairs = load_dataset("path/or/repo", "{next(iter(files))}")  # or "{DEFAULT_CONFIG}" (the default): every source
```

| column | type |
|---|---|
{columns}

`images` holds the before and the after image (PNG); `prompt` / `completion` are what TRL's vision collator reads;
`references` every reference caption; `change` the JSON ground truth of a generated pair (empty for benchmarks);
`change_regions` boxes `[x0, y0, x1, y1]` of the changed object in the pair's images (generated local changes only).

Licences: generated pairs are made by the package from its own renderer and from sample and desktop-background
photographs whose licences `onediff data photos` records; converted benchmarks keep their own terms.
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def push_diffcap(
    path: str | Path, repo_id: str, *, to_folder: str | Path | None = None, private: bool = False, token=None
) -> str:
    """
    Publishes a DiffCap folder as a Hub dataset repository (Parquet shards + card). A folder of the earlier
    save_to_disk layout is rewritten in the Hub layout first. With `to_folder` the exact files go there instead of
    the Hub (offline; `load_dataset(to_folder, config)` reads them as it would read the repo).
    """
    import tempfile

    from onediff_idc.hub import publish_folder

    path = Path(path)
    dataset_dict = load_diffcap(path)  # refuses what is not a DiffCap folder before anything is written
    if to_folder is not None and Path(to_folder).exists() and any(Path(to_folder).iterdir()):
        raise ValueError(f"{to_folder} exists and is not empty; choose a new folder")
    with tempfile.TemporaryDirectory() as scratch:
        folder = path
        if (path / "dataset_dict.json").is_file():
            folder = Path(scratch) / "hub"
            save_diffcap(dataset_dict, folder)
        return publish_folder(folder, repo_id, "dataset", to_folder=to_folder, private=private, token=token)
