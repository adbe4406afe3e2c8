"""Captioning many pairs: `onediff caption --pairs FILE --out OUT.jsonl` or `--before-dir A --after-dir B --out OUT`.

Pairs come from a CSV or JSONL manifest (`before`, `after` relative to the manifest's folder, optional `id` and
`prompt`) or from two folders paired by file name. Every pair is checked before the model loads (present, an image,
not huge); the rest are captioned in batches through the pipeline. Each result is one line of OUT, written whole and
flushed as soon as its batch is done, so an interrupted run (Ctrl-C, kill -9) is continued by running the same
command again: pairs already in OUT or in the errors file are skipped, and a half-written last line is cut off.
Failed pairs go to `OUT.errors.jsonl` with the reason; the run never stops for a bad pair.

Every line also says how sure the model is that anything changed (`change_probability`), where (`change_box`,
`[x0, y0, x1, y1]` in pixels of the after image) and what was done to a pair whose sizes differ (`warnings`, a list,
empty for most pairs); `--maps DIR` draws each change map over its after image, and
`--change-threshold P` leaves pairs below P uncaptioned ("no change"), which saves their generation.
"""

import csv
import hashlib
import io
import json
import os
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modeling_onediff.image_reading_onediff import MAX_PIXELS, container_brands, read_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
OUTPUT_FIELDS = ("id", "before", "after", "caption", "change_probability", "change_box", "warnings", "seconds")
ERROR_FIELDS = ("id", "before", "after", "error")


@dataclass
class Pair:
    id: str
    before: str
    after: str
    prompt: str | None = None


def read_manifest(path: str | Path) -> list[Pair]:
    """Pairs of a `.csv` or `.jsonl` manifest; image paths are relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON object: {error}") from error
    else:
        raise ValueError(f"pairs file must be .csv or .jsonl, got {path.name}")
    pairs, seen = [], set()
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("before") or not row.get("after"):
            raise ValueError(f"{path}: row {number} needs `before` and `after`")
        pair_id = str(row.get("id") or number)
        if pair_id in seen:
            raise ValueError(f"{path}: id {pair_id!r} appears twice")
        seen.add(pair_id)
        before, after = (str((path.parent / row[role]).resolve()) for role in ("before", "after"))
        pairs.append(Pair(pair_id, before, after, row.get("prompt") or None))
    return pairs


def pair_folders(before_dir: str | Path, after_dir: str | Path) -> tuple[list[Pair], list[dict]]:
    """Images of the same file name in both folders; a name found in only one folder is an error row."""
    folders = {role: Path(folder) for role, folder in (("before", before_dir), ("after", after_dir))}
    for role, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"{role} folder not found: {folder}")
    names = {
        role: {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        for role, folder in folders.items()
    }
    pairs = [
        Pair(name, str(folders["before"] / name), str(folders["after"] / name))
        for name in sorted(names["before"] & names["after"])
    ]
    errors = []
    for role, other in (("before", "after"), ("after", "before")):
        for name in sorted(names[role] - names[other]):
            paths = {role: str(folders[role] / name), other: ""}
            errors.append({"id": name, **paths, "error": f"no {other} image named {name}"})
    return pairs, errors


def check_pair(pair: Pair, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why this pair cannot be captioned (missing, not an image, too large), or None. Reads headers only (a HEIC
    file's header needs pillow-heif: the pipeline reads it, or says what to install)."""
    for role in ("before", "after"):
        path = Path(getattr(pair, role))
        if not path.is_file():
            return f"{role} image not found: {path}"
        try:
            with warnings.catch_warnings():  # Pillow's own bomb warning would precede our clearer refusal
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
        except Image.DecompressionBombError as error:
            return f"{role} image too large: {error}"
        except Exception as error:
            with path.open("rb") as handle:
                if container_brands(handle.read(64)):  # HEIC/AVIF by its content, whatever its name
                    continue
            return f"{role} image unreadable: {error}"
        if width * height > max_pixels:
            return f"{role} image too large: {width}x{height} pixels (limit {max_pixels:,})"
    return None


_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(value):
    """A text value with its line breaks as spaces (a caption is one sentence; the csv module leaves a lone "\r"
    unquoted, and readers split a row there), other values as they are."""
    return _LINE_BREAKS.sub(" ", value) if isinstance(value, str) else value


