"""Photographed objects, cut out and named, from Debian's `tuxpaint-stamps-default`, for object-change pairs.

    onediff data stamps --out data/stamps            # apt-get download + dpkg -x; one 161 MB package, once

Pairs in which "an object was added / removed / moved / replaced" need real objects whose names a caption can say:
shapes drawn by a generator teach shapes, not things. Tux Paint's stamps are several hundred photographs of animals,
fruit, tools, vehicles and more, each already cut out along its outline (an alpha channel) and described by one
English line ("A red kangaroo."). This module keeps the photographs: the `symbols` category, every `cartoon` folder,
vector drawings (a .png beside an .svg of the same name), mirror copies, repeated files, the drawn stamps in DRAWINGS
and stamps without real transparency are left out and counted. Each kept stamp is cropped to its outline, its longer
side capped at 256 px, and named by `name_of`.

The split is by object, not by picture: the sha256 of the object's noun (singular, synonyms joined: `split_key`) puts
every picture of one object in one split, so validation and test show objects never seen in training and a caption
model cannot pass them by recognising what it memorised. `manifest.json` records the package version, each stamp's
source file and its sha256, the licence from the package's copyright file, and how many stamps were skipped and why.
"""

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path, PurePosixPath

from PIL import Image

from .debian_photos import _deb_field, copyright_stanzas, download, licence_from_copyright, read_folder_manifest

PACKAGE = "tuxpaint-stamps-default"
STAMPS = "usr/share/tuxpaint/stamps"
SKIPPED_CATEGORIES = ("cartoon", "symbols")
SPLITS = ("train", "validation", "test")
MAX_SIDE = 256

# Drawn stamps outside the cartoon folders (paths under STAMPS, no suffix), found by looking at every stamp of
# version 2022.06.04-1: line art, flat-coloured clip art and signs, not photographs.
DRAWINGS = (
    "animals/mammals/echidna",
    "animals/mammals/hedgehog",
    "clothes/button",
    "clothes/t_*",
    "food/pizza",
    "household/arttools/highlighter",
    "medical/tooth",
    "naturalforces/lightningbolt",
    "people/body_parts/eye",
    "seasonal/christmas/Santa",
    "seasonal/christmas/bow",
    "seasonal/christmas/candy_cane",
    "seasonal/christmas/hard_candy",
    "seasonal/christmas/lamp",
    "seasonal/christmas/santahat",
    "seasonal/christmas/star",
    "seasonal/christmas/stocking",
    "seasonal/christmas/tree",
    "seasonal/christmas/xmas_tp_bulb",
    "seasonal/easter/*",
    "seasonal/halloween/bat_left",
    "seasonal/halloween/blackcat",
    "seasonal/halloween/ghost",
    "seasonal/halloween/jackolantern_mean",
    "seasonal/halloween/skull",
    "seasonal/halloween/spider",
    "seasonal/hanukkah/*",
    "seasonal/newyears/*",
    "sports/rugby_goal_posts",
    "town/flags/*",
    "town/monuments/inukshuk-outline",
    "town/roadsigns/*",
    "vehicles/7spoke256",
    "vehicles/emergency/sedan_police*",
)

