"""`onediff data convert NAME --src DIR --out DIR`: the public IDC benchmarks, from the layouts their own
instructions produce, into the DiffCap schema, keeping every reference and the official splits.

Layouts read (the images an alternative folder can be named for with `images_dir`):
- clevr-change: `{change_captions,no_change_captions,splits,type_mapping}.json`, `{images,sc_images,nsc_images}/`
- spot-the-diff: `annotations/{train,val,test}.json`, `resized_images/<id>.png` and `<id>_2.png`
- image-editing-request: `{train,valid,test}.json`, `images/`
- birds-to-words: `birds-to-words-v1.0.tsv`, `images/<observation id>.<ext>`

Every image is opened and decoded before anything is written. Missing or unreadable files raise
`MissingFilesError` listing them, unless `skip_missing` is set: then their pairs are skipped and counted in the
report (`conversion_report.json` beside the dataset).
"""

import csv
import json
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from .prompts import SOURCE_TASKS
from .schema import FEATURES, NO_CHANGE, load_diffcap, make_row, open_image, save_diffcap

BENCHMARKS = ("clevr-change", "spot-the-diff", "image-editing-request", "birds-to-words")
CLEVR_TYPES = {"color": "color", "material": "texture", "add": "add", "drop": "drop", "move": "move"}
SHOWN = 20


class MissingFilesError(ValueError):
    """Files a conversion needs are missing or unreadable; nothing was written."""


