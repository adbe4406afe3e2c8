"""`onediff eval --model DIR --data DIR [--split test] [--out results.json] [--batch-size N]`.

Generates a caption for every pair of a DiffCap split (batched, left-padded, with a progress bar), then scores:
COCO caption metrics overall, per `source` and per `change_type`; how often "no change" is said on distractor pairs
and not said on change pairs; and, where the data carries ground truth (`change`), change accuracy with per-field
accuracies. Where pairs are marked changed or unchanged (`change_type`), change detection from the pipeline's
change probability (AUROC, accuracy at the threshold); where they record `change_regions`, the change maps'
pointing game and box IoU, beside a random-delta-module baseline (eval/change_detection.py). For a model with change
heads (`delta_change_fields`), also the heads' own accuracy and the captions' fidelity to them. Writes a JSON file
with every prediction and prints a Markdown table.
"""

import json
import time
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from onediff_idc.checkpoints import load_pipeline
from onediff_idc.processing.schema import NO_CHANGE, load_diffcap
from onediff_idc.processing.wild import OBJECT_NOUNS

from .change_accuracy import change_accuracy, heads_fidelity, no_change_accuracy
from .change_detection import DEFAULT_THRESHOLD, change_detection, localisation
from .coco import grouped_coco_caption_scores
from .wild import object_vocabulary, wild_scores


def generate_predictions(
    captioner, split, batch_size: int = 8, max_new_tokens: int = 48, progress: bool = True
) -> list[dict]:
    """The pipeline's output (caption, change probability and, with change heads, the chosen change) for every
    row, greedy, in the row order."""

    def pairs():
        for row in split:
            before, after = row["images"]
            yield {"before": before, "after": after, "prompt": row["prompt"]}

    heads = bool(getattr(captioner.model.config, "delta_change_fields", None))
    outputs = captioner(
        pairs(),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        return_change_probability=True,
        **({"return_change_fields": True} if heads else {}),
    )
    bar = tqdm(outputs, total=len(split), desc="captioning", unit="pair", disable=not progress)
    return list(bar)


