"""Evaluation (installed as `onediff_idc.eval`): the COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) as local
`evaluate` modules wrapping pycocoevalcap, per-source and per-change-type scores, no-change accuracy and change
accuracy, and the `onediff eval` runner."""

from pathlib import Path

# `evaluate.load(IDC_CAPTION_METRIC)` / `evaluate.load(IDC_CHANGE_ACCURACY_METRIC)`: local modules, no Hub
IDC_CAPTION_METRIC = str(Path(__file__).with_name("idc_caption.py"))
IDC_CHANGE_ACCURACY_METRIC = str(Path(__file__).with_name("idc_change_accuracy.py"))
