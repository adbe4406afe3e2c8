"""`onediff data photos` on real .deb files (built here with dpkg-deb, laid out as Debian's packages are)."""

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from onediff_idc.processing import debian_photos
from onediff_idc.processing.build import BuildSpec, build_dataset
from onediff_idc.processing.photo_edits import PHOTO_SPLITS, photo_names

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")

MATE_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: MATE Backgrounds

Files: *
Copyright: 2008, Somebody Else
License: GPL-2+

Files: nature/LadyBird.jpg
       nature/Aqua.jpg
Copyright: 2008, Charles Barbin
License: GPL-2+
Comment: the last matching stanza wins
"""


def _package(root, name: str, files: dict) -> None:
    folder = root / name
    (folder / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n"
    (folder / "DEBIAN" / "control").write_text(control)
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Image.Image):
            content.save(path)
        else:
            path.write_text(content)
    subprocess.run(
        ["dpkg-deb", "--build", str(folder), str(root / "debs" / f"{name}.deb")], check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    root = tmp_path_factory.mktemp("debs")
    (root / "debs").mkdir()
    rng = np.random.default_rng(0)

    def picture(width: int, height: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))

    packages = {name: {} for name in debian_photos.PACKAGES}
    packages["mate-backgrounds"]["usr/share/doc/mate-backgrounds/copyright"] = MATE_COPYRIGHT
    for name, (package, inside) in debian_photos.PHOTOGRAPHS.items():
        if package == "plasma-workspace-wallpapers":
            packages[package][f"{inside}/contents/images/1280x800.jpg"] = picture(128, 80)
            packages[package][f"{inside}/contents/images/5120x2880.jpg"] = picture(64, 36)  # too large: never taken
            metadata = {"KPlugin": {"Authors": [{"Name": f"Author of {name}"}], "License": "LGPLv3"}}
            packages[package][f"{inside}/metadata.json"] = json.dumps(metadata)
        else:
            packages[package][inside] = picture(2048, 1536)
    packages["gnome-backgrounds"]["usr/share/backgrounds/gnome/grid-l.webp"] = picture(16, 16)
    for package, files in packages.items():
        _package(root, package, files)
    return root / "debs"


def test_photos_are_split_by_picture_with_their_licences(debs, tmp_path):
    out = tmp_path / "photos"
    manifest = debian_photos.prepare(out, debs=debs, progress=False)
    assert manifest["packages"] == dict.fromkeys(sorted(debian_photos.PACKAGES), "1.0-1")
    photos = manifest["photos"]
    assert set(photos) == set(debian_photos.PHOTOGRAPHS)
    splits = {split: {n for n, p in photos.items() if p["split"] == split} for split in ("train", "validation", "test")}
    assert splits["test"] == set(debian_photos.HELD_OUT["test"]) and len(splits["train"]) == 16
    assert not (splits["train"] & splits["test"]) and not (splits["validation"] & splits["test"])
    for photo in photos.values():
        with Image.open(out / photo["file"]) as image:
            assert (
                image.mode == "RGB" and max(image.size) <= debian_photos.MAX_SIDE and list(image.size) == photo["size"]
            )
    # mate: the machine-readable copyright file's last matching stanza; plasma: the wallpaper's own metadata
    assert (
        photos["mate-lady-bird"]["copyright"] == "2008, Charles Barbin"
        and photos["mate-lady-bird"]["license"] == "GPL-2+"
    )
    assert photos["mate-storm"]["copyright"] == "2008, Somebody Else"
    assert photos["plasma-path"] == {**photos["plasma-path"], "copyright": "Author of plasma-path", "license": "LGPLv3"}
    assert photos["plasma-path"]["source"].endswith("contents/images/1280x800.jpg")  # the largest of <= 2560x1600
    extracted = tmp_path / "x"
    subprocess.run(["dpkg", "-x", str(debs / "mate-backgrounds.deb"), str(extracted)], check=True)
    source = extracted / photos["mate-storm"]["source"]
    assert photos["mate-storm"]["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert json.loads((out / "manifest.json").read_text()) == manifest

    with pytest.raises(ValueError, match="not empty"):
        debian_photos.prepare(out, debs=debs, progress=False)


def test_a_missing_package_fails_before_writing_anything(debs, tmp_path):
    partial = tmp_path / "debs"
    partial.mkdir()
    shutil.copy(debs / "mate-backgrounds.deb", partial)
    with pytest.raises(FileNotFoundError, match="plasma-workspace-wallpapers"):
        debian_photos.prepare(tmp_path / "photos", debs=partial, progress=False)
    assert not (tmp_path / "photos").exists() and not (tmp_path / "photos.partial").exists()
    with pytest.raises(FileNotFoundError, match="onediff data photos"):
        debian_photos.load_manifest(tmp_path / "nowhere")


def test_generator_draws_each_split_from_its_own_photographs(debs, tmp_path):
    out = tmp_path / "photos"
    debian_photos.prepare(out, debs=debs, progress=False)
    for split in ("train", "validation", "test"):
        names = photo_names(split, str(out))
        assert set(PHOTO_SPLITS[split]) < set(names)
        assert {n for n in names if n not in PHOTO_SPLITS[split]} == {
            n for n in debian_photos.PHOTOGRAPHS if debian_photos.split_of(n) == split
        }
    spec = BuildSpec(seed=3, scene_pairs=0, photo_pairs=40, caption_samples=0, eval_fraction=0.25, resolution=32)
    with_photos = build_dataset(BuildSpec(**{**spec.__dict__, "photos": str(out)}), progress=False)
    without = build_dataset(spec, progress=False)
    assert len(with_photos["test"]) == len(without["test"]) == 10
    # only the downloaded pictures: the held-out Debian photographs, without the packages' samples
    assert set(photo_names("test", str(out), photos_only=True)) == {
        n for n in debian_photos.PHOTOGRAPHS if debian_photos.split_of(n) == "test"
    }
    only = build_dataset(BuildSpec(**{**spec.__dict__, "photos": str(out), "photos_only": True}), progress=False)
    assert any(
        np.asarray(a[0]).tobytes() != np.asarray(b[0]).tobytes()
        for a, b in zip(only["test"]["images"], with_photos["test"]["images"])
    )
    with pytest.raises(ValueError, match="photos_only"):
        BuildSpec(photos_only=True)
    assert with_photos["train"]["completion"] != without["train"]["completion"] or any(
        np.asarray(a[0]).tobytes() != np.asarray(b[0]).tobytes()
        for a, b in zip(with_photos["train"]["images"], without["train"]["images"])
    )