class ResultFile:
    """An append-only JSONL or CSV file of rows with a fixed field list, written a whole line at a time."""

    def __init__(self, path: Path, fields: tuple[str, ...], fmt: str):
        self.path, self.fields, self.format = path, fields, fmt
        self.done = self._repair_and_read()
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.handle = self.path.open("a", newline="")
        if new and fmt == "csv":
            self._write(",".join(fields) + "\n")

    def _repair_and_read(self) -> set[str]:
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a kill mid-write leaves at most one partial last line
        if len(complete) != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        text = complete.decode()
        if self.format == "csv":
            return {row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))}
        return {json.loads(line)["id"] for line in text.split("\n") if line.strip()}

    def _write(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def add(self, row: dict) -> None:
        if self.format == "csv":
            buffer = io.StringIO()
            # a box as "[x0, ...]", text on one line
            flat = {k: json.dumps(v) if isinstance(v, list) else one_line(v) for k, v in row.items()}
            csv.DictWriter(buffer, fieldnames=self.fields, lineterminator="\n").writerow(flat)
            self._write(buffer.getvalue())
        else:
            self._write(json.dumps({k: row[k] for k in self.fields}) + "\n")
        self.done.add(row["id"])

    def close(self) -> None:
        self.handle.close()


def errors_path(out: Path) -> Path:
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.errors.jsonl")


def caption_pairs(
    pipe_factory,
    pairs: list[Pair],
    out: str | Path,
    fmt: str = "jsonl",
    batch_size: int = 8,
    prompt: str | None = None,
    max_new_tokens: int = 64,
    early_errors: Iterable[dict] = (),
    progress: bool = True,
    maps_dir: str | Path | None = None,
    change_threshold: float | None = None,
) -> dict:
    """
    Captions `pairs` into `out` (resuming it), failures into `out.errors.jsonl`. `pipe_factory()` builds the
    pipeline; it is only called if some pair is left to caption. `maps_dir` gets one change-map overlay PNG per
    captioned pair (named by its id); pairs whose change probability is below `change_threshold` are not captioned.
    Returns counts: captioned and failed (this run), skipped (captioned earlier) and failed_earlier (in the errors
    file already: not retried, never written twice).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    results = ResultFile(out, OUTPUT_FIELDS, fmt)
    failures = ResultFile(errors_path(out), ERROR_FIELDS, "jsonl")
    counts = {"captioned": 0, "failed": 0, "skipped": 0, "failed_earlier": 0}
    try:
        for row in early_errors:
            if row["id"] in failures.done:
                counts["failed_earlier"] += 1
            elif row["id"] not in results.done:
                failures.add(row)
                counts["failed"] += 1
        pending = []
        for pair in pairs:
            if pair.id in results.done:
                counts["skipped"] += 1
            elif pair.id in failures.done:
                counts["failed_earlier"] += 1
            elif (reason := check_pair(pair)) is not None:
                failures.add({"id": pair.id, "before": pair.before, "after": pair.after, "error": reason})
                counts["failed"] += 1
            else:
                pending.append(pair)
        if not pending:
            return counts
        pipe = pipe_factory()
        if maps_dir is not None:
            Path(maps_dir).mkdir(parents=True, exist_ok=True)
        settings = {"prompt": prompt, "max_new_tokens": max_new_tokens}
        settings |= {"return_change_probability": True, "return_change_map": True}
        if change_threshold is not None:
            settings["change_threshold"] = change_threshold
        bar = tqdm(total=len(pending), desc="captioning", unit="pair", disable=not progress)
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            for pair, outcome, seconds in _caption_batch(pipe, batch, settings):
                if isinstance(outcome, Exception):
                    failures.add({"id": pair.id, "before": pair.before, "after": pair.after, "error": str(outcome)})
                    counts["failed"] += 1
                    continue
                if maps_dir is not None:  # before the result line: a resumed run never lacks a map it lists
                    after = read_image(pair.after)  # the picture the box's pixels refer to
                    overlay = draw_change_map(after, outcome["change_map"], outcome["change_box"])
                    overlay.save(Path(maps_dir) / map_file_name(pair.id))
                row = {"id": pair.id, "before": pair.before, "after": pair.after, "caption": outcome["generated_text"]}
                row |= {"change_probability": round(outcome["change_probability"], 6)}
                row |= {"change_box": outcome["change_box"], "warnings": outcome.get("warnings", [])}
                results.add({**row, "seconds": round(seconds, 4)})
                counts["captioned"] += 1
            bar.update(len(batch))
        bar.close()
    finally:
        results.close()
        failures.close()
    return counts


def _caption_batch(pipe, batch: list[Pair], settings: dict) -> list[tuple]:
    """(pair, pipeline output or the error, seconds) per pair; a failing batch is retried pair by pair to find the
    culprit."""
    inputs = [{"before": p.before, "after": p.after, **({"prompt": p.prompt} if p.prompt else {})} for p in batch]
    started = time.perf_counter()
    try:
        outputs = pipe(inputs, batch_size=len(batch), **settings)
    except ValueError as error:  # the pipeline's error for an image it cannot decode (e.g. a truncated file)
        if len(batch) == 1:
            return [(batch[0], error, time.perf_counter() - started)]
        return [item for pair in batch for item in _caption_batch(pipe, [pair], settings)]
    seconds = (time.perf_counter() - started) / len(batch)  # the batch's time, shared out
    return [(pair, output, seconds) for pair, output in zip(batch, outputs)]


def map_file_name(pair_id: str) -> str:
    """A file name for a pair's change map: its id, plus a short hash of it where characters other than letters,
    digits, '-', '_' and '.' had to be replaced (so that two ids never share a file)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in pair_id).lstrip(".")
    if safe != pair_id:
        safe = f"{safe}-{hashlib.sha1(pair_id.encode()).hexdigest()[:8]}"
    return f"{safe}.png"


def draw_change_map(image: Image.Image, change_map, box: list[int]) -> Image.Image:
    """The change map over a dimmed copy of the image (brighter and redder where the model looked), and its box."""
    import numpy as np
    from PIL import ImageDraw

    image = image.convert("RGB")
    weights = np.asarray(change_map, dtype=np.float32)
    weights = weights / max(float(weights.max()), 1e-12)
    mask = Image.fromarray((weights * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
    mask = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    pixels = np.asarray(image, dtype=np.float32)
    heat = np.concatenate([np.full_like(mask, 255.0), 160.0 * mask, np.zeros_like(mask)], axis=-1)
    blended = pixels * (0.35 + 0.25 * (1 - mask)) + heat * 0.6 * mask
    overlay = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
    ImageDraw.Draw(overlay).rectangle(box, outline=(0, 255, 255), width=max(2, min(image.size) // 100))
    return overlay
