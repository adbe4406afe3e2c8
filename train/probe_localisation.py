"""Probe: does the tower's raw feature difference find the changed object, before anything is trained?

    python train/probe_localisation.py --base ~/.cache/onediff/default-base --data runs/probe-data \
        --split train --out docs/localisation-probe.json

The zoom (`delta_zoom_patches`) and the difference prior (`delta_difference_prior`) of the delta module choose where
to look from each patch's change between the images (`relative_change` of the delta feature layers, averaged). This
measures that choice on generated pairs that record where they changed (`change_regions`), for same-position
|B-A| (shift tolerance 0) and for the jitter-tolerant difference (`delta_shift_tolerance` 1, 2): the pointing game
of the top patch, how often the zoom's top-k patches include a changed patch, and how well the top patch's change
tells changed pairs from unchanged ones (AUROC; no-change pairs of scenes have camera and light jitter), overall and
for the decision the default model gets wrong most: an object's colour or material changed vs nothing changed.
`--layer_sets` compares which tower layers the change is measured on (hidden state 0 is the patch embedding, linear
in the pixels; `pixels` is each patch's colour mean and spread, `patch_pixel_statistics`, which joins a set as one
more layer as in `delta_pixel_statistics`), each set at every shift tolerance:

    onediff data build --out runs/schema-data --seed 10 --scene-pairs 3000 --photo-pairs 2600 --caption-samples 0 \
        --eval-fraction 0 --photos runs/photos
    python train/probe_localisation.py --base ~/.cache/onediff/default-base --data runs/schema-data --split train \
        --max_pairs 600 --layer_sets 4,8,12 0 0,4,8,12 4 8 pixels 4,8,12,pixels --shift_tolerances 1 \
        --out docs/no-change-probe.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from modeling_onediff.modeling_onediff import change_magnitude, relative_to_mean
from onediff_idc.eval.change_detection import localisation_scores, peak_and_box, point_in_regions, roc_auc
from onediff_idc.processing.schema import NO_CHANGE, load_diffcap
from onediff_idc.train.pretrain_delta import pair_patch_states, pair_pixel_statistics

PIXELS = "pixels"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="OneDiff checkpoint whose vision tower and delta layers are read")
    parser.add_argument("--data", required=True, help="generated DiffCap folder with change_regions")
    parser.add_argument("--split", default="validation", help="split to probe")
    parser.add_argument("--max_pairs", type=int, default=400, help="probe the first N pairs of the split")
    parser.add_argument("--shift_tolerances", type=int, nargs="+", default=[0, 1, 2], help="radii to compare")
    parser.add_argument("--top_k", type=int, default=16, help="patches the zoom keeps")
    parser.add_argument(
        "--layer_sets",
        nargs="+",
        default=None,
        help="comma-separated hidden-state indices per set, and `pixels` for the pixel statistics, e.g. 4,8,12 0 "
        "4,8,12,pixels (default: the model's delta layers)",
    )
    parser.add_argument("--out", required=True, help="JSON report")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    model = OneDiffForConditionalGeneration.from_pretrained(args.base).eval()
    processor = OneDiffProcessor.from_pretrained(args.base)
    split = load_diffcap(args.data, splits=(args.split,))[args.split]
    split = split.select(range(min(args.max_pairs, len(split))))
    regions, change_types = split["change_regions"], split["change_type"]
    delta_layers = model.config.resolved_delta_feature_layers
    layer_sets = [[int(i) if i != PIXELS else i for i in text.split(",")] for text in args.layer_sets or []]
    layer_sets = layer_sets or [delta_layers]
    layers = sorted({layer for layer_set in layer_sets for layer in layer_set if layer != PIXELS})
    patch = model.config.vision_config.patch_size
    maps = {(tuple(layer_set), radius): [] for layer_set in layer_sets for radius in args.shift_tolerances}
    peaks_absolute = {key: [] for key in maps}  # the largest change itself, not relative to the pair's other patches
    sizes = []
    for start in tqdm(range(0, len(split), 16), desc="probing", mininterval=30):
        pairs = split[start : start + 16]["images"]
        states = pair_patch_states(model.model.vision_tower, processor, pairs, layers).float()  # (B, 2, L, N, D)
        pixels = pair_pixel_statistics(processor, pairs, patch)  # (B, 2, N, S)
        height, width = processor.image_processor([pairs[0][0]], return_tensors="pt")["pixel_values"].shape[-2:]
        grid = (height // patch, width // patch)
        with torch.no_grad():
            for layer_set, radius in maps:
                picked = states[:, :, [layers.index(layer) for layer in layer_set if layer != PIXELS]]
                parts = [change_magnitude(picked[:, 0], picked[:, 1], grid, radius)] if picked.shape[2] else []
                if PIXELS in layer_set:  # one more layer, as the zoom of `delta_pixel_statistics` counts it
                    parts.append(change_magnitude(pixels[:, :1], pixels[:, 1:], grid, radius))
                magnitude = torch.cat(parts, dim=1)
                relative = relative_to_mean(magnitude).mean(1)  # each layer's relative_change, averaged
                peaks_absolute[layer_set, radius] += magnitude.amax(-1).mean(1).tolist()
                maps[layer_set, radius] += list(relative.unflatten(-1, grid).numpy())
        sizes += [pair[1].size for pair in pairs]

    located = [i for i, r in enumerate(regions) if r]
    labels = [change_type != NO_CHANGE for change_type in change_types]
    report = {"data": args.data, "split": args.split, "pairs": len(split), "pairs_with_regions": len(located)}
    # the decision the default model misses most: one object's colour or material changed, or nothing did
    object_vs_none = [i for i, t in enumerate(change_types) if t in ("color", "texture", NO_CHANGE)]
    report["results"] = {}
    for (layer_set, radius), grids in maps.items():
        peaks, boxes = zip(*(peak_and_box(processor, grids[i], sizes[i]) for i in range(len(grids))))
        scores = localisation_scores(peaks, boxes, regions)
        hits, object_hits, object_points = [], [], []
        for i in located:
            top = np.argsort(grids[i].ravel())[::-1][: args.top_k]
            cells = [divmod(int(index), grids[i].shape[1]) for index in top]
            centres = [processor.grid_box_to_pixels((c, r, c + 1, r + 1), grids[i].shape, sizes[i]) for r, c in cells]
            hits.append(any(point_in_regions(((x0 + x1) / 2, (y0 + y1) / 2), regions[i]) for x0, y0, x1, y1 in centres))
            if change_types[i] in ("color", "texture"):  # where the recoloured object is: among the kept patches?
                object_hits.append(hits[-1])
                object_points.append(point_in_regions(peaks[i], regions[i]))
        peak_values = [float(g.max()) for g in grids]
        report["results"][f"layers {','.join(map(str, layer_set))}, shift tolerance {radius}"] = {
            "layers": list(layer_set),
            "shift_tolerance": radius,
            "pointing_game": scores["pointing_game"],
            f"top_{args.top_k}_includes_change": float(np.mean(hits)) if hits else None,
            "change_vs_no_change_auroc": roc_auc(peak_values, labels),
            "colour_or_material_pointing_game": float(np.mean(object_points)) if object_points else None,
            f"colour_or_material_top_{args.top_k}_includes_change": float(np.mean(object_hits))
            if object_hits
            else None,
            "colour_or_material_vs_no_change_auroc": roc_auc(
                [peak_values[i] for i in object_vs_none], [labels[i] for i in object_vs_none]
            )
            if object_vs_none
            else None,
            "colour_or_material_vs_no_change_auroc_absolute": roc_auc(
                [peaks_absolute[layer_set, radius][i] for i in object_vs_none], [labels[i] for i in object_vs_none]
            )
            if object_vs_none
            else None,
        }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["results"], indent=1))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