def _read_json(path: Path):
    if not path.is_file():
        raise MissingFilesError(f"Annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise MissingFilesError(f"Annotation file {path} is not valid JSON: {error}") from error


def _image_problem(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return "missing"
    image = open_image(path)
    return f"unreadable ({image})" if isinstance(image, str) else None


class _ImageFolder:
    """Finds images by exact name, then case-insensitively, then (for stems) with any extension."""

    def __init__(self, folder: Path):
        self.folder = folder
        files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        self.by_lower = {p.name.lower(): p for p in files}
        self.by_stem = {}
        for p in sorted(files):
            self.by_stem.setdefault(p.stem.lower(), p)

    def find(self, name: str) -> Path | None:
        exact = self.folder / name
        if exact.is_file():
            return exact
        return self.by_lower.get(name.strip().lower())

    def find_stem(self, stem: str) -> Path | None:
        return self.by_stem.get(stem.lower())


def _clean(sentences) -> list[str]:
    return [s.strip() for s in sentences if isinstance(s, str) and s.strip()]


def _spot_the_diff(src: Path, images: Path | None, report: Counter):
    folder = _ImageFolder(images or src / "resized_images")
    for split, file in (("train", "train"), ("validation", "val"), ("test", "test")):
        grouped: dict[str, list[str]] = {}
        for record in _read_json(src / "annotations" / f"{file}.json"):
            grouped.setdefault(str(record["img_id"]), []).extend(record.get("sentences", []))
        for img_id, sentences in grouped.items():
            references = _clean(sentences)
            if not references:
                report[f"{split}: pairs dropped, no non-empty sentence"] += 1
                continue
            paths = [folder.find(f"{img_id}.png"), folder.find(f"{img_id}_2.png")]
            names = [f"{img_id}.png", f"{img_id}_2.png"]
            yield split, f"spot-the-diff/{img_id}", paths, names, references, ""


def _image_editing_request(src: Path, images: Path | None, report: Counter):
    folder = _ImageFolder(images or src / "images")
    for split, file in (("train", "train"), ("validation", "valid"), ("test", "test")):
        grouped: dict[tuple[str, str], list[str]] = {}
        for record in _read_json(src / f"{file}.json"):
            grouped.setdefault((record["img0"].strip(), record["img1"].strip()), []).extend(record.get("sents", []))
        for (img0, img1), sentences in grouped.items():
            references = _clean(sentences)
            if not references:
                report[f"{split}: pairs dropped, no non-empty sentence"] += 1
                continue
            pair_id = f"image-editing-request/{Path(img0).stem}__{Path(img1).stem}"
            yield split, pair_id, [folder.find(img0), folder.find(img1)], [img0, img1], references, ""


def _clevr_change(src: Path, images: Path | None, report: Counter):
    root = images or src
    folders = {name: _ImageFolder(root / name) for name in ("images", "sc_images", "nsc_images")}
    splits = _read_json(src / "splits.json")
    change_captions = _read_json(src / "change_captions.json")
    no_change_captions = _read_json(src / "no_change_captions.json")
    types = {}
    for name, files in _read_json(src / "type_mapping.json").items():
        for file in files:
            types[int(Path(file).stem)] = CLEVR_TYPES.get(name, name)
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        for index in splits[key]:
            before = f"CLEVR_default_{index:06d}.png"
            change_type = types.get(index, "")
            if not change_type:
                report[f"{split}: change pairs without a type (kept, change_type '')"] += 1
            for suffix, folder, after, captions, pair_type in (
                ("", "sc_images", f"CLEVR_semantic_{index:06d}.png", change_captions, change_type),
                ("_n", "nsc_images", f"CLEVR_nonsemantic_{index:06d}.png", no_change_captions, NO_CHANGE),
            ):
                references = _clean(captions.get(before, []))
                if not references:
                    report[f"{split}: pairs dropped, no caption for {before} ({'no_' if suffix else ''}change)"] += 1
                    continue
                paths = [folders["images"].find(before), folders[folder].find(after)]
                yield split, f"clevr-change/{index:06d}{suffix}", paths, [before, after], references, pair_type


def _observation_id(url: str) -> str:
    match = re.search(r"(\d+)/?$", url.strip())
    if match is None:
        raise MissingFilesError(f"Cannot read an observation id from {url!r}")
    return match.group(1)


def _birds_to_words(src: Path, images: Path | None, report: Counter):
    folder = _ImageFolder(images or src / "images")
    table = src / "birds-to-words-v1.0.tsv"
    if not table.is_file():
        raise MissingFilesError(f"Annotation file not found: {table}")
    grouped: dict[tuple[str, str], dict] = {}
    with table.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            key = (row["img1ImgURL"].strip(), row["img2ImgURL"].strip())
            entry = grouped.setdefault(key, {"row": row, "descriptions": []})
            entry["descriptions"].append(row["description"])
    split_names = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
    for entry in grouped.values():
        row = entry["row"]
        split = split_names.get(row["split"].strip().lower())
        if split is None:
            report[f"pairs dropped, unknown split {row['split']!r}"] += 1
            continue
        references = _clean(entry["descriptions"])
        if not references:
            report[f"{split}: pairs dropped, no non-empty description"] += 1
            continue
        ids = [_observation_id(row["img1ObservationURL"]), _observation_id(row["img2ObservationURL"])]
        paths = [folder.find_stem(i) for i in ids]
        yield split, f"birds-to-words/{ids[0]}_{ids[1]}", paths, [f"{i}.*" for i in ids], references, ""


READERS = {
    "clevr-change": _clevr_change,
    "spot-the-diff": _spot_the_diff,
    "image-editing-request": _image_editing_request,
    "birds-to-words": _birds_to_words,
}


def convert(
    name: str,
    src: str | Path,
    out: str | Path,
    images_dir: str | Path | None = None,
    skip_missing: bool = False,
    progress: bool = True,
) -> tuple[DatasetDict, dict]:
    """Converts benchmark `name`; returns the dataset and the report (also written to the output folder)."""
    if name not in READERS:
        raise ValueError(f"Unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise MissingFilesError(f"Source folder not found: {src}")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    report: Counter = Counter()
    pairs = list(READERS[name](src, Path(images_dir) if images_dir else None, report))

    problems, kept = [], {"train": [], "validation": [], "test": []}
    for split, pair_id, paths, names, references, change_type in tqdm(
        pairs, desc=f"checking {name} images", unit="pair", disable=not progress
    ):
        issues = [(n, p, _image_problem(p)) for n, p in zip(names, paths)]
        issues = [(n, p, problem) for n, p, problem in issues if problem]
        if issues:
            problems += [f"{p or n}: {problem}" for n, p, problem in issues]
            report[f"{split}: pairs skipped, missing or unreadable image"] += 1
            continue
        kept[split].append((pair_id, paths, references, change_type))
    if problems and not skip_missing:
        listing = "\n  ".join(problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise MissingFilesError(
            f"{len(problems)} image file(s) of {name} are missing or unreadable (nothing was written; pass "
            f"--skip-missing to convert without those pairs):\n  {listing}{more}"
        )

    def rows(split: str):
        for pair_id, paths, references, change_type in kept[split]:
            images = [{"bytes": p.read_bytes(), "path": p.name} for p in paths]
            yield make_row(pair_id, name, SOURCE_TASKS[name], images, references, change_type)

    written = [split for split in kept if kept[split]]  # datasets cannot reload a saved empty split
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as cache:
        dataset = DatasetDict(
            {
                split: Dataset.from_generator(rows, gen_kwargs={"split": split}, features=FEATURES, cache_dir=cache)
                for split in written
            }
        )
        save_diffcap(dataset, out, progress=progress)
    dataset = load_diffcap(out)
    for split in kept:
        if split not in written:
            report[f"{split}: no pairs, split not written"] += 1
    summary = {
        "benchmark": name,
        "source": str(src),
        "pairs": {split: len(rows_) for split, rows_ in kept.items()},
        "references": {split: sum(len(r[2]) for r in rows_) for split, rows_ in kept.items()},
        "notes": dict(sorted(report.items())),
        "skipped_files": problems,
    }
    (out / "conversion_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out / ".cache", ignore_errors=True)
    return dataset, summary
