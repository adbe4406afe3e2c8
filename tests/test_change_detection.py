"""Change detection (AUROC, accuracy at a threshold) and localisation (pointing game, box IoU) scores."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from onediff_idc.eval.change_detection import (
    box_iou,
    change_detection,
    change_maps,
    localisation_scores,
    peak_and_box,
    random_delta_module,
    roc_auc,
)
from tiny import random_pairs, tiny_config, tiny_model_and_processor, tiny_processor


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + 0.4 * labels, 1)  # rounding makes many ties
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_known_cases():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5] * 4, [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.2], [1, 1]) is None  # one class only
    with pytest.raises(ValueError, match="scores for"):
        roc_auc([0.1, 0.2], [1])


def test_change_detection_at_the_threshold():
    result = change_detection([0.9, 0.6, 0.4, 0.2, 0.7], [True, True, True, False, False], threshold=0.5)
    assert result["change_recall"] == pytest.approx(2 / 3) and result["no_change_recall"] == 0.5
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert (result["change_pairs"], result["no_change_pairs"]) == (3, 2)
    assert result["auroc"] == pytest.approx(roc_auc_score([1, 1, 1, 0, 0], [0.9, 0.6, 0.4, 0.2, 0.7]))


def test_box_iou_and_pointing_game():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0
    peaks = [(5, 5), (50, 50), (3, 3)]
    boxes = [[0, 0, 10, 10], [40, 40, 60, 60], [0, 0, 4, 4]]
    regions = [[[0, 0, 10, 10], [30, 30, 40, 40]], [[0, 0, 10, 10]], []]  # the third pair has no region: not scored
    scores = localisation_scores(peaks, boxes, regions)
    assert scores == {"pointing_game": 0.5, "mean_iou": 0.5, "pairs": 2}
    assert localisation_scores([], [], [])["pointing_game"] is None


def test_peak_and_box_in_image_pixels():
    processor = tiny_processor(tiny_config("siglip-qwen2"), "siglip-qwen2")  # plain resize: 4x4 grid
    change_map = np.zeros((4, 4))
    change_map[1, 2] = 1.0
    change_map[1, 3] = 0.7  # joins the box
    peak, box = peak_and_box(processor, change_map, (200, 100))
    assert peak == (125.0, 37.5)
    assert box == [100, 25, 200, 50]


def test_random_delta_module_baseline_is_restored():
    model, processor = tiny_model_and_processor("clip-llama", seed=2)
    trained = model.model.delta_module
    pairs = random_pairs(3)
    own = [m for m, _, _ in change_maps(model, processor, pairs, batch_size=2, progress=False)]
    with random_delta_module(model) as baseline:
        assert baseline.model.delta_module is not trained
        random_maps = [m for m, _, _ in change_maps(baseline, processor, pairs, batch_size=2, progress=False)]
    assert model.model.delta_module is trained
    np.testing.assert_allclose([m for m, _, _ in change_maps(model, processor, pairs, progress=False)], own)
    assert not np.allclose(random_maps[0], own[0])
    assert all(m.shape == (4, 4) and m.sum() == pytest.approx(1.0, abs=1e-5) for m in own + random_maps)


def test_feature_difference_baseline(tmp_path):
    from onediff_idc.eval.difference_baseline import main as baseline_main
    from onediff_idc.processing.build import BuildSpec, build
    from onediff_idc.processing.schema import NO_CHANGE, load_diffcap
    from tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    spec = BuildSpec(seed=4, scene_pairs=12, photo_pairs=26, caption_samples=0, eval_fraction=0.5, resolution=48)
    build(spec, tmp_path / "data", progress=False)
    report = baseline_main(["--model", str(model), "--data", str(tmp_path / "data"), "--layers", "0", "3"])
    assert set(report["auroc"]) == {"layer_0", "layer_3"}
    # photo-edit distractors are exact copies: no feature moves, so every changed photo pair scores above them
    assert report["auroc"]["layer_0"]["photo-edit"] == 1.0
    test = load_diffcap(tmp_path / "data")["test"]
    assert NO_CHANGE in test["change_type"] and report["pairs"] == len(test)


def test_the_change_box_probe_scores_every_setting_against_the_map_alone(tmp_path):
    from onediff_idc.processing.build import BuildSpec, build
    from onediff_idc.train import probe_change_box
    from tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model", num_delta_queries=4, delta_zoom_patches=4)
    spec = BuildSpec(seed=3, scene_pairs=0, photo_pairs=26, caption_samples=0, eval_fraction=0.5, resolution=48)
    build(spec, tmp_path / "data", progress=False)  # pastes, removals and text carry their regions
    args = ["--model", str(model), "--data", f"{tmp_path / 'data'}:validation", "--out", str(tmp_path / "box.json")]
    args += ["--extent_thresholds", "0.3", "0.9", "--strong_shares", "0.6", "--pixel_shares", "0.05"]
    report = probe_change_box.main([*args, "--extent_noises", "6", "--pixel_noises", "0", "3"])
    (results,) = report["folders"].values()
    assert len(results["settings"]) == 4 and results["map_only"]["pairs"] == results["settings"][0]["pairs"] > 0
    assert all(0 <= s["box_iou"] <= 1 and set(s["box_iou_by_type"]) <= {"paste", "remove", "text"}
               for s in results["settings"])  # fmt: skip
    ious = [entry["mean_box_iou"] for entry in report["ranking"]]
    assert ious == sorted(ious, reverse=True) and json.loads((tmp_path / "box.json").read_text()) == report
    # a pasted shape's pixels are exact: growing over the changed patches beats the map's few patches
    assert report["ranking"][0]["mean_box_iou"] > results["map_only"]["box_iou"]
    with pytest.raises(ValueError, match="FOLDER:SPLIT"):
        probe_change_box.main(["--model", str(model), "--data", str(tmp_path / "data"), "--out", "x.json"])
