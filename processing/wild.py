"""The wild evaluation: pairs of the kinds people bring, from material the training generators never draw from.

`onediff data wild --out DIR --photos PHOTOS --stamps STAMPS [--screens] --seed S --per-type N` writes a DiffCap
folder (splits validation and test) whose pairs come from held-out sources only: the held-out photographs of the
package samples and of a `onediff data photos` folder, the held-out objects of a `onediff data stamps` folder
(photographic cut-outs with names, split by object) and the held-out page templates of `processing/screenshots.py`.
Groups (`eval/wild.py` judges each):

- nothing changed: the same picture re-encoded (JPEG at 95/75/50, WebP at 90/60), a smaller copy, 1-4 px of jitter,
  sensor noise, a few percent of exposure, stored EXIF-rotated, stored as 16-bit grayscale of a grayscale photograph.
  The re-encoded, EXIF-rotated and 16-bit files are stored as their own bytes, so the reader is tested as users meet
  it;
- the 12 photo edits (global and local) of the held-out photographs (`photo_edits.apply_edit`);
- an object added / removed / moved / replaced by another / recoloured / resized: a held-out stamp on a held-out
  photograph, its place on a 3x3 grid;
- screenshot changes (with `--screens`: needs Chromium): recolour, text, added, removed, moved;
- two unrelated pictures: crops of two different photographs;
- the camera moved: a few percent of pan, zoom or perspective of the same photograph.

Every pair records its ground truth (`change`, with `type` and the fields its group is judged on) and, for local
changes, the changed region (`change_regions`: the box pointing game and IoU are measured against). With stamps, the
folder also lists every stamp's noun, training and held out (`object_nouns.json`): `onediff eval` gives them to the
judge, so that a training object's name on a held-out object counts as a wrong name.
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from .photo_edits import _choice, apply_edit, load_photo, photo_names, random_crop
from .phrasing import PHOTO_EDIT_TYPES, write_references
from .schema import NO_CHANGE, make_row, save_diffcap

GRID = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
OBJECT_NOUNS = "object_nouns.json"  # beside the splits: the nouns of every stamp, training and held out
NUISANCES = ("jpeg", "webp", "smaller", "jitter", "noise", "exposure", "exif_rotated", "gray16")
OBJECT_CHANGES = ("add", "remove", "move", "replace", "recolor", "resize")
SCREEN_CHANGES = ("recolor", "text", "add", "remove", "move")
CAMERA_MOTIONS = ("pan", "zoom", "perspective")
RECOLORS = {
    "red": 0.0,
    "orange": 0.08,
    "yellow": 0.15,
    "green": 0.33,
    "teal": 0.47,
    "blue": 0.62,
    "purple": 0.78,
    "pink": 0.9,
}
SPLIT_STREAMS = {"train": 6, "validation": 7, "test": 8}  # one random stream per split
SOURCES = {"photo": "wild-photo", "object": "wild-object", "screen": "wild-screen"}
TASK = "difference"


@dataclass(frozen=True)
class WildSpec:
    seed: int = 0
    per_type: int = 10  # pairs of every type (nuisance, edit, object change, screen change, motion) per split
    resolution: int = 224
    photos: str | None = None  # a `onediff data photos` folder: its held-out photographs join the packages'
    stamps: str | None = None  # a `onediff data stamps` folder: without it, no object pairs
    screens: bool = False  # screenshot pairs (Chromium)
    splits: tuple[str, ...] = ("validation", "test")


def grid_cell(box, size: int) -> str:
    """The 3x3 grid cell of a box's centre."""
    cx, cy = (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size
    column, row = min(int(cx * 3), 2), min(int(cy * 3), 2)
    return GRID[row * 3 + column]


def _encoded(image: Image.Image, fmt: str, **settings) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **settings)
    return {"bytes": buffer.getvalue(), "path": None}


