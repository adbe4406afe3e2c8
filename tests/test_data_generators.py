"""The offline DiffCap generators, their phrasings and the caption parser."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import Image, List

from onediff_idc.cli import main
from onediff_idc.processing.build import PHOTO_TYPES, SCENE_TYPES, BuildSpec, build, build_dataset
from onediff_idc.processing.photo_edits import PHOTO_SPLITS, photo_edit_pair
from onediff_idc.processing.phrasing import (
    TEMPLATES,
    canonical_caption,
    parse_caption,
    render,
    template_slots,
    write_references,
)
from onediff_idc.processing.prompts import TASK_PROMPTS
from onediff_idc.processing.scenes import MIN_MOVE, View, _screen, apply_change, random_scene, scene_change_pair
from onediff_idc.processing.schema import FEATURES, load_diffcap

SPEC = BuildSpec(seed=7, scene_pairs=36, photo_pairs=26, caption_samples=6, eval_fraction=0.5, resolution=96)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffcap") / "data"
    build(SPEC, out, num_proc=1, progress=False)
    return out


GENERATED_TYPES = [t for t in TEMPLATES if t in (*SCENE_TYPES, *PHOTO_TYPES)]  # the wild kinds: tests/test_wild.py


def test_every_generated_change_type_has_at_least_five_phrasings():
    assert set(GENERATED_TYPES) == {*SCENE_TYPES, *PHOTO_TYPES}
    for change_type in GENERATED_TYPES:
        assert len(set(TEMPLATES[change_type])) >= 5, change_type


@pytest.mark.parametrize("change_type", GENERATED_TYPES)
def test_parser_inverts_every_template_with_every_surface(change_type):
    rng = np.random.default_rng(0)
    for _ in range(40):
        if change_type in SCENE_TYPES:
            result = apply_change(random_scene(rng), change_type, rng) if change_type != "none" else None
            change = {"type": "none"} if change_type == "none" else (result[1] if result else None)
            if change is None:
                continue
        else:
            change = photo_edit_pair(rng, change_type, "train", 32)["change"]
        for template in TEMPLATES[change_type]:
            caption = render(template, change, rng)
            assert parse_caption(caption) == change, (template, caption)
            assert parse_caption(caption.upper() + ".") == change  # case and punctuation do not matter
        # the one wording a phrasing model learns states the change exactly, and only from ground truth
        canonical = canonical_caption(json.dumps(change))
        assert parse_caption(canonical) == change and canonical == canonical_caption(change), canonical


@pytest.mark.parametrize(
    "caption",
    [
        "",
        "the cat sat on the mat",
        "the small red metal cube moved. the large blue rubber sphere is gone",
        "the small red metal pyramid moved",  # no such shape
        "the red metal cube moved",  # an attribute missing: the object is not named exactly
    ],
)
def test_parser_says_unparseable(caption):
    assert parse_caption(caption) == {"type": "unparseable"}


def test_scenes_are_recognisable_and_unambiguous():
    rng = np.random.default_rng(3)
    for _ in range(50):
        objects = random_scene(rng)
        assert 3 <= len(objects) <= 10
        assert len({o.key for o in objects}) == len(objects)  # the references name the object unambiguously
        for i, a in enumerate(objects):
            ax, ay, ar = _screen(a, View())
            assert ax - ar > 0 and ax + ar < 1 and ay - ar > 0 and ay + ar < 1
            for b in objects[i + 1 :]:
                bx, by, br = _screen(b, View())
                assert np.hypot(ax - bx, ay - by) > ar + br  # no overlap: every object fully visible


def test_moves_are_large_enough_to_see():
    rng = np.random.default_rng(5)
    for _ in range(30):
        objects = random_scene(rng)
        result = apply_change(objects, "move", rng)
        if result is None:
            continue
        after, change, _ = result
        (moved_before,) = [o for o in objects if o.attributes == {k: change[k] for k in o.attributes}]
        (moved_after,) = [o for o in after if o.key == moved_before.key]
        (x0, y0, _), (x1, y1, _) = _screen(moved_before, View()), _screen(moved_after, View())
        assert np.hypot(x1 - x0, y1 - y0) >= MIN_MOVE


def test_built_dataset_has_the_schema_and_balanced_types(built):
    dataset = load_diffcap(built, splits=("train", "validation", "test", "captions"))
    assert set(dataset) == {"train", "validation", "test", "captions"}
    for split in dataset.values():
        assert split.features == FEATURES
    train = dataset["train"]
    assert len(train) == 36 + 26 and len(dataset["test"]) == 18 + 13
    scene_types = Counter(t for s, t in zip(train["source"], train["change_type"]) if s == "scene-change")
    photo_types = Counter(t for s, t in zip(train["source"], train["change_type"]) if s == "photo-edit")
    assert set(scene_types.values()) == {36 // len(SCENE_TYPES)} and len(scene_types) == len(SCENE_TYPES)
    assert set(photo_types.values()) == {26 // len(PHOTO_TYPES)} and len(photo_types) == len(PHOTO_TYPES)
    for row in train:
        assert row["prompt"] == TASK_PROMPTS[row["task"]]
        assert row["completion"] == row["references"][0] and len(row["references"]) == 3
    assert all(len(images) == 1 for images in dataset["captions"]["images"])


def test_every_reference_parses_back_to_the_ground_truth(built):
    dataset = load_diffcap(built)
    for split in ("train", "validation", "test"):
        for row in dataset[split].select_columns(["references", "change", "change_type"]):
            change = json.loads(row["change"])
            assert (change["type"] == "none") == (row["change_type"] == "no_change")
            for reference in row["references"]:
                assert parse_caption(reference) == change, reference


def test_change_pairs_differ_in_pixels_and_distractors_say_no_change(built):
    train = load_diffcap(built)["train"]
    for row in train:
        before, after = (np.asarray(image, dtype=np.int16) for image in row["images"])
        difference = np.abs(before - after).mean()
        if row["change_type"] == "no_change":
            assert all(parse_caption(r) == {"type": "none"} for r in row["references"])
            if row["source"] == "photo-edit":
                assert difference == 0
        else:
            assert difference > 0.5, row["id"]


def test_splits_are_disjoint(built):
    dataset = load_diffcap(built)
    seen = {}
    for split in ("train", "validation", "test", "captions"):
        for row in dataset[split].cast_column("images", List(Image(decode=False))):
            for image in row["images"]:
                digest = hashlib.sha256(image["bytes"]).hexdigest()
                assert seen.setdefault(digest, split) == split, f"an image of {split} also appears in {seen[digest]}"


def test_photo_splits_use_disjoint_photographs(built):
    names = [set(v) for v in PHOTO_SPLITS.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_same_seed_is_byte_identical_whatever_num_proc(tmp_path):
    spec = BuildSpec(**{**SPEC.__dict__, "scene_pairs": 12, "photo_pairs": 13, "caption_samples": 2})
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    build(spec, one, num_proc=1, progress=False)
    build(spec, two, num_proc=2, progress=False)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for file in files:
        assert (one / file).read_bytes() == (two / file).read_bytes(), file
    build(BuildSpec(**{**spec.__dict__, "seed": 8}), other, progress=False)
    shard = Path("scene-change") / "train-00000-of-00001.parquet"
    assert (one / shard).read_bytes() != (other / shard).read_bytes()


def test_build_refuses_a_non_empty_folder_and_bad_sizes(built):
    with pytest.raises(ValueError, match="not empty"):
        build(SPEC, built, progress=False)
    with pytest.raises(ValueError, match="resolution"):
        BuildSpec(resolution=8)
    with pytest.raises(ValueError, match="scene_pairs"):
        BuildSpec(scene_pairs=-1)


def test_scene_types_focus_a_build_on_the_hard_decisions(tmp_path):
    spec = BuildSpec(seed=9, scene_pairs=6, photo_pairs=0, caption_samples=0, eval_fraction=0.5, resolution=48)
    focused = BuildSpec(**{**spec.__dict__, "scene_types": ("color", "none", "color")})
    dataset = build_dataset(focused, progress=False)
    assert dataset["train"]["change_type"] == ["color", "no_change", "color"] * 2
    assert [json.loads(c)["type"] for c in dataset["train"]["change"]] == ["color", "none", "color"] * 2
    # the same seed draws other scenes than an unfocused build only where the type differs: index i is index i
    every = build_dataset(spec, progress=False)["train"]
    assert every["change_type"][0] == "color" and every["change"][0] == dataset["train"]["change"][0]
    with pytest.raises(ValueError, match="scene_types"):
        BuildSpec(scene_types=("colour",))
    with pytest.raises(ValueError, match="scene_types"):
        BuildSpec(scene_types=())
    main(
        [
            "data",
            "build",
            "--out",
            str(tmp_path / "cli"),
            "--seed",
            "9",
            "--scene-pairs",
            "3",
            "--photo-pairs",
            "0",
            "--caption-samples",
            "0",
            "--eval-fraction",
            "0",
            "--resolution",
            "48",
            "--scene-types",
            "texture",
        ]
    )
    built = load_diffcap(tmp_path / "cli")["train"]
    assert built["change_type"] == ["texture"] * 3


def test_photo_types_focus_a_build_on_the_hard_edits(tmp_path):
    spec = BuildSpec(seed=9, scene_pairs=0, photo_pairs=4, caption_samples=0, eval_fraction=0, resolution=48)
    focused = build_dataset(BuildSpec(**{**spec.__dict__, "photo_types": ("rotation", "sharpen")}), progress=False)
    assert focused["train"]["change_type"] == ["rotation", "sharpen"] * 2
    assert [json.loads(c)["type"] for c in focused["train"]["change"]] == ["rotation", "sharpen"] * 2
    with pytest.raises(ValueError, match="photo_types"):
        BuildSpec(photo_types=("rotate",))
    argv = ["data", "build", "--out", str(tmp_path / "cli"), "--scene-pairs", "0", "--photo-pairs", "2"]
    main([*argv, "--caption-samples", "0", "--eval-fraction", "0", "--resolution", "48", "--photo-types", "flip"])
    assert load_diffcap(tmp_path / "cli")["train"]["change_type"] == ["flip"] * 2


def test_scene_pair_references_name_the_object():
    rng = np.random.default_rng(11)
    pair = scene_change_pair(rng, "color", 64)
    change = pair["change"]
    assert all(parse_caption(r) == change for r in pair["references"])
    assert len(set(write_references(change, rng, 5))) == 5
    assert template_slots(TEMPLATES["color"][0]) == ["size", "color", "material", "shape", "new_color"]


def test_cli_build_with_only_some_sources(tmp_path, capsys):
    from onediff_idc.cli import main

    out = tmp_path / "only-scenes"
    argv = ["data", "build", "--out", str(out), "--scene-pairs", "6", "--photo-pairs", "0", "--caption-samples", "0"]
    assert main([*argv, "--eval-fraction", "0", "--resolution", "64"]) == 0
    assert "train 6" in capsys.readouterr().out
    dataset = load_diffcap(out, splits=("train",))
    assert set(dataset) == {"train"} and set(dataset["train"]["source"]) == {"scene-change"}
    assert main(["data", "build", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("change_type", SCENE_TYPES)
def test_every_scene_change_is_visible_under_the_same_view(change_type):
    """Rendered with one camera and light, a change alters pixels (beyond anti-aliasing) and "none" alters none;
    what changed lies in the changed objects' boxes (all strong changes; weak ones but for a few shadow pixels)."""
    from onediff_idc.processing.scenes import object_box, render_scene

    rng = np.random.default_rng(21)
    for _ in range(5):
        objects = random_scene(rng)
        result = (objects, {"type": "none"}, []) if change_type == "none" else apply_change(objects, change_type, rng)
        if result is None:
            continue
        after, _, changed_objects = result
        view = View()
        before_pixels = np.asarray(render_scene(objects, view, 96), dtype=np.int16)
        after_pixels = np.asarray(render_scene(after, view, 96), dtype=np.int16)
        difference = np.abs(before_pixels - after_pixels).max(axis=-1)
        changed = (difference > 24).sum()
        inside = np.zeros_like(difference, dtype=bool)
        for _, obj in changed_objects:
            x0, y0, x1, y1 = object_box(obj, view, 96)
            inside[y0:y1, x0:x1] = True
        if change_type == "none":
            assert changed == 0 and not changed_objects
        else:
            assert changed >= 12, f"{change_type}: only {changed} pixels changed visibly"
            assert not (difference > 60)[~inside].any()
            assert (difference > 24)[~inside].sum() <= 0.05 * changed  # soft shadows reach a little further


