"""The default model's bar over held-out seeds: mean and spread of `onediff eval` reports, one per seed.

    python -m onediff_idc.eval.seeds runs/eval-s1.json runs/eval-s2.json runs/eval-s3.json \
        [--debian runs/eval-debian-s1.json ...] [--out summary.json]

Each report is `onediff eval --out` on a split generated with a seed never used in training (`onediff data build
--seed N --eval-only`). `--debian` reports are of photo edits on the held-out Debian photographs alone (`--photos
runs/photos --photos-only`). Prints a Markdown table (one row per seed, then mean ± sample standard deviation) of
what the bar asks: change accuracy of scene changes (overall and the weakest type) and of photo edits (overall, each
edit type and the global edits: brightness, flip, blur, saturation), "no change" said both ways, and for a model with
change heads the heads' accuracy and the captions' fidelity to them; then which parts of the bar hold.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from onediff_idc.processing.schema import NO_CHANGE

GLOBAL_EDITS = ("brightness", "flip", "blur", "saturation")  # one edit over the whole photograph
BAR = {"scene": 0.8, "scene_weakest_type": 0.6, "no_change": 0.95, "photo": 0.8, "debian_global": 0.8, "fidelity": 0.95}


def _accuracy(groups: dict, names) -> float | None:
    """Change accuracy pooled over the groups `names` (weighted by their pairs); None if none has pairs."""
    present = [groups[name] for name in names if name in groups and groups[name]["pairs"]]
    pairs = sum(group["pairs"] for group in present)
    return sum(group["change_accuracy"] * group["pairs"] for group in present) / pairs if pairs else None


def seed_scores(report: dict) -> dict:
    """What the bar reads of one `onediff eval` report (fractions; None where the report has no such pairs)."""
    sources = {p["change_type"]: p["source"] for p in report["predictions"] if p["change_type"] != NO_CHANGE}
    by_type = report["change_accuracy"]["by_change_type"]
    scene_types = sorted(t for t, source in sources.items() if source == "scene-change")
    photo_types = sorted(t for t, source in sources.items() if source == "photo-edit")
    by_source = report["change_accuracy"]["by_source"]
    said = report["no_change"]["overall"]
    scores = {
        "change_accuracy": report["change_accuracy"]["overall"]["change_accuracy"],
        "scene": _accuracy(by_source, ["scene-change"]),
        "scene_weakest_type": min((by_type[t]["change_accuracy"] for t in scene_types), default=None),
        "photo": _accuracy(by_source, ["photo-edit"]),
        "global_edits": _accuracy(by_type, GLOBAL_EDITS),
        "no_change_said_on_unchanged": said["no_change_recall"] if said["no_change_pairs"] else None,
        "no_change_not_said_on_changed": said["change_recall"] if said["change_pairs"] else None,
        "types": {t: by_type[t]["change_accuracy"] for t in [*scene_types, *photo_types]},
    }
    heads = (report.get("change_heads") or {}).get("overall")
    if heads:
        scores["heads_accuracy"] = heads["heads_accuracy"]
        scores["fidelity"] = heads["fidelity"]
    return scores


def mean_and_spread(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


COLUMNS = {
    "change_accuracy": "change acc.",
    "scene": "scene",
    "scene_weakest_type": "weakest scene type",
    "photo": "photo",
    "global_edits": "global edits",
    "no_change_said_on_unchanged": '"no change" on unchanged',
    "no_change_not_said_on_changed": "not on changed",
    "heads_accuracy": "heads",
    "fidelity": "fidelity",
}


def summarize(reports: list[dict], debian: list[dict] = ()) -> dict:
    """Per-seed scores, their mean and spread, per-type means, and which parts of the bar hold (on the means)."""
    if not reports:
        raise ValueError("Give at least one `onediff eval` report")
    seeds = [seed_scores(report) for report in reports]
    names = [name for name in COLUMNS if any(seed.get(name) is not None for seed in seeds)]
    summary = {name: mean_and_spread([seed.get(name) for seed in seeds]) for name in names}
    types = sorted({t for seed in seeds for t in seed["types"]})
    by_type = {t: mean_and_spread([seed["types"].get(t) for seed in seeds]) for t in types}
    debian_global = mean_and_spread([seed_scores(report)["global_edits"] for report in debian])

    def mean(name: str) -> float | None:  # None where no report has such pairs (e.g. photo edits only)
        return summary.get(name, (None, None))[0]

    said = [mean("no_change_said_on_unchanged"), mean("no_change_not_said_on_changed")]
    checks = {
        "scene": mean("scene"),
        "scene_weakest_type": mean("scene_weakest_type"),
        "no_change": None if None in said else min(said),
        "photo": mean("photo"),
        "debian_global": debian_global[0],
        "fidelity": mean("fidelity"),
    }
    bar = {name: (None if value is None else value >= BAR[name]) for name, value in checks.items()}
    return {
        "seeds": seeds,
        "mean_sd": summary,
        "types": by_type,
        "debian_global_edits": debian_global,
        "bar": bar,
        "data": [report.get("data") for report in reports],
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown(summary: dict) -> str:
    names = list(summary["mean_sd"])
    lines = [
        "| seed data | " + " | ".join(COLUMNS[n] for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for data, seed in zip(summary["data"], summary["seeds"]):
        lines.append(f"| {data} | " + " | ".join(_pct(seed.get(n)) for n in names) + " |")
    means = [f"{_pct(m)} ± {_pct(s)}" for m, s in summary["mean_sd"].values()]
    lines.append("| mean ± sd | " + " | ".join(means) + " |")
    lines += ["", "| change type | " + " | ".join(summary["types"]) + " |", "|---|" + "---:|" * len(summary["types"])]
    lines.append("| mean ± sd | " + " | ".join(f"{_pct(m)} ± {_pct(s)}" for m, s in summary["types"].values()) + " |")
    mean, spread = summary["debian_global_edits"]
    if mean is not None:
        lines += ["", f"Global edits on the held-out Debian photographs alone: {_pct(mean)} ± {_pct(spread)}"]
    held = ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in summary["bar"].items() if ok is not None)
    return "\n".join([*lines, "", f"Bar (on the means): {held}"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="`onediff eval --out` reports, one per held-out seed")
    parser.add_argument("--debian", nargs="*", default=[], help="reports of Debian-only photo-edit test splits")
    parser.add_argument("--out", default=None, help="write the summary (JSON) here")
    args = parser.parse_args(argv)
    load = lambda paths: [json.loads(Path(p).read_text()) for p in paths]  # noqa: E731
    summary = summarize(load(args.reports), load(args.debian))
    print(markdown(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