def nuisance_pair(photo: Image.Image, nuisance: str, rng: np.random.Generator, size: int) -> tuple[list, dict]:
    """The same picture twice, the after one disturbed in a way no viewer calls a change."""
    if nuisance == "jitter":  # the crop window shifted by 1-4 px: the scene did not change, the framing barely did
        big = random_crop(photo, rng, size + 8)
        dx, dy = (int(v) * int(rng.choice([-1, 1])) for v in rng.integers(1, 5, 2))
        before = big.crop((4, 4, 4 + size, 4 + size))
        return [before, big.crop((4 + dx, 4 + dy, 4 + dx + size, 4 + dy + size))], {"nuisance": nuisance}
    before = random_crop(photo, rng, size)
    if nuisance == "jpeg":
        quality = int(_choice(rng, (95, 75, 50)))
        return [before, _encoded(before, "JPEG", quality=quality)], {"nuisance": nuisance, "quality": quality}
    if nuisance == "webp":
        quality = int(_choice(rng, (90, 60)))
        return [before, _encoded(before, "WEBP", quality=quality)], {"nuisance": nuisance, "quality": quality}
    if nuisance == "smaller":  # a pair of different sizes: framed by the processor, said in its warnings
        scale = float(rng.uniform(0.4, 0.75))
        side = round(size * scale)
        return [before, before.resize((side, side), Image.Resampling.LANCZOS)], {"nuisance": nuisance}
    if nuisance == "noise":
        sigma = float(rng.uniform(2.0, 6.0))
        noisy = np.asarray(before, dtype=np.float32) + rng.normal(0.0, sigma, (size, size, 3))
        return [before, Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))], {"nuisance": nuisance}
    if nuisance == "exposure":
        factor = 1.0 + float(rng.uniform(0.03, 0.06)) * float(rng.choice([-1, 1]))
        return [before, ImageEnhance.Brightness(before).enhance(factor)], {"nuisance": nuisance}
    if nuisance == "exif_rotated":  # stored turned, with the EXIF tag that turns it back in every viewer
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = before.transpose(Image.Transpose.ROTATE_90)
        return [before, _encoded(stored, "JPEG", quality=95, exif=exif)], {"nuisance": nuisance}
    if nuisance == "gray16":  # a grayscale photograph and its 16-bit copy, as scanners and microscopes write
        gray = before.convert("L")
        sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
        return [gray.convert("RGB"), _encoded(sixteen, "PNG")], {"nuisance": nuisance}
    raise ValueError(f"Unknown nuisance {nuisance!r}; expected one of {NUISANCES}")


def camera_pair(photo: Image.Image, motion: str, rng: np.random.Generator, size: int) -> tuple[list, dict]:
    """The same scene seen from a camera that moved a little: a pan, a zoom or a small change of perspective."""
    width, height = photo.size
    side = int(min(width, height) * rng.uniform(0.5, 0.8))
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    window = (left, top, left + side, top + side)
    before = photo.crop(window).resize((size, size), Image.Resampling.BICUBIC)
    if motion == "pan":
        shift = side * float(rng.uniform(0.03, 0.08))
        angle = float(rng.uniform(0, 2 * np.pi))
        dx, dy = shift * np.cos(angle), shift * np.sin(angle)
        dx = float(np.clip(dx, -left, width - left - side))
        dy = float(np.clip(dy, -top, height - top - side))
        moved = (left + dx, top + dy, left + dx + side, top + dy + side)
        after = photo.crop(moved).resize((size, size), Image.Resampling.BICUBIC)
    elif motion == "zoom":
        factor = float(rng.uniform(0.88, 0.95)) if rng.random() < 0.5 else float(rng.uniform(1.05, 1.12))
        grown = side / factor
        cx, cy = left + side / 2, top + side / 2
        half = min(grown / 2, cx, cy, width - cx, height - cy)
        after = photo.crop((cx - half, cy - half, cx + half, cy + half)).resize((size, size), Image.Resampling.BICUBIC)
    elif motion == "perspective":
        corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64)
        moved = corners + rng.uniform(-0.05, 0.05, (4, 2)) * size
        after = before.transform((size, size), Image.Transform.PERSPECTIVE, _perspective(corners, moved), Image.BICUBIC)
        after = _fill_edges(after, before)
    else:
        raise ValueError(f"Unknown camera motion {motion!r}; expected one of {CAMERA_MOTIONS}")
    return [before, after], {"motion": motion}


