"""`onediff caption` on many pairs: manifests and folders, bad rows, the errors file, resuming after a kill."""

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest

from onediff_idc import batch_caption
from onediff_idc.checkpoints import load_pipeline
from onediff_idc.cli import main
from tiny import random_image, save_tiny_model


def huge_png(path, width: int = 10000, height: int = 8000) -> None:
    """A PNG whose header declares a huge image (a few bytes on disk): the check must refuse it unread."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    model = save_tiny_model(root / "model")
    images = root / "images"
    images.mkdir()
    for i in range(12):
        random_image(i).save(images / f"{i}.png")
    truncated = (images / "0.png").read_bytes()
    (images / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    (images / "notes.png").write_text("not an image")
    huge_png(images / "huge.png")
    return root, model


def manifest(root, rows, name="pairs.jsonl"):
    path = root / name
    if name.endswith(".csv"):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for row in rows for k in row}))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD = [{"before": f"images/{2 * i}.png", "after": f"images/{2 * i + 1}.png"} for i in range(5)]
BAD = [
    {"id": "missing", "before": "images/0.png", "after": "images/nowhere.png"},
    {"id": "truncated", "before": "images/truncated.png", "after": "images/1.png"},
    {"id": "not-an-image", "before": "images/notes.png", "after": "images/1.png"},
    {"id": "huge", "before": "images/huge.png", "after": "images/1.png"},
]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_manifest_with_bad_rows_captions_the_good_ones_and_lists_the_rest(setup, tmp_path, capsys):
    root, model = setup
    pairs = manifest(root, GOOD[:2] + BAD + GOOD[2:])
    out = tmp_path / "out.jsonl"
    code = main(["caption", "--pairs", str(pairs), "--out", str(out), "--model", str(model), "--batch-size", "3"])
    assert code == 1  # some pairs failed
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["1", "2", "7", "8", "9"]  # default id: the row number
    assert all(set(r) == set(batch_caption.OUTPUT_FIELDS) and r["seconds"] > 0 for r in rows)
    assert rows[0]["before"] == str((root / "images" / "0.png").resolve())
    errors = {r["id"]: r["error"] for r in read_jsonl(tmp_path / "out.errors.jsonl")}
    assert set(errors) == {"missing", "truncated", "not-an-image", "huge"}
    assert "not found" in errors["missing"] and "too large" in errors["huge"] and "unreadable" in errors["not-an-image"]
    assert "read" in errors["truncated"]  # decoded only while captioning: found by retrying its batch pair by pair
    assert "5 captioned, 4 failed" in capsys.readouterr().out

    # the same captions, change probabilities and boxes as the pipeline gives one pair at a time
    pipe = load_pipeline(model)
    for row in rows:
        alone = pipe(
            {"before": row["before"], "after": row["after"]}, return_change_probability=True, return_change_map=True
        )
        assert row["caption"] == alone["generated_text"] and row["change_box"] == alone["change_box"]
        assert row["change_probability"] == pytest.approx(alone["change_probability"], abs=1e-6)
        x0, y0, x1, y1 = row["change_box"]
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48  # pixels of the 48x48 after image


def test_maps_and_threshold(setup, tmp_path, capsys):
    root, model = setup
    rows = [{**GOOD[0], "id": "a/b"}, {**GOOD[1], "id": "a_b"}, {**GOOD[2], "id": "plain"}]
    pairs = manifest(root, rows, "maps.jsonl")
    out, maps = tmp_path / "out.jsonl", tmp_path / "maps"
    args = ["caption", "--pairs", str(pairs), "--out", str(out), "--model", str(model), "--maps", str(maps)]
    assert main([*args, "--change-threshold", "1.0"]) == 0
    results = read_jsonl(out)
    assert [r["caption"] for r in results] == ["no change"] * 3  # nothing is surely changed: nothing captioned
    names = sorted(p.name for p in maps.iterdir())
    assert len(names) == 3 and "plain.png" in names  # "a/b" and "a_b" never share a file
    assert names == sorted(batch_caption.map_file_name(r["id"]) for r in results)
    from PIL import Image

    with Image.open(maps / "plain.png") as overlay, Image.open(root / "images" / "5.png") as after:
        assert overlay.size == after.size and overlay.mode == "RGB"
        assert overlay.tobytes() != after.convert("RGB").tobytes()
    for bad in ("-0.5", "2"):
        assert (
            main(["caption", "--pairs", str(pairs), "--out", str(tmp_path / "x.jsonl"), "--change-threshold", bad]) == 2
        )
        assert "--change-threshold" in capsys.readouterr().err


def test_single_pair_json_has_the_change_fields(setup, capsys):
    root, model = setup
    before, after = str(root / "images" / "0.png"), str(root / "images" / "1.png")
    assert main(["caption", before, after, "--model", str(model), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row) == {"before", "after", "caption", "change_probability", "change_box", "warnings"}
    assert row["warnings"] == []
    assert 0 <= row["change_probability"] <= 1 and len(row["change_box"]) == 4


def test_folders_csv_output_and_names_found_on_one_side(setup, tmp_path):
    _, model = setup
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    for name, (a, b) in {"x.png": (0, 1), "y.png": (2, 3), "only-before.png": (4, 4)}.items():
        random_image(a).save(before / name)
        if name != "only-before.png":
            random_image(b).save(after / name)
    out = tmp_path / "out.csv"
    args = ["caption", "--before-dir", str(before), "--after-dir", str(after), "--out", str(out), "--format", "csv"]
    assert main([*args, "--model", str(model)]) == 1
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["x.png", "y.png"] and all(r["caption"] for r in rows)
    (error,) = read_jsonl(tmp_path / "out.errors.jsonl")
    assert error["id"] == "only-before.png" and error["error"] == "no after image named only-before.png"
    # everything done: a rerun skips all, writes nothing, and needs no model
    assert main([*args, "--model", str(tmp_path / "no-model")]) == 1
    with out.open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_resume_cuts_a_half_written_line_and_never_writes_a_pair_twice(setup, tmp_path):
    root, model = setup
    pairs = manifest(root, GOOD, "resume.csv")
    out = tmp_path / "out.jsonl"
    args = ["caption", "--pairs", str(pairs), "--out", str(out), "--model", str(model), "--batch-size", "2"]
    straight = tmp_path / "straight.jsonl"
    assert main([*args[:4], str(straight), *args[5:]]) == 0

    lines = straight.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:17])  # what a kill in the middle of a write leaves
    assert main(args) == 0
    resumed = read_jsonl(out)
    assert [r["id"] for r in resumed] == [r["id"] for r in read_jsonl(straight)]
    assert [r["caption"] for r in resumed] == [r["caption"] for r in read_jsonl(straight)]


def test_killed_run_continues_where_it_stopped(setup, tmp_path):
    root, model = setup
    rows = [{"id": f"p{i}", "before": f"images/{i % 12}.png", "after": f"images/{(i + 5) % 12}.png"} for i in range(60)]
    pairs = manifest(root, rows, "many.jsonl")
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "onediff_idc.cli", "caption", "--pairs", str(pairs), "--out", str(out)]
    command += ["--model", str(model), "--batch-size", "1"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    killed_with = out.read_text().count("\n")
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids == [row["id"] for row in rows]  # every pair once, in order, whatever the kill interrupted
    assert killed_with < len(rows)  # the kill did stop the first run part-way


def test_inputs_are_checked_before_any_model_loads(setup, tmp_path, capsys):
    root, _ = setup
    assert main(["caption", str(root / "images" / "nowhere.png"), str(root / "images" / "1.png"), "--model", "x"]) == 2
    assert "before image not found" in capsys.readouterr().err
    for bad, message in (
        (["--pairs", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o.jsonl")], "pairs file not found"),
        (["--pairs", str(manifest(tmp_path, GOOD))], "needs --out"),
        (["--before-dir", str(tmp_path), "--out", str(tmp_path / "o.jsonl")], "go together"),
    ):
        assert main(["caption", *bad, "--model", "x"]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_caption_with_line_breaks_stays_one_row_and_resumes(tmp_path, fmt):
    """A model may emit any character; a lone carriage return or a Unicode line separator must not split a row
    (Python's csv module leaves "\\r" unquoted), and a rerun must read back every id written."""
    from onediff_idc.batch_caption import ResultFile

    path = tmp_path / f"out.{fmt}"
    fields = ("id", "caption", "change_box")
    results = ResultFile(path, fields, fmt)
    for index, caption in enumerate(["a\rb", "c\u2028d\x85e", "f\ng", "plain"]):
        results.add({"id": f"pair-{index}", "caption": caption, "change_box": [1, 2, 3, 4]})
    results.close()
    assert ResultFile(path, fields, fmt).done == {f"pair-{i}" for i in range(4)}
    if fmt == "csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["caption"] for r in rows] == ["a b", "c d e", "f g", "plain"]
        assert json.loads(rows[0]["change_box"]) == [1, 2, 3, 4]
    else:
        rows = [json.loads(line) for line in path.read_text().split("\n") if line]
        assert [r["caption"] for r in rows] == ["a\rb", "c\u2028d\x85e", "f\ng", "plain"]  # JSON escapes them
