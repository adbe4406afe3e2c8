"""The bar over held-out seeds (eval/seeds.py) on reports scored by `onediff eval`'s own scoring."""

import json

import pytest

from onediff_idc.eval import seeds
from onediff_idc.eval.runner import score_predictions
from onediff_idc.processing.build import BuildSpec, build_dataset


@pytest.fixture(scope="module")
def rows():
    spec = BuildSpec(seed=5, scene_pairs=26, photo_pairs=26, caption_samples=0, eval_fraction=0.5, resolution=32)
    return build_dataset(BuildSpec(**{**spec.__dict__, "eval_only": True}), progress=False)["test"].to_list()


def report(rows: list[dict], predictions: list[str]) -> dict:
    """What `onediff eval --out` writes, for these predictions."""
    scored = score_predictions(rows, predictions)
    listed = [
        {"source": r["source"], "change_type": r["change_type"], "prediction": p} for r, p in zip(rows, predictions)
    ]
    return json.loads(json.dumps({**scored, "predictions": listed, "data": "generated"}))


def test_a_perfect_seed_holds_the_bar_and_misses_show_in_the_mean_and_spread(rows):
    perfect = report(rows, [row["references"][0] for row in rows])
    summary = seeds.summarize([perfect])
    assert summary["mean_sd"]["scene"] == summary["mean_sd"]["photo"] == (1.0, 0.0)
    assert summary["bar"] == {
        "scene": True,
        "scene_weakest_type": True,
        "no_change": True,
        "photo": True,
        "debian_global": None,  # no Debian-only report given
        "fidelity": None,  # no change heads
    }

    # a second seed that gets every scene colour change and every blurred photo wrong ("nothing has changed")
    wrong = {"color", "blur"}
    missing = report(rows, ["nothing has changed" if r["change_type"] in wrong else r["references"][0] for r in rows])
    summary = seeds.summarize([perfect, missing], debian=[missing])
    scene = [r for r in rows if r["source"] == "scene-change" and r["change"]]
    scene_right = sum(r["change_type"] != "color" for r in scene) / len(scene)
    mean, spread = summary["mean_sd"]["scene"]
    assert mean == pytest.approx((1 + scene_right) / 2) and spread == pytest.approx((1 - scene_right) / 2**0.5)
    assert summary["seeds"][1]["scene_weakest_type"] == 0.0 and summary["types"]["color"] == (
        0.5,
        pytest.approx(0.5**0.5),
    )
    global_rows = [r for r in rows if r["change_type"] in seeds.GLOBAL_EDITS]
    global_right = sum(r["change_type"] != "blur" for r in global_rows) / len(global_rows)
    assert summary["debian_global_edits"] == (pytest.approx(global_right), 0.0)
    assert summary["seeds"][1]["no_change_not_said_on_changed"] < 1.0
    assert summary["bar"]["no_change"] is False and summary["bar"]["debian_global"] is False
    table = seeds.markdown(summary)
    assert "| mean ± sd |" in table and "Global edits on the held-out Debian photographs alone" in table

    # photo edits alone (a Debian-only split): no scene part of the bar to hold
    photo_rows = [r for r in rows if r["source"] == "photo-edit"]
    photo_only = seeds.summarize([report(photo_rows, [r["references"][0] for r in photo_rows])])
    assert photo_only["bar"]["scene"] is None and photo_only["bar"]["photo"] is True
    assert "scene" not in photo_only["mean_sd"] and photo_only["mean_sd"]["global_edits"] == (1.0, 0.0)

    with pytest.raises(ValueError, match="at least one"):
        seeds.summarize([])
