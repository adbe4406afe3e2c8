"""The DiffCap schema: one `datasets.DatasetDict` for every source (design.md, "Data").

`images` / `prompt` / `completion` are the names TRL's vision collator reads. `references` keeps every reference
caption, `change_type` the benchmark's or generator's change type ("" where none is known), `change` the JSON
ground truth of a generated pair ("" for benchmark data) and `change_regions` where a generated pair changed: boxes
`[x0, y0, x1, y1]` in pixels (ends exclusive) of the pair's images, the changed object in the before and/or the after
image; empty for global edits, unchanged pairs and benchmark data. Folders written before `change_regions` existed
load with it empty.
"""

import hashlib
import io
import json
from pathlib import Path

from datasets import (
    DatasetDict,
    Features,
    Image,
    List,
    Value,
    disable_progress_bars,
    enable_progress_bars,
    load_from_disk,
)
from PIL import Image as PILImage

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


def open_image(path: Path) -> PILImage.Image | str:
    """The decoded RGB image, or why it cannot be read (corrupt, truncated, not an image): callers count and list
    unreadable files instead of failing on them."""
    try:
        with PILImage.open(path) as image:
            image.load()
            return image.convert("RGB")
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


def load_diffcap(path: str | Path, splits: tuple[str, ...] = ()) -> DatasetDict:
    """Loads a dataset written by `onediff data build/convert`, with clear errors for missing or foreign folders."""
    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise ValueError(f"No DiffCap dataset at {path} (dataset_dict.json missing); build one with `onediff data`")
    dataset_dict = load_from_disk(str(path))
    for name, split in dataset_dict.items():
        for column in ADDED_LATER:
            if column not in split.column_names:
                split = split.add_column(column, [[]] * len(split), feature=FEATURES[column])
        dataset_dict[name] = split
    validate_dataset(dataset_dict, splits)
    return dataset_dict


def save_diffcap(
    dataset_dict: DatasetDict, out: str | Path, num_proc: int | None = None, progress: bool = True
) -> None:
    """Saves with content-derived fingerprints, so that the same rows give byte-identical folders."""
    validate_dataset(dataset_dict)
    if not progress:
        disable_progress_bars()
    for name, split in dataset_dict.items():
        digest = hashlib.sha256(name.encode())
        for shard in split.data.to_batches(max_chunksize=1024):
            for column in shard.columns:
                for buffer in column.buffers():
                    if buffer is not None:
                        digest.update(buffer)
        split._fingerprint = digest.hexdigest()[:16]
    try:
        dataset_dict.save_to_disk(str(out), num_proc=num_proc)
    finally:
        if not progress:
            enable_progress_bars()