def _perspective(target: np.ndarray, source: np.ndarray) -> tuple[float, ...]:
    """PIL's perspective coefficients mapping output corners `target` to input corners `source`."""
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return tuple(np.linalg.solve(np.array(rows), source.reshape(8)))


def _fill_edges(after: Image.Image, before: Image.Image) -> Image.Image:
    """The black corners a perspective warp leaves, filled from the before image (a real camera sees something
    there; black wedges would be a change of their own)."""
    pixels = np.asarray(after).copy()
    empty = pixels.sum(axis=-1) == 0
    pixels[empty] = np.asarray(before)[empty]
    return Image.fromarray(pixels)


def _stamp_size(rng: np.random.Generator, size: int) -> float:
    return size * float(rng.uniform(0.22, 0.34))


def _fit(stamp: Image.Image, extent: float) -> Image.Image:
    scale = extent / max(stamp.size)
    return stamp.resize((max(1, round(stamp.width * scale)), max(1, round(stamp.height * scale))), Image.LANCZOS)


def _place(rng: np.random.Generator, cell: str, stamp: Image.Image, size: int) -> tuple[int, int]:
    """Top-left corner that puts the stamp's centre inside `cell`, the stamp inside the image."""
    index = GRID.index(cell)
    column, row = index % 3, index // 3
    cx = (column + float(rng.uniform(0.3, 0.7))) * size / 3
    cy = (row + float(rng.uniform(0.3, 0.7))) * size / 3
    x = int(np.clip(cx - stamp.width / 2, 0, size - stamp.width))
    y = int(np.clip(cy - stamp.height / 2, 0, size - stamp.height))
    return x, y


def _paste(background: Image.Image, stamp: Image.Image, xy: tuple[int, int]) -> tuple[Image.Image, list[int]]:
    composed = background.copy()
    composed.paste(stamp, xy, stamp)
    x0, y0, x1, y1 = stamp.getchannel("A").getbbox() or (0, 0, stamp.width, stamp.height)
    return composed, [xy[0] + x0, xy[1] + y0, xy[0] + x1, xy[1] + y1]


