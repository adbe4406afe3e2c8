"""Photo edits in the spirit of Image-Editing-Request and InstructPix2Pix, on real photographs that ship inside
installed packages (scikit-image, matplotlib and scikit-learn carry sample photos).

Each pair is a random crop of a photo and the same crop after one edit. The ground truth names the edit and, where
it matters, its direction, strength, colour or position; the references say the same in several phrasings.
The photos are split between train, validation and test so that the test split shows photographs never seen in
training.
"""

import os
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from modeling_onediff.image_reading_onediff import read_image

from .debian_photos import load_manifest
from .phrasing import PHOTO_EDIT_TYPES, POSITIONS, SLOTS, write_references

# (package, path inside it) of every colour photograph used; grayscale samples and charts are left out
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "hubble": ("skimage", "data/hubble_deep_field.jpg"),
    "retina": ("skimage", "data/retina.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
PHOTO_SPLITS = {
    "train": ("astronaut", "chelsea", "rocket", "motorcycle", "hubble", "retina", "ihc", "flower"),
    "validation": ("coffee",),
    "test": ("china", "grace_hopper"),
}
POSITION_CENTERS = {
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
    "center": (0.5, 0.5),
}
PASTE_RGB = {
    "red": (220, 30, 30),
    "green": (30, 180, 50),
    "blue": (30, 60, 220),
    "yellow": (245, 220, 30),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
CAST_RGB = {"red": (255, 40, 40), "green": (40, 220, 60), "blue": (40, 80, 255), "yellow": (255, 220, 40)}


def photo_path(name: str) -> str:
    package, relative = PHOTOS[name]
    module = __import__(package)
    path = os.path.join(os.path.dirname(module.__file__), relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Sample photo {name!r} is missing from the installed {package} ({path}); reinstall it "
            '(pip install -e ".[data]")'
        )
    return path


@cache
def photo_names(split: str, photos_dir: str | None = None, photos_only: bool = False) -> tuple[str, ...]:
    """The photographs of `split`: the packages' samples, and those of a `onediff data photos` folder if given (with
    `photos_only`, that folder's alone: e.g. a test split of the held-out Debian pictures only)."""
    if photos_only and photos_dir is None:
        raise ValueError("`photos_only` needs a `onediff data photos` folder (`photos`)")
    names = () if photos_only else PHOTO_SPLITS[split]
    if photos_dir is not None:
        photos = load_manifest(photos_dir)["photos"]
        names += tuple(sorted(name for name, photo in photos.items() if photo["split"] == split))
    return names


@cache
def load_photo(name: str, photos_dir: str | None = None) -> Image.Image:
    path = photo_path(name) if name in PHOTOS else Path(photos_dir) / load_manifest(photos_dir)["photos"][name]["file"]
    return read_image(path)  # as a viewer shows it: EXIF orientation, ICC profile (skimage's rocket is Adobe RGB)


def random_crop(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A square crop covering 45-100% of the photo's shorter side, resized to `size`."""
    width, height = photo.size
    side = int(min(width, height) * rng.uniform(0.45, 1.0))
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    return photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def _choice(rng: np.random.Generator, options) -> str:
    options = tuple(options)
    return options[int(rng.integers(len(options)))]


def _strength(rng: np.random.Generator, slight: float, strong: float, spread: float = 0.08) -> tuple[str, float]:
    name = _choice(rng, ("slight", "strong"))
    value = slight if name == "slight" else strong
    return name, value * float(rng.uniform(1 - spread, 1 + spread))


def _box(position: str, extent: float, size: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    cx, cy = POSITION_CENTERS[position]
    cx, cy = cx + rng.uniform(-0.04, 0.04), cy + rng.uniform(-0.04, 0.04)
    half = extent / 2
    return tuple(int(v * size) for v in (cx - half, cy - half, cx + half, cy + half))


def _zoom(image: Image.Image, factor: float) -> Image.Image:
    size = image.size[0]
    side = size * factor
    offset = (size - side) / 2
    return image.crop((offset, offset, offset + side, offset + side)).resize((size, size), Image.Resampling.BICUBIC)


def _region(box, size: int) -> list[int]:
    """A pixel box `[x0, y0, x1, y1]` (ends exclusive), inside the image."""
    x0, y0, x1, y1 = (round(v) for v in box)
    return [max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)]


def apply_edit(image: Image.Image, edit: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Returns (edited image, ground truth) for one edit of PHOTO_EDIT_TYPES. Local edits (paste, remove, text) put
    their pixel box in the ground truth's private `_region` (the caller moves it out)."""
    size = image.size[0]
    if edit in ("brightness", "contrast", "saturation"):
        direction = _choice(rng, ("increase", "decrease"))
        levels = {
            "brightness": {"increase": (1.3, 1.75), "decrease": (0.72, 0.45)},
            "contrast": {"increase": (1.4, 2.0), "decrease": (0.65, 0.35)},
            "saturation": {"increase": (1.6, 2.6), "decrease": (0.55, 0.12)},
        }[edit][direction]
        strength, factor = _strength(rng, *levels)
        enhancer = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast}.get(
            edit, ImageEnhance.Color
        )
        return enhancer(image).enhance(factor), {"type": edit, "direction": direction, "strength": strength}
    if edit == "color_cast":
        color = _choice(rng, CAST_RGB)
        strength, alpha = _strength(rng, 0.18, 0.4)
        tint = Image.new("RGB", image.size, CAST_RGB[color])
        return Image.blend(image, tint, alpha), {"type": edit, "color": color, "strength": strength}
    if edit == "blur":
        strength, radius = _strength(rng, 1.3 * size / 224, 3.5 * size / 224)
        return image.filter(ImageFilter.GaussianBlur(radius)), {"type": edit, "strength": strength}
    if edit == "sharpen":
        strength, percent = _strength(rng, 150, 400)
        sharpened = image.filter(ImageFilter.UnsharpMask(radius=2 * size / 224, percent=int(percent), threshold=1))
        return sharpened, {"type": edit, "strength": strength}
    if edit == "zoom":
        strength, factor = _strength(rng, 0.78, 0.55, spread=0.04)
        return _zoom(image, factor), {"type": edit, "strength": strength}
    if edit == "rotation":
        direction = _choice(rng, ("clockwise", "counterclockwise"))
        strength, degrees = _strength(rng, 10.0, 30.0, spread=0.15)
        angle = np.radians(degrees)
        rotated = image.rotate(-degrees if direction == "clockwise" else degrees, Image.Resampling.BICUBIC)
        # zoom in just enough that no empty corner shows
        return _zoom(rotated, 1 / (np.cos(angle) + np.sin(angle))), {
            "type": edit,
            "direction": direction,
            "strength": strength,
        }
    if edit == "flip":
        axis = _choice(rng, ("horizontal", "vertical"))
        flipped = ImageOps.mirror(image) if axis == "horizontal" else ImageOps.flip(image)
        return flipped, {"type": edit, "axis": axis}
    if edit == "paste":
        shape, color, position = (
            _choice(rng, ("circle", "square", "triangle")),
            _choice(rng, PASTE_RGB),
            _choice(rng, POSITIONS),
        )
        edited = image.copy()
        draw = ImageDraw.Draw(edited)
        x0, y0, x1, y1 = _box(position, rng.uniform(0.2, 0.28), size, rng)
        outline = (0, 0, 0) if color != "black" else (255, 255, 255)
        width = max(1, size // 112)
        if shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=PASTE_RGB[color], outline=outline, width=width)
        elif shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=PASTE_RGB[color], outline=outline, width=width)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=PASTE_RGB[color], outline=outline)
        change = {"type": edit, "shape": shape, "color": color, "position": position}
        return edited, {**change, "_region": _region((x0, y0, x1 + 1, y1 + 1), size)}
    if edit == "remove":
        position = _choice(rng, POSITIONS)
        box = _box(position, rng.uniform(0.28, 0.36), size, rng)
        # a crude inpainting: the region is replaced by a heavily smoothed copy of its surroundings
        smoothed = image.filter(ImageFilter.BoxBlur(size * 0.12)).filter(ImageFilter.GaussianBlur(size * 0.03))
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle(box, radius=size * 0.05, fill=255)
        feather = size * 0.01
        edited = Image.composite(smoothed, image, mask.filter(ImageFilter.GaussianBlur(feather)))
        region = _region((box[0] - 3 * feather, box[1] - 3 * feather, box[2] + 3 * feather, box[3] + 3 * feather), size)
        return edited, {"type": edit, "position": position, "_region": region}
    if edit == "text":
        position = _choice(rng, POSITIONS)
        word = _choice(rng, SLOTS["word"].surfaces[""])
        edited = image.copy()
        draw = ImageDraw.Draw(edited)
        font = ImageFont.load_default(size=max(10, int(size * 0.13)))
        cx, cy = POSITION_CENTERS[position]
        text = {"xy": (cx * size, cy * size), "text": word.upper(), "font": font, "anchor": "mm"}
        stroke = max(1, size // 100)
        draw.text(**text, fill=(255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0))
        region = _region(draw.textbbox(**text, stroke_width=stroke), size)
        return edited, {"type": edit, "position": position, "_word": word, "_region": region}
    raise ValueError(f"Unknown photo edit {edit!r}; expected one of {PHOTO_EDIT_TYPES}")


def photo_edit_pair(
    rng: np.random.Generator,
    edit: str,
    split: str,
    size: int,
    num_references: int = 3,
    photos_dir: str | None = None,
    photos_only: bool = False,
) -> dict:
    """One before/after pair of a photo of `split`'s photos (see `photo_names`); `edit` in PHOTO_EDIT_TYPES or
    "none"."""
    photo = load_photo(_choice(rng, photo_names(split, photos_dir, photos_only)), photos_dir)
    before = random_crop(photo, rng, size)
    if edit == "none":
        after, change = before.copy(), {"type": "none"}
    else:
        after, change = apply_edit(before, edit, rng)
    references = write_references(change, rng, num_references)  # text edits quote the word actually drawn
    change.pop("_word", None)
    region = change.pop("_region", None)
    regions = [region] if region else []  # a local edit: the same place in both images
    return {"images": [before, after], "references": references, "change": change, "regions": regions}
