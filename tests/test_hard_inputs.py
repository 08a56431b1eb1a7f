"""GitHub issue 6: every hard input a user can feed the tutorial, one test per case.

Images are generated here with Pillow (or hand-written bytes); nothing comes from the web. Each
broken input must stop with the package's own error naming the problem; each odd-but-valid one must
load as the picture a viewer would show.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import (
    ClassNameError,
    GradCAM,
    ImageError,
    LayerError,
    ModelError,
    TargetError,
    create_model,
    explain,
    load_image,
    resolve_class,
)
from gradcam_tutorial.classes import EGYPTIAN_CAT, PERSIAN_CAT, SIAMESE_CAT, TIGER_CAT
from gradcam_tutorial.images import MAX_PIXELS, to_rgb
from gradcam_tutorial.regions import region_shares

ORIENTATION = 0x0112


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
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


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_04_truncated(tmp_path, fmt, suffix):
    data = _encoded(_noise(128, 96), fmt)
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="damaged or truncated") as caught:
        load_image(path)
    assert str(path) in str(caught.value)


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


# ---------------------------------------------------------------- 6-13: odd but valid images


def test_06_one_pixel_image_is_explained(tmp_path, effnet):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "dot.png")
    image = load_image(tmp_path / "dot.png")
    assert image.size == (1, 1) and image.getpixel((0, 0)) == (10, 200, 30)
    result = explain(image, *effnet)
    assert result.heatmaps.shape == (1, 1, 1)
    assert np.isfinite(result.heatmaps).all()


def test_07_sixteen_bit_grey_keeps_its_grey_levels(tmp_path):
    levels = np.array([[0, 257, 30000, 65535]], dtype=np.uint16).repeat(3, axis=0)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16")  # really a 16-bit file
    pixels = np.asarray(load_image(tmp_path / "grey16.png")).astype(int)
    expected = np.round(levels / 65535 * 255).astype(int)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert np.abs(pixels[..., 0] - expected).max() <= 1  # 30000 -> 117, not clipped to 255


def test_08_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0] + [255, 0, 0] + [0] * 762)  # index 0 black (transparent), 1 red
    image.paste(1, (2, 0, 4, 2))
    image.save(tmp_path / "palette.png", transparency=0)
    pixels = np.asarray(load_image(tmp_path / "palette.png"))
    assert (pixels[:, :2] == 255).all()  # transparent black shows as white, not black
    assert (pixels[:, 2:] == [255, 0, 0]).all()


def test_09_rgba_is_composited_on_white_not_channel_dropped(tmp_path):
    rgba = np.array([[[0, 0, 255, 0], [0, 0, 255, 255], [200, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    pixels = np.asarray(load_image(tmp_path / "alpha.png")).astype(int)
    assert pixels[0, 0].tolist() == [255, 255, 255]  # fully transparent blue: white, not blue
    assert pixels[0, 1].tolist() == [0, 0, 255]  # opaque: unchanged
    half = 128 / 255
    expected = np.round(np.array([200, 0, 0]) * half + 255 * (1 - half))
    assert np.abs(pixels[0, 2] - expected).max() <= 1  # half-transparent red on white: pink


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


def _cat_on_the_left(width: int = 320, height: int = 240) -> Image.Image:
    """Grey canvas with scikit-image's cat photo filling the left 200 pixels: an asymmetric scene."""
    from skimage import data as skdata

    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    cat = Image.fromarray(skdata.chelsea()).crop((30, 0, 330, 300)).resize((200, 200), Image.BICUBIC)
    canvas.paste(cat, (0, (height - 200) // 2))
    return canvas


@pytest.mark.parametrize("orientation, stored_as", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_11_exif_orientation_heatmap_follows_the_displayed_image(tmp_path, effnet, orientation, stored_as):
    displayed = _cat_on_the_left()
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = tmp_path / "rotated.jpg"
    displayed.transpose(stored_as).save(path, quality=95, exif=exif)  # pixels stored sideways
    with Image.open(path) as raw:
        assert raw.size == (240, 320)  # the file really holds the rotated pixels
        viewer = ImageOps.exif_transpose(raw).convert("RGB")

    image = load_image(path)
    assert image.size == displayed.size
    assert np.array_equal(np.asarray(image), np.asarray(viewer))
    assert np.abs(np.asarray(image, float) - np.asarray(displayed, float)).mean() < 4  # JPEG noise only

    heatmap = explain(image, *effnet, classes=[EGYPTIAN_CAT]).heatmaps[0]
    assert heatmap.shape == (240, 320)
    mass = heatmap.sum(axis=0)
    assert mass[:200].sum() > 0.75 * mass.sum(), "the heatmap does not sit on the cat as displayed"


def test_12_animated_gif_uses_first_frame_with_warning(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.warns(UserWarning, match="3 frames; using the first"):
        image = load_image(tmp_path / "anim.gif")
    assert np.asarray(image)[4, 4].tolist() == [255, 0, 0]


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


def test_13d_a_16_bit_81_megapixel_png_loads_in_bounded_memory(tmp_path):
    """0.7 MB on disk, 162 MB decoded: loading it once cost 3 GB through float64 copies of every pixel."""
    path = tmp_path / "deep.png"
    write_grey_png(path, 9_000, 9_000, depth=16, value=0x8080)  # 32896 of 65535: grey 128
    outcome = _load_in_subprocess(path)
    print(outcome)
    assert outcome["size"] == [6324, 6324] and outcome["mean"] == pytest.approx(128, abs=0.01)
    assert outcome["growth_mb"] < 800, outcome


def test_13e_the_whole_cli_holds_one_full_size_map_at_a_time(tmp_path):
    """Ten classes on a 12 MP photo cost about what one does: maps are placed and drawn one by one.

    Each full-size map is 48 MB of float32 here; holding all ten at once added about 450 MB.
    """
    import bench_memory  # benchmarks/, on pytest's pythonpath

    one = bench_memory.measure(pixels=12_000_000, classes=1, workdir=tmp_path)
    ten = bench_memory.measure(pixels=12_000_000, classes=10, workdir=tmp_path)
    print(one, ten)
    assert ten["peak_mb"] - one["peak_mb"] < 120, (one, ten)
    assert one["added_mb"] < 600, one


# ---------------------------------------------------------------- 14-16: classes and layers


@pytest.mark.parametrize("value", [-1, 1000, "-1", "1000", "2.5", 2.5, None, True])
def test_14_class_index_out_of_range_or_not_an_integer(value):
    with pytest.raises(ClassNameError, match=r"out of range|whole number|index or a name"):
        resolve_class(value)


def test_14b_numpy_integer_is_an_index():
    assert resolve_class(np.int64(TIGER_CAT)) == TIGER_CAT


def test_14c_explain_refuses_out_of_range_class(effnet):
    with pytest.raises(ClassNameError, match="out of range"):
        explain(Image.new("RGB", (32, 32)), *effnet, classes=[1000])


def test_15_unknown_class_name_suggests_close_names():
    with pytest.raises(ClassNameError, match="did you mean 'tabby'"):
        resolve_class("tabbby")


def test_15b_partial_name_lists_every_match():
    with pytest.raises(ClassNameError) as caught:
        resolve_class("cat")
    message = str(caught.value)
    for name, index in [
        ("tiger cat", TIGER_CAT),
        ("Persian cat", PERSIAN_CAT),
        ("Siamese cat", SIAMESE_CAT),
        ("Egyptian cat", EGYPTIAN_CAT),
    ]:
        assert f"{name} {index}" in message


def test_15c_exact_name_wins_over_partial_matches():
    assert resolve_class("tiger") == 292  # also inside 'tiger cat', 'tiger shark', 'tiger beetle'
    assert resolve_class("Tiger Cat") == TIGER_CAT


def test_16_unknown_layer_suggests_close_names(effnet):
    with pytest.raises(LayerError, match=r"no layer named '_conv_haed'.*_conv_head"):
        explain(Image.new("RGB", (32, 32)), *effnet, layer="_conv_haed")


@pytest.mark.parametrize("layer", ["_fc", "_avg_pooling"])
def test_16b_layer_without_spatial_output(effnet, layer):
    with pytest.raises(LayerError, match="no spatial output"):
        explain(Image.new("RGB", (32, 32)), *effnet, layer=layer)


# ---------------------------------------------------------------- 20: the caller's state is left alone


@pytest.fixture()
def restore_effnet(effnet):
    """The session model, put back exactly as it was whatever a test does to it."""
    model, spec = effnet
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    weights = {name: value.clone() for name, value in model.state_dict().items()}  # buffers too
    yield model, spec
    model.load_state_dict(weights)
    for module, training in modes.items():
        module.training = training
    for parameter, flag in flags.items():
        parameter.requires_grad_(flag)


def test_20_train_mode_no_grad_and_errors_leave_the_model_as_found(restore_effnet, grid):
    model, spec = restore_effnet
    photo = grid[0]
    reference = explain(photo, model, spec, classes=[EGYPTIAN_CAT, 967])

    train_mode_with_batchnorm(model)
    model._blocks[0].requires_grad_(False)  # a partly frozen model, as in fine-tuning
    user_hook = model._conv_head.register_forward_hook(lambda *_: None)
    with torch.no_grad(), left_as_found(model):  # the caller's no_grad is still in force after
        in_train_mode = explain(photo, model, spec, classes=[EGYPTIAN_CAT, 967])
    with left_as_found(model):
        with torch.inference_mode():
            assert np.allclose(
                explain(photo, model, spec, classes=[EGYPTIAN_CAT, 967]).heatmaps, reference.heatmaps, atol=1e-5
            )
        with pytest.raises(LayerError):
            explain(photo, model, spec, layer="_fc")  # fails inside the call, after the forward pass
        with pytest.raises(ClassNameError):
            explain(photo, model, spec, classes=[5000])
    user_hook.remove()

    assert np.allclose(in_train_mode.heatmaps, reference.heatmaps, atol=1e-5)
    assert np.allclose(in_train_mode.probabilities, reference.probabilities, atol=1e-6)


def test_20b_exception_raised_inside_the_forward_pass(restore_effnet, grid):
    model, spec = restore_effnet
    train_mode_with_batchnorm(model)

    def explode(*_):
        raise RuntimeError("boom inside the head")

    handle = model._bn1.register_forward_hook(explode)  # fires after the target layer's hook
    with left_as_found(model), pytest.raises(RuntimeError, match="boom"):
        explain(grid[0], model, spec)
    handle.remove()


def test_20c_mixed_modes_are_restored_per_module(restore_effnet, grid):
    model, spec = restore_effnet
    train_mode_with_batchnorm(model)
    model._bn1.eval()  # e.g. a frozen batch norm while fine-tuning the rest
    with left_as_found(model):
        explain(grid[0], model, spec)


def test_20d_layer_tracing_restores_mixed_modes(restore_effnet):
    from gradcam_tutorial import last_spatial_layer

    model, _ = restore_effnet
    train_mode_with_batchnorm(model)
    model._bn1.eval()
    with left_as_found(model):  # a pass in train mode would move every batch norm's running statistics
        assert last_spatial_layer(model) == "features"


def test_failed_load_leaves_no_open_file(tmp_path):
    """The error keeps load_image's frame alive; the file must already be closed by then."""
    import psutil

    path = tmp_path / "truncated.png"
    data = _encoded(_noise(64, 64), "PNG")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value is not None
    assert str(path) not in [f.path for f in psutil.Process().open_files()]


def test_subprocess_helper_reports_errors_cleanly(tmp_path):
    """The RSS probe itself must see an ImageError as an outcome, not crash (guards test_13)."""
    (tmp_path / "bad.png").write_text("nope")
    assert "text file" in _load_in_subprocess(tmp_path / "bad.png")["error"]


# --- API traps (issue 14, item 8) ------------------------------------------------------------------


@pytest.mark.parametrize(("classes", "expected"), [(0, [0]), (281, [281]), ("tabby", [281]), ([], None), (None, None)])
def test_explain_takes_one_class_as_an_index_or_a_name(effnet, grid, classes, expected):
    """0 is class 0 (not "no class"), a bare index is one class, a bare name is read whole."""
    model, spec = effnet
    image, _ = grid
    result = explain(image, model, spec, classes)
    assert result.class_indices == (expected or [result.top_k[0][0]])


def test_a_boolean_is_no_class_index_for_compute_heatmap_either(effnet, grid):
    model, spec = effnet
    with GradCAM(model, spec.target_layer) as cam, pytest.raises(TargetError, match="not True"):
        cam.compute_heatmap(spec.preprocess(grid[0]), True)
    with pytest.raises(ClassNameError):
        explain(grid[0], model, spec, True)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "YCbCr", "LAB", "I;16"])
def test_explain_accepts_a_pil_image_in_any_mode_as_a_viewer_shows_it(effnet, grid, mode):
    """Each mode gives the maps of the same picture converted to RGB first, not errors or garbage."""
    model, spec = effnet
    image = grid[0]
    converted = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
    result = explain(converted, model, spec, [285, 967])
    expected = explain(to_rgb(converted), model, spec, [285, 967])
    np.testing.assert_allclose(result.heatmaps, expected.heatmaps, atol=1e-6)
    assert result.image.mode == "RGB"
    if mode in ("RGBA", "CMYK", "YCbCr", "LAB", "P"):  # colour survives: the cat keeps its quadrant
        shares = region_shares(
            result.heatmaps[0], [(0, 0, 256, 256), (256, 0, 512, 256), (0, 256, 256, 512), (256, 256, 512, 512)]
        )
        assert shares.argmax() == 0, shares


def test_a_bfloat16_model_gives_float32_maps_close_to_float32s(effnet, grid):
    model, spec = effnet
    half = copy.deepcopy(model).to(torch.bfloat16)
    result = explain(grid[0], half, spec, [285, 967])
    reference = explain(grid[0], model, spec, [285, 967])
    assert result.heatmaps.dtype == np.float32 and np.isfinite(result.heatmaps).all()
    assert np.abs(result.small_heatmaps - reference.small_heatmaps).max() < 0.15  # bfloat16 has 8 bits
    with GradCAM(half, spec.target_layer) as cam:
        heatmap, _, probability = cam.compute_heatmap(spec.preprocess(grid[0]), 285)
    assert heatmap.dtype == np.float32 and isinstance(probability, float)


def test_a_model_made_under_inference_mode_gets_one_clear_error(grid):
    with torch.inference_mode():
        model, spec = create_model("efficientnet_lite0")
    with pytest.raises(ModelError, match="inference_mode"):
        explain(grid[0], model, spec, [285])


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
    base = _noise(48, 32, seed=3)
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


def test_a_folder_of_damaged_files_is_explained_as_far_as_it_can_be(tmp_path):
    """The CLI skips every damaged file with one warning, explains the rest, and exits 2."""
    import random

    rng = random.Random(1)
    folder = tmp_path / "in"
    folder.mkdir()
    for suffix, blob in _samples().items():
        (folder / f"cut.{suffix}").write_bytes(blob[: rng.randrange(len(blob) // 3, len(blob) * 2 // 3)])
    _noise(64, 64).save(folder / "good.png")
    done = subprocess.run(
        [sys.executable, "-m", "gradcam_tutorial", str(folder), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stderr
    skipped = sorted(
        line.split("skipped ")[1].split(":")[0].rsplit("/", 1)[1]
        for line in done.stderr.splitlines()
        if "warning: skipped" in line
    )
    assert skipped == sorted(f"cut.{suffix}" for suffix in _samples()), done.stderr
    assert done.returncode == 2 and "6 of 7 images could not be read" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == ["good.json"]
