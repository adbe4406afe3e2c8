"""Calibrates `delta_no_change_logit_bias` of a change-heads model on held-out pairs, after training.

    python train/calibrate_no_change.py --model DIR --data runs/calib-s20 [runs/wild-val ...] --split validation \
        --out docs/no-change-calibration.json --apply onediff_idc/default_weights/config_overrides.json

The heads are trained with every change type equally likely, so "no change" is one class among many: on unchanged
pairs they call a change more often than they call "no change" on changed pairs (v3: 94% vs 99% right). A bias on
the "none" score of the `type` field (post-hoc logit adjustment) trades one for the other: with
`delta_change_schema` it moves the type head's 0.5 threshold on "nothing changed". This reads every pair's
scores once, without a bias, and for each bias of a grid counts the unchanged pairs called "no change" and the
changed pairs called changed; it picks the bias that makes the smaller of the two rates largest (the middle of the
grid points that tie), and reports both rates and the every-field accuracy at each bias, overall and per source.
Calibrate on pairs the model did not train on (the recipe's validation split); report on others (held-out seeds).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets
from tqdm.auto import tqdm

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from onediff_idc.processing.schema import load_diffcap, with_head_changes

BIAS_KEY = "delta_no_change_logit_bias"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="OneDiff checkpoint with change heads (delta_change_fields)")
    parser.add_argument(
        "--data", required=True, nargs="+", help="DiffCap folders whose pairs carry their change (their splits joined)"
    )
    parser.add_argument("--split", default="validation", help="split to calibrate on (not one the model trained on)")
    parser.add_argument("--max_pairs", type=int, default=None, help="only the first N pairs of the split")
    parser.add_argument("--batch_size", type=int, default=16, help="pairs per forward pass")
    parser.add_argument("--grid", type=float, nargs=3, default=[-4.0, 12.0, 0.25], help="bias start, stop, step")
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--apply", default=None, help="a config-overrides JSON file to write the chosen bias into")
    return parser


def pair_scores(model, processor, split, batch_size: int) -> list[np.ndarray]:
    """Every field's scores `(pairs, values + 1)` of every pair, as the heads give them before any bias."""
    scores = [[] for _ in model.config.delta_change_fields]
    for start in tqdm(range(0, len(split), batch_size), desc="scoring pairs", mininterval=30):
        pairs = split[start : start + batch_size]["images"]
        pixel_values = processor(images=pairs, return_tensors="pt")["pixel_values"]  # (pairs, 2, C, H, W)
        with torch.no_grad():
            logits = model.get_image_features(pixel_values).change_logits
        for field, field_scores in zip(scores, logits):
            field.append(field_scores.float().numpy())
    return [np.concatenate(field) for field in scores]


def rates(predicted: np.ndarray, truth: np.ndarray, unchanged: np.ndarray, none_class: int, type_field: int) -> dict:
    said_none = predicted[:, type_field] == none_class
    return {
        "unchanged_said_no_change": float(said_none[unchanged].mean()) if unchanged.any() else None,
        "changed_not_said_no_change": float((~said_none[~unchanged]).mean()) if (~unchanged).any() else None,
        "exact": float((predicted == truth).all(1).mean()),
        "pairs": len(truth),
        "unchanged_pairs": int(unchanged.sum()),
    }


def argmax_per_field(scores: list[np.ndarray]) -> np.ndarray:
    return np.stack([s.argmax(-1) for s in scores], axis=1)


def calibrate(
    scores: list[np.ndarray], truth: np.ndarray, sources: np.ndarray, config, grid: np.ndarray, choose=argmax_per_field
) -> dict:
    """The report: rates at every bias of `grid` and the chosen bias (see the module's docstring). `choose` turns
    every field's scores into the classes the model says (the change heads' `choose`: with `delta_change_schema`
    the most likely valid change, which a bias on "none" moves as a whole)."""
    fields = list(config.delta_change_fields)
    type_field, none_class = fields.index("type"), config.delta_change_fields["type"].index("none")
    unchanged = truth[:, type_field] == none_class
    if unchanged.all() or not unchanged.any():
        raise ValueError("Calibration needs both unchanged and changed pairs in the split")
    curve = []

    def predict(bias: float) -> np.ndarray:
        type_scores = scores[type_field].copy()
        type_scores[:, none_class] += bias
        return choose([type_scores if k == type_field else s for k, s in enumerate(scores)])

    for bias in grid:
        predicted = predict(bias)
        point = {"bias": round(float(bias), 4), **rates(predicted, truth, unchanged, none_class, type_field)}
        point["by_source"] = {
            source: rates(predicted[rows], truth[rows], unchanged[rows], none_class, type_field)
            for source in sorted(set(sources))
            for rows in [sources == source]
        }
        curve.append(point)
    worst = np.array([min(p["unchanged_said_no_change"], p["changed_not_said_no_change"]) for p in curve])
    best = np.flatnonzero(worst == worst.max())
    chosen = curve[int(best[len(best) // 2])]
    right = (predict(chosen["bias"]) == truth).all(1)  # every field right, per change type, at the chosen bias
    types = config.delta_change_fields["type"]
    chosen["exact_by_type"] = {
        types[t]: float(right[truth[:, type_field] == t].mean()) for t in sorted(set(truth[:, type_field].tolist()))
    }
    unbiased = min(curve, key=lambda p: abs(p["bias"]))
    return {"chosen": chosen, "without_bias": unbiased, "curve": curve}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    model = OneDiffForConditionalGeneration.from_pretrained(args.model, **{BIAS_KEY: 0.0}).eval()
    config = model.config
    if not config.delta_change_fields or "none" not in config.delta_change_fields.get("type", []):
        raise ValueError(f"{args.model} has no change heads with a 'none' type to calibrate")
    processor = OneDiffProcessor.from_pretrained(args.model)
    split = concatenate_datasets([load_diffcap(folder, splits=(args.split,))[args.split] for folder in args.data])
    split = with_head_changes(split)  # what the heads state
    split = split.filter(config.knows_change, input_columns="change")  # pairs whose change the heads can state
    if args.max_pairs is not None:
        split = split.select(range(min(args.max_pairs, len(split))))
    truth = np.array([config.encode_change(change) for change in split["change"]])
    scores = pair_scores(model, processor, split, args.batch_size)
    start, stop, step = args.grid
    heads = model.model.change_heads

    def choose(field_scores: list[np.ndarray]) -> np.ndarray:  # as the model decides
        return heads.choose(tuple(torch.from_numpy(s) for s in field_scores)).numpy()

    grid = np.arange(start, stop + step / 2, step)
    report = calibrate(scores, truth, np.array(split["source"]), config, grid, choose)
    report = {"model": args.model, "data": args.data, "split": args.split, **report}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    chosen = report["chosen"]
    print(
        f"bias {chosen['bias']}: unchanged said no change {chosen['unchanged_said_no_change']:.3f}, changed not "
        f"{chosen['changed_not_said_no_change']:.3f}, every field {chosen['exact']:.3f} (without the bias: "
        f"{report['without_bias']['unchanged_said_no_change']:.3f}, "
        f"{report['without_bias']['changed_not_said_no_change']:.3f}, {report['without_bias']['exact']:.3f})"
    )
    if args.apply:
        path = Path(args.apply)
        overrides = json.loads(path.read_text()) if path.is_file() else {}
        overrides[BIAS_KEY] = chosen["bias"]
        path.write_text(json.dumps(overrides, indent=1, sort_keys=True) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