def detection_scores(rows: list[dict], probabilities: list[float], threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Change detection overall and per source, over the rows whose change type is known."""
    groups = _groups(rows)["by_source"]

    def scores(indices):
        known = [i for i in indices if rows[i]["change_type"]]
        labels = [rows[i]["change_type"] != NO_CHANGE for i in known]
        return change_detection([probabilities[i] for i in known], labels, threshold) if known else None

    return {"overall": scores(range(len(rows))), "by_source": {k: scores(v) for k, v in groups.items()}}


def fidelity_scores(rows: list[dict], predictions: list[str], chosen: list[dict]) -> dict:
    """`heads_fidelity` overall, per source and per change type, over the rows with a ground-truth change."""
    groups = _groups(rows)

    def scores(indices):
        known = [i for i in indices if rows[i]["change"]]
        if not known:
            return None
        return heads_fidelity(
            [predictions[i] for i in known], [chosen[i] for i in known], [rows[i]["change"] for i in known]
        )

    return {
        "overall": scores(range(len(rows))),
        "by_source": {k: scores(v) for k, v in groups["by_source"].items()},
        "by_change_type": {k: scores(v) for k, v in groups["by_change_type"].items()},
    }


def _groups(rows: list[dict]) -> dict[str, dict[str, list[int]]]:
    by_source, by_type = defaultdict(list), defaultdict(list)
    for i, row in enumerate(rows):
        by_source[row["source"]].append(i)
        if row["change_type"]:
            by_type[row["change_type"]].append(i)
    return {"by_source": dict(by_source), "by_change_type": dict(by_type)}


def score_predictions(rows: list[dict], predictions: list[str], object_nouns: list[str] = ()) -> dict:
    """Every score `onediff eval` reports, for rows with `source`, `change_type`, `references` and `change`;
    `object_nouns`: further names the wild judge counts as naming an object (a wild folder's `object_nouns.json`)."""
    if len(rows) != len(predictions):
        raise ValueError(f"Got {len(predictions)} predictions for {len(rows)} pairs")
    groups = _groups(rows)
    named = {"overall": list(range(len(rows)))}
    named |= {f"source:{k}": v for k, v in groups["by_source"].items()}
    named |= {f"type:{k}": v for k, v in groups["by_change_type"].items()}
    metrics = grouped_coco_caption_scores(predictions, [r["references"] for r in rows], named)

    def subset(indices):
        return [rows[i] for i in indices], [predictions[i] for i in indices]

    def no_change(indices):
        sub_rows, sub_predictions = subset(indices)
        if not any(r["change_type"] for r in sub_rows):
            return None
        return no_change_accuracy(sub_predictions, [r["change_type"] == NO_CHANGE for r in sub_rows])

    def accuracy(indices):
        sub_rows, sub_predictions = subset([i for i in indices if rows[i]["change"]])
        return change_accuracy(sub_predictions, [r["change"] for r in sub_rows]) if sub_rows else None

    wild = [i for i, row in enumerate(rows) if row["source"].startswith("wild-")]
    extra = {}
    if wild:  # the wild evaluation's judge (eval/wild.py), beside the generators' parse
        wild_rows, wild_predictions = subset(wild)
        extra["wild"] = wild_scores(wild_rows, wild_predictions, object_vocabulary(wild_rows) | set(object_nouns))
    return extra | {
        "metrics": {
            "overall": metrics["overall"],
            "by_source": {k: metrics[f"source:{k}"] for k in groups["by_source"]},
            "by_change_type": {k: metrics[f"type:{k}"] for k in groups["by_change_type"]},
        },
        "no_change": {
            "overall": no_change(named["overall"]),
            "by_source": {k: no_change(v) for k, v in groups["by_source"].items()},
        },
        "change_accuracy": {
            "overall": accuracy(named["overall"]),
            "by_source": {k: accuracy(v) for k, v in groups["by_source"].items()},
            "by_change_type": {k: accuracy(v) for k, v in groups["by_change_type"].items()},
        },
        "pairs": {"overall": len(rows), **{f"source:{k}": len(v) for k, v in groups["by_source"].items()}},
    }


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(results: dict) -> str:
    """Caption metrics (x100) and change accuracy per group, then no-change accuracy per source."""
    metrics, accuracy = results["metrics"], results["change_accuracy"]
    lines = [
        "| group | pairs | BLEU-4 | METEOR | ROUGE-L | CIDEr-D | change acc. |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("overall", metrics["overall"], accuracy["overall"], results["pairs"]["overall"])]
    rows += [(f"source {k}", v, accuracy["by_source"].get(k), None) for k, v in metrics["by_source"].items()]
    rows += [(f"type {k}", v, accuracy["by_change_type"].get(k), None) for k, v in metrics["by_change_type"].items()]
    for name, scores, acc, pairs in rows:
        count = pairs if pairs is not None else (acc or {}).get("pairs", "")
        lines.append(
            f"| {name} | {count} | {scores['bleu_4_x100']:.1f} | {scores['meteor_x100']:.1f} | "
            f"{scores['rouge_l_x100']:.1f} | {scores['cider_d_x100']:.1f} | "
            f"{_pct(acc['change_accuracy']) if acc else '–'} |"
        )
    detection = results.get("change_detection") or {}
    detection = [
        (k, v) for k, v in {"overall": detection.get("overall"), **detection.get("by_source", {})}.items() if v
    ]
    if detection:
        threshold = detection[0][1]["threshold"]
        lines += [
            "",
            f"| change detection | AUROC | accuracy at p >= {threshold:g} | changed said changed | unchanged said "
            "unchanged |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {k} | {_pct(v['auroc'])} | {_pct(v['accuracy'])} | {_pct(v['change_recall'])} | "
            f"{_pct(v['no_change_recall'])} |"
            for k, v in detection
        ]
    located = results.get("localisation") or {}
    if located.get("model", {}).get("pairs"):
        lines += ["", "| where it changed | pairs | pointing game | box IoU |", "|---|---:|---:|---:|"]
        lines += [
            f"| {name.replace('_', ' ')} | {v['pairs']} | {_pct(v['pointing_game'])} | {_pct(v['mean_iou'])} |"
            for name, v in located.items()
        ]
    heads = results.get("change_heads") or {}
    heads = [(k, v) for k, v in {"overall": heads.get("overall"), **heads.get("by_source", {})}.items() if v]
    if heads:
        lines += [
            "",
            "| change heads | pairs | heads right | captions right | fidelity | caption = heads' change |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for k, v in heads:
            fidelity = "–" if v["fidelity"] is None else f"{v['fidelity']:.3f}"
            lines.append(
                f"| {k} | {v['pairs']} | {_pct(v['heads_accuracy'])} | {_pct(v['caption_accuracy'])} | {fidelity} | "
                f"{_pct(v['agreement'])} |"
            )
    wild = results.get("wild")
    if wild:
        lines += ["", "| wild group | pairs | right |", "|---|---:|---:|"]
        for group, scores in wild["groups"].items():
            lines.append(f"| {group.replace('_', ' ')} | {scores['pairs']} | {_pct(scores['accuracy'])} |")
        names, synthetic = wild["names"], wild["synthetic_words"]
        lines += [
            "",
            f"Objects named: top-1 {_pct(names['top1'])}, right when named {_pct(names['precision'])} "
            f"({names['named']} of {names['object_pairs']} captions name one); synthetic-scene words in "
            f"{synthetic['captions']} of {synthetic['non_scene_pairs']} captions of non-scene pairs.",
        ]
    no_change = {"overall": results["no_change"]["overall"], **results["no_change"]["by_source"]}
    no_change = [(k, v) for k, v in no_change.items() if v]
    if no_change:
        lines += [
            "",
            "| no-change accuracy | says 'no change' on distractors | does not on changes |",
            "|---|---:|---:|",
        ]
        lines += [f"| {k} | {_pct(v['no_change_recall'])} | {_pct(v['change_recall'])} |" for k, v in no_change]
    return "\n".join(lines)


def run_eval(
    model: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 48,
    limit: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    dataset = load_diffcap(data, splits=(split,))[split]
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    captioner = load_pipeline(model, device)
    start = time.perf_counter()
    outputs = generate_predictions(captioner, dataset, batch_size, max_new_tokens, progress)
    generation_seconds = time.perf_counter() - start
    predictions = [output["generated_text"] for output in outputs]
    probabilities = [output["change_probability"] for output in outputs]
    rows = dataset.remove_columns("images").to_list()
    start = time.perf_counter()
    nouns_file = Path(data) / OBJECT_NOUNS  # a wild folder's every stamp noun: a wrong name from another split
    object_nouns = json.loads(nouns_file.read_text()) if nouns_file.is_file() else []
    results = score_predictions(rows, predictions, object_nouns)
    results["change_detection"] = detection_scores(rows, probabilities)
    if outputs and "change_fields" in outputs[0]:
        results["change_heads"] = fidelity_scores(rows, predictions, [output["change_fields"] for output in outputs])
    metrics_seconds = time.perf_counter() - start
    start = time.perf_counter()
    located = [i for i, row in enumerate(rows) if row["change_regions"]]
    if located:
        pairs = [tuple(dataset[i]["images"]) for i in located]
        regions = [rows[i]["change_regions"] for i in located]
        results["localisation"] = localisation(
            captioner.model, captioner.processor, pairs, regions, batch_size=batch_size, progress=progress
        )
    results |= {
        "model": str(model),
        "data": str(data),
        "split": split,
        "seconds": {
            "generation": generation_seconds,
            "metrics": metrics_seconds,
            "localisation": time.perf_counter() - start,
        },
        "predictions": [
            {
                "id": r["id"],
                "source": r["source"],
                "change_type": r["change_type"],
                "prediction": p,
                "change_probability": probability,
                "references": r["references"],
                "change": r["change"],
                **({"change_fields": output["change_fields"]} if "change_fields" in output else {}),
            }
            for r, p, probability, output in zip(rows, predictions, probabilities, outputs)
        ],
    }
    if out is not None:
        Path(out).write_text(json.dumps(results, indent=1) + "\n")
    return results
