"""Every common file reads as the picture it shows: one picture written in every format gives the same pixels.

The picture is a held-out photograph (examples/photo_identical_before.png) reduced to 256 colours, so that a palette
file holds it exactly; its grayscale copy is the reference for the grayscale formats. The default model's half of
these checks (each file against its original says "no change") is in test_default_model.py.
"""

import csv
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, features

from modeling_onediff.image_reading_onediff import (
    FramedPair,
    ImageReadError,
    frame_pair,
    read_image,
)
from tiny import random_image, tiny_model_and_processor

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "images"
LOSSY = {"jpeg_q100_exif_rotated", "jpeg_adobe_rgb", "jpeg_cmyk", "heic", "avif"}


def original() -> Image.Image:
    return read_image(REPO / "examples" / "photo_identical_before.png").quantize(256).convert("RGB")


def adobe_rgb_profile() -> bytes:
    """The Adobe RGB (1998) profile embedded in scikit-image's rocket.jpg: a real photograph's profile."""
    from onediff_idc.processing.photo_edits import photo_path

    with Image.open(photo_path("rocket")) as rocket:
        profile = rocket.info["icc_profile"]
    assert b"Adobe RGB" in profile
    return profile


def png_rgb16(image: Image.Image) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow writes none): each 8-bit value v stored as v * 257."""
    values = (np.asarray(image, dtype=np.uint16) * 257).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in values)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", image.width, image.height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **settings) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **settings)
    return buffer.getvalue()


def white_band(image: Image.Image) -> tuple[Image.Image, np.ndarray]:
    """The picture with its top rows fully transparent (their colour scrambled), and what a viewer shows: white
    there."""
    pixels = np.asarray(image.convert("RGBA")).copy()
    band = pixels.shape[0] // 5
    pixels[:band, :, :3] = np.random.default_rng(0).integers(0, 256, pixels[:band, :, :3].shape)
    pixels[:band, :, 3] = 0
    shown = np.asarray(image.convert("RGB")).copy()
    shown[:band] = 255
    return Image.fromarray(pixels, "RGBA"), shown


def format_cases() -> dict[str, tuple[bytes, np.ndarray]]:
    """{case: (file bytes, the 8-bit RGB picture a viewer shows)} for one picture in every format."""
    colour = original()
    gray = colour.convert("L")
    shown_colour, shown_gray = np.asarray(colour), np.asarray(gray.convert("RGB"))
    gray_values = np.asarray(gray).astype(np.uint16)
    adobe = adobe_rgb_profile()
    in_adobe = ImageCms.profileToProfile(
        colour, ImageCms.createProfile("sRGB"), ImageCms.ImageCmsProfile(io.BytesIO(adobe)), outputMode="RGB"
    )
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter counter-clockwise: viewers turn it back clockwise
    rgba, shown_rgba = white_band(colour)
    la, shown_la = white_band(gray.convert("RGB"))
    la = la.convert("LA")
    second_frame = Image.new("RGB", colour.size, (255, 0, 0))
    cases = {
        "png_rgb8": (encode(colour, "PNG"), shown_colour),
        "png_gray8": (encode(gray, "PNG"), shown_gray),
        "png_gray16": (encode(Image.fromarray(gray_values * 257), "PNG"), shown_gray),
        "png_rgb16": (png_rgb16(colour), shown_colour),
        "tiff_gray16": (encode(Image.fromarray(gray_values * 257), "TIFF"), shown_gray),
        "tiff_gray16_big_endian": (
            encode(Image.frombytes("I;16B", gray.size, (gray_values * 257).astype(">u2").tobytes()), "TIFF"),
            shown_gray,
        ),
        "tiff_int32": (encode(Image.fromarray(gray_values.astype(np.int32) * 257), "TIFF"), shown_gray),
        "tiff_float": (encode(Image.fromarray(gray_values.astype(np.float32) / 255), "TIFF"), shown_gray),
        "bmp": (encode(colour, "BMP"), shown_colour),
        "webp_lossless": (encode(colour, "WEBP", lossless=True), shown_colour),
        "jpeg_q100_exif_rotated": (
            encode(colour.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=100, exif=exif),
            shown_colour,
        ),
        "jpeg_cmyk": (encode(colour.convert("CMYK"), "JPEG", quality=100), shown_colour),
        "palette": (encode(colour.quantize(256), "PNG"), shown_colour),
        "gif_animated_first_frame": (
            encode(colour.quantize(256), "GIF", save_all=True, append_images=[second_frame.quantize(256)]),
            shown_colour,
        ),
        "rgba_over_white": (encode(rgba, "PNG"), shown_rgba),
        "la_over_white": (encode(la, "PNG"), shown_la),
        "png_adobe_rgb": (encode(in_adobe, "PNG", icc_profile=adobe), shown_colour),
        "jpeg_adobe_rgb": (encode(in_adobe, "JPEG", quality=100, icc_profile=adobe), shown_colour),
        "png_srgb_profile": (encode(colour, "PNG", icc_profile=srgb), shown_colour),
    }
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        cases["heic"] = (encode(colour, "HEIF", quality=100), shown_colour)
    except ImportError:
        pass
    if "avif" in features.modules and features.check_module("avif"):
        cases["avif"] = (encode(colour, "AVIF", quality=100), shown_colour)
    return cases


CASES = format_cases()


def tolerance(case: str) -> float:
    """Mean absolute difference allowed, in 8-bit levels: lossy codecs (JPEG q100, HEIC, AVIF), or a colour profile's
    8-bit round trip; otherwise the same pixels."""
    return 3.0 if case in LOSSY else 0.5 if "adobe" in case else 0.0


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_format_reads_as_the_picture_it_shows(case, tmp_path):
    data, shown = CASES[case]
    path = tmp_path / f"{case}.img"
    path.write_bytes(data)
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (shown.shape[1], shown.shape[0])
    difference = np.abs(np.asarray(image, dtype=np.float64) - shown)
    assert difference.mean() <= tolerance(case), (case, difference.mean())
    assert read_image(data).tobytes() == image.tobytes()  # bytes and paths read alike
    # sRGB carries no profile: littlecms's own is time-stamped and would make saved copies differ run to run
    assert "icc_profile" not in image.info


@pytest.fixture(scope="module")
def processor():
    return tiny_model_and_processor()[1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_format_gives_the_pixel_values_of_its_original(case, processor, tmp_path):
    data, shown = CASES[case]
    path = tmp_path / f"{case}.img"
    path.write_bytes(data)
    pixel_values = processor(images=[(str(path), Image.fromarray(shown))], text=["q"], return_tensors="pt")[
        "pixel_values"
    ][0]
    std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
    levels = ((pixel_values[0] - pixel_values[1]).abs() * std * 255).mean().item()  # in 8-bit levels
    assert levels <= tolerance(case) + 0.01, (case, levels)


def test_what_the_reader_fixes_is_what_plain_pillow_gets_wrong():
    """The checks above bite: read the old way (`Image.open(p).convert("RGB")`), 16-bit is clipped white, the Adobe
    RGB photograph's colours are off, the EXIF-rotated JPEG lies on its side and the transparent band is not white."""

    def plain(case: str) -> np.ndarray:
        with Image.open(io.BytesIO(CASES[case][0])) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float64)

    assert plain("png_gray16").mean() > 250 > CASES["png_gray16"][1].mean()  # clipped to white
    assert np.abs(plain("png_adobe_rgb") - CASES["png_adobe_rgb"][1]).mean() > 3
    assert plain("jpeg_q100_exif_rotated").shape[:2] == CASES["jpeg_q100_exif_rotated"][1].shape[:2][::-1]
    assert np.abs(plain("rgba_over_white") - CASES["rgba_over_white"][1]).mean() > 10


