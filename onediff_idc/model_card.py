"""Model cards written from measurements.

Every card is a huggingface_hub `ModelCard` whose metadata (`ModelCardData`, with one `EvalResult` per metric) and
results table are read from `onediff eval --out` reports, so the numbers on a card are the numbers measured. A
checkpoint that training wrote carries `onediff_training.json` (the script, its arguments, the base models and the
data), which becomes the card's recipe section; `onediff card` (re)writes a folder's README.md from it and any
evaluation reports.

    onediff eval --model runs/sft/final --data runs/heldout --out eval.json
    onediff card runs/sft/final --eval eval.json
"""

import json
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

TRAINING_RECORD = "onediff_training.json"
TASK = {"task_type": "image-text-to-text", "task_name": "image difference captioning"}
TAGS = ["image-difference-captioning", "onediff", "change-captioning", "custom_code"]

# (where in an `onediff eval` report, metric type, metric name, factor to the unit in the name)
METRICS = [
    (("metrics", "overall", "cider_d_x100"), "cider", "CIDEr-D (x100)", 1),
    (("metrics", "overall", "bleu_4_x100"), "bleu", "BLEU-4 (x100)", 1),
    (("metrics", "overall", "meteor_x100"), "meteor", "METEOR (x100)", 1),
    (("metrics", "overall", "rouge_l_x100"), "rouge", "ROUGE-L (x100)", 1),
    (("change_accuracy", "overall", "change_accuracy"), "accuracy", "change accuracy (%)", 100),
    (
        ("change_accuracy", "by_source", "scene-change", "change_accuracy"),
        "accuracy",
        "change accuracy, scene changes (%)",
        100,
    ),
    (
        ("change_accuracy", "by_source", "photo-edit", "change_accuracy"),
        "accuracy",
        "change accuracy, photo edits (%)",
        100,
    ),
    (("no_change", "overall", "no_change_recall"), "recall", "no-change pairs said so (%)", 100),
    (("change_detection", "overall", "auroc"), "roc_auc", "change detection AUROC (x100)", 100),
    (("localisation", "model", "pointing_game"), "accuracy", "pointing game (%)", 100),
]

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

## How to use

```python
from transformers import pipeline

pipe = pipeline("image-difference-captioning", model="{{ repo_id }}", trust_remote_code=True)
pipe({"before": "before.png", "after": "after.png"})
```

or, with the `onediff-idc` package and this folder downloaded: `onediff caption before.png after.png --model DIR`.

## Architecture

{{ architecture }}

## Training

{{ training }}

## Evaluation

{{ evaluation }}

## Intended use and limits

{{ intended_use }}
"""

INTENDED_USE = (
    "Describing, in one English sentence, what changed between two closely related images (a before and an after "
    "picture of the same scene): the kinds of change its training data held. It states what it sees, not why, and "
    "it is not a safety or surveillance tool. On pairs unlike its training data it describes the closest change it "
    "knows, which may be wrong: measure it on your own pairs (`onediff eval`) before relying on it."
)


def _lookup(report: dict, path: tuple):
    value = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def dataset_label(report: dict) -> str:
    """How a report names its evaluation data: its `dataset_name`, else the data folder and split."""
    return report.get("dataset_name") or f"{Path(str(report.get('data', 'data'))).name} ({report.get('split', 'test')})"


def eval_results(report: dict) -> list[EvalResult]:
    """One `EvalResult` per metric an `onediff eval --out` report holds (rounded to one decimal)."""
    results = []
    for path, metric_type, metric_name, factor in METRICS:
        value = _lookup(report, path)
        if value is None:
            continue
        results.append(
            EvalResult(
                **TASK,
                dataset_type=report.get("dataset_type", "onediff-diffcap"),
                dataset_name=dataset_label(report),
                dataset_split=report.get("split"),
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(float(value) * factor, 1),
            )
        )
    return results


def results_table(results: list[EvalResult]) -> str:
    """The card's results as a Markdown table, from the same `EvalResult`s as its metadata."""
    if not results:
        return (
            "Not evaluated yet. Measure it with `onediff eval --model DIR --data HELD_OUT --out eval.json` and "
            "write the numbers into this card with `onediff card DIR --eval eval.json`."
        )
    lines = ["| data | split | metric | value |", "|---|---|---|---:|"]
    for result in results:
        lines.append(
            f"| {result.dataset_name} | {result.dataset_split or ''} | {result.metric_name} | {result.metric_value} |"
        )
    return "\n".join(lines)


