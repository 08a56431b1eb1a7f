"""Loading pictures (images.py): every hard input a user can feed the tutorial.

Images are generated here with Pillow, OpenCV or hand-written bytes; nothing comes from the web. A
file that is not a picture stops with one ImageError naming the problem (Pillow's own words where it
has them); an odd-but-valid one loads as the RGB picture a viewer shows; a large one is shrunk, in
bounded memory, and a huge one refused.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps
from skimage import data as skdata

from gradcam_tutorial import images
from gradcam_tutorial.classes import (
    EGYPTIAN_CAT,
    ESPRESSO,
    MILITARY_UNIFORM,
    MOPED,
    imagenet_categories,
)
from gradcam_tutorial.images import MAX_PIXELS, ImageError, demo_grid, load_image, restore_aspect, to_rgb

ORIENTATION = 0x0112


def _noise_picture(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_bilevel_png(path: Path, width: int, height: int) -> None:
    """A valid all-white 1-bit PNG of any size, written row by row so memory stays tiny."""
    write_grey_png(path, width, height, depth=1, value=1)


def write_grey_png(path: Path, width: int, height: int, depth: int, value: int) -> None:
    """A valid flat grey PNG (1, 8 or 16 bits per pixel) of any size, written row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if depth == 1:
        pixels = (b"\xff" if value else b"\x00") * ((width + 7) // 8)
    else:
        pixels = value.to_bytes(depth // 8, "big") * width
    row = b"\x00" + pixels  # filter byte 0, then the pixels
    compressor = zlib.compressobj(1)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)))
        for start in range(0, height, 1024):
            data = compressor.compress(row * min(1024, height - start))
            if data:
                handle.write(chunk(b"IDAT", data))
        handle.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- 1-5: files that are not images


def test_01_missing_path(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_02_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_03_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"just some notes, not a picture\n", "text file"),
        (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>", "HTML"),
    ],
    ids=["text", "html-error-page"],
)
def test_05_text_saved_as_image(tmp_path, content, words):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=words):
        load_image(path)


def test_10_cmyk_jpeg_colours(tmp_path):
    blocks = [(0, 255, 255, 0), (255, 0, 255, 0), (255, 255, 0, 0), (0, 0, 0, 255), (0, 0, 0, 0)]
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0), (255, 255, 255)]
    cmyk = np.concatenate([np.full((16, 16, 4), b, np.uint8) for b in blocks], axis=1)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    pixels = np.asarray(load_image(tmp_path / "cmyk.jpg")).astype(int)
    for n, colour in enumerate(expected):
        centre = pixels[4:12, 16 * n + 4 : 16 * n + 12]
        assert np.abs(centre - colour).max() <= 12, (blocks[n], centre.mean(axis=(0, 1)))


_PEAK_RSS = """
import importlib.util, json, sys, warnings
from pathlib import Path

# images.py alone (numpy + Pillow), without the package's torch import: faster, and a smaller baseline
spec = importlib.util.spec_from_file_location("images_alone", sys.argv[2])
images = sys.modules["images_alone"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(images)
ImageError, load_image = images.ImageError, images.load_image

def peak_mb():  # VmHWM: the highest resident set size since the last reset
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024

def current_mb():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

Path("/proc/self/clear_refs").write_text("5")  # reset the peak to now: imports do not count
before = current_mb()
outcome = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        image = load_image(sys.argv[1])
        outcome["size"] = list(image.size)
        outcome["mean"] = float(images.np.asarray(image).mean())
    except ImageError as error:
        outcome["error"] = str(error)
outcome["warnings"] = [str(w.message) for w in caught]
outcome["growth_mb"] = peak_mb() - before
print(json.dumps(outcome))
"""


def _load_in_subprocess(path: Path) -> dict:
    """Load in a fresh interpreter so its peak RSS is this load's, and an OOM kill cannot take pytest down."""
    import gradcam_tutorial.images

    command = [sys.executable, "-c", _PEAK_RSS, str(path), gradcam_tutorial.images.__file__]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_13_huge_image_is_refused_with_small_memory(tmp_path):
    path = tmp_path / "huge.png"
    write_bilevel_png(path, 20_000, 20_000)  # 400 megapixels, about 60 kB on disk
    assert path.stat().st_size < 1_000_000
    assert Image.MAX_IMAGE_PIXELS is not None  # the decompression-bomb guard is on
    outcome = _load_in_subprocess(path)
    print(outcome)
    assert "too many pixels" in outcome.get("error", ""), outcome
    assert outcome["growth_mb"] < 100, outcome


