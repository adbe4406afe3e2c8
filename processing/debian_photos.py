"""Photographs from Debian's desktop-background packages, for the photo-edit generator.

    onediff data photos --out data/photos            # apt-get download + dpkg -x; ~173 MB of packages, once

The 8 sample photographs that scientific Python packages ship cannot teach edits on users' photos. Debian's
`plasma-workspace-wallpapers`, `mate-backgrounds` and `gnome-backgrounds` hold 77 pictures; the 24 of them that are
photographs (chosen by looking at each one; illustrations, patterns and blank gradients are left out) are taken here,
one resolution each, converted to RGB JPEGs of at most 1024 px on the longer side, and split by picture into
train / validation / test, so the test split shows photographs never seen in training. `manifest.json` records for
each picture its package and version, the file it came from and that file's sha256, and its author and licence
(the package's machine-readable copyright file, or the KDE wallpaper's own metadata).
"""

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from modeling_onediff.image_reading_onediff import read_image

PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds", "gnome-backgrounds")
# name -> (package, path inside the package). gnome-backgrounds 43 holds patterns and gradients only: no photograph.
PHOTOGRAPHS = {
    "mate-aqua": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Aqua.jpg"),
    "mate-blinds": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Blinds.jpg"),
    "mate-dune": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Dune.jpg"),
    "mate-fresh-flower": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/FreshFlower.jpg"),
    "mate-garden": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Garden.jpg"),
    "mate-green-meadow": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/GreenMeadow.jpg"),
    "mate-lady-bird": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/LadyBird.jpg"),
    "mate-rain-drops": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/RainDrops.jpg"),
    "mate-storm": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Storm.jpg"),
    "mate-two-wings": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/TwoWings.jpg"),
    "mate-wood": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Wood.jpg"),
    "mate-yellow-flower": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/YellowFlower.jpg"),
    "plasma-by-the-water": ("plasma-workspace-wallpapers", "usr/share/wallpapers/BytheWater"),
    "plasma-cold-ripple": ("plasma-workspace-wallpapers", "usr/share/wallpapers/ColdRipple"),
    "plasma-colorful-cups": ("plasma-workspace-wallpapers", "usr/share/wallpapers/ColorfulCups"),
    "plasma-darkest-hour": ("plasma-workspace-wallpapers", "usr/share/wallpapers/DarkestHour"),
    "plasma-evening-glow": ("plasma-workspace-wallpapers", "usr/share/wallpapers/EveningGlow"),
    "plasma-fallen-leaf": ("plasma-workspace-wallpapers", "usr/share/wallpapers/FallenLeaf"),
    "plasma-grey": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Grey"),
    "plasma-kite": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Kite"),
    "plasma-milky-way": ("plasma-workspace-wallpapers", "usr/share/wallpapers/MilkyWay"),
    "plasma-one-stands-out": ("plasma-workspace-wallpapers", "usr/share/wallpapers/OneStandsOut"),
    "plasma-path": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Path"),
    "plasma-summer-1am": ("plasma-workspace-wallpapers", "usr/share/wallpapers/summer_1am"),
}
# by picture; the rest trains. Each held-out split mixes both packages and several kinds of scene.
HELD_OUT = {
    "validation": ("mate-dune", "plasma-fallen-leaf", "plasma-kite"),
    "test": ("mate-lady-bird", "mate-storm", "plasma-colorful-cups", "plasma-evening-glow", "plasma-path"),
}
MAX_SIDE = 1024


def split_of(name: str) -> str:
    return next((split for split, names in HELD_OUT.items() if name in names), "train")


def download(packages: tuple[str, ...], folder: Path) -> list[Path]:
    """`apt-get download` of the packages into `folder` (no root needed, nothing installed)."""
    try:
        subprocess.run(["apt-get", "download", *packages], cwd=folder, check=True, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise RuntimeError("apt-get is not available: download the .deb files elsewhere and pass --debs") from error
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"apt-get download {' '.join(packages)} failed: {error.stderr.strip()[-500:]} "
            "(is the package index current? run `apt-get update`)"
        ) from error
    return sorted(folder.glob("*.deb"))


