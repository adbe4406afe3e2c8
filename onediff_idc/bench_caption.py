"""`onediff bench --caption-path`: what a user of `onediff caption` waits for, measured side by side in one run.

- import floor: a fresh `python -c "import torch, transformers"` (nothing of ours can start faster), and the
  model-class floor: that plus transformers' `PreTrainedModel`, `GenerationMixin` and `ProcessorMixin`, which any
  transformers model, ours included, imports;
- cold start: a fresh `onediff caption BEFORE AFTER --model DIR` (imports, load, one caption), and its ratio to
  the floor;
- throughput: pairs/s of the batched pipeline at batch 1, 8 and 16, model already loaded, captions only and with
  the change probability and change box that every line of `onediff caption --out` carries.
Medians over `repeats`; the example pairs in `examples/` (or any `pairs`) are the inputs.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _fresh_process_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def example_pairs(folder: Path = EXAMPLES) -> list[dict]:
    befores = sorted(folder.glob("*_before.png"))
    if not befores:
        raise ValueError(f"no *_before.png / *_after.png pairs in {folder}")
    return [{"before": str(b), "after": str(b.with_name(b.name.replace("_before", "_after")))} for b in befores]


def caption_path_bench(
    model_dir: str | Path, repeats: int = 3, batch_sizes: tuple[int, ...] = (1, 8, 16), pairs_per_run: int = 16
) -> dict:
    pairs = example_pairs()
    floor = _fresh_process_seconds([sys.executable, "-c", "import torch, transformers"], repeats)
    model_classes = (
        "import torch, transformers; from transformers import PreTrainedModel, GenerationMixin, ProcessorMixin"
    )
    class_floor = _fresh_process_seconds([sys.executable, "-c", model_classes], repeats)
    cold = _fresh_process_seconds(
        [
            sys.executable,
            "-m",
            "onediff_idc.cli",
            "caption",
            pairs[0]["before"],
            pairs[0]["after"],
            "--model",
            str(model_dir),
        ],
        repeats,
    )
    from onediff_idc.checkpoints import load_pipeline

    pipe = load_pipeline(model_dir)
    inputs = (pairs * pairs_per_run)[:pairs_per_run]
    pipe(inputs[:2], batch_size=2)  # warm-up
    change_fields = {"return_change_probability": True, "return_change_map": True}
    throughput = {"captions": {}, "with_change_fields": {}}
    for batch_size in batch_sizes:
        for name, settings in (("captions", {}), ("with_change_fields", change_fields)):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                pipe(inputs, batch_size=batch_size, **settings)
                times.append(time.perf_counter() - started)
            throughput[name][f"batch_{batch_size}"] = round(pairs_per_run / statistics.median(times), 3)
    return {
        "model": str(model_dir),
        "repeats": repeats,
        "import_floor_seconds": round(floor, 3),
        "model_class_floor_seconds": round(class_floor, 3),
        "cold_caption_seconds": round(cold, 3),
        "cold_over_floor": round(cold / floor, 2),
        "pairs_per_second": throughput["captions"],
        "pairs_per_second_with_change_fields": throughput["with_change_fields"],
        "pairs_per_run": pairs_per_run,
    }


def markdown(report: dict) -> str:
    start = (
        "| import floor (s) | model-class floor (s) | cold `onediff caption` (s) | cold / floor |\n"
        "|---:|---:|---:|---:|\n"
        f"| {report['import_floor_seconds']} | {report['model_class_floor_seconds']} | "
        f"{report['cold_caption_seconds']} | {report['cold_over_floor']}x |"
    )
    batches = " | ".join(k.replace("batch_", "batch ") for k in report["pairs_per_second"])
    rows = [("captions", report["pairs_per_second"])]
    rows.append(("+ change probability and box", report["pairs_per_second_with_change_fields"]))
    throughput = [f"| pairs/s | {batches} |", f"|---|{'---:|' * len(report['pairs_per_second'])}"]
    throughput += [f"| {name} | {' | '.join(str(v) for v in rates.values())} |" for name, rates in rows]
    return start + "\n\n" + "\n".join(throughput)