def test_sixteen_bit_data_that_fills_a_few_bits_is_not_stretched():
    """16-bit images scale by the 16-bit range, as viewers show them: a dark 12-bit scan stays dark."""
    dark = Image.fromarray(np.full((20, 20), 4095, dtype=np.uint16))
    assert read_image(encode(dark, "PNG")).getpixel((0, 0)) == (16, 16, 16)  # 4095 / 65535 * 255


def test_float_and_signed_images_outside_the_usual_ranges_are_stretched_by_their_values():
    values = np.linspace(-3.0, 5.0, 400, dtype=np.float32).reshape(20, 20)
    image = np.asarray(read_image(Image.fromarray(values)))[..., 0]
    assert image.min() == 0 and image.max() == 255 and np.all(np.diff(image.ravel().astype(int)) >= 0)


def test_heic_without_pillow_heif_is_an_error_that_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    with pytest.raises(ImageReadError, match=r"HEIC/HEIF.*pillow-heif.*onediff-idc\[heif\]"):
        read_image(FIXTURES / "photo.heic")


def test_heic_and_avif_read_where_their_decoders_are_installed():
    heic = pytest.importorskip("pillow_heif")
    assert heic and read_image(FIXTURES / "photo.heic").size == (32, 32)
    if "avif" in features.modules and features.check_module("avif"):
        assert read_image(FIXTURES / "photo.avif").size == (32, 32)
    else:  # an older Pillow: the error says what to upgrade
        with pytest.raises(ImageReadError, match=r"AVIF.*pillow>=11\.3"):
            read_image(FIXTURES / "photo.avif")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG is a vector format"),
        (b"hello, not an image", "not an image file"),
    ],
)
def test_files_that_are_not_pictures_get_one_sentence(content, message, tmp_path):
    path = tmp_path / "file.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        read_image(path)
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "missing.png")


