"""Probe: can the delta module's global inputs tell geometric photo edits apart? (issue: photo edits >= 80%)

    python train/probe_alignment.py --data runs/curve-data-zoom --features runs/curve-features-zoom \
        --out docs/alignment-probe.json

The global tokens read `global_change_statistics` (mean of B-A, mean |B-A|, change of each channel's spread): they
are the same for a photograph mirrored left-right and one mirrored top-bottom, and for a turn either way. The
zoom's 16 most-changed patches do not show it either (a flip changes every patch). `affine_alignment` matches every
B patch to the A patches it resembles and fits the affine map of those matches (8 numbers per layer). This fits one
logistic regression per change field on the cached DINOv2 features (`pretrain_delta.py`'s feature cache: layers
4, 8, 12) of the training photo edits, from the global statistics, from the alignment, and from both, and reports
the validation photo edits with every field right, per edit type.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_onediff.modeling_onediff import affine_alignment, global_change_statistics
from onediff_idc.processing.schema import load_diffcap
from onediff_idc.train.pretrain_delta import change_labels, known_changes
from onediff_idc.train.probe_global_difference import field_probes


def pair_inputs(features: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Global statistics `(pairs, layers * 3 * width)` and alignment `(pairs, layers * 8)` of cached rows."""
    side = int(np.sqrt(features.shape[3]))
    stats, aligned = [], []
    for start in tqdm(range(0, len(rows), batch_size), desc="inputs", mininterval=30):
        batch = torch.from_numpy(np.asarray(features[rows[start : start + batch_size]])).float()  # (B, 2, L, N, D)
        before, after = batch[:, 0], batch[:, 1]
        stats.append(global_change_statistics(before, after).flatten(1).numpy())
        aligned.append(affine_alignment(before, after, (side, side)).flatten(1).numpy())
    return {"global": np.concatenate(stats), "alignment": np.concatenate(aligned)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the generated DiffCap folder the feature cache was made from")
    parser.add_argument("--features", required=True, help="pretrain_delta feature cache (train/validation.npy)")
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--train_pairs", type=int, default=2000, help="photo-edit training pairs to fit on")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()

    data = load_diffcap(args.data, splits=("train", "validation"))
    # the whole training split's vocabulary picks the validation rows the cache holds (as pretrain_delta does)
    vocab, labels = change_labels(data["train"]["change"])
    train_rows = np.flatnonzero(np.array(data["train"]["source"]) == "photo-edit")[: args.train_pairs]
    y_train = labels[train_rows]
    validation, y_eval = known_changes(data["validation"], vocab)
    eval_rows = np.flatnonzero(np.array(validation["source"]) == "photo-edit")
    y_eval, types = y_eval[eval_rows], np.array(validation["change_type"])[eval_rows]

    cache = Path(args.features)
    x_train = pair_inputs(np.load(cache / "train.npy", mmap_mode="r"), train_rows)
    x_eval = pair_inputs(np.load(cache / "validation.npy", mmap_mode="r"), eval_rows)
    report = {"train_pairs": len(train_rows), "validation_pairs": len(eval_rows), "feature_sets": {}}
    for name, parts in {"global": ["global"], "alignment": ["alignment"], "both": ["global", "alignment"]}.items():
        fit = np.concatenate([x_train[p] for p in parts], axis=1)
        held = np.concatenate([x_eval[p] for p in parts], axis=1)
        exact = field_probes(fit, y_train, held, y_eval, max_iter=3000).all(1)
        report["feature_sets"][name] = {
            "exact": round(float(exact.mean()), 4),
            "by_change_type": {t: round(float(exact[types == t].mean()), 4) for t in sorted(set(types))},
        }
        print(f"{name}: every field right on {exact.mean():.3f} of validation photo edits")
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