def architecture_table(config: dict) -> str:
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    rows = [
        (
            "vision tower (siamese, shared)",
            f"{vision.get('model_type', '?')}, {vision.get('hidden_size', '?')} wide, "
            f"{vision.get('num_hidden_layers', '?')} layers, patch {vision.get('patch_size', '?')}",
        ),
    ]
    if config.get("use_image_tokens", True):
        pooled = config.get("image_token_pooling", 1)
        rows.append(("image tokens", f"layer {config.get('vision_feature_layer')}, pooled {pooled}x"))
    else:
        rows.append(("image tokens", "none (the language model reads the delta tokens alone)"))
    if config.get("use_delta_module", True):
        rows.append(
            (
                "Visual Delta Module",
                f"{config.get('num_delta_queries')} queries, {config.get('delta_num_hidden_layers')} blocks of width "
                f"{config.get('delta_hidden_size')}, reading layers {config.get('delta_feature_layers')}",
            )
        )
        if config.get("delta_change_fields"):
            fields = config["delta_change_fields"]
            rows.append(
                (
                    "change heads (bottleneck)",
                    f"{len(fields)} fields ({', '.join(fields)}); delta token k: field k's chosen value",
                )
            )
    rows.append(
        (
            "language model",
            f"{text.get('model_type', '?')}, {text.get('hidden_size', '?')} wide, "
            f"{text.get('num_hidden_layers', '?')} layers",
        )
    )
    return "\n".join(["| part | what |", "|---|---|", *(f"| {part} | {what} |" for part, what in rows)])


def training_section(record: dict | None) -> str:
    if not record:
        return "No training record in this folder (`onediff_training.json`): the recipe that made it is unknown."
    arguments = yaml.safe_dump(record.get("arguments", {}), sort_keys=True).strip()
    lines = [
        f"Made by `{record.get('script', '?')}` of the `onediff-idc` package"
        + (f" from `{record['start']}`" if record.get("start") else "")
        + (f" on `{', '.join(record['datasets'])}`" if record.get("datasets") else "")
        + ", with these arguments (the recipe; rerun it with the same script):",
        "",
        "```yaml",
        arguments,
        "```",
    ]
    return "\n".join(lines)


def hub_name(path: str | None) -> str | None:
    """A tower named by a Hub id stays one; a local folder gives its own config's `_name_or_path` or its name."""
    if not path:
        return None
    folder = Path(path)
    if not folder.exists():
        return str(path)
    config = folder / "config.json"
    if config.is_file():
        recorded = json.loads(config.read_text()).get("_name_or_path")
        if recorded and not Path(recorded).exists() and recorded.count("/") == 1:
            return recorded
    return folder.name


def build_model_card(
    checkpoint: str | Path,
    reports: list[dict] = (),
    *,
    repo_id: str | None = None,
    model_name: str | None = None,
    summary: str | None = None,
    base_models: list[str] | None = None,
    datasets: list[str] | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """The card of a OneDiff checkpoint folder: its config, its training record (if any) and evaluation reports."""
    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    record_path = checkpoint / TRAINING_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if base_models is None:
        base_models = (record or {}).get("base_models") or []
    if datasets is None:
        datasets = (record or {}).get("datasets") or []
    results = [result for report in reports for result in eval_results(report)]
    name = model_name or repo_id or checkpoint.name
    card_data = ModelCardData(
        model_name=name,
        license=license,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=TAGS,
        base_model=[b for b in base_models if b] or None,
        datasets=[d for d in datasets if d] or None,
        eval_results=results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        model_name=name,
        repo_id=repo_id or "path/to/this/folder",
        summary=summary
        or (
            "An image difference captioning model in the architecture of OneDiff (Hu et al., arXiv 2407.05645): a "
            "siamese vision tower, a Visual Delta Module and a language model. Give it a before and an after image "
            "and it says what changed. Its numbers below are read from `onediff eval` reports."
        ),
        architecture=architecture_table(config),
        training=training_section(record),
        evaluation=results_table(results),
        intended_use=INTENDED_USE,
    )


def write_model_card(checkpoint: str | Path, reports: list[dict] = (), **kwargs) -> Path:
    """Writes `<checkpoint>/README.md` (see `build_model_card`)."""
    path = Path(checkpoint) / "README.md"
    build_model_card(checkpoint, reports, **kwargs).save(path)
    return path


def load_reports(paths: list[str | Path]) -> list[dict]:
    reports = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"No evaluation report at {path} (write one with `onediff eval --out`)")
        report = json.loads(path.read_text())
        if not isinstance(report, dict) or "metrics" not in report:
            raise ValueError(f"{path} is not an `onediff eval --out` report (no `metrics`)")
        reports.append(report)
    return reports