def _union(a: list[int], b: list[int]) -> list[int]:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def recolor(stamp: Image.Image, colour: str) -> Image.Image:
    """The stamp in another colour: every pixel's hue set to the named colour's, saturation raised so that grey and
    brown objects take it too; lightness and alpha kept."""
    hsv = np.asarray(stamp.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = round(RECOLORS[colour] * 255)
    hsv[..., 1] = np.maximum(hsv[..., 1], 170)
    rgb = Image.fromarray(hsv, "HSV").convert("RGB")
    rgb.putalpha(stamp.getchannel("A"))
    return rgb


def object_pair(photo: Image.Image, stamps: list, change: str, rng: np.random.Generator, size: int) -> tuple:
    """A held-out stamp on a held-out photograph, and one object change: (images, change dict, region)."""
    background = random_crop(photo, rng, size)
    first = stamps[int(rng.integers(len(stamps)))]
    stamp = _fit(first.image, _stamp_size(rng, size))
    cell = _choice(rng, GRID)
    xy = _place(rng, cell, stamp, size)
    with_stamp, box = _paste(background, stamp, xy)
    cell = grid_cell(box, size)  # the cell the visible object's centre lies in
    truth = {"type": f"object_{change}", "object": first.noun, "position": cell}
    if change == "add":
        return [background, with_stamp], truth, box
    if change == "remove":
        return [with_stamp, background], truth, box
    if change == "move":
        far = [c for c in GRID if not _neighbours(c, cell)]  # a move a viewer sees; from the centre: a corner
        to = _choice(rng, far or ["top left", "top right", "bottom left", "bottom right"])
        moved, moved_box = _paste(background, stamp, _place(rng, to, stamp, size))
        return [with_stamp, moved], truth | {"to": grid_cell(moved_box, size)}, _union(box, moved_box)
    if change == "replace":
        others = [s for s in stamps if s.noun != first.noun]
        second = others[int(rng.integers(len(others)))]
        other = _fit(second.image, _stamp_size(rng, size))
        centre = ((box[0] + box[2]) // 2 - other.width // 2, (box[1] + box[3]) // 2 - other.height // 2)
        centre = (int(np.clip(centre[0], 0, size - other.width)), int(np.clip(centre[1], 0, size - other.height)))
        replaced, other_box = _paste(background, other, centre)
        return [with_stamp, replaced], truth | {"new_object": second.noun}, _union(box, other_box)
    if change == "recolor":
        colour = _choice(rng, RECOLORS)
        recoloured, _ = _paste(background, recolor(stamp, colour), xy)
        return [with_stamp, recoloured], truth | {"color": colour}, box
    if change == "resize":
        direction = _choice(rng, ("bigger", "smaller"))
        factor = float(rng.uniform(1.45, 1.7)) if direction == "bigger" else float(rng.uniform(0.5, 0.65))
        resized = _fit(first.image, max(stamp.size) * factor)
        centre = ((box[0] + box[2]) // 2 - resized.width // 2, (box[1] + box[3]) // 2 - resized.height // 2)
        centre = (int(np.clip(centre[0], 0, size - resized.width)), int(np.clip(centre[1], 0, size - resized.height)))
        after, resized_box = _paste(background, resized, centre)
        return [with_stamp, after], truth | {"direction": direction}, _union(box, resized_box)
    raise ValueError(f"Unknown object change {change!r}; expected one of {OBJECT_CHANGES}")


def _neighbours(a: str, b: str) -> bool:
    (ra, ca), (rb, cb) = divmod(GRID.index(a), 3), divmod(GRID.index(b), 3)
    return abs(ra - rb) <= 1 and abs(ca - cb) <= 1


PHRASES = {
    "none": ("no change was made", "nothing has changed", "the two images are the same"),
    "unrelated": (
        "the two images show different scenes",
        "these are two different pictures",
        "the images are unrelated",
    ),
    "camera": ("the camera moved slightly", "the viewpoint changed a little", "the camera moved"),
    "object_add": ("{a_object} was added in the {position}", "{a_object} appeared in the {position}"),
    "object_remove": ("the {object} in the {position} was removed", "the {object} in the {position} disappeared"),
    "object_move": ("the {object} moved from the {position} to the {to}", "the {object} was moved to the {to}"),
    "object_replace": ("the {object} was replaced by {a_new_object}", "{a_new_object} replaced the {object}"),
    "object_recolor": ("the {object} turned {color}", "the {object} changed to {color}"),
    "object_resize": ("the {object} got {direction}", "the {object} in the {position} became {direction}"),
}


def wild_references(change: dict, rng: np.random.Generator, count: int = 3) -> list[str]:
    """Reference captions of a wild pair (photo edits: the photo-edit generator's own phrasings)."""
    kind = change["type"]
    if kind in PHOTO_EDIT_TYPES:
        return write_references(change, rng, count)
    templates = PHRASES[kind]
    order = rng.permutation(len(templates))
    articles = {f"a_{k}": _with_article(change[k]) for k in ("object", "new_object") if k in change}
    return [templates[order[i % len(templates)]].format(**change, **articles) for i in range(count)]


def _with_article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _row(split: str, source: str, index: int, images: list, change: dict, references: list[str], region=None):
    return make_row(
        id=f"{source}/{split}/{index:06d}",
        source=source,
        task=TASK,
        images=images,
        references=references,
        change_type=NO_CHANGE if change["type"] == "none" else change["type"],
        change=change,
        change_regions=[region] if region else None,
    )


def wild_rows(spec: WildSpec, split: str, progress: bool = True) -> list[dict]:
    """Every pair of one held-out split, in a fixed order (seeded per group and index)."""
    from tqdm.auto import tqdm

    photos = [load_photo(n, spec.photos) for n in photo_names(split, spec.photos)]
    stamps = None
    if spec.stamps:
        from .stamps import load_stamps

        stamps = load_stamps(spec.stamps, split)
    size, n = spec.resolution, spec.per_type
    jobs = [("nothing", kind) for kind in NUISANCES] + [("edit", kind) for kind in PHOTO_EDIT_TYPES]
    jobs += [("unrelated", "unrelated")] if len(photos) > 1 else []  # two different photographs needed
    jobs += [("camera", kind) for kind in CAMERA_MOTIONS]
    jobs += [("object", kind) for kind in OBJECT_CHANGES] if stamps else []
    jobs += [("screen", kind) for kind in SCREEN_CHANGES] if spec.screens else []
    rows, index = [], 0
    renderer = None
    bar = tqdm(total=len(jobs) * n, desc=f"wild {split}", unit="pair", disable=not progress)
    try:
        for group_id, (group, kind) in enumerate(jobs):
            for i in range(n):
                rng = np.random.default_rng([spec.seed, SPLIT_STREAMS[split], group_id, i])
                photo = photos[int(rng.integers(len(photos)))]
                region = None
                if group == "nothing":
                    images, extra = nuisance_pair(photo, kind, rng, size)
                    change, source = {"type": "none", **extra}, SOURCES["photo"]
                elif group == "edit":
                    before = random_crop(photo, rng, size)
                    after, change = apply_edit(before, kind, rng)
                    images, source = [before, after], SOURCES["photo"]
                    region = change.pop("_region", None)
                elif group == "unrelated":
                    other = photos[(photos.index(photo) + 1 + int(rng.integers(len(photos) - 1))) % len(photos)]
                    images, change = [random_crop(photo, rng, size), random_crop(other, rng, size)], {"type": kind}
                    source = SOURCES["photo"]
                elif group == "camera":
                    images, extra = camera_pair(photo, kind, rng, size)
                    change, source = {"type": "camera", **extra}, SOURCES["photo"]
                elif group == "object":
                    images, change, region = object_pair(photo, stamps, kind, rng, size)
                    source = SOURCES["object"]
                else:
                    from .screenshots import ScreenshotRenderer, screenshot_pair

                    if renderer is None:
                        renderer = ScreenshotRenderer(size).__enter__()
                    pair = screenshot_pair(rng, kind, split, renderer, size=size)
                    images, source = pair["images"], SOURCES["screen"]
                    change = pair["change"] | {"template": pair["template"]}  # held out by template: reports say which
                    region = pair["regions"][0] if pair["regions"] else None
                    references = pair["references"]
                if group != "screen":
                    references = wild_references(change, rng)
                change.pop("_word", None)
                rows.append(_row(split, source, index, images, change, references, region))
                index += 1
                bar.update()
    finally:
        bar.close()
        if renderer is not None:
            renderer.__exit__(None, None, None)
    return rows


def build_wild(spec: WildSpec, out: str | Path, progress: bool = True):
    """Writes the wild evaluation as a DiffCap folder (splits `spec.splits`) and returns it."""
    from datasets import Dataset, DatasetDict

    from .schema import FEATURES

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; give a new folder")
    unknown = set(spec.splits) - {"train", "validation", "test"}
    if unknown or not spec.splits:
        raise ValueError(f"splits are train, validation and test; got {list(spec.splits)}")
    dataset = DatasetDict(
        {split: Dataset.from_list(wild_rows(spec, split, progress), features=FEATURES) for split in spec.splits}
    )
    save_diffcap(dataset, out)
    if spec.stamps:  # every object a caption could name, so that the judge sees a wrong name of another split too
        from .stamps import load_manifest

        nouns = sorted({entry["noun"] for entry in load_manifest(spec.stamps)["stamps"].values()})
        (out / OBJECT_NOUNS).write_text(json.dumps(nouns, indent=0) + "\n")
    return dataset
