"""Evaluation (installed as `onediff_idc.eval`): the COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) as local
`evaluate` modules wrapping pycocoevalcap, per-change-type scores and change accuracy. Built out by the eval issue."""
