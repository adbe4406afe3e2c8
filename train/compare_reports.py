"""Compare change-head runs of `train/pretrain_delta.py` side by side: each run's `report.json` (validation after
every epoch, by change type) into one JSON file and a Markdown table, each ablation beside the run it ablates.

    python train/compare_reports.py --out docs/ablations-v3 \
        "step 1=runs/default-v3-heads" "step 1 without the pixel statistics=runs/default-v3-heads-no-pixels"

Runs compared with each other must share their validation split (the same `dataset_path`); a run without a
`report.json` (not finished) is an error, not a blank row.
"""

import argparse
import json
from pathlib import Path


def load_run(spec: str) -> tuple[str, dict]:
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise SystemExit(f"expected NAME=RUN_DIR, got {spec!r}")
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: has {folder} finished training?")
    report = json.loads(path.read_text())
    if not report.get("epochs"):
        raise SystemExit(f"{path} holds no validation (the run had no validation split)")
    return name, {"run": folder, **report}


def summarise(runs: dict[str, dict]) -> dict:
    """Every field right per epoch, and after the last epoch by change type (share of that type's pairs)."""
    summary = {}
    for name, report in runs.items():
        last = report["epochs"][-1]
        summary[name] = {
            "run": report["run"],
            "pairs": last["pairs"],
            "exact_by_epoch": [round(epoch["exact"], 4) for epoch in report["epochs"]],
            "fields": {field: round(value, 4) for field, value in last["fields"].items()},
            "by_change_type": {t: round(v["exact"], 4) for t, v in last["by_change_type"].items()},
            "type_pairs": {t: v["pairs"] for t, v in last["by_change_type"].items()},
        }
    pairs = {s["pairs"] for s in summary.values()}
    if len(pairs) > 1:
        raise SystemExit(f"the runs were validated on different numbers of pairs ({sorted(pairs)}): not comparable")
    return summary


def markdown(summary: dict) -> str:
    types = sorted({t for s in summary.values() for t in s["by_change_type"]})
    counts = next(iter(summary.values()))["type_pairs"]
    header = ["run", "every field right, by epoch (%)", *[f"{t} ({counts.get(t, 0)})" for t in types]]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(types)]
    for name, s in summary.items():
        epochs = ", ".join(f"{100 * e:.1f}" for e in s["exact_by_epoch"])
        cells = [f"{100 * s['by_change_type'][t]:.1f}" if t in s["by_change_type"] else "" for t in types]
        lines.append("| " + " | ".join([name, epochs, *cells]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR (a pretrain_delta.py output_dir), in table order")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    runs = dict(load_run(spec) for spec in args.runs)
    if len(runs) != len(args.runs):
        raise SystemExit("two runs share a name")
    summary = summarise(runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
