"""The pixel-free change-detection baseline that the change probability is measured against.

    python -m onediff_idc.eval.difference_baseline --model DIR --data DIR [--split test] [--out FILE]

Scores each pair by how far its vision-tower patch features move, mean ||B - A|| over the patches divided by the
mean feature norm, at a few layers of the frozen tower (no delta module, no language model), and reports the AUROC
of that score for telling changed from unchanged pairs, overall and per source.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from onediff_idc.processing.schema import NO_CHANGE, load_diffcap

from .change_detection import roc_auc


def feature_change_scores(model, processor, split, layers: list[int], batch_size: int = 8) -> dict[int, list[float]]:
    """Per layer, the mean patch-feature change of every pair of `split` (relative to the mean feature norm)."""
    scores = {layer: [] for layer in layers}
    for start in tqdm(range(0, len(split), batch_size), desc="feature change", unit="batch"):
        rows = split[start : start + batch_size]
        pairs = [tuple(images) for images in rows["images"]]
        pixel_values = processor(images=pairs, text=["?"] * len(pairs), return_tensors="pt")["pixel_values"]
        grid = model.model._patch_grid(pixel_values)
        with torch.no_grad():
            hidden = model.model.vision_tower(pixel_values.flatten(0, 1), output_hidden_states=True).hidden_states
        for layer in layers:
            features = hidden[layer][:, -grid[0] * grid[1] :].unflatten(0, (len(pairs), 2))  # patches only
            change = (features[:, 1] - features[:, 0]).norm(dim=-1).mean(-1)
            scores[layer] += (change / features.norm(dim=-1).mean((1, 2))).tolist()
    return scores


def main(argv: list[str] | None = None) -> dict:
    from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="OneDiff checkpoint whose vision tower is read")
    parser.add_argument("--data", required=True, help="DiffCap folder with change types")
    parser.add_argument("--split", default="test", help="split to score")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 4, 8, 12], help="tower hidden states to read")
    parser.add_argument("--out", default=None, help="write the report here as JSON")
    args = parser.parse_args(argv)
    model = OneDiffForConditionalGeneration.from_pretrained(args.model).eval()
    processor = OneDiffProcessor.from_pretrained(args.model)
    split = load_diffcap(args.data, splits=(args.split,))[args.split]
    split = split.filter(lambda change_type: bool(change_type), input_columns="change_type")
    labels = np.array([t != NO_CHANGE for t in split["change_type"]])
    sources = np.array(split["source"])
    report = {"model": args.model, "data": args.data, "split": args.split, "pairs": len(split), "auroc": {}}
    for layer, scores in feature_change_scores(model, processor, split, args.layers).items():
        scores = np.array(scores)
        by_source = {s: roc_auc(scores[sources == s], labels[sources == s]) for s in sorted(set(sources))}
        report["auroc"][f"layer_{layer}"] = {"overall": roc_auc(scores, labels), **by_source}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