@pytest.mark.slow
def test_13b_large_image_is_downscaled_with_a_message(tmp_path):
    width, height = 9_000, 5_000  # 45 megapixels: over MAX_PIXELS, under Pillow's bomb limit
    path = tmp_path / "large.png"
    write_bilevel_png(path, width, height)
    outcome = _load_in_subprocess(path)
    print(outcome)
    assert "error" not in outcome, outcome
    new_width, new_height = outcome["size"]
    assert new_width * new_height <= MAX_PIXELS
    assert abs(new_width / new_height - width / height) < 0.01
    assert any("downscaled" in w for w in outcome["warnings"]), outcome
    assert outcome["growth_mb"] < 1200, outcome  # a few copies of the picture, not gigabytes


@pytest.mark.slow
def test_13c_images_between_40_and_179_megapixels_are_downscaled_not_refused(tmp_path):
    """The README's promise: above Pillow's warning level (89 MP) too, up to its refusal level (179 MP)."""
    png, jpeg = tmp_path / "100mp.png", tmp_path / "100mp.jpg"
    write_bilevel_png(png, 10_000, 10_000)
    ok, encoded = cv2.imencode(".jpg", np.full((10_000, 10_000), 90, dtype=np.uint8))
    assert ok
    jpeg.write_bytes(encoded.tobytes())
    for path, grey in [(png, 255), (jpeg, 90)]:
        outcome = _load_in_subprocess(path)
        print(outcome)
        assert "error" not in outcome, outcome
        width, height = outcome["size"]
        assert width == height and MAX_PIXELS * 0.999 < width * height <= MAX_PIXELS
        assert outcome["warnings"] == [f"{path}: 10000x10000 pixels; downscaled to {width}x{height}"]
        assert abs(outcome["mean"] - grey) < 1, outcome
    assert outcome["growth_mb"] < 600, outcome  # a 100 MP greyscale JPEG is 100 MB decoded


@pytest.mark.slow
def test_13d_a_16_bit_81_megapixel_png_loads_in_bounded_memory(tmp_path):
    """0.7 MB on disk, 162 MB decoded: loading it once cost 3 GB through float64 copies of every pixel."""
    path = tmp_path / "deep.png"
    write_grey_png(path, 9_000, 9_000, depth=16, value=0x8080)  # 32896 of 65535: grey 128
    outcome = _load_in_subprocess(path)
    print(outcome)
    assert outcome["size"] == [6324, 6324] and outcome["mean"] == pytest.approx(128, abs=0.01)
    assert outcome["growth_mb"] < 800, outcome


def test_failed_load_leaves_no_open_file(tmp_path):
    """The error keeps load_image's frame alive; the file must already be closed by then."""
    import psutil

    path = tmp_path / "truncated.png"
    data = _encoded(_noise_picture(64, 64), "PNG")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value is not None
    assert str(path) not in [f.path for f in psutil.Process().open_files()]


def test_subprocess_helper_reports_errors_cleanly(tmp_path):
    """The RSS probe itself must see an ImageError as an outcome, not crash (guards test_13)."""
    (tmp_path / "bad.png").write_text("nope")
    assert "text file" in _load_in_subprocess(tmp_path / "bad.png")["error"]


# --- damaged files: one clear ImageError, never another exception (issue 14, item 5) ----------------


def _damaged_exif_jpeg() -> bytes:
    """A JPEG with EXIF orientation 6 and ResolutionUnit stored as a RATIONAL instead of a SHORT."""
    entries = struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<HHII", 0x0128, 5, 1, 8 + 2 + 2 * 12 + 4)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + b"\x00" * 4 + struct.pack("<II", 1, 3)
    out = io.BytesIO()
    Image.new("RGB", (32, 16), "red").save(out, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return out.getvalue()


def test_a_damaged_exif_tag_does_not_cost_the_picture_or_its_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_damaged_exif_jpeg())
    with Image.open(path) as opened, pytest.raises(struct.error):
        ImageOps.exif_transpose(opened)  # what Pillow alone does with it
    assert load_image(path).size == (16, 32), "orientation 6 still turns the 32x16 picture upright"


