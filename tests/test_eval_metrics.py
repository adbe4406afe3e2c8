"""Caption metrics: exact parity with pycocoevalcap called directly, known values, and edge cases."""

import json
import os
import warnings

import evaluate
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from onediff_idc.eval import IDC_CAPTION_METRIC, IDC_CHANGE_ACCURACY_METRIC
from onediff_idc.eval.change_accuracy import change_accuracy, no_change_accuracy
from onediff_idc.eval.coco import JavaNotFoundError, check_java, coco_caption_scores, grouped_coco_caption_scores

CASES = {
    "punctuation_and_case": (
        ["The small RED cube moved!", "a Sphere, was added.", "Nothing has changed..."],
        [
            ["the small red cube moved", "the tiny red block changed its location"],
            ["a sphere was added"],
            ["no change was made", "nothing has changed", "the scene is the same"],
        ],
    ),
    "multi_reference": (
        ["person with umbrella is gone", "the car moved to the left", "a man walks in", "the truck is missing"],
        [
            ["person with umbrella is gone", "person with red coat is moved", "car up at top is now missing"],
            ["the car in the lot moved left", "a car changed position"],
            ["a man appeared near the door", "there is a new person"],
            ["the white truck left", "truck is gone", "the truck is no longer there"],
        ],
    ),
}


def reference_scores(predictions, references):
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu_{n + 1}": b for n, b in enumerate(bleu)}
    scores["meteor"] = Meteor().compute_score(gts, res)[0]
    scores["rouge_l"] = Rouge().compute_score(gts, res)[0]
    scores["cider_d"] = Cider().compute_score(gts, res)[0]
    return scores


@pytest.fixture(scope="module")
def metric():
    os.environ["HF_EVALUATE_OFFLINE"] = "1"
    return evaluate.load(IDC_CAPTION_METRIC)


@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_parity_with_pycocoevalcap(metric, case):
    predictions, references = CASES[case]
    ours = metric.compute(predictions=predictions, references=references)
    expected = reference_scores(predictions, references)
    for name, value in expected.items():
        assert ours[name] == value, name  # to the last float
        assert ours[f"{name}_x100"] == 100 * value


def test_hand_checked_values():
    # unigrams: the, cat, on, the, mat match (5 of 6), equal lengths -> BLEU-1 = 5/6; LCS 5 of 6 -> ROUGE-L 5/6
    scores = coco_caption_scores(["the cat sat on the mat"], [["the cat is on the mat"]], metrics=("bleu", "rouge"))
    assert scores["bleu_1"] == pytest.approx(5 / 6, abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(5 / 6, abs=1e-9)
    perfect = coco_caption_scores(["a b c d e"], [["a b c d e"]], metrics=("bleu",))
    assert perfect["bleu_4"] == pytest.approx(1.0, abs=1e-6)


def test_single_pair_corpus_warns_that_cider_is_zero():
    with pytest.warns(UserWarning, match="single pair always scores 0"):
        scores = coco_caption_scores(["the cube moved"], [["the cube moved"]], metrics=("cider",))
    assert scores["cider_d"] == 0.0


def test_empty_predictions_and_single_references_score():
    predictions = ["", "the red cube moved", ""]
    references = [["a sphere appeared"], ["the red cube moved"], ["nothing changed", "no change"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = coco_caption_scores(predictions, references)
    assert scores == reference_scores(predictions, references) | {
        f"{k}_x100": 100 * v for k, v in reference_scores(predictions, references).items()
    }


def test_grouped_scores_equal_separate_corpora():
    predictions, references = CASES["multi_reference"]
    grouped = grouped_coco_caption_scores(predictions, references, {"a": [0, 1], "b": [2, 3]})
    alone = coco_caption_scores(predictions[2:], references[2:])
    assert grouped["b"] == alone


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        (["a", "b"], [["a"]], "2 predictions but 1 reference"),
        (["a"], [[]], "non-empty list"),
        (["a"], ["a"], "non-empty list of strings"),
        ([], [], "No predictions"),
        ([None], [["a"]], "not a string"),
    ],
)
def test_bad_inputs(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        coco_caption_scores(predictions, references)


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="apt-get install default-jre-headless"):
        check_java()
    with pytest.raises(JavaNotFoundError):
        coco_caption_scores(["a"], [["a"]])


def test_change_accuracy_on_hand_made_predictions():
    truth = {
        "type": "color",
        "size": "small",
        "color": "red",
        "material": "metal",
        "shape": "cube",
        "new_value": "blue",
    }
    predictions = [
        "the small red metal cube turned blue",  # right (another phrasing)
        "the small green metal cube turned blue",  # wrong object
        "the tiny red shiny block became cyan",  # wrong new value
        "something happened to a cube",  # unparseable
    ]
    result = change_accuracy(predictions, [json.dumps(truth)] * 4)
    assert result["change_accuracy"] == 0.25 and result["unparseable"] == 0.25
    assert result["field_accuracy"]["color"] == 0.5  # right and wrong-value captions name red
    assert result["field_accuracy"]["new_value"] == 0.5
    assert result["field_accuracy"]["type"] == 0.75
    metric = evaluate.load(IDC_CHANGE_ACCURACY_METRIC)
    assert metric.compute(predictions=predictions, references=[json.dumps(truth)] * 4) == result
    with pytest.raises(ValueError, match="2 predictions but 1"):
        change_accuracy(predictions[:2], [truth])


def test_no_change_accuracy():
    predictions = ["no change was made", "the scene remains the same", "the cube moved", "nothing has changed"]
    result = no_change_accuracy(predictions, [True, True, False, False])
    assert result == {"no_change_recall": 1.0, "change_recall": 0.5, "no_change_pairs": 2, "change_pairs": 2}


def test_spice_without_its_models_is_skipped_with_a_clear_warning():
    from onediff_idc.eval.coco import spice_available

    if spice_available():
        pytest.skip("SPICE models are installed here")
    with pytest.warns(UserWarning, match="SPICE skipped"):
        scores = coco_caption_scores(
            ["a cube moved", "a ball"], [["a cube moved"], ["a ball"]], metrics=("bleu",), spice=True
        )
    assert "spice" not in scores and "bleu_4" in scores
