"""Change accuracy: predictions parsed back to the ground-truth change of generated pairs.

On templated captions CIDEr-D runs into the hundreds even when the object named is wrong; the honest score is
whether the caption states exactly the true change (type, every attribute, new value). Predictions go through the
data module's caption parser (the inverse of the generators' phrasings); an unparseable prediction is wrong.
"""

import json
from collections import Counter

from onediff_idc.processing.phrasing import parse_caption, says_no_change


def _ground_truth(change: str | dict) -> dict:
    if isinstance(change, dict):
        return change
    if not change:
        raise ValueError("A pair without ground truth (empty `change`) cannot be scored for change accuracy")
    return json.loads(change)


def change_accuracy(predictions: list[str], changes: list[str | dict]) -> dict:
    """Share of predictions that state exactly the true change, per-field accuracies and the unparseable share.

    `changes` are the dataset's `change` fields (JSON) or dicts. Per-field accuracy counts, over the pairs whose
    ground truth has that field, the predictions that parse to the same value.
    """
    if len(predictions) != len(changes):
        raise ValueError(f"Got {len(predictions)} predictions but {len(changes)} ground-truth changes")
    if not predictions:
        raise ValueError("No predictions to score")
    exact, unparseable = 0, 0
    field_total, field_right = Counter(), Counter()
    for prediction, change in zip(predictions, changes):
        truth, parsed = _ground_truth(change), parse_caption(prediction)
        exact += parsed == truth
        unparseable += parsed["type"] == "unparseable"
        for field, value in truth.items():
            field_total[field] += 1
            field_right[field] += parsed.get(field) == value
    n = len(predictions)
    return {
        "change_accuracy": exact / n,
        "unparseable": unparseable / n,
        "field_accuracy": {field: field_right[field] / field_total[field] for field in sorted(field_total)},
        "pairs": n,
    }


def heads_fidelity(predictions: list[str], chosen: list[dict], changes: list[str | dict]) -> dict:
    """How faithfully captions phrase the change a model's change heads chose (`delta_change_fields`).

    `heads_accuracy`: share of pairs whose chosen change is exactly the truth; `fidelity`: the captions' change
    accuracy over the heads' (1.0: the caption loses nothing the heads knew); `agreement`: share of captions that
    parse to exactly the chosen change, right or wrong.
    """
    if not len(predictions) == len(chosen) == len(changes):
        raise ValueError(f"Got {len(predictions)} captions, {len(chosen)} chosen changes, {len(changes)} truths")
    if not predictions:
        raise ValueError("No predictions to score")
    truths = [_ground_truth(change) for change in changes]
    parsed = [parse_caption(prediction) for prediction in predictions]
    heads = sum(c == t for c, t in zip(chosen, truths)) / len(truths)
    captions = sum(p == t for p, t in zip(parsed, truths)) / len(truths)
    return {
        "heads_accuracy": heads,
        "caption_accuracy": captions,
        "fidelity": captions / heads if heads else None,
        "agreement": sum(p == c for p, c in zip(parsed, chosen)) / len(chosen),
        "pairs": len(truths),
    }


def no_change_accuracy(predictions: list[str], is_no_change: list[bool]) -> dict:
    """How often "no change" is said on distractor pairs, and not said on change pairs."""
    if len(predictions) != len(is_no_change):
        raise ValueError(f"Got {len(predictions)} predictions but {len(is_no_change)} labels")
    said = [says_no_change(p) for p in predictions]
    distractors = [s for s, label in zip(said, is_no_change) if label]
    changes = [not s for s, label in zip(said, is_no_change) if not label]
    return {
        "no_change_recall": sum(distractors) / len(distractors) if distractors else None,
        "change_recall": sum(changes) / len(changes) if changes else None,
        "no_change_pairs": len(distractors),
        "change_pairs": len(changes),
    }
