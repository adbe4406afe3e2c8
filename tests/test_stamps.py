"""`onediff data stamps` on a small .deb built here with dpkg-deb, laid out as Debian's tuxpaint-stamps-default is."""

import hashlib
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from onediff_idc.processing import stamps

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tuxpaint-stamps
Source: http://sourceforge.net/projects/tuxpaint

Files: *
Copyright: 2002-2022 by Bill Kendrick
License: GPL-2

Files: debian/*
Copyright: 2017-2022 Jonathan Carter
License: GPL-2+

License: GPL-2
 This package is free software.
"""


def _object(width: int, height: int, box: tuple[int, int, int, int], seed: int) -> Image.Image:
    """An RGBA picture: a noisy ellipse (a photographed object) inside `box`, transparent around it."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert("RGBA")
    alpha = Image.new("L", (width, height), 0)
    ImageDraw.Draw(alpha).ellipse((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    picture.putalpha(alpha)
    return picture


def _soft_apple() -> Image.Image:
    """60x50 with a 40x30 object whose edge fades: its alpha holds every value from 0 to 255."""
    picture = _object(60, 50, (10, 10, 50, 40), seed=5)
    alpha = np.zeros((50, 60), dtype=np.uint8)
    alpha[10:40, 10:50] = np.linspace(1, 255, 40, dtype=np.uint8)[None, :]
    alpha[20:30, 30:50] = 255
    alpha[10, 10] = 0  # a see-through corner inside the bounding box
    picture.putalpha(Image.fromarray(alpha))
    return picture


def _haze() -> Image.Image:
    """A glow: transparent around it, but no fully opaque pixel."""
    picture = _object(80, 80, (5, 5, 75, 75), seed=15)
    picture.putalpha(picture.getchannel("A").point(lambda v: v // 2))
    return picture


MIRROR = Image.Transpose.FLIP_LEFT_RIGHT
# path under usr/share/tuxpaint/stamps -> (picture, English description or None for no .txt)
STAMPS = {
    "animals/marsupials/kangaroo": (_object(400, 200, (50, 40, 350, 160), seed=1), "A red kangaroo."),
    "animals/marsupials/kangaroo_mirror": (_object(400, 200, (50, 40, 350, 160), seed=1).transpose(MIRROR), ""),
    "animals/mammals/kangaroo_grey": (_object(120, 160, (0, 0, 100, 150), seed=2), "A grey kangaroo."),
    "animals/kangaroos": (_object(80, 80, (5, 5, 75, 75), seed=3), "Two kangaroos."),
    "animals/birds/owl": (_object(80, 80, (5, 5, 75, 75), seed=4), "An owl."),
    "animals/snail": (_object(80, 80, (5, 5, 75, 75), seed=6), "A snail."),
    "food/fruit/grapes": (_object(80, 80, (5, 5, 75, 75), seed=7), "Some grapes."),
    "food/fruit/apple": (_soft_apple(), "An apple."),
    "food/fruit/apple_copy": (_soft_apple(), "An apple again."),
    "food/fruit/cartoon/apple": (_object(80, 80, (5, 5, 75, 75), seed=8), "A red apple."),
    "food/vegetables/broccoli": (_object(80, 80, (5, 5, 75, 75), seed=9), "Eat your broccoli!"),
    "food/nuts/walnut": (_object(80, 80, (5, 5, 75, 75), seed=10), None),
    "food/pizza": (_object(80, 80, (5, 5, 75, 75), seed=11), "A quarter of pizza."),
    "clothes/hats/tophat": (_object(80, 80, (5, 5, 75, 75), seed=12), "A top hat."),
    "cartoon/dog": (_object(80, 80, (5, 5, 75, 75), seed=13), "A dog."),
    "symbols/shapes/circle": (_object(80, 80, (5, 5, 75, 75), seed=14), "A circle."),
    "household/plate": (Image.new("RGB", (40, 40), "white"), "A plate."),
    "household/towel": (Image.new("RGBA", (40, 40), (9, 9, 9, 255)), "A towel."),
    "household/glass": (_haze(), "A glass."),
}
KEPT = {
    "animals-marsupials-kangaroo",
    "animals-mammals-kangaroo-grey",
    "animals-kangaroos",
    "animals-birds-owl",
    "animals-snail",
    "food-fruit-grapes",
    "food-fruit-apple",
    "food-vegetables-broccoli",
}


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stamps-deb")
    package = root / "package"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        f"Package: {stamps.PACKAGE}\nVersion: 2022.06.04-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n"
    )
    doc = package / "usr" / "share" / "doc" / stamps.PACKAGE
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    for relative, (picture, description) in STAMPS.items():
        path = package / stamps.STAMPS / f"{relative}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)
        if description is not None:
            path.with_suffix(".txt").write_text(f"{description}\nfr.utf8=Une traduction.\n")
        path.with_suffix(".ogg").write_bytes(b"OggS")  # sounds and options beside the stamps: ignored
    (package / stamps.STAMPS / "clothes/hats/tophat.svg").write_text("<svg/>")
    (package / stamps.STAMPS / "food/fruit/grapes.dat").write_text("noflip\n")
    (root / "debs").mkdir()
    subprocess.run(
        ["dpkg-deb", "--build", str(package), str(root / "debs" / "stamps.deb")], check=True, capture_output=True
    )
    return root / "debs"


@pytest.fixture(scope="module")
def prepared(debs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("stamps-out") / "stamps"
    return out, stamps.prepare(out, debs=debs)


@pytest.mark.parametrize(
    "description, expected",
    [
        ("A red kangaroo.", ("a", "red kangaroo", "kangaroo")),
        ("A wombat.", ("a", "wombat", "wombat")),
        ("Some grapes.", ("some", "grapes", "grapes")),
        ("An apple.", ("an", "apple", "apple")),
        ("A bunch of grapes.", ("a", "bunch of grapes", "grapes")),
        ("A pair of open scissors.", ("a", "pair of open scissors", "scissors")),
        ("A walnut in its shell.", ("a", "walnut in its shell", "walnut")),
        ("A “Fuji” apple.", ("a", "fuji apple", "apple")),
        ("A ginger 'root'.", ("a", "ginger root", "ginger root")),
        ("A sea lion.", ("a", "sea lion", "sea lion")),
        ("A candy cane is a traditional Christmas treat.", ("a", "candy cane", "candy cane")),
        ("A Seville orange, also called a bitter orange.", ("a", "seville orange", "orange")),
        ("An albino peahen (a female peafowl).", ("an", "albino peahen", "peahen")),
        ("Mercury—the planet closest to the Sun.", ("", "mercury", "mercury")),
        ("Our moon as a crescent.", ("the", "moon as a crescent", "moon")),
        ("Grandma’s old rag doll.", ("", "grandma's old rag doll", "doll")),
        ("Two wild boars.", ("two", "wild boars", "boars")),
    ],
)
def test_names_and_nouns_of_descriptions(description, expected):
    assert stamps.name_of(description) == expected


def test_a_description_without_an_object_is_refused():
    with pytest.raises(ValueError, match="names no object"):
        stamps.name_of("!")


def test_split_is_by_object_about_70_10_20():
    assert stamps.split_key("cherries") == "cherry" and stamps.split_key("boxes") == "box"
    assert stamps.split_key("glass") == "glass" and stamps.split_key("sea lions") == "sea lion"
    assert stamps.split_key("doe") == "deer" and stamps.split_key("tombstone") == stamps.split_key("headstone")
    bucket = int(hashlib.sha256(b"kangaroo").hexdigest(), 16) % 100  # the documented rule, computed here
    assert stamps.split_of("kangaroo") == ("train" if bucket < 70 else "validation" if bucket < 80 else "test")
    assert stamps.split_of("kangaroos") == stamps.split_of("kangaroo")
    counts = Counter(stamps.split_of(f"object {i}") for i in range(3000))
    assert abs(counts["train"] / 3000 - 0.7) < 0.03 and abs(counts["validation"] / 3000 - 0.1) < 0.02


@needs_dpkg
def test_prepare_keeps_named_photographic_cut_outs(prepared, debs):
    out, manifest = prepared
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["package"] == "2022.06.04-1"
    assert manifest["licence"] == {
        "upstream": "tuxpaint-stamps",
        "upstream_source": "http://sourceforge.net/projects/tuxpaint",
        "copyright": "2002-2022 by Bill Kendrick",
        "license": "GPL-2",
        "licenses": "GPL-2, GPL-2+",
    }
    assert manifest["skipped"] == {
        "(almost) no fully opaque pixel": 1,
        "cartoon folder": 1,
        "category cartoon": 1,
        "category symbols": 1,
        "drawing (DRAWINGS)": 1,
        "mirror copy of another stamp": 1,
        "no English description": 1,
        "no alpha channel": 1,
        "no fully transparent pixel": 1,
        "same file as another stamp": 1,
        "vector drawing (an .svg beside it)": 1,
    }
    found = manifest["stamps"]
    assert set(found) == KEPT
    kangaroo = found["animals-marsupials-kangaroo"]
    assert kangaroo == {
        **kangaroo,
        "split": stamps.split_of("kangaroo"),
        "file": f"{stamps.split_of('kangaroo')}/animals-marsupials-kangaroo.png",
        "name": "red kangaroo",
        "noun": "kangaroo",
        "article": "a",
        "category": "animals",
        "description": "A red kangaroo.",
        "source": f"{stamps.STAMPS}/animals/marsupials/kangaroo.png",
    }
    assert (found["food-fruit-grapes"]["name"], found["food-fruit-grapes"]["noun"]) == ("grapes", "grapes")
    assert (found["food-fruit-apple"]["article"], found["food-fruit-apple"]["noun"]) == ("an", "apple")
    broccoli = found["food-vegetables-broccoli"]  # rewritten in DESCRIPTIONS; the package's line is kept
    assert (broccoli["name"], broccoli["description"]) == ("broccoli", "Eat your broccoli!")

    # every picture of one object in one split; held-out objects never in train
    assert {found[k]["split"] for k in KEPT if "kangaroo" in k} == {stamps.split_of("kangaroo")}
    held_out = {stamps.split_key(s["noun"]) for s in found.values() if s["split"] != "train"}
    assert not held_out & {stamps.split_key(s["noun"]) for s in found.values() if s["split"] == "train"}
    assert {s["split"] for s in found.values()} == set(stamps.SPLITS)  # owl: test, snail: validation
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(s["file"] for s in found.values())

    extracted = out.parent / "extracted"
    subprocess.run(["dpkg", "-x", str(debs / "stamps.deb"), str(extracted)], check=True)
    for stamp in found.values():
        source = extracted / stamp["source"]
        assert stamp["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        with Image.open(out / stamp["file"]) as image:
            assert image.mode == "RGBA" and list(image.size) == stamp["size"] and max(image.size) <= stamps.MAX_SIDE
            low, high = image.getchannel("A").getextrema()
            assert low == 0 and high == 255, stamp["file"]


@needs_dpkg
def test_stamps_are_cropped_to_their_outline_and_capped(prepared):
    out, manifest = prepared
    # 300x120 object on a 400x200 canvas: cropped to 300x120, then shrunk to 256 on its longer side
    assert manifest["stamps"]["animals-marsupials-kangaroo"]["size"] in ([256, 102], [256, 103])
    assert manifest["stamps"]["animals-mammals-kangaroo-grey"]["size"] == [100, 150]  # small: only cropped
    # not resized: exactly the source's pixels inside the alpha bounding box, partial alpha kept as it was
    with Image.open(out / manifest["stamps"]["food-fruit-apple"]["file"]) as image:
        written = np.asarray(image)
    expected = np.asarray(_soft_apple())[10:40, 10:50]
    assert written.shape == (30, 40, 4) and np.array_equal(written, expected)
    assert len(np.unique(written[..., 3])) > 30


@needs_dpkg
def test_prepare_refuses_a_non_empty_folder_and_a_missing_package(prepared, debs, tmp_path):
    out, _ = prepared
    with pytest.raises(ValueError, match="not empty"):
        stamps.prepare(out, debs=debs)
    with pytest.raises(FileNotFoundError, match=stamps.PACKAGE):
        stamps.prepare(tmp_path / "stamps", debs=tmp_path)
    assert not (tmp_path / "stamps").exists() and not (tmp_path / "stamps.partial").exists()


@needs_dpkg
def test_load_stamps_reads_one_split_once(prepared):
    out, manifest = prepared
    for split in stamps.SPLITS:
        loaded = stamps.load_stamps(out, split)
        assert {s.id for s in loaded} == {k for k, s in manifest["stamps"].items() if s["split"] == split}
        for stamp in loaded:
            entry = manifest["stamps"][stamp.id]
            assert (stamp.name, stamp.noun, stamp.category, stamp.article) == (
                entry["name"],
                entry["noun"],
                entry["category"],
                entry["article"],
            )
            assert stamp.image.mode == "RGBA" and list(stamp.image.size) == entry["size"]
    again = stamps.load_stamps(out, stamps.split_of("kangaroo"))
    assert again[0] is stamps.load_stamps(str(out), stamps.split_of("kangaroo"))[0]  # cached per (folder, split)
    with pytest.raises(ValueError, match="Unknown split"):
        stamps.load_stamps(out, "dev")


def test_load_stamps_without_a_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="onediff data stamps --out DIR"):
        stamps.load_stamps(tmp_path / "nowhere", "test")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ONEDIFF_STAMPS_DEB"), reason="set ONEDIFF_STAMPS_DEB to the package's .deb")
def test_the_real_package(tmp_path):
    manifest = stamps.prepare(tmp_path / "stamps", debs=os.environ["ONEDIFF_STAMPS_DEB"])
    found = manifest["stamps"]
    assert len(found) > 200 and manifest["licence"]["license"].startswith("GPL")
    assert found["animals-marsupials-kangaroo"]["noun"] == "kangaroo"
    splits_of_object = {}
    for stamp in found.values():
        splits_of_object.setdefault(stamps.split_key(stamp["noun"]), set()).add(stamp["split"])
    assert all(len(splits) == 1 for splits in splits_of_object.values())
    counts = Counter(next(iter(splits)) for splits in splits_of_object.values())
    assert all(0.05 < counts[split] / len(splits_of_object) < 0.85 for split in stamps.SPLITS)
