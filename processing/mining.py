"""`onediff data mine`: real image pairs mined from a photo folder by embedding retrieval (DiffCap's second source).

Images are embedded with a vision encoder loaded from a local path (any transformers vision model; by default the
default model's DINOv2-S tower), indexed with a FAISS inner-product index through `datasets`, and each image's
nearest neighbours are kept as pairs when their cosine similarity falls in a band: alike enough to compare
(>= `low`), not near-duplicates (< `high`). Exact duplicate files are dropped first. Embedding is batched, with a
progress bar, and resumable: finished batches are kept in `<out>.mining-state/` and skipped on a rerun.
Unreadable images are counted and listed, not fatal. The output is a DiffCap dataset (source `retrieval-mined`),
captioned when per-image captions are given, else ready for captioning.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from PIL import Image
from tqdm.auto import tqdm

from .prompts import SOURCE_TASKS
from .schema import FEATURES, make_row, open_image, save_diffcap

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SOURCE = "retrieval-mined"


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"Image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


class Encoder:
    """Mean-pooled last hidden state of a transformers vision model, L2-normalised."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from transformers import AutoImageProcessor

        from modeling_onediff.modeling_onediff import load_vision_tower

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"No vision encoder at {path} (config.json missing)")
        self.model = load_vision_tower(path).to(device).eval()  # a dual encoder's (CLIP, SigLIP) vision half
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.device, self.torch = device, torch

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        with self.torch.no_grad():
            pixels = self.processor(images, return_tensors="pt")["pixel_values"].to(self.device)
            hidden = self.model(pixel_values=pixels).last_hidden_state.mean(dim=1)
            return self.torch.nn.functional.normalize(hidden, dim=-1).float().cpu().numpy()


def embed_folder(files: list[Path], encoder: Encoder, state: Path, batch_size: int, progress: bool):
    """Embeddings of the readable files (resuming from `state`), and the unreadable ones with their errors."""
    state.mkdir(parents=True, exist_ok=True)
    done: dict[str, np.ndarray] = {}
    unreadable: dict[str, str] = {}
    for chunk in sorted(state.glob("chunk-*.json")):
        record = json.loads(chunk.read_text())
        vectors = np.load(chunk.with_suffix(".npy"))
        done |= dict(zip(record["files"], vectors))
        unreadable |= record["unreadable"]
    todo = [f for f in files if str(f) not in done and str(f) not in unreadable]
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="embedding", unit="image", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        opened = [(f, open_image(f)) for f in batch]
        readable = [(f, image) for f, image in opened if isinstance(image, Image.Image)]
        errors = {str(f): image for f, image in opened if isinstance(image, str)}
        vectors = encoder([image for _, image in readable]) if readable else np.zeros((0, 1), np.float32)
        name = state / f"chunk-{len(list(state.glob('chunk-*.json'))):06d}"
        np.save(name.with_suffix(".npy"), vectors)
        name.with_suffix(".json").write_text(json.dumps({"files": [str(f) for f, _ in readable], "unreadable": errors}))
        done |= dict(zip((str(f) for f, _ in readable), vectors))
        unreadable |= errors
        bar.update(len(batch))
    bar.close()
    kept = [f for f in files if str(f) in done]
    return kept, np.stack([done[str(f)] for f in kept]) if kept else np.zeros((0, 1)), unreadable


def mine(
    images: str | Path,
    out: str | Path,
    encoder: str | Path | None = None,
    low: float = 0.90,
    high: float = 0.995,
    neighbours: int = 5,
    batch_size: int = 16,
    captions: dict[str, str] | None = None,
    captioner=None,
    num_references: int = 3,
    progress: bool = True,
) -> tuple[DatasetDict | None, dict]:
    """Mines pairs from `images` into a DiffCap dataset at `out`; returns it (None if no pair) and the report."""
    if not -1.0 <= low < high <= 1.5:
        raise ValueError(f"The similarity band must satisfy -1 <= low < high (<= 1.5), got low={low}, high={high}")
    images, out = Path(images), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    files = list_images(images)
    if encoder is None:
        from onediff_idc.towers import convert_vision

        encoder = convert_vision(progress)
    model = Encoder(encoder)
    state = out.with_name(out.name + ".mining-state")
    kept, vectors, unreadable = embed_folder(files, model, state, batch_size, progress)

    report = {
        "images": len(files),
        "unreadable": unreadable,
        "encoder": str(encoder),
        "band": {"low": low, "high": high},
        "neighbours": neighbours,
    }
    counts = {"exact duplicates": 0, "near duplicates (>= high)": 0, "too different (< low)": 0, "kept": 0}
    digests, unique = {}, []
    for index, path in enumerate(kept):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in digests:
            counts["exact duplicates"] += 1
            continue
        digests[digest] = index
        unique.append(index)

    pairs: list[tuple[int, int, float]] = []
    if len(unique) >= 2:
        import faiss

        index = Dataset.from_dict({"embedding": vectors[unique].astype(np.float32)})
        index.add_faiss_index(column="embedding", metric_type=faiss.METRIC_INNER_PRODUCT)
        k = min(neighbours + 1, len(unique))
        scores, found = index.search_batch("embedding", vectors[unique].astype(np.float32), k=k)
        seen = set()
        for row, (row_scores, row_found) in enumerate(zip(scores, found)):
            for score, column in zip(row_scores, row_found):
                a, b = sorted((unique[row], unique[int(column)]))
                if a == b or (a, b) in seen:
                    continue
                seen.add((a, b))
                if score >= high:
                    counts["near duplicates (>= high)"] += 1
                elif score < low:
                    counts["too different (< low)"] += 1
                else:
                    pairs.append((a, b, float(score)))
    counts["kept"] = len(pairs)
    report["pairs"] = counts

    rows = []
    for a, b in ((a, b) for a, b, _ in pairs):
        first, second = kept[a], kept[b]
        references: list[str] = []
        if captions is not None and captioner is not None:
            known = {"before_caption": captions.get(first.name, ""), "after_caption": captions.get(second.name, "")}
            if known["before_caption"] and known["after_caption"]:
                references = captioner.caption(known, num_references)
        entries = [{"bytes": p.read_bytes(), "path": p.name} for p in (first, second)]
        pair_id = f"{SOURCE}/{first.relative_to(images)}__{second.relative_to(images)}"
        rows.append(make_row(pair_id, SOURCE, SOURCE_TASKS[SOURCE], entries, references, allow_uncaptioned=True))
    report["captioned_pairs"] = sum(1 for r in rows if r["references"])
    if captioner is not None:
        report["captioner"] = dict(captioner.stats)
    dataset = None
    if rows:
        dataset = DatasetDict({"train": Dataset.from_list(rows, features=FEATURES)})
        save_diffcap(dataset, out, progress=progress)
    else:
        out.mkdir(parents=True, exist_ok=True)
    report["similarities"] = [{"before": str(kept[a]), "after": str(kept[b]), "cosine": s} for a, b, s in pairs]
    (out / "mining_report.json").write_text(json.dumps(report, indent=1) + "\n")
    shutil.rmtree(state, ignore_errors=True)  # the run finished: nothing left to resume
    return dataset, report