def test_huge_images_are_refused_from_their_header(tmp_path):
    Image.new("L", (8000, 8000)).save(tmp_path / "huge.png")  # 64 Mpixel, a few kB
    with pytest.raises(ImageReadError, match="too large: 8000x8000"):
        read_image(tmp_path / "huge.png")


def test_a_pair_with_an_image_smaller_than_a_patch_is_refused(processor):
    with pytest.raises(ValueError, match=r"after image of sample 0 is too small: 1x1 pixels.*at least \d+ pixels"):
        processor(images=[(random_image(0, size=64), Image.new("RGB", (1, 1)))], text=["q"])


def test_files_cut_off_anywhere_and_truncated_images_passed_in_are_one_sentence(tmp_path):
    jpeg = encode(original(), "JPEG", quality=90)
    for cut in (20, 200, len(jpeg) // 2):
        with pytest.raises(ImageReadError, match=r"cannot be decoded|not an image file"):
            read_image(jpeg[:cut])
    (tmp_path / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageReadError, match="cannot be decoded"):
        read_image(Image.open(tmp_path / "half.jpg"))  # opened lazily by the caller, decoded by the reader


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_a_transparent_colour_key_is_shown_on_white(mode):
    """PNG's tRNS chunk: one colour (or palette entry) is transparent, which viewers show as the background."""
    image = Image.new("RGB", (20, 20), (10, 200, 30))
    image.paste((250, 0, 250), (0, 0, 10, 20))
    image = image.convert(mode) if mode != "P" else image.quantize(4)
    key = image.getpixel((0, 0))
    shown = np.asarray(read_image(encode(image, "PNG", transparency=key)))
    assert (shown[:, :10] == 255).all() and not (shown[:, 10:] == 255).all()


def test_profiles_apply_to_palette_and_gray_with_alpha_and_sixteen_bit_turns_with_exif():
    adobe = adobe_rgb_profile()
    colour = original()
    in_adobe = ImageCms.profileToProfile(
        colour, ImageCms.createProfile("sRGB"), ImageCms.ImageCmsProfile(io.BytesIO(adobe)), outputMode="RGB"
    )
    palette = read_image(encode(in_adobe.quantize(256, dither=Image.Dither.NONE), "PNG", icc_profile=adobe))
    plain = np.asarray(in_adobe.quantize(256, dither=Image.Dither.NONE).convert("RGB"), dtype=np.float64)
    # the profile moved the palette's colours back towards the sRGB original
    assert np.abs(np.asarray(palette, dtype=np.float64) - np.asarray(colour)).mean() < np.abs(plain - colour).mean()
    la = read_image(Image.new("La", (8, 8)))  # premultiplied gray with alpha: shown on white like LA
    assert la.mode == "RGB" and la.getpixel((0, 0)) == (255, 255, 255)
    gray = np.asarray(colour.convert("L")).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = Image.fromarray(np.ascontiguousarray(np.rot90(gray)) * 257)
    shown = read_image(encode(turned, "TIFF", exif=exif))
    assert np.array_equal(np.asarray(shown)[..., 0], np.asarray(colour.convert("L")))


def test_a_pair_of_one_aspect_ratio_resizes_the_after_image():
    before, after = Image.new("RGB", (640, 480), (10, 20, 30)), Image.new("RGB", (1280, 960), (200, 0, 0))
    framed = frame_pair(before, after)
    assert framed.before is before and framed.after.size == (640, 480) and not framed.letterboxed
    assert framed.warnings == ["sizes differ: before 640x480, after 1280x960; the after image was resized to 640x480"]
    assert framed.box_in_after([100, 50, 200, 150]) == [200, 100, 400, 300]
    assert FramedPair.from_row(framed.as_row()).warnings == framed.warnings
    # within 3% the scales differ by axis: each maps back on its own
    slightly_wider = frame_pair(Image.new("RGB", (1000, 750)), Image.new("RGB", (1030, 750)))
    assert slightly_wider.warnings[0].endswith("the after image was resized to 1000x750")
    assert slightly_wider.box_in_after([500, 700, 1000, 750]) == [515, 700, 1030, 750]
    assert FramedPair.from_row(slightly_wider.as_row()).box_in_after([500, 700, 1000, 750]) == [515, 700, 1030, 750]
    same = frame_pair(before, before.copy())
    assert same.warnings == [] and same.box_in_after([1, 2, 3, 4]) == [1, 2, 3, 4]


def test_a_pair_of_different_aspect_ratios_is_letterboxed_the_same_way():
    before = Image.new("RGB", (640, 480), (0, 0, 255))
    after = Image.new("RGB", (1280, 720), (255, 0, 0))
    framed = frame_pair(before, after)
    assert framed.before.size == framed.after.size == (640, 640) and framed.letterboxed
    after_pixels, before_pixels = np.asarray(framed.after), np.asarray(framed.before)
    assert (after_pixels[140:500, :] == (255, 0, 0)).all() and (after_pixels[:139] == 0).all()  # 640x360, centred
    assert (before_pixels[80:560, :] == (0, 0, 255)).all() and (before_pixels[:79] == 0).all()  # 640x480, centred
    assert "letterboxed to 640x640" in framed.warnings[0] and "1280x720" in framed.warnings[0]
    assert framed.box_in_after([0, 140, 320, 500]) == [0, 0, 640, 720]  # frame pixels back to the after image's
    assert FramedPair.from_row(framed.as_row()).box_in_after([0, 140, 320, 500]) == [0, 0, 640, 720]


def test_framing_a_panorama_stays_within_the_frame_cap():
    framed = frame_pair(Image.new("RGB", (20000, 1000)), Image.new("RGB", (640, 480)), max_side=2048)
    assert framed.frame_size == (2048, 2048) and framed.after.size == (2048, 2048)
    assert framed.box_in_after([0, 256, 2048, 1792]) == [0, 0, 640, 480]
    resized = frame_pair(Image.new("RGB", (8000, 6000)), Image.new("RGB", (800, 600)), max_side=2048)
    assert resized.before.size == resized.after.size == (2048, 1536) and "both were resized" in resized.warnings[0]


def test_the_pipeline_says_when_it_framed_a_pair_and_maps_the_box_back(tmp_path):
    from modeling_onediff import ImageDifferenceCaptioningPipeline

    model, processor = tiny_model_and_processor()
    pipe = ImageDifferenceCaptioningPipeline(model=model.eval(), processor=processor)
    random_image(0, size=64).save(tmp_path / "before.png")
    random_image(1, size=64).resize((128, 72)).save(tmp_path / "after.png")
    pair = {"before": str(tmp_path / "before.png"), "after": str(tmp_path / "after.png")}
    results = pipe([pair, pair | {"after": str(tmp_path / "before.png")}], batch_size=2, max_new_tokens=3,
                   return_change_map=True)  # fmt: skip
    framed = results[0]
    assert framed["warnings"] == [
        "sizes differ: before 64x64, after 128x72 (aspect ratios 1.00 and 1.78); both were letterboxed to 64x64, so "
        "their borders may read as a change"
    ]
    assert "warnings" not in results[1]
    x0, y0, x1, y1 = framed["change_box"]
    assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 72  # in the after image's own pixels
    # exactly the box on the framed pair, mapped back through the letterbox (64 / 128 = 0.5 per pixel, 14 px down)
    in_frame = pipe(
        {"before": frame_pair(*(Image.open(pair[r]) for r in ("before", "after"))).before,
         "after": frame_pair(*(Image.open(pair[r]) for r in ("before", "after"))).after},
        max_new_tokens=3, return_change_map=True,
    )["change_box"]  # fmt: skip
    expected = [in_frame[0] * 2, (in_frame[1] - 14) * 2, in_frame[2] * 2, (in_frame[3] - 14) * 2]
    assert framed["change_box"] == [min(128, max(0, v)) if i % 2 == 0 else min(72, max(0, v))
                                    for i, v in enumerate(expected)]  # fmt: skip


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_many_pairs_say_which_were_framed(fmt, tmp_path):
    from onediff_idc.cli import main

    model, processor = tiny_model_and_processor()
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    random_image(0, size=64).save(tmp_path / "a.png")
    random_image(1, size=64).save(tmp_path / "b.png")
    random_image(2, size=96).save(tmp_path / "big.png")
    (tmp_path / "pairs.csv").write_text("id,before,after\nsame,a.png,b.png\nbigger,a.png,big.png\n")
    out = tmp_path / f"out.{fmt}"
    argv = ["caption", "--pairs", str(tmp_path / "pairs.csv"), "--out", str(out), "--format", fmt]
    assert main([*argv, "--model", str(tmp_path / "ckpt"), "--max-new-tokens", "2"]) == 0
    if fmt == "jsonl":
        rows = {row["id"]: row["warnings"] for row in map(json.loads, out.read_text().splitlines())}
    else:
        rows = {row["id"]: json.loads(row["warnings"]) for row in csv.DictReader(out.open())}
    assert rows == {
        "same": [],
        "bigger": ["sizes differ: before 64x64, after 96x96; the after image was resized to 64x64"],
    }


def test_one_pair_on_the_command_line_prints_nothing_on_stderr(tmp_path):
    model, processor = tiny_model_and_processor()
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    random_image(0, size=64).save(tmp_path / "a.png")
    random_image(1, size=64).save(tmp_path / "b.png")
    command = [sys.executable, "-m", "onediff_idc.cli", "caption", str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    command += ["--model", str(tmp_path / "ckpt"), "--max-new-tokens", "3"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout.strip() and quiet.stderr == ""
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout and "Loading weights" in verbose.stderr
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    refused = subprocess.run([*command[:5], str(tmp_path / "dot.png"), *command[6:]], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "too small: 1x1 pixels" in refused.stderr
