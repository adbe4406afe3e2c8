"""Learning curves of delta-module designs on the cheap proxy: change supervision, no language model.

    python train/learning_curve.py --base ~/.cache/onediff/default-base --data runs/curve-data \
        --out docs/curves --designs baseline prior --milestones 1000 3000 10000 20000

Each design is the base checkpoint with a few delta-module settings changed (`DESIGNS`). It trains the delta module
and one linear head per change field (train/pretrain_delta.py's heads) on the cached frozen DINOv2 features of the
training pairs, in fresh random order, at a constant learning rate, and at every milestone of pairs seen scores the
validation pairs: every-field-right accuracy for scene changes and photo edits separately. `curves.json` gathers the
points and `curves.png` plots them. The designs advance milestone by milestone together; a design's state is saved at
every milestone (and every `--save_minutes`), and a rerun continues where it stopped, so a long curve can span
several sessions.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_onediff import OneDiffConfig, OneDiffForConditionalGeneration, OneDiffProcessor
from onediff_idc.processing.schema import load_diffcap, with_head_changes
from onediff_idc.train.pretrain_delta import (
    ChangeHeads,
    cache_features,
    cache_pixel_statistics,
    change_labels,
    delta_inputs,
    delta_queries,
    known_changes,
    pixel_cache_name,
    predict_fields,
    score_fields,
)

# Delta-module settings of each candidate; everything else is the base checkpoint's.
DESIGNS = {
    "baseline": {},
    "prior": {"delta_difference_prior": 1.0},  # cross-attention biased towards the patches that changed
    "global": {"delta_global_difference": True},  # one token per layer with its global change (photo edits)
    "prior-global": {"delta_difference_prior": 1.0, "delta_global_difference": True},
    "q32": {"num_delta_queries": 32},
    "prior-q32": {"delta_difference_prior": 1.0, "num_delta_queries": 32},
    # a zoom on the change: only the most-changed patches in the context (8x / 16x cheaper than all 256)
    "zoom32": {"delta_zoom_patches": 32, "delta_difference_prior": 1.0, "delta_global_difference": True},
    "zoom16": {"delta_zoom_patches": 16, "delta_difference_prior": 1.0, "delta_global_difference": True},
    # the same zoom, choosing patches by a difference that forgives camera jitter of up to one patch
    "zoom16-shift": {
        "delta_zoom_patches": 16,
        "delta_difference_prior": 1.0,
        "delta_global_difference": True,
        "delta_shift_tolerance": 1,
    },
    # and the affine map of where B's patches came from in A (mirror images, turns, zooms)
    "zoom16-shift-align": {
        "delta_zoom_patches": 16,
        "delta_difference_prior": 1.0,
        "delta_global_difference": True,
        "delta_shift_tolerance": 1,
        "delta_alignment": True,
    },
    # the same, reading also DINOv2's hidden state 0 (the patch embeddings, linear in the pixels): the deeper layers
    # were trained to ignore colour jitter, so a colour or material change looks like a change of the light there
    "zoom16-shift-align-l0": {
        "delta_zoom_patches": 16,
        "delta_difference_prior": 1.0,
        "delta_global_difference": True,
        "delta_shift_tolerance": 1,
        "delta_alignment": True,
        "delta_feature_layers": [0, 4, 8, 12],
    },
    # the same with the pixels' own statistics per patch (mean and spread of each channel): in the zoom, the prior and
    # one token per kept patch. A recoloured object changes its pixels plainly and its DINOv2 features faintly
    "zoom16-shift-align-pixels": {
        "delta_zoom_patches": 16,
        "delta_difference_prior": 1.0,
        "delta_global_difference": True,
        "delta_shift_tolerance": 1,
        "delta_alignment": True,
        "delta_pixel_statistics": True,
    },
}
# the default model v3's reading: the same, every query starting from the pixel statistics' mirror distances
DESIGNS["v3"] = {**DESIGNS["zoom16-shift-align-pixels"], "delta_mirror_statistics": True}
# v3's reading with twice the zoom: an object, a page element or two places of a move span more than 16 patches
DESIGNS["v3-zoom32"] = {**DESIGNS["v3"], "delta_zoom_patches": 32}
# v3's reading with every query also starting from the alignment (which way B turned: v3 told it 11 times in 24)
DESIGNS["v3-align-queries"] = {**DESIGNS["v3"], "delta_alignment_queries": True}
# and with each patch's detail, every query starting from how the whole picture's pixels moved (sharpen: 53% in v3)
DESIGNS["v4"] = {**DESIGNS["v3-align-queries"], "delta_pixel_detail": True}
SOURCES = ("scene-change", "photo-edit")  # the generators' sources; others found in the validation pairs are added


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="OneDiff checkpoint the designs start from")
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="DiffCap folders with train and validation splits (onediff data build, onediff data wild --splits "
        "train validation): their splits are joined",
    )
    parser.add_argument("--out", required=True, help="curves.json, curves.png and one state folder per design")
    parser.add_argument(
        "--designs", nargs="+", default=["baseline", "prior"], choices=sorted(DESIGNS), help="designs to train"
    )
    parser.add_argument("--milestones", nargs="+", type=int, default=[1000, 3000, 10000], help="pairs seen")
    parser.add_argument("--feature_cache_dir", default=None, help="cached tower features (default: OUT/features)")
    parser.add_argument("--batch_size", type=int, default=32, help="pairs per step")
    parser.add_argument("--learning_rate", type=float, default=5e-4, help="constant after a short warm-up")
    parser.add_argument("--max_eval_pairs", type=int, default=1000, help="validation pairs scored per milestone")
    parser.add_argument("--save_minutes", type=float, default=10.0, help="also save a design's state this often")
    parser.add_argument("--stop_after_minutes", type=float, default=None, help="save and stop after this long")
    parser.add_argument("--seed", type=int, default=0, help="heads' initialisation and the order of the pairs")
    parser.add_argument(
        "--change_types",
        nargs="+",
        default=None,
        help="train and score only pairs of these change types (a zoom on one confusion, e.g. color texture no_change)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sorted(args.milestones) != args.milestones or args.milestones[0] < args.batch_size:
        parser.error("--milestones must rise and start at >= --batch_size pairs")
    return args


def load_design(base: str, overrides: dict) -> OneDiffForConditionalGeneration:
    # a different number of queries changes the shape of the learned queries: those start fresh
    model = OneDiffForConditionalGeneration.from_pretrained(base, ignore_mismatched_sizes=True, **overrides)
    model.requires_grad_(False)
    model.model.delta_module.requires_grad_(True)
    return model


def run_design(name: str, args, data, labels, vocab, started: float, until: int) -> list[dict]:
    """Trains design `name` from its saved state (if any) until `until` pairs seen; returns its curve so far."""
    state_path = Path(args.out) / name / "state.pt"
    torch.manual_seed(args.seed)
    model = load_design(args.base, DESIGNS[name])
    heads = ChangeHeads(vocab, model.config.delta_hidden_size, model.config.num_delta_queries)
    trainable = [*model.model.delta_module.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=0.01)
    warmup = 20
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    points, seen, seconds = [], 0, 0.0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.model.delta_module.load_state_dict(state["delta_module"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        points, seen, seconds = state["points"], state["seen"], state["seconds"]
    if seen >= until:
        return points

    def save() -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "delta_module": model.model.delta_module.state_dict(),
            "heads": heads.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "points": points,
            "seen": seen,
            "seconds": seconds,
        }
        torch.save(state, state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)  # a kill never leaves half a state

    # the design's inputs from the shared feature cache (a zoomed design's own compact cache beside it)
    train_features, train_path, train_pixels = data["train"]
    detail = model.config.delta_pixel_detail
    module = model.model.delta_module
    train_inputs = delta_inputs(module, train_features, train_path, pixels_path=train_pixels.get(detail))
    eval_features, eval_path, eval_pixels, eval_labels, eval_sources, eval_types = data["eval"]
    eval_inputs = delta_inputs(module, eval_features, eval_path, pixels_path=eval_pixels.get(detail))
    train_labels = torch.from_numpy(labels["train"])
    num_train = len(labels["train"])
    bar = tqdm(total=until, initial=seen, desc=f"curve {name}", unit="pair", mininterval=30)
    last_save = time.perf_counter()
    model.train()
    while seen < until:
        # pairs in a fresh random order every pass; position `seen` fixes the batch, so a resumed run continues exactly
        epoch, offset = divmod(seen, num_train)
        order = np.random.default_rng([args.seed, epoch]).permutation(num_train)
        indices = order[offset : offset + args.batch_size]
        step_start = time.perf_counter()
        queries = delta_queries(model, train_inputs, indices)
        targets = train_labels[indices]
        loss = heads.loss(queries, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        seen += len(indices)
        seconds += time.perf_counter() - step_start
        bar.update(len(indices))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        reached = [m for m in args.milestones if seen - len(indices) < m <= seen]
        if reached:
            scores = score_by_source(model, heads, eval_inputs, eval_labels, eval_sources, eval_types, args.batch_size)
            points.append({"pairs_seen": seen, "train_seconds": round(seconds, 1), **scores})
            bar.write(f"{name} @ {seen} pairs: " + ", ".join(f"{s} {v['exact']:.3f}" for s, v in scores.items()))
            save()
            last_save = time.perf_counter()
        elif time.perf_counter() - last_save > args.save_minutes * 60:
            save()
            last_save = time.perf_counter()
        if args.stop_after_minutes is not None and time.perf_counter() - started > args.stop_after_minutes * 60:
            save()
            break
    bar.close()
    return points


def score_by_source(model, heads, inputs, labels, sources, change_types, batch_size: int) -> dict:
    predictions, _ = predict_fields(model, heads, inputs, len(labels), batch_size)
    scores = {}
    for source in sources_of(sources):
        rows = np.array([s == source for s in sources])
        types = [t for t, keep in zip(change_types, rows) if keep]
        report = score_fields(predictions[rows], labels[rows], types, heads.fields)
        scores[source] = {key: report[key] for key in ("exact", "pairs", "fields", "by_change_type")}
    return scores


def sources_of(sources: list[str]) -> list[str]:
    """The generators' sources first, then the others present (the wild kinds), in a fixed order."""
    return [s for s in SOURCES if s in sources] + sorted(set(sources) - set(SOURCES))


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)))
    for index, (name, points) in enumerate(curves.items()):
        color = f"C{index}"
        for source, style in zip(sources_of([s for p in points for s in p if isinstance(p[s], dict)]), styles):
            if not any(p[source]["pairs"] for p in points):  # a curve focused on other change types
                continue
            xs = [p["pairs_seen"] for p in points]
            ys = [p[source]["exact"] for p in points]  # a dash tuple is no format string: pass it as linestyle
            axis.plot(xs, ys, linestyle=style, marker="o", color=color, label=f"{name}: {source}")
    axis.axhline(0.8, color="grey", linewidth=0.8, linestyle=":", label="bar (80%)")
    axis.set_xscale("log")
    axis.set_xlabel("training pairs seen")
    axis.set_ylabel("validation pairs with every change field right")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from datasets import concatenate_datasets

    # the heads learn the closed-vocabulary part of every ground truth (names and texts are not their classes)
    folders = [load_diffcap(path) for path in args.data]
    joined = {}
    for name in ("train", "validation"):
        parts = [with_head_changes(folder[name]) for folder in folders if name in folder]
        if not parts:
            raise ValueError(f"None of {args.data} has a {name} split")
        joined[name] = concatenate_datasets(parts)
    train = joined["train"].filter(lambda change: bool(change), input_columns="change")
    validation = joined["validation"]
    if args.change_types:
        wanted = set(args.change_types)
        train = train.filter(lambda change_type: change_type in wanted, input_columns="change_type")
        validation = validation.filter(lambda change_type: change_type in wanted, input_columns="change_type")
        if not len(train) or not len(validation):
            raise ValueError(f"No training or validation pairs of change types {sorted(wanted)} in {args.data}")
    vocab, train_labels = change_labels(train["change"])
    validation, eval_labels = known_changes(validation, vocab)
    keep = min(args.max_eval_pairs, len(validation))
    validation, eval_labels = validation.select(range(keep)), eval_labels[:keep]

    # every design reads the same frozen tower, so one feature cache of the union of their layers serves them all
    base_config = OneDiffConfig.from_pretrained(args.base)
    layers = {
        tuple(DESIGNS[name].get("delta_feature_layers", base_config.delta_feature_layers)) for name in args.designs
    }
    union = sorted(set().union(*layers))
    base = OneDiffForConditionalGeneration.from_pretrained(
        args.base, delta_feature_layers=union, ignore_mismatched_sizes=True
    )
    processor = OneDiffProcessor.from_pretrained(args.base)
    cache = Path(args.feature_cache_dir) if args.feature_cache_dir else out / "features"
    features = cache_features(base, processor, train, cache / "train.npy", 16)
    eval_features = cache_features(base, processor, validation, cache / "validation.npy", 16)
    pixels = {"train": {}, "validation": {}}  # per split, the pixel statistics' caches with and without the detail
    details = {
        bool(d.get("delta_pixel_detail")) for d in map(DESIGNS.get, args.designs) if d.get("delta_pixel_statistics")
    }
    for detail in sorted(details):  # cheap: no tower runs
        base.config.delta_pixel_detail = detail
        for name, split in (("train", train), ("validation", validation)):
            path = cache / pixel_cache_name(base.config, name)
            pixels[name][detail] = cache_pixel_statistics(base, processor, split, path)
    del base

    data = {
        "train": (features, cache / "train.npy", pixels["train"]),
        "eval": (
            eval_features,
            cache / "validation.npy",
            pixels["validation"],
            eval_labels,
            validation["source"],
            validation["change_type"],
        ),
    }
    labels = {"train": train_labels}
    results_path = out / "curves.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    # milestone by milestone across the designs, so that an early stop still compares them all at equal budget
    out_of_time = False
    for milestone in args.milestones:
        for name in args.designs:
            results[name] = run_design(name, args, data, labels, vocab, started, milestone)
            record = {"designs": DESIGNS, "train_pairs": len(train), "eval_pairs": len(validation), **results}
            results_path.write_text(json.dumps(record, indent=1) + "\n")
            results = {k: v for k, v in record.items() if k in DESIGNS}
            plot({k: v for k, v in results.items() if v}, out / "curves.png")
            if args.stop_after_minutes is not None and time.perf_counter() - started > args.stop_after_minutes * 60:
                out_of_time = True
                break
        if out_of_time:
            break
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
