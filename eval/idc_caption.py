"""`evaluate` module: COCO caption metrics for image difference captioning, via pycocoevalcap.

    import evaluate
    from onediff_idc.eval import IDC_CAPTION_METRIC   # the path of this file
    metric = evaluate.load(IDC_CAPTION_METRIC)         # local, offline
    metric.compute(predictions=["the red cube moved"], references=[["the red cube moved", "a cube moved"]])

Returns BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D raw (`bleu_4`, `meteor`, `rouge_l`, `cider_d`) and x100
(`bleu_4_x100` ...), corpus-level with every reference. `spice=True` adds SPICE when its models are installed.
"""

import datasets
import evaluate

from onediff_idc.eval.coco import coco_caption_scores

_DESCRIPTION = """The COCO caption toolkit's metrics (pycocoevalcap: PTB tokenizer, BLEU-1..4 with the closest
reference length, METEOR 1.5, ROUGE-L with beta 1.2, CIDEr-D), as used by every image difference captioning paper.
CIDEr here is CIDEr-D, the variant pycocoevalcap's `Cider` implements; it is corpus-level (one pair scores 0)."""

_CITATION = """@inproceedings{vedantam2015cider, title={CIDEr: Consensus-based Image Description Evaluation},
author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi}, booktitle={CVPR}, year={2015}}"""

_KWARGS = """
Args:
    predictions (`list[str]`): one generated caption per pair.
    references (`list[list[str]]`): every reference caption of each pair.
    spice (`bool`, defaults to False): also compute SPICE (skipped with a warning when its models are absent).
Returns:
    dict of floats: `bleu_1`..`bleu_4`, `meteor`, `rouge_l`, `cider_d` (raw) and each `<name>_x100`.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class IdcCaption(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            reference_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, spice: bool = False):
        return coco_caption_scores(list(predictions), [list(r) for r in references], spice=spice)