# Descriptions that are no noun phrase ("Eat your broccoli!") or whose head word names another object ("A VW
# Beetle." is no insect), rewritten so that `name_of` reads them; the manifest keeps the package's own line.
DESCRIPTIONS = {
    "animals/fish/bluegroper": "A blue groper.",
    "animals/mammals/bears/toys/edward_bear": "A teddy bear.",
    "animals/mammals/bovines/gnu-baby": "A baby gnu.",
    "animals/mammals/bovines/gnu-baby-stand": "A baby gnu.",
    "food/fruit/avocado": "An avocado.",
    "food/fruit/cherimoya": "A cherimoya.",
    "food/vegetables/broccoli": "Some broccoli.",
    "food/vegetables/corn": "An ear of sweet yellow corn.",
    "food/vegetables/tomato": "A ripe red tomato.",
    "household/toilet": "A toilet.",
    "military/ammunition/old_naval_shell": "An old naval shell.",
    "military/final-roll-call": "A battlefield cross memorial.",
    "military/vehicles/bradley": "A Bradley fighting vehicle.",
    "military/vehicles/f22_raptor": "An F-22 Raptor jet.",
    "military/vehicles/infantry-stryker": "A Stryker armoured vehicle.",
    "military/vehicles/ww2_german_gun": "A World War 2 German gun.",
    "naturalforces/explosion": "An explosion.",
    "naturalforces/fire": "A fire.",
    "people/toys/grannysmith": "An old rag doll.",
    "plants/flowers/appooppanthady": "An Indian milkweed seed.",
    "plants/flowers/plastic/chuvanna_plastic_poo": "A red plastic flower.",
    "plants/mushrooms/cep-2": "Two ceps.",
    "plants/thyme": "Some thyme.",
    "plants/trees/rambutan": "Some rambutans.",
    "seasonal/christmas/German_Christmas_toy": "A wooden Christmas toy.",
    "space/apollo_lander": "The Apollo lunar lander.",
    "vehicles/auto/beetle": "A Volkswagen Beetle car.",
}

# the determiner a description starts with -> the one a caption uses ("Our moon." -> "the moon")
ARTICLES = {"a": "a", "an": "an", "some": "some", "two": "two", "another": "a", "the": "the", "our": "the"}
# a name ends at a sentence or clause mark, or at a verb: "A candy cane is a traditional ..." -> "candy cane"
CLAUSE_END = re.compile(r"[.!?,;:(\[—–]| - ")
VERB = re.compile(r"\s(?:is|are|lets|resembles|means|gets|stands|carries)\s")
# words that start a modifier after the head noun: "walnut in its shell", "astronaut making a spacewalk"
MODIFIERS = {"in", "at", "with", "from", "inside", "covered", "used", "hatched", "made", "for", "on", "like", "to"}
MODIFIERS |= {"as", "of", "making"}
# "<measure> of X" names X: "bunch of grapes" -> "grapes"
MEASURES = {"pair", "bunch", "head", "string", "quarter", "plant", "cluster", "slice", "piece", "ear", "sprig"}
# two-word nouns whose last word alone names another object ("sea lion" is no lion)
COMPOUNDS = {
    "sea lion",
    "rubber duck",
    "guinea fowl",
    "candy cane",
    "ginger root",
    "christmas tree",
    "roast turkey",
    "cement mixer",
    "garbage can",
    "drum kit",
    "post box",
    "holly leaves",
    "grave marker",
    "cemetery marker",
    "monument stone",
    "garlic bulb",
    "teddy bear",
    "pepper grinder",
    "measuring tape",
}
# nouns for the same object (sex, age, synonym): they must share a split, else training shows the test's objects
SAME_OBJECT = {
    "bull": "cow",
    "bunny": "rabbit",
    "cemetery marker": "gravestone",
    "doe": "deer",
    "drake": "duck",
    "dromedary": "camel",
    "garbage can": "bin",
    "garlic bulb": "garlic",
    "grave marker": "gravestone",
    "headstone": "gravestone",
    "hen": "chicken",
    "lamb": "sheep",
    "monument stone": "gravestone",
    "peacock": "peafowl",
    "peahen": "peafowl",
    "post box": "mailbox",
    "ram": "sheep",
    "rooster": "chicken",
    "seagull": "gull",
    "tombstone": "gravestone",
}


def name_of(description: str) -> tuple[str, str, str]:
    """(article, name, noun) of a stamp's English description.

    name: the description's first phrase, lowercased, without quotation marks, up to the first sentence or clause mark
    (. ! ? , ; : ( or a dash) or a verb ("is", "lets", ...), its leading determiner moved to `article` ("a", "an",
    "some", "two", "the"; "" when there is none). noun: the phrase's head, for captions: its last word before a
    modifier ("walnut in its shell" -> "walnut"), the head after "of" when a measure comes before it ("pair of open
    scissors" -> "scissors"), a two-word compound of COMPOUNDS kept whole ("sea lion").

        "A red kangaroo." -> ("a", "red kangaroo", "kangaroo")    "A wombat." -> ("a", "wombat", "wombat")
        "Some grapes."    -> ("some", "grapes", "grapes")         "An apple." -> ("an", "apple", "apple")
    """
    text = re.sub(r"[“”\"]", "", description.replace("’", "'"))
    text = re.sub(r"(?<!\w)'|'(?!\w)", "", text)  # quoting apostrophes ('root'), not "grandma's"
    phrase = VERB.split(CLAUSE_END.split(text, maxsplit=1)[0] + " ", maxsplit=1)[0]
    words = phrase.lower().split()
    article = ARTICLES[words.pop(0)] if len(words) > 1 and words[0] in ARTICLES else ""
    if not words:
        raise ValueError(f"The description {description!r} names no object.")
    return article, " ".join(words), _head(words)


