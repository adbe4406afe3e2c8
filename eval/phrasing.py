"""Phrasing accuracy of a change-bottleneck model: how often its language model puts a *given* change into words.

    python -m onediff_idc.eval.phrasing --model DIR --data DIR [--split validation] [--limit 500]

The delta tokens are set to each pair's true change (`change_labels`) instead of the heads' choice and no image is
read, so the score isolates the language model: the ceiling of the captions' fidelity to the heads. The captions go
through the same parser as `onediff eval`'s change accuracy; the report holds it overall, per source and per change
type, with the captions that missed.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from modeling_onediff.pipeline_onediff import DEFAULT_PROMPT
from onediff_idc.processing.phrasing import parse_caption
from onediff_idc.processing.schema import head_change, load_diffcap

from .change_accuracy import change_accuracy


def phrase_changes(model, processor, prompts: list[str], changes: list[str], max_new_tokens: int = 48) -> list[str]:
    """Greedy captions of one batch, each phrasing the given change (JSON) in answer to its prompt."""
    texts = []
    for prompt in prompts:
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": prompt or DEFAULT_PROMPT}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        texts.append(processor.expand_placeholders(text, num_image_tokens=0))
    batch = processor.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
    labels = torch.tensor([model.config.encode_change(change) for change in changes])
    inputs_embeds = model.embed_changes(batch["input_ids"], labels)
    with torch.no_grad():
        generated = model.generate(**batch, inputs_embeds=inputs_embeds, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = generated[:, batch["input_ids"].shape[1] :]
    return [text.strip() for text in processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def phrasing_accuracy(
    model, processor, rows: list[dict], batch_size: int = 16, max_new_tokens: int = 48, progress: bool = True
) -> dict:
    """Change accuracy of captions generated from the rows' true changes, overall, per source and per change type."""
    if not model.config.delta_change_fields or model.config.use_image_tokens:
        raise ValueError("Phrasing accuracy needs a model with `delta_change_fields` and `use_image_tokens=False`")
    rows = [{**row, "change": json.dumps(head_change(row["change"]))} for row in rows if row["change"]]
    rows = [row for row in rows if model.config.knows_change(row["change"])]  # only changes it can state
    if not rows:
        raise ValueError("No pair carries a ground-truth `change` the model's change fields can state")
    predictions = []
    for start in tqdm(range(0, len(rows), batch_size), desc="phrasing", disable=not progress):
        batch = rows[start : start + batch_size]
        predictions += phrase_changes(
            model, processor, [r["prompt"] for r in batch], [r["change"] for r in batch], max_new_tokens
        )
    groups = defaultdict(list)
    for i, row in enumerate(rows):
        groups[f"source:{row['source']}"].append(i)
        groups[f"type:{row['change_type']}"].append(i)

    def score(indices):
        return change_accuracy([predictions[i] for i in indices], [rows[i]["change"] for i in indices])

    return {
        "overall": score(range(len(rows))),
        "by_source": {k.split(":", 1)[1]: score(v) for k, v in groups.items() if k.startswith("source:")},
        "by_change_type": {k.split(":", 1)[1]: score(v) for k, v in groups.items() if k.startswith("type:")},
        "misses": [
            {"id": row["id"], "change": row["change"], "caption": caption}
            for row, caption in zip(rows, predictions)
            if parse_caption(caption) != json.loads(row["change"])
        ],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a OneDiff checkpoint with change heads")
    parser.add_argument("--data", required=True, help="a generated DiffCap folder (pairs with `change`)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=None, help="write the report (JSON) here")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    model = OneDiffForConditionalGeneration.from_pretrained(args.model).eval()
    processor = OneDiffProcessor.from_pretrained(args.model)
    split = load_diffcap(args.data, splits=(args.split,))[args.split].remove_columns("images")
    if args.limit is not None:
        split = split.select(range(min(args.limit, len(split))))
    report = phrasing_accuracy(model, processor, split.to_list(), args.batch_size)
    summary = {k: v["change_accuracy"] for k, v in {"overall": report["overall"], **report["by_source"]}.items()}
    print(json.dumps({"phrasing_accuracy": summary, "misses": len(report["misses"])}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
