"""Probe: which vision layer still carries a global photo edit? (issue: pixel-faithful features for photo edits)

    python train/probe_global_difference.py --base ~/.cache/onediff/default-base --data runs/curve-data \
        --out docs/photo-edit-probe.json

DINOv2 was trained to be invariant to colour jitter, blur and flips; its hidden state 0 (the patch embeddings, linear in
the pixels) is not. For every photo-edit pair this takes, per layer, a global statistic of the patch features —
the mean of B-A, the mean of |B-A| and the change of the per-channel spread — and fits one logistic regression per
change field on the training pairs. Reported: validation pairs with every field right, per edit type and layer set.
If layer 0's statistic reads the global edits that layers 4/8/12 miss, the delta module should get it.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from modeling_onediff.modeling_onediff import global_change_statistics
from onediff_idc.processing.schema import load_diffcap
from onediff_idc.train.pretrain_delta import change_labels, known_changes, pair_patch_states

LAYER_SETS = {"0": [0], "4": [4], "8": [8], "12": [12], "4+8+12": [4, 8, 12], "0+4+8+12": [0, 4, 8, 12]}


def layer_sets(num_layers: int) -> dict[str, list[int]]:
    """The layer sets probed, for a tower of `num_layers` layers (DINOv2-S: 12)."""
    return {name: layers for name, layers in LAYER_SETS.items() if max(layers) <= num_layers}


def global_statistics(vision, processor, pairs: list, batch_size: int = 16) -> np.ndarray:
    """`(pairs, layers 0..L, 3 * width)`: for every layer, the global change the model's global tokens read."""
    layers = list(range(vision.config.num_hidden_layers + 1))
    rows = []
    for start in tqdm(range(0, len(pairs), batch_size), desc="global statistics", mininterval=30):
        states = pair_patch_states(vision, processor, pairs[start : start + batch_size], layers)  # (B, 2, L, N, D)
        rows.append(global_change_statistics(states[:, 0], states[:, 1]).numpy())
    return np.concatenate(rows)


def field_probes(x_train, y_train, x_eval, y_eval, max_iter: int) -> np.ndarray:
    """Which validation fields one logistic regression per change field (standardised inputs) gets right:
    `(pairs, fields)`; fields a pair lacks (-100) count as right, a field with one training value predicts it."""
    scaler = StandardScaler().fit(x_train)
    x_train, x_eval = scaler.transform(x_train), scaler.transform(x_eval)
    right = np.ones(y_eval.shape, dtype=bool)
    for k in range(y_train.shape[1]):
        seen, present = y_train[:, k] != -100, y_eval[:, k] != -100
        if not present.any():
            continue
        if len(set(y_train[seen, k])) < 2:
            right[present, k] = y_eval[present, k] == y_train[seen, k][0]
            continue
        classifier = LogisticRegression(max_iter=max_iter).fit(x_train[seen], y_train[seen, k])
        right[present, k] = classifier.predict(x_eval[present]) == y_eval[present, k]
    return right


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="OneDiff checkpoint whose vision tower is probed")
    parser.add_argument("--data", required=True, help="generated DiffCap folder with photo-edit pairs")
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--train_pairs", type=int, default=1500, help="photo-edit training pairs to fit on")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()

    data = load_diffcap(args.data, splits=("train", "validation"))
    photo = {split: data[split].filter(lambda s: s == "photo-edit", input_columns="source") for split in data}
    train = photo["train"].select(range(min(args.train_pairs, len(photo["train"]))))
    vocab, train_labels = change_labels(train["change"])
    validation, eval_labels = known_changes(photo["validation"], vocab)

    model = OneDiffForConditionalGeneration.from_pretrained(args.base)
    processor = OneDiffProcessor.from_pretrained(args.base)
    vision = model.model.vision_tower.eval()
    train_stats = global_statistics(vision, processor, train["images"])
    eval_stats = global_statistics(vision, processor, validation["images"])

    report = {
        "train_pairs": len(train),
        "validation_pairs": len(validation),
        "statistic": "mean(B-A), mean|B-A|, std(B)-std(A) over patches, per layer",
        "probe": "logistic regression per change field (C=1, standardised)",
        "layer_sets": {},
    }
    types = np.array(validation["change_type"])
    for name, layers in layer_sets(vision.config.num_hidden_layers).items():
        x_train = train_stats[:, layers].reshape(len(train_stats), -1)
        x_eval = eval_stats[:, layers].reshape(len(eval_stats), -1)
        exact = field_probes(x_train, train_labels, x_eval, eval_labels, max_iter=2000).all(1)
        report["layer_sets"][name] = {
            "exact": round(float(exact.mean()), 4),
            "by_change_type": {t: round(float(exact[types == t].mean()), 4) for t in sorted(set(types))},
        }
        print(f"layers {name}: every field right on {exact.mean():.3f} of validation photo edits")
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