def _samples() -> dict[str, bytes]:
    """Small real files of every format the CLI takes, multi-frame where the format allows."""
    base = _noise_picture(48, 32, seed=3)
    frames = [base, base.rotate(180), base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    out = {}
    for suffix, fmt, extra in (
        ("gif", "GIF", {"save_all": True, "append_images": frames[1:]}),
        ("tiff", "TIFF", {"save_all": True, "append_images": frames[1:]}),
        ("png", "PNG", {}),
        ("bmp", "BMP", {}),
        ("webp", "WEBP", {}),
    ):
        buffer = io.BytesIO()
        base.save(buffer, fmt, **extra)
        out[suffix] = buffer.getvalue()
    out["jpg"] = _damaged_exif_jpeg()
    return out


def test_fuzzed_files_of_every_format_load_or_raise_image_error(tmp_path):
    """Seeded truncations and byte flips: load_image returns RGB or raises ImageError, nothing else."""
    import random

    rng = random.Random(0)
    other = []
    for suffix, blob in _samples().items():
        for trial in range(120):
            data = bytearray(blob)
            if trial % 2 == 0:
                data = data[: rng.randrange(1, len(data))]
            else:
                for _ in range(rng.randint(1, 8)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            path = tmp_path / f"fuzz{trial}.{suffix}"
            path.write_bytes(bytes(data))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    assert load_image(path).mode == "RGB"
            except ImageError:
                pass
            except Exception as error:
                other.append(f"{path.name}: {type(error).__name__}: {error}")
            path.unlink()
    assert other == []


BILINEAR = Image.Resampling.BILINEAR
BICUBIC = Image.Resampling.BICUBIC
HTML = "it is an HTML/XML page, not an image (a failed download saved under an image name?)"


def _refusal(path) -> str:
    with pytest.raises(ImageError) as caught:
        load_image(path)
    return str(caught.value)


def _load_quietly(path) -> np.ndarray:
    """The loaded pixels, failing if load_image warned about anything."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path)
    assert [str(w.message) for w in caught] == []
    assert image.mode == "RGB"
    return np.asarray(image)


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=2)


def _noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------ paths that hold no picture


def test_paths_that_are_not_regular_image_files_are_refused_with_their_reason(tmp_path):
    missing = tmp_path / "missing.jpg"
    assert _refusal(missing) == f"{missing}: no such file"
    assert _refusal(str(missing)) == f"{missing}: no such file"
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    assert _refusal(dangling) == f"{dangling}: is a broken or looping symbolic link"
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    assert _refusal(loop) == f"{loop}: is a broken or looping symbolic link"
    assert _refusal(tmp_path) == f"{tmp_path}: is a directory, not an image file"
    sock = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock))
        assert _refusal(sock) == f"{sock}: is a socket, not a regular file"
    finally:
        server.close()
    assert _refusal("/dev/null") == "/dev/null: is a device, not a regular file"
    regular = tmp_path / "regular.png"
    Image.new("RGB", (2, 2), (1, 2, 3)).save(regular)
    assert load_image(regular).getpixel((0, 0)) == (1, 2, 3)
    fifo = tmp_path / "pipe.png"  # last: were it opened, reading it would wait for a writer forever
    os.mkfifo(fifo)
    assert _refusal(fifo) == f"{fifo}: is a FIFO, not a regular file"


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "it is empty (0 bytes)"),
        (b"\n  <!DOCTYPE html><html><body>404</body></html>", HTML),
        (b"\n<HTML><body>Not found</body></HTML>", HTML),
        (b"\t<?XML version='1.0'?><error/>", HTML),
        (b" <Head><title>403 Forbidden</title></Head>", HTML),
        (b"just some words\n", "it is a text file, not an image"),
        (b"a" * 512 + b"\xff", "it is a text file, not an image"),  # only the first 512 bytes are read
        (bytes(range(128, 256)) * 4, "its format is not one Pillow can read"),
    ],
)
def test_files_that_are_not_pictures_say_what_they_are(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    assert _refusal(path) == f"{path}: cannot be read as an image: {reason}"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_file_is_refused_with_pillows_own_words(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt.lower()}"
    Image.fromarray(_noise((64, 64, 3))).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as opened, pytest.raises(Exception) as pillow:
        opened.load()
    error = pillow.value
    assert _refusal(path) == f"{path}: the image data is damaged or truncated ({type(error).__name__}: {error})"


def test_unreadable_and_undecodable_files_are_explained(tmp_path, monkeypatch):
    # Running as root, no file is unreadable; these stand in for what the OS and Pillow raise then.
    path = tmp_path / "photo.png"
    Image.new("L", (4, 4)).save(path)
    real_stat = Path.stat

    def stat_denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "stat", stat_denied)  # a folder on the way that we may not search
        assert _refusal(path) == f"{path}: cannot be opened: permission denied"

    def open_denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", open_denied)  # a file we may not read
        assert _refusal(path) == f"{path}: cannot be opened: permission denied"

    def out_of_memory(self, *args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", out_of_memory)
        assert _refusal(path) == f"{path}: too large to decode in the memory available"


def test_a_decompression_bomb_is_refused_and_a_merely_large_picture_loads_silently(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (50, 50), 7).save(bomb)  # 2500 pixels: above twice Pillow's limit
    with pytest.raises(Image.DecompressionBombError) as pillow:
        Image.open(bomb)
    assert _refusal(bomb) == (
        f"{bomb}: refused, too many pixels for a safe decode ({pillow.value}); "
        "downscale it below 40,000,000 pixels first"
    )
    large = tmp_path / "large.png"
    Image.new("L", (40, 40), 7).save(large)  # 1600 pixels: Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (_load_quietly(large) == 7).all()


# ------------------------------------------------------------------ pixel formats


def test_sixteen_bit_grey_is_rescaled_from_65535_to_255(tmp_path):
    # 51400 = 257 * 200 is exactly grey 200; 128 and 129 round down and up; no pixel is white
    levels = np.array([[0, 257, 1000, 32768], [51400, 128, 129, 40000]], np.uint16)
    expected = _rgb(np.floor(levels.astype(np.float64) * 255 / 65535 + 0.5))
    path = tmp_path / "grey16.png"
    Image.fromarray(levels).save(path)
    with Image.open(path) as stored:
        assert stored.mode == "I;16"
    np.testing.assert_array_equal(_load_quietly(path), expected)
    for mode, dtype in [("I;16B", ">u2"), ("I;16L", "<u2"), ("I;16N", "=u2"), ("I;16", "<u2")]:
        image = Image.frombytes(mode, (4, 2), levels.astype(dtype).tobytes())
        np.testing.assert_array_equal(np.asarray(to_rgb(image)), expected, err_msg=mode)


def test_a_sixteen_bit_png_with_a_transparent_level_shows_it_white_and_keeps_the_others(tmp_path):
    levels = np.array([[0, 25700, 51400, 0]], np.uint16)  # 0 is marked transparent
    path = tmp_path / "grey16_trns.png"
    Image.fromarray(levels).save(path, transparency=0)
    np.testing.assert_array_equal(_load_quietly(path), _rgb([[255, 100, 200, 255]]))


def test_a_one_bit_png_with_a_transparent_level_shows_it_white(tmp_path):
    bits = np.array([[0, 1, 1, 0]], bool)
    path = tmp_path / "bits_trns.png"
    Image.fromarray(bits).convert("1").save(path, transparency=1)  # white marked transparent: still white
    np.testing.assert_array_equal(_load_quietly(path), _rgb([[0, 255, 255, 0]]))
    Image.fromarray(bits).convert("1").save(path, transparency=0)  # black marked transparent
    np.testing.assert_array_equal(_load_quietly(path), _rgb([[255, 255, 255, 255]]))


def test_sixteen_bit_white_level_is_65535_not_65536():
    # the one 16-bit level below where a white level of 65536 instead of 65535 changes the grey
    levels = np.arange(65536, dtype=np.float64)
    wanted = np.floor(levels * 255 / 65535 + 0.5)
    assert (wanted == np.floor(levels * 255 / 65536 + 0.5)).sum() < 65536
    level = int(np.flatnonzero(wanted != np.floor(levels * 255 / 65536 + 0.5))[0])
    grey = np.array([[level, 0]], np.uint16)
    out = np.asarray(to_rgb(Image.fromarray(grey)))
    np.testing.assert_array_equal(out, _rgb([[wanted[level], 0]]))
    image32 = Image.fromarray(np.array([[level, 0, 65535]], np.int32), "I")  # fits 16 bits: 65535 is white
    np.testing.assert_array_equal(np.asarray(to_rgb(image32))[0, 0], [wanted[level]] * 3)


@pytest.mark.parametrize(
    "values, white",
    [
        ([[0, 1, 100, 200]], 255),  # fits 8 bits: kept as is
        ([[0, 1]], 255),
        ([[0, 255]], 255),
        ([[0, 256, 51400]], 65535),  # fits 16 bits
        ([[0, 256]], 65535),
        ([[0, 300, 65536]], 65536),  # wider: stretched to its own maximum
        ([[-100, 0, 100]], 100),  # negative: stretched, negatives black
        ([[-5, 0]], None),  # nothing above zero: all black
    ],
)
def test_32_bit_integer_grey_is_taken_at_the_depth_its_values_fit(values, white):
    array = np.array(values, np.int32)
    wanted = np.zeros(array.shape) if white is None else np.floor(array * 255.0 / white + 0.5)
    out = to_rgb(Image.fromarray(array, "I"))
    np.testing.assert_array_equal(np.asarray(out), _rgb(np.clip(wanted, 0, 255)))


def test_a_32_bit_level_just_past_16_bits_is_stretched_to_its_own_maximum():
    levels = np.arange(65536, dtype=np.float64)
    differs = np.flatnonzero(np.floor(levels * 255 / 65535 + 0.5) != np.floor(levels * 255 / 65536 + 0.5))
    array = np.array([[differs[0], 65536]], np.int32)
    out = np.asarray(to_rgb(Image.fromarray(array, "I")))
    np.testing.assert_array_equal(out, _rgb(np.floor(array * 255 / 65536 + 0.5)))


@pytest.mark.parametrize(
    "values, expected",
    [
        ([[0.0, 0.25, 0.5, 1.0]], [[0, 64, 128, 255]]),  # normalised: 1.0 is white
        ([[0.0, 0.5]], [[0, 128]]),
        ([[0.25, 0.5, np.nan, np.inf, -np.inf]], [[64, 128, 0, 0, 0]]),  # non-finite values are black
        ([[0.0, 1.0, 2.0, 4.0]], [[0, 64, 128, 255]]),  # other ranges: stretched to the maximum
        ([[0.0, 0.5, 2.0]], [[0, 64, 255]]),
        ([[-1.0, 0.25, 0.5]], [[0, 128, 255]]),
    ],
)
def test_float_grey_is_shown_as_a_normalised_picture_or_stretched(values, expected):
    image = Image.fromarray(np.array(values, np.float32), "F")
    np.testing.assert_array_equal(np.asarray(to_rgb(image)), _rgb(np.array(expected)))


def test_an_empty_picture_of_any_grey_depth_converts_to_an_empty_rgb_one():
    for mode in ("I", "F", "I;16"):
        out = to_rgb(Image.new(mode, (0, 0)))
        assert (out.mode, out.size) == ("RGB", (0, 0))


def test_transparency_is_composited_on_white(tmp_path):
    colour = _noise((4, 6, 3), seed=1)
    alpha = np.array([[0, 255, 128, 0, 255, 64]] * 4, np.uint8)
    rgba = np.dstack([colour, alpha])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = _load_quietly(path).astype(int)
    a = alpha[..., None] / 255.0
    ideal = colour * a + 255 * (1 - a)
    assert np.abs(out - ideal).max() <= 1
    np.testing.assert_array_equal(out[alpha == 0], 255)
    np.testing.assert_array_equal(out[alpha == 255], colour[alpha == 255])

    grey = _noise((4, 6), seed=2)
    la = Image.fromarray(np.dstack([grey, alpha]), "LA")
    out = np.asarray(to_rgb(la)).astype(int)
    assert np.abs(out - _rgb(grey) * a - 255 * (1 - a)).max() <= 1
    np.testing.assert_array_equal(out[alpha == 0], 255)
    np.testing.assert_array_equal(out[alpha == 255], _rgb(grey)[alpha == 255])


def test_palette_pictures_show_their_colours_and_transparent_entries_as_white(tmp_path):
    palette = [200, 30, 40, 10, 20, 250, 5, 180, 60]
    indices = np.array([[0, 1, 2, 1], [2, 1, 0, 0]], np.uint8)
    table = np.array(palette, np.uint8).reshape(-1, 3)
    picture = Image.fromarray(indices, "P")
    picture.putpalette(palette)
    opaque = tmp_path / "palette.png"
    picture.save(opaque)
    np.testing.assert_array_equal(_load_quietly(opaque), table[indices])
    see_through = tmp_path / "palette_transparent.png"
    picture.save(see_through, transparency=1)
    expected = table[indices].copy()
    expected[indices == 1] = 255
    np.testing.assert_array_equal(_load_quietly(see_through), expected)

    pa = tmp_path / "palette_alpha.tif"  # palette + alpha: alpha 0 is white, 255 the palette colour
    alpha = np.array([[0, 255, 255, 0], [255, 0, 255, 255]], np.uint8)
    Image.merge("PA", [picture, Image.fromarray(alpha)]).save(pa)
    expected = table[indices].copy()
    expected[alpha == 0] = 255
    np.testing.assert_array_equal(_load_quietly(pa), expected)


def test_rgb_and_grey_pngs_with_a_transparent_colour_show_it_white(tmp_path):
    colour = _noise((3, 5, 3), seed=3)
    colour[0, 0] = colour[2, 4] = (1, 2, 3)
    path = tmp_path / "rgb_trns.png"
    Image.fromarray(colour).save(path, transparency=(1, 2, 3))
    expected = colour.copy()
    expected[(colour == (1, 2, 3)).all(axis=2)] = 255
    np.testing.assert_array_equal(_load_quietly(path), expected)

    grey = np.array([[9, 40, 9], [200, 9, 0]], np.uint8)
    path = tmp_path / "grey_trns.png"
    Image.fromarray(grey).save(path, transparency=9)
    np.testing.assert_array_equal(_load_quietly(path), _rgb(np.where(grey == 9, 255, grey)))


def test_other_modes_convert_as_a_viewer_shows_them():
    inks = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0]]], np.uint8)
    cmyk = Image.fromarray(inks, "CMYK")
    wanted = [[[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255]]]
    np.testing.assert_array_equal(np.asarray(to_rgb(cmyk)), wanted)
    bits = Image.fromarray(np.array([[True, False, True]]))
    assert bits.mode == "1"
    np.testing.assert_array_equal(np.asarray(to_rgb(bits)), _rgb([[255, 0, 255]]))
    grey = _noise((3, 4), seed=4)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(grey))), _rgb(grey))
    rgb = Image.fromarray(_noise((3, 4, 3), seed=5))
    assert to_rgb(rgb) is rgb  # already RGB: no copy


# ------------------------------------------------------------------ orientation and frames


def _exif_orientation(value: int, field_type: int = 3) -> bytes:
    """A little-endian EXIF block holding only the orientation tag (type 3 = SHORT)."""
    entry = struct.pack("<HHI", 0x0112, field_type, 1) + struct.pack("<HH", value, 0)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


# EXIF 2.3: how the stored rows must be turned to show the picture upright
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _stored_in(mode: str) -> tuple[Image.Image, np.ndarray]:
    """A 3x2 picture in ``mode`` and, worked out by hand, the RGB pixels a viewer shows for it unturned.

    The modes are those :func:`to_rgb` rebuilds as a new picture, which carries no EXIF block, plus
    plain RGB and grey. Every pattern looks different under each of the eight turns and flips.
    """
    white = np.full((2, 3, 3), 255, np.uint8)
    opaque = np.array([[255, 0, 255], [0, 255, 255]], np.uint8)  # alpha 0 or 255: no rounding
    if mode == "RGB":
        colour = _noise((2, 3, 3), seed=6)
        return Image.fromarray(colour), colour
    if mode == "L":
        grey = _noise((2, 3), seed=6)
        return Image.fromarray(grey), _rgb(grey)
    if mode == "RGBA":
        colour = _noise((2, 3, 3), seed=6)
        return Image.fromarray(np.dstack([colour, opaque]), "RGBA"), np.where(opaque[..., None] > 0, colour, white)
    if mode == "LA":
        grey = _noise((2, 3), seed=6)
        return Image.fromarray(np.dstack([grey, opaque]), "LA"), np.where(opaque[..., None] > 0, _rgb(grey), white)
    if mode == "I;16":
        grey = _noise((2, 3), seed=6)
        return Image.fromarray(grey.astype(np.uint16) * 257), _rgb(grey)  # 257 x g on the 16-bit scale is g
    if mode == "1":
        bits = np.array([[1, 0, 0], [1, 1, 0]], bool)
        return Image.fromarray(bits), _rgb(bits * 255)
    assert mode == "P"
    indices = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    palette = _noise((6, 3), seed=6)
    picture = Image.fromarray(indices, "P")
    picture.putpalette(palette.ravel().tolist())
    picture.info["transparency"] = 1  # saved as the PNG's transparent index
    seen = palette[indices]
    seen[0, 1] = 255
    return picture, seen


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "I;16", "1", "P"])
@pytest.mark.parametrize("orientation", [*UPRIGHT, 0, 9])
def test_exif_orientation_turns_the_picture_upright(tmp_path, orientation, mode):
    """In every mode: the turn comes from the file, before :func:`to_rgb` rebuilds the picture
    (composited on white, rescaled from 16 bits) and loses its EXIF block."""
    picture, seen = _stored_in(mode)
    path = tmp_path / "turned.png"
    picture.save(path, exif=_exif_orientation(orientation))
    with Image.open(path) as written:
        assert written.mode == mode and written.getexif().get(0x0112) == orientation
        assert (mode == "P") == ("transparency" in written.info)
    upright = UPRIGHT.get(orientation, UPRIGHT[1])(seen)
    np.testing.assert_array_equal(_load_quietly(path), upright)  # a turned picture is not "downscaled"


def test_an_exif_orientation_not_stored_as_a_whole_number_is_ignored(tmp_path):
    stored = _noise((2, 3, 3), seed=7)
    path = tmp_path / "odd_tag.png"
    Image.fromarray(stored).save(path, exif=_exif_orientation(6, field_type=2))  # ASCII, not SHORT
    np.testing.assert_array_equal(_load_quietly(path), stored)
    # RATIONAL 6/1: the value sits after the IFD, at offset 8 + 2 + 12 + 4 = 26
    entry = struct.pack("<HHII", 0x0112, 5, 1, 26)
    ifd = struct.pack("<H", 1) + entry + struct.pack("<I", 0) + struct.pack("<II", 6, 1)
    Image.fromarray(stored).save(path, exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd)
    with Image.open(path) as written:
        assert written.getexif()[0x0112] == 6  # Pillow reads 6.0: equal to 6, but not a whole-number type
    np.testing.assert_array_equal(_load_quietly(path), stored)


def test_pillows_warnings_about_damaged_metadata_still_reach_the_user(tmp_path):
    # only the decompression-bomb warning is silenced; a damaged tag is reported, the picture still turned
    entries = [
        struct.pack("<HHII", 0x010E, 2, 4000, 38),  # a 4000-byte description, where the block has 8 bytes
        struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", 6, 0),
    ]
    ifd = struct.pack("<H", 2) + b"".join(entries) + struct.pack("<I", 0) + b"12345678"
    stored = _noise((2, 3, 3), seed=17)
    path = tmp_path / "damaged_tag.png"
    Image.fromarray(stored).save(path, exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd)
    with warnings.catch_warnings(record=True) as from_pillow:
        warnings.simplefilter("always")
        with Image.open(path) as opened:
            opened.load()
            opened.getexif().get(0x0112)
    assert from_pillow
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path)
    assert [str(w.message) for w in caught] == [str(w.message) for w in from_pillow]
    np.testing.assert_array_equal(np.asarray(image), np.rot90(stored, -1))


def _frames(path: Path, colours) -> None:
    frames = []
    for colour in colours:
        frame = Image.new("P", (4, 3), 0)
        frame.putpalette([*colour, 0, 0, 0])
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


@pytest.mark.parametrize("count", [2, 3])
def test_an_animation_gives_its_first_frame_and_one_warning(tmp_path, count):
    path = tmp_path / "moving.gif"
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)][:count]
    _frames(path, colours)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path)
    assert [(str(w.message), w.category) for w in caught] == [
        (f"{path}: has {count} frames; using the first one", UserWarning)
    ]
    assert caught[0].filename != images.__file__  # attributed to the caller, not to the package
    np.testing.assert_array_equal(np.asarray(image), np.full((3, 4, 3), colours[0], np.uint8))


def test_single_frame_formats_load_without_a_warning(tmp_path):
    pixels = _noise((3, 5, 3), seed=8)
    for suffix in (".bmp", ".png", ".gif", ".tif"):
        path = tmp_path / f"still{suffix}"
        if suffix == ".gif":
            _frames(path, [(10, 200, 30)])
            np.testing.assert_array_equal(_load_quietly(path), np.full((3, 4, 3), (10, 200, 30), np.uint8))
        else:
            Image.fromarray(pixels).save(path)
            np.testing.assert_array_equal(_load_quietly(path), pixels)


# ------------------------------------------------------------------ pictures above the pixel limit


def _shrunk_size(width, height, limit):
    scale = math.sqrt(limit / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def _load_downscaled(path, original, size):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path)
    assert [str(w.message) for w in caught] == [
        f"{path}: {original[0]}x{original[1]} pixels; downscaled to {size[0]}x{size[1]}"
    ]
    assert caught[0].filename != images.__file__  # attributed to the caller, not to the package
    assert image.mode == "RGB" and image.size == size
    return np.asarray(image)


@pytest.mark.parametrize("limit", [10_000, 1000])
def test_a_picture_above_the_limit_is_shrunk_bilinearly_to_just_below_it(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(images, "MAX_PIXELS", limit)
    pixels = _noise((150, 200, 3), seed=9)
    path = tmp_path / "big.png"
    Image.fromarray(pixels).save(path)
    size = _shrunk_size(200, 150, limit)
    expected = Image.fromarray(pixels).resize(size, BILINEAR, reducing_gap=2.0)
    np.testing.assert_array_equal(_load_downscaled(path, (200, 150), size), np.asarray(expected))

    at_limit = tmp_path / "at_limit.png"  # exactly at the limit: left alone
    Image.fromarray(_noise((limit // 100, 100, 3), seed=10)).save(at_limit)
    assert _load_quietly(at_limit).shape == (limit // 100, 100, 3)


@pytest.mark.parametrize("shape", [(1, 2000), (2000, 1)])
def test_a_one_pixel_thin_picture_stays_at_least_one_pixel_thick(tmp_path, monkeypatch, shape):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    grey = _noise(shape, seed=11)
    path = tmp_path / "thin.png"
    Image.fromarray(grey).save(path)
    size = _shrunk_size(shape[1], shape[0], 1000)
    assert 1 in size
    expected = Image.fromarray(grey).resize(size, BILINEAR, reducing_gap=2.0)
    np.testing.assert_array_equal(_load_downscaled(path, (shape[1], shape[0]), size), _rgb(np.asarray(expected)))


def test_one_bit_and_palette_pictures_are_averaged_as_grey_and_colour(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    board = _noise((100, 120), seed=16) > 100
    path = tmp_path / "bits.png"
    Image.fromarray(board).save(path)
    size = _shrunk_size(120, 100, 1000)
    grey = Image.fromarray(board.astype(np.uint8) * 255).resize(size, BILINEAR, reducing_gap=2.0)
    out = _load_downscaled(path, (120, 100), size)
    np.testing.assert_array_equal(out, _rgb(np.asarray(grey)))
    assert len(np.unique(out)) > 2  # averaged, not picked

    palette = [250, 10, 10, 10, 10, 250]
    indexed = Image.fromarray(board.astype(np.uint8), "P")
    indexed.putpalette(palette)
    path = tmp_path / "palette.png"
    indexed.save(path)
    colour = Image.fromarray(np.array(palette, np.uint8).reshape(-1, 3)[board.astype(np.uint8)])
    expected = colour.resize(size, BILINEAR, reducing_gap=2.0)
    np.testing.assert_array_equal(_load_downscaled(path, (120, 100), size), np.asarray(expected))

    path = tmp_path / "palette_alpha.tif"
    alpha = Image.fromarray(np.where(board, 255, 0).astype(np.uint8))
    Image.merge("PA", [indexed, alpha]).save(path)
    composited = np.array(colour)
    composited[~board] = 255
    expected = Image.fromarray(composited).resize(size, BILINEAR, reducing_gap=2.0)
    np.testing.assert_array_equal(_load_downscaled(path, (120, 100), size), np.asarray(expected))


def test_a_sixteen_bit_picture_is_shrunk_at_full_depth(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 500)
    levels = (np.random.default_rng(12).integers(0, 52000, size=(100, 100))).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(levels).save(path)
    size = _shrunk_size(100, 100, 500)
    small = np.asarray(Image.fromarray(levels).resize(size, BILINEAR)).astype(np.float64)
    out = _load_downscaled(path, (100, 100), size)
    np.testing.assert_array_equal(out, _rgb(np.floor(small * 255 / 65535 + 0.5)))


@pytest.mark.parametrize("shape", [(24, 400), (400, 24), (120, 160)])
def test_a_jpeg_above_the_limit_is_decoded_at_a_reduced_scale_then_shrunk(tmp_path, monkeypatch, shape):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    height, width = shape
    smooth = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    pixels = np.clip(smooth + _noise((height, width, 3), seed=13) * 0.3, 0, 255).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    with Image.open(path) as reference:  # Pillow's reduced-scale JPEG decode (a power of two)
        reference.draft("RGB", _shrunk_size(width, height, 1000))
        decoded = reference.convert("RGB")
    assert decoded.width < width
    size = _shrunk_size(*decoded.size, 1000) if decoded.width * decoded.height > 1000 else decoded.size
    expected = decoded.resize(size, BILINEAR, reducing_gap=2.0) if size != decoded.size else decoded
    np.testing.assert_array_equal(_load_downscaled(path, (width, height), size), np.asarray(expected))


def test_a_turned_picture_above_the_limit_is_shrunk_then_turned(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    stored = _noise((40, 60, 3), seed=14)
    path = tmp_path / "turned.png"
    Image.fromarray(stored).save(path, exif=_exif_orientation(6))
    size = _shrunk_size(60, 40, 1000)
    small = np.asarray(Image.fromarray(stored).resize(size, BILINEAR, reducing_gap=2.0))
    np.testing.assert_array_equal(_load_downscaled(path, (60, 40), size[::-1]), np.rot90(small, -1))


# ------------------------------------------------------------------ the demo picture


def test_the_demo_grid_is_four_centre_squares_of_the_named_photos():
    grid, tiles = demo_grid()
    assert (grid.mode, grid.size) == ("RGB", (512, 512))
    assert [(t.name, t.class_index, t.box) for t in tiles] == [
        ("chelsea (cat)", 285, (0, 0, 256, 256)),
        ("coffee (espresso)", 967, (256, 0, 512, 256)),
        ("grace_hopper (military uniform)", 652, (0, 256, 256, 512)),
        ("stereo_motorcycle (moped)", 665, (256, 256, 512, 512)),
    ]
    names = imagenet_categories()
    assert [names[i] for i in (EGYPTIAN_CAT, ESPRESSO, MILITARY_UNIFORM, MOPED)] == [
        "Egyptian cat",
        "espresso",
        "military uniform",
        "moped",
    ]
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as photo:
        hopper = np.asarray(photo.convert("RGB"))
    photos = [skdata.chelsea(), skdata.coffee(), hopper, skdata.stereo_motorcycle()[0]]
    for tile, photo in zip(tiles, photos, strict=True):
        height, width = photo.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
        expected = square.resize((256, 256), BICUBIC)
        np.testing.assert_array_equal(np.asarray(grid.crop(tile.box)), np.asarray(expected), err_msg=tile.name)


def test_restore_aspect_gives_the_original_shape_at_the_same_pixel_count():
    squashed = Image.fromarray(_noise((227, 227, 3), seed=15))
    scale = math.sqrt(227 * 227 / (500 * 375))
    size = (round(500 * scale), round(375 * scale))
    restored = restore_aspect(squashed, (500, 375))
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(squashed.resize(size, BICUBIC)))
    assert restore_aspect(squashed, (500, 375), pixels=500 * 375).size == (500, 375)
    assert restore_aspect(squashed, (1, 100), pixels=100).size == (1, 100)
    assert restore_aspect(squashed, (100, 1), pixels=100).size == (100, 1)
    assert restore_aspect(squashed, (1, 1)) is squashed  # already square at this size: untouched
    assert restore_aspect(squashed, (454, 454)) is squashed
    for bad in [(0, 5), (5, 0), (-3, -3)]:
        with pytest.raises(ValueError, match=re.escape(f"original size must be positive, not {bad}")):
            restore_aspect(squashed, bad)
