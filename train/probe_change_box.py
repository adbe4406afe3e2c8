"""Probe: which change box covers the change, on pairs that record where they changed?

    python train/probe_change_box.py --model ~/.cache/onediff/default \
        --data runs/v4/wild-val:validation runs/v4/gen:validation --out docs/change-box-validation.json

The pipeline's change box (`change_box_in_pixels`) grows from where the delta module looked over the patches that
changed (the zoom's extent) and shrinks to the pixels that did. This scores it, for every combination of its three
settings given, against the map-only box of earlier models (`change_box_on_grid`), by the pointing game and the mean
IoU with the true region, per folder and per change type: the settings are chosen here, on validation splits, and
measured on the test splits by `onediff eval`. The pointing game scores the map's peak for the map-only box and the
pipeline's change point (`change_point_in_pixels`) for the settings.
"""

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from modeling_onediff.pipeline_onediff import change_box_in_pixels, change_box_on_grid
from onediff_idc.eval.change_detection import box_iou, change_maps, change_point, point_in_regions
from onediff_idc.processing.schema import load_diffcap

SETTINGS = ("extent_threshold", "strong_share", "pixel_share", "extent_noise", "pixel_noise")  # change_box_in_pixels'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="OneDiff checkpoint with a zoomed delta module")
    parser.add_argument("--data", nargs="+", required=True, help="FOLDER:SPLIT of DiffCap pairs with change_regions")
    parser.add_argument("--extent_thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--strong_shares", type=float, nargs="+", default=[0.6, 0.8, 10.0])
    parser.add_argument("--pixel_shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--extent_noises", type=float, nargs="+", default=[0.0, 3.0, 6.0])
    parser.add_argument("--pixel_noises", type=float, nargs="+", default=[0.0, 3.0, 6.0])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--out", required=True, help="JSON report")
    return parser


def located_pairs(spec: str) -> tuple[list, list, list]:
    """The pairs of FOLDER:SPLIT that record a changed region: images, regions and change types."""
    folder, _, split = spec.rpartition(":")
    if not folder:
        raise ValueError(f"--data takes FOLDER:SPLIT, got {spec!r}")
    rows = load_diffcap(folder, splits=(split,))[split]
    rows = rows.filter(bool, input_columns="change_regions")
    if not len(rows):
        raise ValueError(f"{spec} has no pairs with change_regions")
    return [tuple(images) for images in rows["images"]], rows["change_regions"], rows["change_type"]


def scores(boxes: list, peaks: list, regions: list, types: list) -> dict:
    ious = [max(box_iou(box, region) for region in pair) for box, pair in zip(boxes, regions)]
    hits = [point_in_regions(peak, pair) for peak, pair in zip(peaks, regions)]
    by_type = defaultdict(list)
    for change_type, iou in zip(types, ious):
        by_type[change_type].append(iou)
    return {
        "box_iou": float(np.mean(ious)),
        "pointing_game": float(np.mean(hits)),
        "pairs": len(ious),
        "box_iou_by_type": {t: round(float(np.mean(v)), 4) for t, v in sorted(by_type.items())},
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from onediff_idc.checkpoints import load_pipeline

    pipe = load_pipeline(args.model)
    model, processor = pipe.model, pipe.processor
    report = {"model": str(args.model), "folders": {}}
    for spec in args.data:
        pairs, regions, types = located_pairs(spec)
        maps = change_maps(model, processor, pairs, args.batch_size)
        if any(extent is None for _, extent, _ in maps):
            raise ValueError(f"{args.model} has no change extent: its delta module has no zoom")
        sizes = [after.size for _, after in pairs]
        peaks = [change_point(processor, m, size) for (m, _, _), size in zip(maps, sizes)]  # the map's own
        points = [change_point(processor, m, size, d) for (m, _, d), size in zip(maps, sizes)]  # the pipeline's
        map_only = [
            processor.grid_box_to_pixels(change_box_on_grid(m), m.shape, size) for (m, _, _), size in zip(maps, sizes)
        ]
        results = {"map_only": scores(map_only, peaks, regions, types), "settings": []}
        grid = itertools.product(
            args.extent_thresholds, args.strong_shares, args.pixel_shares, args.extent_noises, args.pixel_noises
        )
        for values in tqdm(list(grid), desc=f"box settings ({spec})"):
            settings = dict(zip(SETTINGS, values))
            boxes = [
                processor.grid_box_to_pixels(change_box_in_pixels(m, e, d, **settings), d.shape, size)
                for (m, e, d), size in zip(maps, sizes)
            ]
            results["settings"].append({**settings, **scores(boxes, points, regions, types)})
        report["folders"][spec] = results
    # the settings' mean IoU over the folders, best first
    ranking = defaultdict(list)
    for results in report["folders"].values():
        for entry in results["settings"]:
            ranking[tuple(entry[name] for name in SETTINGS)].append(entry["box_iou"])
    report["ranking"] = [
        {**dict(zip(SETTINGS, key)), "mean_box_iou": float(np.mean(ious)), "box_iou": ious}
        for key, ious in sorted(ranking.items(), key=lambda item: -np.mean(item[1]))
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    best = report["ranking"][0]
    print(f"best settings: {best}")
    for spec, results in report["folders"].items():
        plain = results["map_only"]
        print(f"{spec}: map only IoU {plain['box_iou']:.3f}, pointing {plain['pointing_game']:.3f}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