def _deb_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout.strip()


def copyright_stanzas(text: str) -> list[dict[str, str]]:
    """The stanzas of a machine-readable (DEP-5) debian/copyright file, continuation lines joined."""
    stanzas, current, key = [], {}, None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key] = value.strip()
    return stanzas


def licence_from_copyright(text: str, relative: str) -> dict[str, str]:
    """Copyright and License of the last stanza whose `Files` patterns match `relative` (DEP-5: the last one wins)."""
    found = {}
    for stanza in copyright_stanzas(text):
        patterns = stanza.get("Files", "").split()
        if any(Path(relative).match(p) or relative.endswith("/" + p) or p == "*" for p in patterns):
            found = {"copyright": stanza.get("Copyright", ""), "license": stanza.get("License", "").split("\n")[0]}
    return found


def _plasma_source(folder: Path) -> tuple[Path, dict[str, str]]:
    """A KDE wallpaper folder: its largest image of at most 2560x1600 (else its smallest), and its author/licence."""
    images = sorted(
        (int(width) * int(height), path)
        for path in (folder / "contents" / "images").iterdir()
        for width, height in [path.stem.split("x")]
    )
    if not images:
        raise ValueError(f"no image in {folder}/contents/images")
    small_enough = [path for area, path in images if area <= 2560 * 1600]
    plugin = json.loads((folder / "metadata.json").read_text())["KPlugin"]
    authors = ", ".join(author.get("Name", "") for author in plugin.get("Authors", []))
    return (small_enough[-1] if small_enough else images[0][1]), {
        "copyright": authors,
        "license": plugin.get("License", ""),
    }


def prepare(out: str | Path, debs: str | Path | None = None, progress: bool = True) -> dict:
    """Writes `out/<split>/<name>.jpg` and `out/manifest.json`; `debs` is a folder of the three .deb files."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = sorted(Path(debs).glob("*.deb")) if debs else download(PACKAGES, tmp)
        by_package = {_deb_field(deb, "Package"): deb for deb in files}
        missing = [p for p in PACKAGES if p not in by_package and any(v[0] == p for v in PHOTOGRAPHS.values())]
        if missing:
            raise FileNotFoundError(f"no .deb file of {', '.join(missing)} in {debs or tmp}")
        roots = {}
        for package, deb in by_package.items():
            roots[package] = tmp / "extracted" / package
            roots[package].mkdir(parents=True)
            subprocess.run(["dpkg", "-x", str(deb), str(roots[package])], check=True)

        manifest = {"packages": {p: _deb_field(by_package[p], "Version") for p in sorted(by_package)}, "photos": {}}
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for name, (package, inside) in PHOTOGRAPHS.items():
            root = roots[package]
            source = root / inside
            if source.is_dir():
                source, licence = _plasma_source(source)
            else:
                copyright_file = root / "usr" / "share" / "doc" / package / "copyright"
                relative = inside.split("usr/share/backgrounds/mate/", 1)[-1]
                licence = licence_from_copyright(copyright_file.read_text(), relative)
            split = split_of(name)
            target = staging / split / f"{name}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            picture = read_image(source)  # as a viewer shows it: EXIF orientation, ICC profile to sRGB
            picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            picture.save(target, quality=95)
            manifest["photos"][name] = {
                "split": split,
                "file": f"{split}/{name}.jpg",
                "package": package,
                "source": str(source.relative_to(root)),
                "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                "size": list(picture.size),
                **licence,
            }
            if progress:
                print(f"{split:10s} {name} <- {package}:{source.relative_to(root)}")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            out.rmdir()
        staging.replace(out)  # only a complete folder gets the final name
    return manifest


def load_manifest(folder: str | Path) -> dict:
    return read_folder_manifest(folder, "photo", "onediff data photos")


def read_folder_manifest(folder: str | Path, what: str, command: str) -> dict:
    """The manifest.json of a folder `command` wrote, or an error that says how to make one."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"No {what} folder at {folder} (manifest.json missing); make one with `{command}`")
    return json.loads(path.read_text())
