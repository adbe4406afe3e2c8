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
from tqdm.auto import tqdm

from onediff_idc.processing.schema import NO_CHANGE, load_diffcap

from .change_detection import roc_auc


def feature_change_scores(model, processor, split, layers: list[int], batch_size: int = 8) -> dict[int, list[float]]:
    """Per layer, the mean patch-feature change of every pair of `split` (relative to the mean feature norm)."""
    from onediff_idc.train.pretrain_delta import pair_patch_states

    scores = {layer: [] for layer in layers}
    for start in tqdm(range(0, len(split), batch_size), desc="feature change", unit="batch"):
        pairs = [tuple(images) for images in split[start : start + batch_size]["images"]]
        features = pair_patch_states(model.model.vision_tower, processor, pairs, layers)  # (B, 2, L, N, D)
        change = (features[:, 1] - features[:, 0]).norm(dim=-1).mean(-1)  # (B, L)
        relative = change / features.norm(dim=-1).mean(dim=(1, 3))
        for k, layer in enumerate(layers):
            scores[layer] += relative[:, k].tolist()
    return scores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="OneDiff checkpoint whose vision tower is read")
    parser.add_argument("--data", required=True, help="DiffCap folder with change types")
    parser.add_argument("--split", default="test", help="split to score")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 4, 8, 12], help="tower hidden states to read")
    parser.add_argument("--out", default=None, help="write the report here as JSON")
    return parser


def main(argv: list[str] | None = None) -> dict:
    from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor

    args = build_parser().parse_args(argv)
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
