"""The default model's card: its metadata is generated from its evaluation report, never typed by hand."""

import json
from pathlib import Path

from huggingface_hub import ModelCard

from onediff_idc.model_card import DEFAULT_REPORT, default_card_data, with_front_matter

REPO = Path(__file__).resolve().parents[1]


def test_model_card_metadata_equals_what_its_eval_report_generates():
    report = json.loads((REPO / DEFAULT_REPORT).read_text())
    card_text = (REPO / "MODEL_CARD.md").read_text()
    assert card_text == with_front_matter(card_text, default_card_data(report)), "run: python -m onediff_idc.model_card"
    values = {r.metric_name: r.metric_value for r in ModelCard.load(REPO / "MODEL_CARD.md").data.eval_results}
    assert values["change accuracy (%)"] == round(100 * report["change_accuracy"]["overall"]["change_accuracy"], 1)
    assert values["CIDEr-D (x100)"] == round(report["metrics"]["overall"]["cider_d_x100"], 1)
    assert values["pointing game (%)"] == round(100 * report["localisation"]["model"]["pointing_game"], 1)