def _head(words: list[str]) -> str:
    for i, word in enumerate(words[1:], 1):
        if word == "of" and words[i - 1] in MEASURES:
            return name_of(" ".join(words[i + 1 :]))[2]
        if word in MODIFIERS:
            words = words[:i]
            break
    compound = " ".join(words[-2:])
    return compound if compound in COMPOUNDS else words[-1]


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def split_key(noun: str) -> str:
    """The object a noun names, for the split: singular ("cherries" -> "cherry"), synonyms joined ("doe" -> "deer")."""
    *first, last = noun.split(" ")
    singular = " ".join([*first, _singular(last)])
    return SAME_OBJECT.get(singular, singular)


def split_of(noun: str) -> str:
    """train / validation / test, about 70 / 10 / 20 of the objects, by the sha256 of the noun's `split_key`."""
    bucket = int(hashlib.sha256(split_key(noun).encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "validation" if bucket < 80 else "test"


def _skip_reason(relative: PurePosixPath, png: Path, description: str) -> str | None:
    """Why the stamp at `relative` (under STAMPS) is not a named photograph; None when it is one."""
    stem = str(relative.with_suffix(""))
    if relative.parts[0] in SKIPPED_CATEGORIES:
        return f"category {relative.parts[0]}"
    if "cartoon" in relative.parts:
        return "cartoon folder"
    if stem.endswith("_mirror") and png.with_name(png.name.replace("_mirror.png", ".png")).exists():
        return "mirror copy of another stamp"  # Tux Paint's own flipped copy: no new object
    if png.with_suffix(".svg").exists():
        return "vector drawing (an .svg beside it)"
    if any(fnmatchcase(stem, pattern) for pattern in DRAWINGS):
        return "drawing (DRAWINGS)"
    if not description:
        return "no English description"
    return None


def _transparency_problem(image: Image.Image) -> str | None:
    """Why `image` is no cut-out: an object needs an alpha channel with fully transparent pixels around it and fully
    opaque ones (at least 1% of the visible pixels) in it."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return "no alpha channel"
    histogram = image.convert("RGBA").getchannel("A").histogram()
    if not histogram[0]:
        return "no fully transparent pixel"
    if histogram[255] < 0.01 * sum(histogram[1:]):
        return "(almost) no fully opaque pixel"  # a glow or a haze: pasted on a photograph it hardly shows
    return None


def _description(png: Path) -> str:
    text = png.with_suffix(".txt")
    if not text.is_file():
        return ""
    lines = text.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff").splitlines()
    return lines[0].strip() if lines else ""


def stamp_id(relative: PurePosixPath) -> str:
    """A file-name-safe id: the path under STAMPS without its suffix, lowercased, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", str(relative.with_suffix("")).lower()).strip("-")


def cut_out(image: Image.Image) -> Image.Image:
    """RGBA, cropped to the bounding box of its visible pixels, its longer side at most MAX_SIDE (LANCZOS)."""
    rgba = image.convert("RGBA")
    rgba = rgba.crop(rgba.getchannel("A").getbbox())
    rgba.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)  # only ever shrinks
    return rgba


def _find_deb(debs: Path) -> Path:
    files = [debs] if debs.is_file() else sorted(debs.glob("*.deb"))
    found = [deb for deb in files if _deb_field(deb, "Package") == PACKAGE]
    if not found:
        raise FileNotFoundError(f"No .deb file of {PACKAGE} in {debs}.")
    return found[-1]


def _licence(copyright_file: Path) -> dict[str, str]:
    if not copyright_file.is_file():
        raise FileNotFoundError(f"{PACKAGE} has no copyright file at {copyright_file}.")
    text = copyright_file.read_text()
    header = copyright_stanzas(text)[0] if copyright_stanzas(text) else {}
    names = sorted({s["License"].split("\n")[0] for s in copyright_stanzas(text) if "Files" in s and "License" in s})
    return {
        "upstream": header.get("Upstream-Name", ""),
        "upstream_source": header.get("Source", ""),
        **licence_from_copyright(text, f"{STAMPS}/x.png"),  # the stanza that covers the stamps
        "licenses": ", ".join(names),
    }


def prepare(out: str | Path, debs: str | Path | None = None, progress: bool = False) -> dict:
    """Writes `out/<split>/<id>.png` and `out/manifest.json`; `debs` is a folder holding the .deb (or the .deb)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder.")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not debs:
            download((PACKAGE,), tmp)
        deb = _find_deb(Path(debs) if debs else tmp)
        root = tmp / "extracted"
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        manifest = {
            "package": _deb_field(deb, "Version"),
            "stamps": {},
            "licence": _licence(root / "usr" / "share" / "doc" / PACKAGE / "copyright"),
            "skipped": {},
        }
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        skipped, seen = Counter(), set()
        for png in sorted((root / STAMPS).rglob("*.png")):
            relative = PurePosixPath(png.relative_to(root / STAMPS).as_posix())
            description = _description(png)
            reason = _skip_reason(relative, png, description)
            data = png.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if reason is None and digest in seen:
                reason = "same file as another stamp"
            if reason is None:
                with Image.open(png) as image:
                    reason = _transparency_problem(image)
                    stamp = None if reason else cut_out(image)
            if reason:
                skipped[reason] += 1
                continue
            seen.add(digest)
            article, name, noun = name_of(DESCRIPTIONS.get(str(relative.with_suffix("")), description))
            key, split = stamp_id(relative), split_of(noun)
            if key in manifest["stamps"]:
                raise ValueError(f"Two stamps share the id {key!r}; rename one in stamp_id.")
            target = staging / split / f"{key}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            stamp.save(target)
            manifest["stamps"][key] = {
                "split": split,
                "file": f"{split}/{key}.png",
                "name": name,
                "noun": noun,
                "article": article,
                "category": relative.parts[0],
                "description": description,
                "source": f"{STAMPS}/{relative}",
                "source_sha256": digest,
                "size": list(stamp.size),
            }
            if progress:
                print(f"{split:10s} {noun:16s} {name:32s} <- {relative}")
        manifest["skipped"] = dict(sorted(skipped.items()))
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        if out.exists():
            out.rmdir()
        staging.replace(out)  # only a complete folder gets the final name
    return manifest


def load_manifest(folder: str | Path) -> dict:
    return read_folder_manifest(folder, "stamp", "onediff data stamps --out DIR")


@dataclass(frozen=True, eq=False)
class Stamp:
    id: str
    name: str  # "red kangaroo"
    noun: str  # "kangaroo": what a caption calls it
    category: str
    image: Image.Image  # RGBA, cropped to the object; shared by every caller of load_stamps, so copy before editing
    article: str = ""  # "a", "an", "some", "two", "the" or "": what a caption puts before `name` or `noun`


def load_stamps(folder: str | Path, split: str) -> list[Stamp]:
    """The stamps of one split of a `prepare` folder, read once per (folder, split)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    return list(_load_stamps(str(Path(folder).resolve()), split))


@cache
def _load_stamps(folder: str, split: str) -> tuple[Stamp, ...]:
    stamps = []
    for key, entry in load_manifest(folder)["stamps"].items():
        if entry["split"] != split:
            continue
        with Image.open(Path(folder) / entry["file"]) as image:
            picture = image.convert("RGBA")
        stamps.append(Stamp(key, entry["name"], entry["noun"], entry["category"], picture, entry.get("article", "")))
    return tuple(stamps)