def record_training(out: str | Path, script: str, arguments: dict, start: str | None, base_models, datasets) -> None:
    """What `final/` folders carry so that their card can say how they were made."""
    record = {
        "script": script,
        "start": start,
        "base_models": [b for b in base_models if b],
        "datasets": [d for d in datasets if d],
        "arguments": {k: v for k, v in arguments.items() if v is not None},
    }
    (Path(out) / TRAINING_RECORD).write_text(json.dumps(record, indent=1, default=str) + "\n")


def push_checkpoint(
    checkpoint: str | Path,
    repo_id: str,
    *,
    to_folder: str | Path | None = None,
    private: bool = False,
    token: str | None = None,
) -> str:
    """
    Publishes a whole OneDiff checkpoint (a training run's merged `final/` or an export) as a model repo: weights,
    processor, remote code and card (written from its record if it has none). A LoRA adapter folder is refused: it
    would not load without its base. With `to_folder`, the exact files are written there instead (a local repo).
    """
    from onediff_idc.hub import publish_folder

    checkpoint = Path(checkpoint)
    if (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "config.json").is_file():
        raise ValueError(
            f"{checkpoint} holds only a LoRA adapter; push the merged model instead (the run's final/ folder)"
        )
    if not (checkpoint / "config.json").is_file() or not any(checkpoint.glob("*.safetensors")):
        raise ValueError(f"{checkpoint} is not a OneDiff checkpoint (config.json and *.safetensors expected)")
    if (checkpoint / "adapter_config.json").is_file():
        raise ValueError(f"{checkpoint} mixes an adapter with a model; push a merged folder (final/)")
    if not (checkpoint / "README.md").is_file():
        write_model_card(checkpoint, repo_id=repo_id)
    return publish_folder(checkpoint, repo_id, "model", to_folder=to_folder, private=private, token=token)


# ---- the embedded default model's card (MODEL_CARD.md): its metadata generated from its evaluation report ---------

DEFAULT_REPORT = "docs/eval-default-s1.json"  # onediff eval of the shipped weights on the held-out seed-1 split
DEFAULT_BASE_MODELS = [
    "facebook/dinov2-small",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "sentence-transformers/all-MiniLM-L6-v2",
]


def default_card_data(report: dict) -> ModelCardData:
    report = {
        **report,
        "dataset_name": f"onediff data build, held-out seed 1 ({report['split']}, {report['pairs']['overall']} pairs)",
    }
    return ModelCardData(
        model_name="onediff-default (DINOv2-S + SmolLM2-135M)",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=TAGS,
        base_model=DEFAULT_BASE_MODELS,
        eval_results=eval_results(report),
    )


def with_front_matter(card_text: str, card_data: ModelCardData) -> str:
    """`card_text` with its YAML front matter replaced by `card_data`'s."""
    body = card_text.split("\n---\n", 1)[1] if card_text.startswith("---\n") else card_text
    return f"---\n{card_data.to_yaml()}\n---\n{body}"


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(description="rewrite MODEL_CARD.md's metadata from the default model's report")
    parser.add_argument("--report", default=DEFAULT_REPORT, help="`onediff eval --out` report of the shipped weights")
    parser.add_argument(
        "--cards",
        nargs="+",
        default=["MODEL_CARD.md", "onediff_idc/default_weights/MODEL_CARD.md"],
        help="card files to update (the repository's and the package's copy)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    data = default_card_data(load_reports([args.report])[0])
    for card in args.cards:
        Path(card).write_text(with_front_matter(Path(card).read_text(), data))
        print(f"updated {card}")


if __name__ == "__main__":
    main()
