"""Reading images as the picture a viewer shows, and bringing the two images of a pair to one frame.

One reader serves the pipeline, the processor (paths and URLs), the `onediff` command, the demo and the data tools:

- EXIF orientation applied; the first frame of an animation;
- 16- and 32-bit integer and float images (`I;16`, `I;16B`, `I`, `F`: 16-bit PNG and TIFF, scientific TIFF)
  scaled to 8 bits by their range, not clipped (clipping turns a 16-bit photograph white);
- an 8-bit image's embedded ICC profile converted to sRGB (an Adobe RGB photograph and its sRGB copy are the same
  picture; a 16-bit or float image is shown by its values);
  a profile littlecms cannot use is ignored, as browsers ignore it;
- transparency composited on white; palette, CMYK, grayscale and 1-bit images converted to RGB;
- HEIC/HEIF through `pillow-heif` when it is installed, else an error naming it; AVIF as the installed Pillow reads it;
- images over `MAX_PIXELS` refused from their header, before decoding.

This file is part of the remote-code set copied into checkpoints: it imports only PIL, numpy and the standard library
(`httpx`, for URLs, comes with transformers).
"""

import base64
import io
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    from PIL import ImageCms
except ImportError:  # a Pillow built without littlecms: profiles cannot be applied, images still read
    ImageCms = None

MAX_PIXELS = 50_000_000  # larger images are refused from their header (PIL's own bomb guard stops at ~179 MP)
MAX_FRAME_SIDE = 2048  # a framed pair is at most this wide: letterboxing a 50-Mpixel panorama would not fit memory
ASPECT_TOLERANCE = 0.03  # aspect ratios this close (relative) count as the same: the after image is just resized
LETTERBOX_FILL = (0, 0, 0)
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
HEIF_HINT = 'pip install "onediff-idc[heif]" (or pip install pillow-heif)'
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageReadError(ValueError):
    """An image that cannot be read as a picture: missing, not an image, truncated, too large or too small."""


