"""`onediff eval` end to end: a tiny random model on a tiny generated dataset."""

import json

import numpy as np
import pytest

from onediff_idc.cli import main
from onediff_idc.eval.change_accuracy import heads_fidelity
from onediff_idc.eval.runner import markdown_table, score_predictions
from onediff_idc.processing.build import BuildSpec, build
from onediff_idc.processing.phrasing import parse_caption, write_references
from tiny import tiny_model_and_processor


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model, processor = tiny_model_and_processor("clip-llama")
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    spec = BuildSpec(seed=3, scene_pairs=12, photo_pairs=13, caption_samples=0, eval_fraction=0.5, resolution=48)
    build(spec, root / "data", progress=False)
    return root


def test_onediff_eval_end_to_end(model_and_data, capsys):
    out = model_and_data / "results.json"
    argv = ["eval", "--model", str(model_and_data / "model"), "--data", str(model_and_data / "data")]
    assert main([*argv, "--out", str(out), "--batch-size", "4", "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out
    assert "| overall |" in printed and "CIDEr-D" in printed and "no-change accuracy" in printed
    results = json.loads(out.read_text())
    assert results["pairs"]["overall"] == 6 + 6 == len(results["predictions"])
    assert set(results["metrics"]["by_source"]) == {"scene-change", "photo-edit"}
    assert "no_change" in results["metrics"]["by_change_type"]
    accuracy = results["change_accuracy"]["overall"]
    assert accuracy["pairs"] == 12 and 0 <= accuracy["change_accuracy"] <= 1
    assert results["no_change"]["overall"]["no_change_pairs"] == 1  # the scene distractor (index 5 of 6)
    first = results["predictions"][0]
    assert {"id", "prediction", "change_probability", "references", "change"} <= set(first)
    detection = results["change_detection"]["overall"]
    assert (detection["change_pairs"], detection["no_change_pairs"]) == (11, 1)
    assert 0 <= detection["auroc"] <= 1 and "change detection" in printed
    # local changes (scene objects, pasted/removed/text regions) are scored for the model and a random baseline
    located = results["localisation"]
    assert set(located) == {"model", "random_delta_module"}
    assert located["model"]["pairs"] == located["random_delta_module"]["pairs"] > 0
    assert 0 <= located["model"]["pointing_game"] <= 1 and "pointing game" in printed


def test_scores_of_perfect_predictions(model_and_data):
    from onediff_idc.processing.schema import load_diffcap

    rows = load_diffcap(model_and_data / "data")["test"].remove_columns("images").to_list()
    results = score_predictions(rows, [r["references"][0] for r in rows])
    assert results["change_accuracy"]["overall"]["change_accuracy"] == 1.0
    assert results["no_change"]["overall"]["no_change_recall"] == 1.0
    assert results["no_change"]["overall"]["change_recall"] == 1.0
    assert "| type no_change |" in markdown_table(results)


def test_eval_errors(model_and_data, tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path), "--data", str(model_and_data / "data")]) == 2
    assert "No OneDiff checkpoint" in capsys.readouterr().err
    assert main(["eval", "--model", str(model_and_data / "model"), "--data", str(tmp_path)]) == 2
    assert "No DiffCap dataset" in capsys.readouterr().err
    argv = ["eval", "--model", str(model_and_data / "model"), "--data", str(model_and_data / "data")]
    assert main([*argv, "--split", "captions"]) == 2
    assert "lacks split" in capsys.readouterr().err


def test_benchmark_rows_without_ground_truth_are_scored_without_change_accuracy():
    rows = [
        {"source": "spot-the-diff", "change_type": "", "change": "", "references": ["a car left", "the car is gone"]},
        {"source": "spot-the-diff", "change_type": "", "change": "", "references": ["a man walks in"]},
    ]
    results = score_predictions(rows, ["the car is gone", "a person came in"])
    assert results["change_accuracy"]["overall"] is None
    assert results["no_change"]["overall"] is None
    assert results["metrics"]["overall"]["bleu_1"] > 0
    assert "| source spot-the-diff |" in markdown_table(results)


def test_conditioning_gap_is_zero_when_every_pair_shows_the_same_images(model_and_data):
    from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
    from onediff_idc.eval.conditioning_gap import conditioning_gap
    from onediff_idc.eval.conditioning_gap import main as gap_main
    from onediff_idc.processing.schema import load_diffcap

    model = OneDiffForConditionalGeneration.from_pretrained(model_and_data / "model")
    processor = OneDiffProcessor.from_pretrained(model_and_data / "model")
    split = load_diffcap(model_and_data / "data", splits=("test",))["test"]
    rows = [split[i] for i in range(4)]  # indexing decodes the images
    same = [dict(row, images=rows[0]["images"]) for row in rows]
    result = conditioning_gap(model, processor, same, batch_size=3)
    assert result["gap"] == pytest.approx(0.0, abs=1e-5) and result["loss_own_images"] > 0
    different = conditioning_gap(model, processor, rows, batch_size=3)
    assert different["gap"] != pytest.approx(0.0, abs=1e-6)  # a random model still reacts to the images
    cli = gap_main(
        [
            "--model",
            str(model_and_data / "model"),
            "--data",
            str(model_and_data / "data"),
            "--split",
            "test",
            "--pairs",
            "4",
            "--seed",
            "1",
        ]
    )
    assert cli["pairs"] == 4 and set(cli) == {"loss_own_images", "loss_other_images", "gap", "pairs"}
    with pytest.raises(ValueError, match="at least 2 pairs"):
        conditioning_gap(model, processor, rows[:1])


