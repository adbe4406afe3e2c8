"""Writes the photo pairs `photo_identical` and `photo_flip` of examples/ (ground truth in examples/README.md).

Both come from the generators' held-out test photographs (scikit-learn's china.jpg, matplotlib's grace_hopper.jpg),
cropped square and resized to 224 px as the generators do; rerunning rewrites the same pixels.
    python examples/make_photo_examples.py
"""

from pathlib import Path

from PIL import Image, ImageOps

from onediff_idc.processing.photo_edits import load_photo

EXAMPLES = Path(__file__).resolve().parent
SIZE = 224


def square_crop(name: str, left: int, top: int, side: int) -> Image.Image:
    photo = load_photo(name)
    return photo.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)


def example_pairs() -> dict[str, tuple[Image.Image, Image.Image]]:
    portrait = square_crop("grace_hopper", 56, 40, 400)
    temple = square_crop("china", 150, 20, 400)
    return {
        "photo_identical": (portrait, portrait.copy()),  # the same picture twice: the answer is "no change"
        "photo_flip": (temple, ImageOps.mirror(temple)),  # mirrored left to right
    }


def main() -> None:
    for name, (before, after) in example_pairs().items():
        before.save(EXAMPLES / f"{name}_before.png")
        after.save(EXAMPLES / f"{name}_after.png")
        print(f"wrote examples/{name}_before.png, examples/{name}_after.png")


if __name__ == "__main__":
    main()