def read_image(source, timeout: float | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """
    The picture `source` shows, as an 8-bit RGB image. `source` is a path, an http(s) URL, a base64 `data:` URI,
    bytes, a binary file object or a PIL image (which is converted as it is, its current frame).
    Raises `ImageReadError` with one sentence saying what is wrong.
    """
    if isinstance(source, Image.Image):
        check_pixels(source.size, max_pixels)
        try:
            source.load()  # a lazily opened image: a truncated file fails here
            return to_rgb(source)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
            raise ImageReadError(f"cannot be decoded: {error}") from error
    data = _read_bytes(source, timeout)
    if not data:
        raise ImageReadError("the file is empty (0 bytes)")
    _check_heif(data)
    try:
        with warnings.catch_warnings():  # over 89 Mpixel Pillow warns before our own, clearer, refusal
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"too large: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageReadError(f"not an image file Pillow can read ({_kind(data)})") from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:  # cut off inside its header
        raise ImageReadError(f"cannot be decoded: {error}") from error
    check_pixels(image.size, max_pixels)
    try:
        image.seek(0)  # the first frame of an animation
        image.load()  # PIL decodes lazily: truncated or corrupt files fail here, not later
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise ImageReadError(f"cannot be decoded: {error}") from error


def check_pixels(size: tuple[int, int], max_pixels: int = MAX_PIXELS) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageReadError(f"too large: {width}x{height} pixels (limit {max_pixels:,})")


def check_min_side(size: tuple[int, int], min_side: int) -> None:
    """Refuses an image smaller than `min_side` (the vision tower's patch) on either side: nothing to compare."""
    width, height = size
    if min(width, height) < min_side:
        raise ImageReadError(
            f"too small: {width}x{height} pixels; each side must be at least {min_side} pixels (one patch of the "
            "vision tower)"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image of what a viewer shows for `image`: EXIF orientation, bit depth, ICC profile, alpha."""
    plain = not image.info.get("icc_profile") and "transparency" not in image.info
    if image.mode == "RGB" and plain and _orientation(image) in (None, 1):
        return image  # the common case costs nothing
    file_format = image.format  # transposed copies have none
    image = ImageOps.exif_transpose(image) if _orientation(image) not in (None, 1) else image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _to_8bit(image, file_format)
    alpha = None
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("PA", "RGBa"):
        image = image.convert("RGBA")
    elif image.mode == "La":  # premultiplied gray: Pillow converts it to LA only
        image = image.convert("LA")
    elif image.mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    if image.mode in _ALPHA_MODES:
        alpha = image.getchannel("A")
        image = _keep_info(image.convert("RGB" if image.mode == "RGBA" else "L"), image)
    elif image.mode in ("P", "1"):  # the colour profile applies to the colours, not to palette indices
        image = _keep_info(image.convert("RGB" if image.mode == "P" else "L"), image)
    rgb = _to_srgb(image)
    if alpha is not None:
        rgb = Image.composite(rgb, Image.new("RGB", rgb.size, (255, 255, 255)), alpha)
    return rgb


def _keep_info(converted: Image.Image, original: Image.Image) -> Image.Image:
    converted.info = {k: v for k, v in original.info.items() if k != "transparency"}
    return converted


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(0x0112)
    except Exception:  # a damaged EXIF block: show the pixels as stored, as viewers do
        return None


def _to_8bit(image: Image.Image, file_format: str | None) -> Image.Image:
    """A grayscale image of 16/32-bit integers or floats, scaled to 0-255 by its range: the range of its bit depth
    (16-bit: 0-65535; floats: 0-1), else the range its values span."""
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and file_format == "PNG"):  # old Pillow reads 16-bit as I
        low, high = 0.0, 65535.0
    else:
        finite = values[np.isfinite(values)]
        lowest = float(finite.min()) if finite.size else 0.0
        highest = float(finite.max()) if finite.size else 0.0
        candidates = ((1.0,) if image.mode == "F" else ()) + (255.0, 65535.0, 4294967295.0)
        high = next((c for c in candidates if lowest >= 0 and highest <= c), None)
        low = 0.0
        if high is None:  # negative or beyond 32 bits: stretch what is there
            low, high = lowest, max(highest, lowest + 1e-12)
    scaled = np.nan_to_num((values - low) / (high - low), nan=0.0) * 255.0
    gray = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    gray.info = {k: v for k, v in image.info.items() if k != "icc_profile"}  # an ICC profile of 16-bit data
    return gray


_SRGB = None


def _to_srgb(image: Image.Image) -> Image.Image:
    """RGB in sRGB: an embedded ICC profile is applied (littlecms), else Pillow's conversion of the mode."""
    global _SRGB
    icc = image.info.get("icc_profile")
    if ImageCms is None:
        icc, source = None, None
    elif image.mode == "LAB":  # CIELab TIFFs: Pillow has no plain conversion
        icc, source = None, ImageCms.createProfile("LAB")
    elif icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        except (ImageCms.PyCMSError, OSError, TypeError):
            source = None  # a damaged profile: show the numbers as sRGB, as browsers do
    else:
        source = None
    if source is not None:
        if _SRGB is None:
            _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        try:
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
            if converted is not None:
                # littlecms tags its output with the sRGB profile it made, whose header holds the time it was made:
                # saved, the same picture would give other bytes in every process. sRGB needs no profile.
                converted.info.pop("icc_profile", None)
                return converted
        except (ImageCms.PyCMSError, ValueError, OSError):
            pass  # a profile that does not fit the image's mode (e.g. an RGB profile on grayscale): ignored
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ImageReadError(f"cannot be converted to RGB from mode {image.mode}: {error}") from error


def _read_bytes(source, timeout: float | None) -> bytes:
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    if hasattr(source, "read"):
        return source.read()
    if isinstance(source, Path):
        source = str(source)
    if not isinstance(source, str):
        raise ImageReadError(f"not an image or a path: a {type(source).__name__}")
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=timeout or 30, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise ImageReadError(f"could not be downloaded: {error}") from error
        return response.content
    if source.startswith("data:image/"):
        try:
            return base64.b64decode(source.split(",", 1)[1], validate=True)
        except (IndexError, ValueError) as error:
            raise ImageReadError("a data: URI that is not valid base64") from error
    path = Path(source).expanduser()
    if not path.is_file():
        raise ImageReadError(f"file not found: {source}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageReadError(f"cannot be read: {error}") from error


def container_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF file's `ftyp` box (HEIF, AVIF); empty for other files."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return set()
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}


def _check_heif(data: bytes) -> None:
    """HEIC/HEIF needs pillow-heif: registered on first use, or an error that names it. AVIF needs a Pillow that
    reads it (Pillow >= 11.3 ships the plugin)."""
    brands = container_brands(data)
    if brands & AVIF_BRANDS:
        from PIL import features

        if not ("avif" in features.modules and features.check_module("avif")):
            raise ImageReadError(
                f"an AVIF image, which this Pillow ({Image.__version__}) cannot read: pip install -U 'pillow>=11.3'"
            )
    elif brands & HEIF_BRANDS:
        try:
            from pillow_heif import register_heif_opener
        except ImportError as error:
            message = f"a HEIC/HEIF image (phone photograph); reading it needs pillow-heif: {HEIF_HINT}"
            raise ImageReadError(message) from error
        register_heif_opener()


def _kind(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "SVG is a vector format; export it as PNG"
    if head.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page"
    return f"starts with {data[:8]!r}"


@dataclass
class FramedPair:
    """A pair brought to one frame (`frame_pair`), and how the after image as given maps into that frame."""

    before: Image.Image | None
    after: Image.Image | None
    before_size: tuple[int, int]  # (width, height) of each image as given
    after_size: tuple[int, int]
    frame_size: tuple[int, int]  # (width, height) both now have
    after_scale: tuple[float, float] = (1.0, 1.0)  # frame pixels per pixel of the after image as given, x and y
    after_offset: tuple[float, float] = (0.0, 0.0)  # where its top-left corner lies in the frame
    letterboxed: bool = False  # both fitted into a square (else, for different sizes, the after image resized)

    @property
    def warnings(self) -> list[str]:
        """What was done to the pair, in words; empty for a pair of one size."""
        if self.before_size == self.after_size:
            return []
        (bw, bh), (aw, ah), (fw, fh) = self.before_size, self.after_size, self.frame_size
        sizes = f"sizes differ: before {bw}x{bh}, after {aw}x{ah}"
        if not self.letterboxed:
            resized = "the after image was" if self.frame_size == self.before_size else "both were"
            return [f"{sizes}; {resized} resized to {fw}x{fh}"]
        return [
            f"{sizes} (aspect ratios {bw / bh:.2f} and {aw / ah:.2f}); both were letterboxed to {fw}x{fh}, so their "
            "borders may read as a change"
        ]

    def as_row(self) -> list[float]:
        """The numbers that describe the framing (sizes, scales, offset), e.g. to carry through a batched pipeline."""
        row = [*self.before_size, *self.after_size, *self.frame_size, *self.after_scale, *self.after_offset]
        return [*row, float(self.letterboxed)]

    @classmethod
    def from_row(cls, row) -> "FramedPair":
        bw, bh, aw, ah, fw, fh, sx, sy, ox, oy, letterboxed = (float(v) for v in row)
        sizes = ((round(bw), round(bh)), (round(aw), round(ah)), (round(fw), round(fh)))
        return cls(None, None, *sizes, (sx, sy), (ox, oy), bool(letterboxed))

    def box_in_after(self, box) -> list[int]:
        """A box `[x0, y0, x1, y1]` in frame pixels as pixels of the after image as given (clipped to it)."""
        (ox, oy), (sx, sy) = self.after_offset, self.after_scale
        width, height = self.after_size
        x0, y0, x1, y1 = (box[0] - ox) / sx, (box[1] - oy) / sy, (box[2] - ox) / sx, (box[3] - oy) / sy
        return [
            min(width, max(0, round(x0))),
            min(height, max(0, round(y0))),
            min(width, max(0, round(x1))),
            min(height, max(0, round(y1))),
        ]


def frame_pair(
    before: Image.Image, after: Image.Image, tolerance: float = ASPECT_TOLERANCE, max_side: int = MAX_FRAME_SIDE
) -> FramedPair:
    """
    Two images of different sizes brought to one frame, so that the vision tower's patches of both cover the same
    part of the scene (the image processor resizes each image on its own, which would compare regions that do not
    correspond):

    - aspect ratios within `tolerance` (3%): the after image is resized to the before image's size;
    - otherwise both are letterboxed the same way: each scaled to fit a square as wide as the before image's longer
      side, centred on black.

    The frame's longer side is at most `max_side` (the before image is shrunk too if need be: the vision tower sees a
    few hundred pixels anyway). A pair of one size is returned as it is. `warnings` says what was done.
    """
    if before.size == after.size:
        return FramedPair(before, after, before.size, after.size, before.size)
    (bw, bh), (aw, ah) = before.size, after.size
    shrink = min(1.0, max_side / max(bw, bh))
    if abs(math.log((bw / bh) / (aw / ah))) <= tolerance:
        frame = (max(1, round(bw * shrink)), max(1, round(bh * shrink)))
        framed_before = before if frame == before.size else _resized(before, frame)
        scale = (frame[0] / aw, frame[1] / ah)
        return FramedPair(framed_before, _resized(after, frame), before.size, after.size, frame, scale)
    side = max(1, round(max(bw, bh) * shrink))

    def letterbox(image: Image.Image) -> tuple[Image.Image, tuple[float, float], tuple[float, float]]:
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        offset = ((side - size[0]) // 2, (side - size[1]) // 2)
        canvas = Image.new("RGB", (side, side), LETTERBOX_FILL)
        canvas.paste(_resized(image.convert("RGB"), size), offset)
        return canvas, (size[0] / image.width, size[1] / image.height), (float(offset[0]), float(offset[1]))

    framed_before, _, _ = letterbox(before)
    framed_after, scale, offset = letterbox(after)
    return FramedPair(framed_before, framed_after, before.size, after.size, (side, side), scale, offset, True)


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


__all__ = [
    "MAX_PIXELS",
    "FramedPair",
    "ImageReadError",
    "check_min_side",
    "check_pixels",
    "frame_pair",
    "read_image",
    "to_rgb",
]