def test_card_numbers_come_from_the_eval_report(model_and_data, tmp_path, capsys):
    from huggingface_hub import ModelCard

    report = model_and_data / "card-eval.json"
    argv = ["eval", "--model", str(model_and_data / "model"), "--data", str(model_and_data / "data")]
    assert main([*argv, "--out", str(report), "--batch-size", "4", "--max-new-tokens", "6"]) == 0
    measured = json.loads(report.read_text())
    export = tmp_path / "export"
    argv = ["export", "--out", str(export), "--model", str(model_and_data / "model"), "--eval", str(report)]
    assert main([*argv, "--repo-id", "someone/onediff-tiny"]) == 0
    card = ModelCard.load(export / "README.md")
    values = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert values["CIDEr-D (x100)"] == round(measured["metrics"]["overall"]["cider_d_x100"], 1)
    assert values["change accuracy (%)"] == round(100 * measured["change_accuracy"]["overall"]["change_accuracy"], 1)
    assert values["change detection AUROC (x100)"] == round(100 * measured["change_detection"]["overall"]["auroc"], 1)
    assert card.data.pipeline_tag == "image-text-to-text" and "custom_code" in card.data.tags
    assert '"someone/onediff-tiny"' in card.text and "| CIDEr-D (x100) |" in card.text
    # `onediff card` rewrites a folder's card; a file that is no report is refused with a one-line error
    assert main(["card", str(export), "--eval", str(model_and_data / "model" / "config.json")]) == 2
    assert "not an `onediff eval --out` report" in capsys.readouterr().err
    assert main(["card", str(export)]) == 0
    assert ModelCard.load(export / "README.md").data.eval_results is None  # no report: no numbers, and it says so
    assert "Not evaluated yet" in (export / "README.md").read_text()


def phrase(change: dict) -> str:
    return write_references(change, np.random.default_rng(0), 1)[0]


def test_heads_fidelity_counts_what_the_captions_lose():
    truths = [{"type": "add", "color": "red"}, {"type": "none"}, {"type": "blur"}, {"type": "flip", "axis": "vertical"}]
    chosen = [
        {"type": "add", "color": "red"},
        {"type": "none"},
        {"type": "blur"},
        {"type": "flip", "axis": "horizontal"},
    ]
    captions = [
        "drop",  # heads right, caption unparseable: lost
        phrase({"type": "none"}),  # right and faithful
        phrase({"type": "blur", "strength": "strong"}),  # says more than the heads: wrong
        phrase({"type": "flip", "axis": "horizontal"}),  # faithful to a wrong choice
    ]
    assert parse_caption(captions[1]) == {"type": "none"}
    scores = heads_fidelity(captions, chosen, [json.dumps(t) for t in truths])
    assert scores == {
        "heads_accuracy": 0.75,
        "caption_accuracy": 0.25,
        "fidelity": pytest.approx(1 / 3),
        "agreement": 0.5,
        "pairs": 4,
    }


def test_eval_of_a_model_with_change_heads_reports_their_fidelity(model_and_data, capsys):
    from onediff_idc.processing.schema import load_diffcap
    from onediff_idc.train.pretrain_delta import change_labels

    vocab, _ = change_labels([c for c in load_diffcap(model_and_data / "data")["test"]["change"] if c])
    model, processor = tiny_model_and_processor(delta_change_fields=vocab, use_image_tokens=False, num_delta_queries=12)
    model.save_pretrained(model_and_data / "heads-model")
    processor.save_pretrained(model_and_data / "heads-model")
    out = model_and_data / "heads-results.json"
    argv = ["eval", "--model", str(model_and_data / "heads-model"), "--data", str(model_and_data / "data")]
    assert main([*argv, "--out", str(out), "--batch-size", "4", "--max-new-tokens", "4"]) == 0
    assert "| change heads |" in capsys.readouterr().out
    results = json.loads(out.read_text())
    heads = results["change_heads"]["overall"]
    assert heads["pairs"] == 12 and 0 <= heads["heads_accuracy"] <= 1 and 0 <= heads["agreement"] <= 1
    assert set(results["change_heads"]["by_source"]) == {"scene-change", "photo-edit"}
    assert all(set(p["change_fields"]) <= set(vocab) for p in results["predictions"])


def test_phrasing_accuracy_scores_captions_of_the_true_change(model_and_data, tmp_path, capsys):
    from onediff_idc.eval import phrasing
    from onediff_idc.processing.schema import load_diffcap
    from onediff_idc.train.pretrain_delta import change_labels

    rows = load_diffcap(model_and_data / "data")["test"].remove_columns("images").to_list()
    vocab, _ = change_labels([r["change"] for r in rows if r["change"]])
    model, processor = tiny_model_and_processor(delta_change_fields=vocab, use_image_tokens=False, num_delta_queries=12)
    report = phrasing.phrasing_accuracy(model, processor, rows, batch_size=4, max_new_tokens=4, progress=False)
    assert report["overall"]["pairs"] == 12 and set(report["by_source"]) == {"scene-change", "photo-edit"}
    assert len(report["misses"]) == round(12 * (1 - report["overall"]["change_accuracy"]))  # a random LM misses
    # each caption is what generate() phrases from that pair's true change
    first = rows[0]
    caption = phrasing.phrase_changes(model, processor, [first["prompt"]], [first["change"]], max_new_tokens=4)[0]
    assert report["misses"][0]["caption"] == caption
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    argv = ["--model", str(tmp_path / "model"), "--data", str(model_and_data / "data"), "--split", "test"]
    phrasing.main([*argv, "--limit", "3", "--out", str(tmp_path / "phrasing.json")])
    assert json.loads((tmp_path / "phrasing.json").read_text())["overall"]["pairs"] == 3
    with pytest.raises(ValueError, match="use_image_tokens=False"):
        phrasing.phrasing_accuracy(*tiny_model_and_processor(), rows)
