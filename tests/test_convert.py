"""Benchmark converters on their native layouts: the real annotation files where shared/ has them, small
fixtures written here otherwise, and placeholder images made by the test for every file name."""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onediff_idc.cli import main
from onediff_idc.processing.convert import MissingFilesError, convert
from onediff_idc.processing.prompts import TASK_PROMPTS
from onediff_idc.processing.schema import FEATURES, load_diffcap

ANNOTATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "idc-annotations"
needs_annotations = pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason="../shared/data/idc-annotations is absent")


def png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_images(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    blob = png()
    for name in names:
        (folder / name).write_bytes(blob)


def spot_the_diff_layout(root: Path, records: dict[str, list]) -> Path:
    (root / "annotations").mkdir(parents=True)
    names = []
    for split, split_records in records.items():
        (root / "annotations" / f"{split}.json").write_text(json.dumps(split_records))
        names += [n for r in split_records for n in (f"{r['img_id']}.png", f"{r['img_id']}_2.png")]
    write_images(root / "resized_images", set(names))
    return root


@needs_annotations
def test_spot_the_diff_real_annotations(tmp_path):
    records = {
        s: json.loads((ANNOTATIONS / "spot-the-diff" / f"{s}.json").read_text()) for s in ("train", "val", "test")
    }
    src = spot_the_diff_layout(tmp_path / "src", records)
    dataset, report = convert("spot-the-diff", src, tmp_path / "out", progress=False)
    # unique pairs 8,566 / 1,493 / 1,270 less the pairs whose every sentence is empty (37 / 4 / 7)
    assert report["pairs"] == {"train": 8529, "validation": 1489, "test": 1263}
    assert report["notes"]["test: pairs dropped, no non-empty sentence"] == 7
    nonempty = sum(1 for r in records["test"] for s in r["sentences"] if s.strip())
    assert report["references"]["test"] == nonempty  # every reference kept, annotators merged
    test = dataset["test"]
    assert test.features == FEATURES
    row = test[0]
    assert row["id"] == "spot-the-diff/256" and row["task"] == "surveillance_change"
    assert row["references"][:3] == [
        "person with umbrella is gone",
        "person with red coat is moved",
        "car up at top to left is now missing",
    ]
    assert row["prompt"] == TASK_PROMPTS["surveillance_change"] and row["change"] == "" and row["change_type"] == ""
    assert len(set(test["id"])) == len(test)
    assert (tmp_path / "out" / "conversion_report.json").is_file()


@needs_annotations
def test_image_editing_request_real_annotations(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    names = set()
    for split in ("train", "valid", "test"):
        shutil.copy(ANNOTATIONS / "image-editing-request" / f"{split}.json", src / f"{split}.json")
        for record in json.loads((src / f"{split}.json").read_text()):
            names |= {record["img0"].strip(), record["img1"].strip()}
    # on disk some names differ in case from the annotations (the archive's mixed-case extensions)
    write_images(src / "images", {n.upper() if n.endswith(".JPG") else n for n in names})
    dataset, report = convert("image-editing-request", src, tmp_path / "out", progress=False)
    assert report["pairs"] == {"train": 2507, "validation": 357, "test": 446}
    assert report["references"]["test"] == 495 * 3  # records of one pair are merged, none lost
    assert max(len(r) for r in dataset["train"]["references"]) > 1


@needs_annotations
def test_clevr_change_real_splits_and_types(tmp_path):
    splits = json.loads((ANNOTATIONS / "clevr-change" / "splits.json").read_text())
    subset = {name: indices[:4] for name, indices in splits.items()}
    src = tmp_path / "src"
    src.mkdir()
    (src / "splits.json").write_text(json.dumps(subset))
    shutil.copy(ANNOTATIONS / "clevr-change" / "type_mapping.json", src / "type_mapping.json")
    indices = [i for v in subset.values() for i in v]
    change = {f"CLEVR_default_{i:06d}.png": [f"the thing {i} changed", f"change {i} "] for i in indices}
    no_change = {f"CLEVR_default_{i:06d}.png": ["no change was made", "nothing changed"] for i in indices}
    (src / "change_captions.json").write_text(json.dumps(change))
    (src / "no_change_captions.json").write_text(json.dumps(no_change))
    write_images(src / "images", [f"CLEVR_default_{i:06d}.png" for i in indices])
    write_images(src / "sc_images", [f"CLEVR_semantic_{i:06d}.png" for i in indices])
    write_images(src / "nsc_images", [f"CLEVR_nonsemantic_{i:06d}.png" for i in indices])

    dataset, report = convert("clevr-change", src, tmp_path / "out", progress=False)
    assert report["pairs"] == {"train": 8, "validation": 8, "test": 8}  # each index: a change and a distractor
    types = json.loads((ANNOTATIONS / "clevr-change" / "type_mapping.json").read_text())
    by_index = {int(f[:-4]): ("texture" if t == "material" else t) for t, files in types.items() for f in files}
    for row in dataset["test"]:
        index = int(row["id"].split("/")[1][:6])
        if row["id"].endswith("_n"):
            assert row["change_type"] == "no_change" and row["references"] == ["no change was made", "nothing changed"]
        else:
            assert row["change_type"] == by_index[index]
            assert row["references"] == [f"the thing {index} changed", f"change {index}"]
    assert "material" not in set(dataset["train"]["change_type"])


def test_birds_to_words_fixture(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    header = [
        "img1ObservationURL",
        "img1ImgURL",
        "img1Species",
        "img1Selection",
        "img2ObservationURL",
        "img2ImgURL",
        "img2Species",
        "img2Selection",
        "split",
        "annN",
        "description",
    ]
    pairs = [("101", "202", "train", 5), ("303", "404", "val", 3), ("505", "606", "test", 2)]
    with (src / "birds-to-words-v1.0.tsv").open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(header)
        for a, b, split, annotators in pairs:
            for n in range(annotators):
                writer.writerow(
                    [
                        f"https://www.inaturalist.org/observations/{a}",
                        f"https://static.x/photos/{a}/medium.jpg",
                        "sp1",
                        "1",
                        f"https://www.inaturalist.org/observations/{b}",
                        f"https://static.x/photos/{b}/medium.jpg",
                        "sp2",
                        "1",
                        split,
                        str(n),
                        f"animal1 has a darker beak than animal2 , view {n} .",
                    ]
                )
    write_images(src / "images", ["101.jpg", "202.jpeg", "303.png", "404.jpg", "505.jpg", "606.JPG"])
    dataset, report = convert("birds-to-words", src, tmp_path / "out", progress=False)
    assert report["pairs"] == {"train": 1, "validation": 1, "test": 1}
    assert len(dataset["train"][0]["references"]) == 5 and dataset["train"][0]["id"] == "birds-to-words/101_202"
    assert dataset["test"][0]["task"] == "bird_difference"


def test_missing_and_corrupt_images_are_listed_and_nothing_is_written(tmp_path):
    records = {
        "train": [
            {"img_id": "1", "sentences": ["a car left"]},
            {"img_id": "2", "sentences": ["a man came"]},
            {"img_id": "3", "sentences": ["nothing"]},
        ],
        "val": [{"img_id": "4", "sentences": ["x"]}],
        "test": [{"img_id": "5", "sentences": ["y"]}],
    }
    src = spot_the_diff_layout(tmp_path / "src", records)
    (src / "resized_images" / "2_2.png").unlink()
    truncated = src / "resized_images" / "3.png"
    truncated.write_bytes(png(3)[:40])
    out = tmp_path / "out"
    with pytest.raises(MissingFilesError) as error:
        convert("spot-the-diff", src, out, progress=False)
    message = str(error.value)
    assert "2 image file(s)" in message and "2_2.png: missing" in message and "3.png: unreadable" in message
    assert not out.exists() or not any(out.iterdir())

    _, report = convert("spot-the-diff", src, out, skip_missing=True, progress=False)
    assert report["pairs"] == {"train": 1, "validation": 1, "test": 1}
    assert report["notes"]["train: pairs skipped, missing or unreadable image"] == 2
    assert len(report["skipped_files"]) == 2
    assert load_diffcap(out)["train"][0]["id"] == "spot-the-diff/1"


def test_missing_annotation_file_and_unknown_benchmark(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(MissingFilesError, match="Annotation file not found"):
        convert("image-editing-request", tmp_path / "src", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="Unknown benchmark"):
        convert("coco", tmp_path / "src", tmp_path / "out", progress=False)


def test_cli_convert_and_its_errors(tmp_path, capsys):
    records = {"train": [{"img_id": "1", "sentences": ["a car left"]}], "val": [], "test": []}
    src = spot_the_diff_layout(tmp_path / "src", records)
    assert main(["data", "convert", "spot-the-diff", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "train 1" in capsys.readouterr().out
    assert (
        main(["data", "convert", "spot-the-diff", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2
    )
    assert "Source folder not found" in capsys.readouterr().err