def test_generated_pairs_record_where_they_changed(built):
    """Scene changes: the changed object's box in the image(s) where it shows; local photo edits: the edited
    region; global edits and unchanged pairs: nothing. Local photo edits change pixels only inside their box."""
    expected_boxes = {"add": 1, "drop": 1, "color": 2, "texture": 2, "move": 2, "no_change": 0}
    expected_boxes |= {"paste": 1, "remove": 1, "text": 1}
    dataset = load_diffcap(built)
    for row in dataset["train"]:
        regions = row["change_regions"]
        assert len(regions) == expected_boxes.get(row["change_type"], 0), row["change_type"]
        for x0, y0, x1, y1 in regions:
            assert 0 <= x0 < x1 <= row["images"][0].width and 0 <= y0 < y1 <= row["images"][0].height
        if row["source"] == "photo-edit" and regions:
            (x0, y0, x1, y1), (before, after) = regions[0], row["images"]
            difference = np.abs(np.asarray(before, dtype=np.int16) - np.asarray(after, dtype=np.int16)).max(-1)
            outside = difference.copy()
            outside[y0:y1, x0:x1] = 0
            assert difference.max() > 24 and outside.max() <= 8


def test_folders_written_before_change_regions_load_with_them_empty(built, tmp_path):
    old = load_diffcap(built).remove_columns("change_regions")
    old.save_to_disk(str(tmp_path / "old"))
    dataset = load_diffcap(tmp_path / "old")
    assert all(split.features == FEATURES for split in dataset.values())
    assert set(map(len, dataset["train"]["change_regions"])) == {0}


