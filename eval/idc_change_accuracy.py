"""`evaluate` module: change accuracy of difference captions on generated pairs with ground truth.

    metric = evaluate.load(IDC_CHANGE_ACCURACY_METRIC)
    metric.compute(predictions=["the small red metal cube moved"], references=[row["change"]])

`references` are the dataset's `change` fields (JSON ground truth). Returns `change_accuracy` (share of predictions
the caption parser maps to exactly the true change), `unparseable` and per-field `field_accuracy`.
"""

import datasets
import evaluate

from onediff_idc.eval.change_accuracy import change_accuracy

_DESCRIPTION = """Parses each predicted caption back to a structured change (type, object attributes, new value or edit
and strength) with the inverse of the DiffCap generators' phrasings and compares it with the ground truth."""


class IdcChangeAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description="predictions: list[str]; references: list[str], the `change` JSON of each pair",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        return change_accuracy(list(predictions), list(references))