def test_a_built_folder_is_a_hub_dataset_repo_that_load_dataset_reads_offline(built, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(built / "README.md")
    assert {c["config_name"] for c in card.data.configs} == {"all", "scene-change", "photo-edit", "scene-caption"}
    ours = load_diffcap(built)
    # datasets caches local folders by name (see load_diffcap): each load gets its own cache here
    scenes = load_dataset(str(built), "scene-change", cache_dir=str(tmp_path / "c1"))
    assert set(scenes) == {"train", "validation", "test"} and set(scenes["train"]["source"]) == {"scene-change"}
    assert scenes["train"].features == FEATURES
    expected = ours["train"].filter(lambda s: s == "scene-change", input_columns="source")
    assert scenes["train"]["id"] == expected["id"] and scenes["train"]["change"] == expected["change"]
    assert scenes["train"][0]["images"][1].tobytes() == expected[0]["images"][1].tobytes()
    everything = load_dataset(
        str(built), cache_dir=str(tmp_path / "c2")
    )  # the default config: every source, the rows in their built order
    assert everything["train"]["id"] == ours["train"]["id"] and len(everything["captions"]) == len(ours["captions"])
    # a folder of the earlier save_to_disk layout is rewritten as a repo when pushed (to a local folder here)
    ours.save_to_disk(str(tmp_path / "old"))
    assert (
        main(
            [
                "data",
                "push",
                str(tmp_path / "old"),
                "--repo-id",
                "someone/diffcap",
                "--to-folder",
                str(tmp_path / "repo"),
            ]
        )
        == 0
    )
    photos = load_dataset(str(tmp_path / "repo"), "photo-edit", cache_dir=str(tmp_path / "c3"))
    assert photos["test"]["id"] == [i for i in ours["test"]["id"] if i.startswith("photo-edit/")]
    assert main(["data", "push", str(tmp_path / "old"), "--repo-id", "x/y", "--to-folder", str(tmp_path / "repo")]) == 2
    assert (
        main(["data", "push", str(tmp_path / "missing"), "--repo-id", "x/y", "--to-folder", str(tmp_path / "z")]) == 2
    )


def test_two_folders_of_the_same_name_load_their_own_rows(tmp_path):
    # datasets 5.2 keys its Arrow cache of a local folder by name and configs: load_diffcap must not return the
    # rows of another folder called the same
    first, second = tmp_path / "a" / "data", tmp_path / "b" / "data"
    build(
        BuildSpec(**{**SPEC.__dict__, "scene_pairs": 4, "photo_pairs": 0, "caption_samples": 0}), first, progress=False
    )
    build(
        BuildSpec(**{**SPEC.__dict__, "seed": 5, "scene_pairs": 6, "photo_pairs": 0, "caption_samples": 0}),
        second,
        progress=False,
    )
    assert len(load_diffcap(first)["train"]) == 4 and len(load_diffcap(second)["train"]) == 6
