"""The ``gradcam`` command (cli.py): what it writes, what a user reads, one error line (exit 2) per mistake.

Most tests call :func:`gradcam_tutorial.cli.main` in-process with the session's model patched in (a
model load per test would dominate the runtime); a few run the real console script and ``python -m``.
Messages, output names and the JSON's fields are checked against expectations written out by hand or
computed with hashlib, numpy and the documented crop geometry, never with the package's own helpers.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from gradcam_tutorial import (
    ClassNameError,
    DownloadError,
    ImageError,
    LayerError,
    WeightsUnavailableError,
    cli,
    explain,
    load_image,
)
from gradcam_tutorial.classes import EGYPTIAN_CAT, ESPRESSO
from gradcam_tutorial.models import UnknownModelError
from test_images import _noise_picture, _samples


@pytest.fixture()
def gradcam(monkeypatch, effnet, capsys):
    """Run the CLI in-process on the session model; returns (exit status, stdout, stderr)."""
    real_create = cli.create_model

    def create(name: str, pretrained: bool = True):
        return effnet if name == "efficientnet_lite0" and pretrained else real_create(name, pretrained)

    monkeypatch.setattr(cli, "create_model", create)

    def run(*argv: str | Path) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory, grid):
    """The demo grid as PNG and JPEG, and the espresso tile alone."""
    folder = tmp_path_factory.mktemp("photos")
    image, tiles = grid
    image.save(folder / "grid.png")
    image.save(folder / "grid.jpg", quality=92)
    image.crop(tiles[1].box).save(folder / "coffee.png")
    return folder


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gradcam: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- what a successful run writes


def test_single_image_writes_overlays_and_json(gradcam, photos, tmp_path, effnet):
    status, _, err = gradcam(
        photos / "grid.png", "--class", "Egyptian cat", "--class", str(ESPRESSO), "--top-k", "3", "--out", tmp_path
    )
    assert status == 0, err
    record = json.loads((tmp_path / "grid.json").read_text())
    assert record["layer"] == "features" and record["model"] == "efficientnet_lite0"
    assert record["size"] == [512, 512]
    assert [c["index"] for c in record["classes"]] == [EGYPTIAN_CAT, ESPRESSO]
    assert [c["name"] for c in record["classes"]] == ["Egyptian cat", "espresso"]

    # the predictions, straight from the network: softmax of its logits, largest first
    model, spec = effnet
    with torch.no_grad():
        logits = model(spec.preprocess(load_image(photos / "grid.png")))[0].double()
    softmax = torch.softmax(logits, dim=0)
    top = torch.topk(softmax, 3)
    indices = [int(i) for i in top.indices]
    assert [(t["index"], t["name"]) for t in record["top_k"]] == [(i, spec.categories[i]) for i in indices]
    np.testing.assert_allclose([t["probability"] for t in record["top_k"]], top.values.numpy(), atol=2e-6)
    expected = explain(load_image(photos / "grid.png"), *effnet, classes=[EGYPTIAN_CAT, ESPRESSO], top_k=3)
    for entry, small, index in zip(record["classes"], expected.small_heatmaps, [EGYPTIAN_CAT, ESPRESSO], strict=True):
        heatmap = np.array(entry["heatmap"])
        assert heatmap.shape == small.shape == (7, 7)  # the layer's resolution, not the photo's
        assert np.abs(heatmap - small).max() <= 5e-5  # rounded to 4 decimals
        assert heatmap.min() >= 0 and heatmap.max() <= 1
        assert entry["probability"] == pytest.approx(float(softmax[index]), abs=2e-6)
        assert (tmp_path / entry["overlay"]).is_file()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["grid__285_egyptian-cat.png", "grid__967_espresso.png"]


def test_overlay_png_is_rgb_not_bgr(gradcam, photos, tmp_path, effnet):
    status, _, _ = gradcam(photos / "coffee.png", "--class", str(ESPRESSO), "--out", tmp_path)
    assert status == 0
    photo = load_image(photos / "coffee.png")
    heatmap = explain(photo, *effnet, classes=[ESPRESSO]).heatmaps[0]
    written = np.asarray(Image.open(tmp_path / "coffee__967_espresso.png").convert("RGB")).astype(int)
    # the post's overlay, made here with OpenCV's own JET table: 0.6 photo + 0.4 colour, in RGB
    jet = cv2.applyColorMap(np.rint(255 * heatmap).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    expected = 0.6 * np.asarray(photo, float) + 0.4 * jet
    assert np.abs(written - expected).max() <= 1
    # Where the heatmap is hottest, jet adds red (RGB), not blue (what a BGR mix-up would show).
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    added = written[y, x] - 0.6 * np.asarray(photo, float)[y, x]
    assert added[0] > 30 and added[2] < 10


def test_default_class_is_top1_and_colormap_changes_colours(gradcam, photos, tmp_path):
    assert gradcam(photos / "coffee.png", "--out", tmp_path / "jet")[0] == 0
    assert gradcam(photos / "coffee.png", "--out", tmp_path / "viridis", "--colormap", "viridis")[0] == 0
    record = json.loads((tmp_path / "jet" / "coffee.json").read_text())
    assert [c["index"] for c in record["classes"]] == [record["top_k"][0]["index"]]
    name = record["classes"][0]["overlay"]
    jet = np.asarray(Image.open(tmp_path / "jet" / name), int)
    viridis = np.asarray(Image.open(tmp_path / "viridis" / name), int)
    assert np.abs(jet - viridis).mean() > 5


def test_layer_option_changes_the_heatmap_resolution(gradcam, photos, tmp_path):
    status, _, err = gradcam(photos / "coffee.png", "--layer", "_blocks.5", "--out", tmp_path)
    assert status == 0, err
    record = json.loads((tmp_path / "coffee.json").read_text())
    assert record["layer"] == "_blocks.5"
    assert np.array(record["classes"][0]["heatmap"]).shape == (14, 14)  # stride 16 there, 32 at the head


def test_folder_skips_unreadable_files_and_processes_the_rest(gradcam, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("grid.png", "grid.jpg", "coffee.png"):
        shutil.copy(photos / name, folder / name)
    data = (photos / "coffee.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an image")
    status, _, err = gradcam(folder, "--out", tmp_path / "out")
    assert status == 2
    written = sorted(p.name for p in (tmp_path / "out").glob("*.json"))
    assert written == ["coffee.json", "grid_jpg.json", "grid_png.json"]  # same stem: the extension tells them apart
    assert "skipped" in err and "broken.png" in err and "damaged or truncated" in err
    assert "ignored 1 folder entry" in err
    assert "/4" in err  # the progress bar counted the four candidate images
    assert (
        err.strip().splitlines()[-1]
        == "gradcam: error: 1 of 4 images could not be read (see the warnings above); the others were written"
    )
    assert "Traceback" not in err


def test_animated_gif_warning_is_shown_and_recorded(gradcam, tmp_path):
    frames = [Image.new("RGB", (64, 64), c) for c in [(200, 30, 30), (30, 30, 200)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    status, _, err = gradcam(tmp_path / "anim.gif", "--out", tmp_path / "out")
    assert status == 0
    assert "gradcam: warning:" in err and "2 frames" in err
    assert "2 frames" in json.loads((tmp_path / "out" / "anim.json").read_text())["warnings"][0]


# ---------------------------------------------------------------- user errors: exit 2, one line


def _bad_files(folder: Path) -> dict[str, Path]:
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("hello")
    (folder / "page.png").write_text("<!DOCTYPE html><html><body>Not Found</body></html>")
    (folder / "nothing-here").mkdir()
    return {
        "missing": folder / "missing.png",
        "empty": folder / "empty.png",
        "text": folder / "notes.jpg",
        "html": folder / "page.png",
        "folder-without-images": folder / "nothing-here",
    }


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("text", "text file"),
        ("html", "HTML"),
        ("folder-without-images", "no image files found"),
    ],
)
def test_unusable_image_exits_2_with_one_line(gradcam, tmp_path, case, words):
    status, _out, err = gradcam(_bad_files(tmp_path)[case], "--out", tmp_path / "out")
    assert status == 2
    assert words in _one_error_line(err)


@pytest.mark.parametrize(
    "options, words",
    [
        (["--class", "1000"], "out of range 0..999"),
        (["--class", "-1"], "out of range"),
        (["--class", "2.5"], "not a whole number"),
        (["--class", "cat"], "Egyptian cat 285"),
        (["--class", "tabbby"], "did you mean 'tabby'"),
        (["--layer", "_conv_haed"], "did you mean _conv_head"),
        (["--layer", "_fc"], "no spatial output"),
        (["--layer", "_avg_pooling"], "no spatial output"),
        (
            ["--model", "vgg16"],
            "unknown model 'vgg16'; choose one of efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, resnet18",
        ),
        (["--top-k", "0"], "--top-k: must be at least 1"),
        (["--top-k", "many"], "not a whole number"),
        (["--colormap", "rainbow"], "invalid choice"),
        (["--alpha", "2"], "between 0 and 1"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_bad_option_exits_2_with_one_line(gradcam, photos, tmp_path, options, words):
    status, _, err = gradcam(photos / "coffee.png", "--out", tmp_path / "out", *options)
    assert status == 2
    assert words in _one_error_line(err)
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_resnet18_without_weights_offline(gradcam, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    status, _, err = gradcam(photos / "coffee.png", "--model", "resnet18", "--out", tmp_path / "out")
    assert status == 2
    assert "efficientnet_lite0" in _one_error_line(err)


@pytest.mark.parametrize(
    "error",
    [
        ImageError("x.png: broken"),
        ClassNameError("no class"),
        LayerError("no layer"),
        DownloadError("cannot get x from http://example.invalid (expected sha256 0); set $GRADCAM_MIRROR"),
        WeightsUnavailableError("no weights\nsecond line"),
        UnknownModelError("no model"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_package_error_type_is_one_line(gradcam, photos, tmp_path, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "create_model", fail)
    status, _, err = gradcam(photos / "coffee.png", "--out", tmp_path)
    assert status == 2
    assert _one_error_line(err) == f"gradcam: error: {' '.join(str(error).split())}"


def test_a_bug_is_not_disguised_as_a_user_error(gradcam, photos, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "create_model", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        gradcam(photos / "coffee.png", "--out", tmp_path)


# ---------------------------------------------------------------- the real entry points


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg"}


@pytest.mark.slow
def test_console_script_error_is_one_line(tmp_path):
    script = Path(sys.executable).with_name("gradcam")
    assert script.exists(), "the gradcam console script is not installed (pip install -e .)"
    done = subprocess.run(
        [str(script), str(tmp_path / "missing.jpg")], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == f"gradcam: error: {tmp_path / 'missing.jpg'}: no such file"


@pytest.mark.slow
def test_python_m_explains_an_image(photos, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam_tutorial",
            str(photos / "coffee.png"),
            "--class",
            "espresso",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "coffee__967_espresso.png").is_file()
    assert json.loads((tmp_path / "coffee.json").read_text())["classes"][0]["name"] == "espresso"


# --- the output folder never loses a user's file ---------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    """Every entry of a folder with its bytes (a link's target path instead of its bytes)."""
    return {p.name: (os.readlink(p).encode() if p.is_symlink() else p.read_bytes()) for p in sorted(folder.iterdir())}


def test_out_equal_to_the_input_folder_is_refused_and_nothing_changes(gradcam, grid, tmp_path):
    folder = tmp_path / "fish"
    folder.mkdir()
    grid[0].save(folder / "fish.png")
    (folder / "fish.json").write_text('{"my": "notes"}\n')
    before = _files(folder)
    status, _, err = gradcam(folder, "--out", folder)
    assert status == 2
    assert "is the folder the input fish.png is in" in _one_error_line(err)
    assert _files(folder) == before


def test_a_file_gradcam_did_not_write_is_never_replaced(gradcam, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.json").write_text("the user's own file\n")
    status, _, err = gradcam(photos / "coffee.png", "--out", out)
    assert status == 2
    assert "coffee.json exists and was not written by gradcam" in _one_error_line(err)
    assert _files(out) == {"coffee.json": b"the user's own file\n"}, "nothing written, nothing replaced"


def test_writes_never_follow_a_planted_symbolic_link(gradcam, photos, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.json").symlink_to(victim)
    status, _, err = gradcam(photos / "coffee.png", "--out", out)
    assert status == 2 and "is a symbolic link" in _one_error_line(err)
    assert victim.read_text() == "precious\n"
    # a link planted where a later run would write an overlay
    (out / "coffee.json").unlink()
    assert gradcam(photos / "coffee.png", "--out", out)[0] == 0
    overlay_path = next(out.glob("coffee__*.png"))
    overlay_path.unlink()
    overlay_path.symlink_to(victim)
    status, _, err = gradcam(photos / "coffee.png", "--out", out, "--force")
    assert status == 2 and "is a symbolic link" in _one_error_line(err)
    assert victim.read_text() == "precious\n"


def test_a_rerun_skips_complete_outputs_and_redoes_changed_or_forced_ones(gradcam, photos, tmp_path):
    out = tmp_path / "out"
    assert gradcam(photos / "coffee.png", "--out", out)[0] == 0
    first = _files(out)
    record = json.loads(first["coffee.json"])
    assert record["written_by"] == "gradcam" and record["complete"] is True
    assert sorted(first) == sorted(["coffee.json", *record["overlays"]])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    status, _, err = gradcam(photos / "coffee.png", "--out", out)
    assert status == 0 and "skipped 1 whose outputs were already complete" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps, "nothing rewritten"

    status, _, err = gradcam(photos / "coffee.png", "--out", out, "--alpha", "0.6")
    assert status == 0 and "explained 1 of 1" in err and "skipped" not in err
    assert _files(out)[record["overlays"][0]] != first[record["overlays"][0]], "other options, new overlay"

    status, _, err = gradcam(photos / "coffee.png", "--out", out, "--alpha", "0.6", "--force")
    assert status == 0 and "explained 1 of 1" in err and "skipped" not in err


def _assert_no_partial_file(out: Path) -> None:
    """Every file under a final name is whole: PNGs decode completely, JSONs parse."""
    for path in out.iterdir():
        if path.name.startswith("."):
            continue  # a temporary file that a kill left behind
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        else:
            record = json.loads(path.read_text())
            assert record["written_by"] == "gradcam"
            if record["complete"]:
                for name in record["overlays"]:
                    assert (out / name).is_file(), f"{path.name} lists {name}, which is missing"


@pytest.mark.slow
def test_interrupted_runs_leave_no_partial_file_and_a_rerun_completes(photos, tmp_path):
    """SIGKILL and SIGINT twice each at seeded random moments of a 16-image run, then a rerun
    finishes the job."""
    import random
    import signal
    import time

    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(16):
        shutil.copy(photos / "coffee.png", inputs / f"cup{k:02d}.png")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "gradcam_tutorial",
        str(inputs),
        "--out",
        str(out),
        "--class",
        "espresso",
        "--top-k",
        "3",
    ]
    rng = random.Random(0)
    for trial in range(4):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(3.0, 7.0))
        process.send_signal(signal.SIGKILL if trial % 2 == 0 else signal.SIGINT)
        _, err = process.communicate(timeout=60)
        if process.returncode == 130:
            assert err.strip().splitlines()[-1] == "gradcam: error: interrupted"
        if out.exists():
            _assert_no_partial_file(out)
    status = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    _assert_no_partial_file(out)
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(records) == 16 and all(r["complete"] for r in records)


# --- files that are not what their names say (issue 14, items 5, 6, 7) ----------------------------


@pytest.mark.slow
def test_a_fifo_named_on_the_command_line_is_refused_at_once(tmp_path):
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    done = subprocess.run(
        [sys.executable, "-m", "gradcam_tutorial", str(pipe), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # opening the FIFO would block forever
    assert done.returncode == 2
    assert _one_error_line(done.stderr).endswith("pipe.jpg: is a FIFO, not a regular file")


def test_broken_and_looping_links_and_fifos_in_a_folder_are_skipped_as_failures(gradcam, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "coffee.png", folder / "coffee.png")
    (folder / "gone.jpg").symlink_to(tmp_path / "nothing-here.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    os.mkfifo(folder / "pipe.jpg")
    status, _, err = gradcam(folder, "--out", tmp_path / "out")
    assert status == 2, "exit 0 promises that every image was explained"
    assert "gone.jpg: is a broken or looping symbolic link" in err
    assert "loop.jpg: is a broken or looping symbolic link" in err
    assert "pipe.jpg: is a FIFO, not a regular file" in err
    assert "3 of 4 images could not be read" in err and "Traceback" not in err
    assert (tmp_path / "out" / "coffee.json").is_file()


def test_an_unreadable_folder_is_one_line(gradcam, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_iterdir = Path.iterdir

    def iterdir(self):  # what a folder without read permission does for a user other than root
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    status, _, err = gradcam(locked, "--out", tmp_path / "out")
    assert status == 2 and _one_error_line(err).endswith("locked: cannot be read: permission denied")


def test_a_252_character_file_name_still_gets_its_outputs(gradcam, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    long_names = ["a" * 248 + ".png", "a" * 247 + "b.png"]  # 252 characters, equal for the first 247
    for name in long_names:
        shutil.copy(photos / "coffee.png", folder / name)
    status, _, err = gradcam(folder, "--out", tmp_path / "out", "--class", "espresso", "--class", "4")
    assert status == 0, err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(written) == 6 and all(len(name.encode()) <= 255 for name in written)
    assert len({name.split("__")[0].removesuffix(".json") for name in written}) == 2, "the two stems stay apart"


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_folder_of_damaged_files_is_explained_as_far_as_it_can_be(tmp_path):
    """The CLI skips every damaged file with one warning, explains the rest, and exits 2."""
    import random

    rng = random.Random(1)
    folder = tmp_path / "in"
    folder.mkdir()
    for suffix, blob in _samples().items():
        (folder / f"cut.{suffix}").write_bytes(blob[: rng.randrange(len(blob) // 3, len(blob) * 2 // 3)])
    _noise_picture(64, 64).save(folder / "good.png")
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


MAX_STEM = 173  # 255 bytes - "__000_.png" - a 64-character class part - 8 spare


def _screen(stream: str) -> list[str]:
    """The lines a terminal shows after ``stream``: a carriage return goes back to column 0 and the
    following text overwrites what was there (how tqdm redraws and clears its bar)."""
    shown = []
    for line in stream.split("\n"):
        cells = ""
        for part in line.split("\r"):
            cells = part + cells[len(part) :]
        shown.append(cells.rstrip())
    return [line for line in shown if line]


def _picture(path: Path, size: tuple[int, int] = (50, 37), colour=(180, 120, 60)) -> Path:
    """A small PNG with a gradient, so the network sees something."""
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    pixels = np.broadcast_to(ramp, (height, width, 3)).copy()
    pixels[..., 1] = colour[1]
    pixels[: height // 2, :, 2] = colour[2]
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def _visible_box(width: int, height: int) -> list[float]:
    """Resize(256) + CenterCrop(224) sees a centred square of 224/256 of the shorter side."""
    side = min(width, height) * 224 / 256
    left, top = (width - side) / 2, (height - side) / 2
    return [round(v, 2) for v in (left, top, left + side, top + side)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- --help


OPTIONS = (
    "-h",
    "--help",
    "--model",
    "--class",
    "--layer",
    "--top-k",
    "--out",
    "--device",
    "--colormap",
    "--alpha",
    "--force",
)


def test_help_names_every_option_with_its_choices_and_defaults_and_exits_0(capsys):
    """What a user needs from ``--help``, not its layout: every option, the choices of those that have
    them, the defaults a user would otherwise have to guess, and the exit statuses."""
    assert cli.main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: gradcam ") and "PATH" in out
    named = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", out))
    assert named >= set(OPTIONS), sorted(set(OPTIONS) - named)
    # an option added later must be in the help too
    accepted = {flag for action in cli.build_parser()._actions for flag in action.option_strings}
    assert accepted <= named, sorted(accepted - named)
    words = " ".join(out.split())  # the same whatever the terminal's width wraps
    for said in ("efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, resnet18", "{cpu,cuda}", "{jet,viridis}"):
        assert said in words, said
    for default in ("efficientnet_lite0", "the top-1 prediction", "5", "gradcam-output", "cpu", "jet", "0.4"):
        assert f"(default: {default})" in words, default
    assert "Exit status: 0" in words and "2 on any error" in words


def test_no_path_is_a_usage_error_not_a_usage_dump(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "gradcam: error: the following arguments are required: PATH (see gradcam --help)\n"


# ---------------------------------------------------------------- option values: exact messages, boundaries


@pytest.mark.parametrize(
    "options, message",
    [
        (["--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
        (["--top-k", "-3"], "argument --top-k: must be at least 1, got -3"),
        (["--top-k", "many"], "argument --top-k: 'many' is not a whole number"),
        (["--top-k", "2.5"], "argument --top-k: '2.5' is not a whole number"),
        (["--alpha", "opaque"], "argument --alpha: 'opaque' is not a number"),
        (["--alpha", "1.5"], "argument --alpha: must be between 0 and 1, got 1.5"),
        (["--alpha", "-0.1"], "argument --alpha: must be between 0 and 1, got -0.1"),
    ],
)
def test_bad_option_values_are_refused_with_the_full_message(gradcam, tmp_path, options, message):
    status, out, err = gradcam(tmp_path / "photo.png", *options)
    assert (status, out) == (2, "")
    assert err == f"gradcam: error: {message} (see gradcam --help)\n"


@pytest.mark.parametrize("options", [["--top-k", "1"], ["--alpha", "0"], ["--alpha", "1"], ["--alpha", "0.0"]])
def test_boundary_option_values_are_accepted(gradcam, tmp_path, options):
    """Accepted options get as far as reading the image (which is missing here)."""
    missing = tmp_path / "photo.png"
    status, _, err = gradcam(missing, "--out", tmp_path / "out", *options)
    assert status == 2
    assert err == f"gradcam: error: {missing}: no such file\n"


def test_no_images_in_the_folders_names_them_and_the_extensions_looked_for(gradcam, tmp_path):
    first, second = tmp_path / "holiday", tmp_path / "work"
    first.mkdir()
    second.mkdir()
    (second / "notes.txt").write_text("no pictures here")
    status, _, err = gradcam(first, second, "--out", tmp_path / "out")
    assert status == 2
    assert err == (
        f"gradcam: error: no image files found in {first}, {second} "
        "(looked for .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)\n"
    )


def test_cuda_without_cuda_is_one_exact_line(gradcam, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, _, err = gradcam(_picture(tmp_path / "cup.png"), "--device", "cuda", "--out", tmp_path / "out")
    assert status == 2
    assert err == (
        "gradcam: error: --device cuda: CUDA is not available here (no GPU, or a CPU-only PyTorch build); "
        "use --device cpu\n"
    )


def test_device_option_moves_the_model_there(gradcam, effnet, tmp_path, monkeypatch):
    model, _ = effnet
    moved_to = []

    def to(device):
        moved_to.append(device)
        return model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(model.__dict__, "to", to)  # record the move; the weights stay where they are
    status, _, err = gradcam(tmp_path / "missing.png", "--device", "cuda", "--out", tmp_path / "out")
    assert status == 2 and err.endswith("missing.png: no such file\n")
    assert moved_to == ["cuda"]


def test_an_output_folder_that_cannot_be_created_is_one_line(gradcam, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # what a read-only parent does for a user other than root
        if self == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    status, _, err = gradcam(_picture(tmp_path / "cup.png"), "--out", out)
    assert status == 2
    assert err == f"gradcam: error: cannot create output folder {out}: Permission denied\n"


def test_an_output_folder_that_is_or_is_inside_a_file_is_one_line_and_the_file_is_kept(gradcam, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    picture = _picture(tmp_path / "cup.png")
    status, _, err = gradcam(picture, "--out", tmp_path / "notes.txt")
    assert status == 2
    assert err == f"gradcam: error: --out {tmp_path / 'notes.txt'} exists and is not a folder\n"
    out = tmp_path / "notes.txt" / "out"
    status, _, err = gradcam(picture, "--out", out)
    assert status == 2
    assert err == f"gradcam: error: cannot create output folder {out}: Not a directory\n"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cup.png", "notes.txt"]


def test_ctrl_c_is_exit_130_with_one_line(gradcam, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "create_model", interrupted)
    status, _, err = gradcam(_picture(tmp_path / "cup.png"), "--out", tmp_path / "out")
    assert (status, err) == (130, "gradcam: error: interrupted\n")


# ---------------------------------------------------------------- a batch: progress bar, names, JSON, rerun


def test_a_batch_shows_a_transient_progress_bar_and_writes_documented_json(gradcam, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    spaced = _picture(photos / "a b.png")
    hyphen = _picture(photos / "a-b.png", colour=(0, 60, 200))
    (photos / ".hidden.png").write_bytes(b"a hidden file is never read")
    (photos / "notes.txt").write_text("not an image")
    (photos / "readme.md").write_text("not an image either")
    out = tmp_path / "new" / "nested" / "out"  # created with its parents

    argv = [photos, "--out", out, "--class", "espresso", "--class", str(EGYPTIAN_CAT), "--top-k", "1"]
    status, stdout, err = gradcam(*argv)
    assert status == 0, err
    assert stdout == ""
    assert _screen(err) == [
        "gradcam: warning: ignored 2 folder entries without an image extension",
        f"gradcam: explained 2 of 2 images into {out}",
    ], "the bar is cleared when done"
    assert re.search(r"\rgradcam: +0%\|[^|]*\| 0/2 \[00:00<\?, \?image/s\]", err), "the bar while it ran"

    # "a b" and "a-b" both slug to "a-b": the second in sorted order gets "_2"
    names = {"a-b": spaced, "a-b_2": hyphen}
    overlays = {stem: [f"{stem}__967_espresso.png", f"{stem}__285_egyptian-cat.png"] for stem in names}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}.json" for stem in names] + [name for pair in overlays.values() for name in pair]
    )
    for stem, source in names.items():
        record = json.loads((out / f"{stem}.json").read_text())
        assert set(record) == {
            "written_by", "complete", "image", "size", "model", "layer", "visible_box",
            "top_k", "classes", "warnings", "input", "overlays",
        }  # fmt: skip
        assert record["written_by"] == "gradcam" and record["complete"] is True
        assert record["image"] == str(source)
        assert record["size"] == [50, 37]
        assert (record["model"], record["layer"]) == ("efficientnet_lite0", "features")
        assert record["visible_box"] == _visible_box(50, 37) == [8.81, 2.31, 41.19, 34.69]
        assert record["warnings"] == []
        assert record["overlays"] == overlays[stem]
        assert record["input"] == {
            "sha256": _sha256(source),
            "options": {
                "model": "efficientnet_lite0",
                "layer": "features",
                "classes": [ESPRESSO, EGYPTIAN_CAT],
                "top_k": 1,
                "colormap": "jet",
                "alpha": 0.4,
            },
        }
        assert len(record["top_k"]) == 1 and set(record["top_k"][0]) == {"index", "name", "probability"}
        assert [(c["index"], c["name"], c["overlay"]) for c in record["classes"]] == [
            (ESPRESSO, "espresso", overlays[stem][0]),
            (EGYPTIAN_CAT, "Egyptian cat", overlays[stem][1]),
        ]
        probabilities = [record["top_k"][0]["probability"]] + [c["probability"] for c in record["classes"]]
        assert all(p == round(p, 6) and 0 < p < 1 for p in probabilities), "probabilities keep 6 decimals"
        assert any(p != round(p, 5) for p in probabilities)
        for entry in record["classes"]:
            heatmap = np.array(entry["heatmap"])
            assert heatmap.shape == (7, 7)
            np.testing.assert_array_equal(heatmap, np.round(heatmap, 4))

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    status, _, err = gradcam(*argv)
    assert status == 0
    assert _screen(err) == [
        "gradcam: warning: ignored 2 folder entries without an image extension",
        f"gradcam: explained 0 of 2 images into {out}",
        "gradcam: skipped 2 whose outputs were already complete (--force explains them again)",
    ]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_one_image_shows_no_progress_bar(gradcam, tmp_path):
    cup = _picture(tmp_path / "cup.png")
    status, _, err = gradcam(cup, "--out", tmp_path / "out", "--class", "espresso", "--top-k", "2")
    assert status == 0
    assert err == f"gradcam: explained 1 of 1 image into {tmp_path / 'out'}\n"
    assert len(json.loads((tmp_path / "out" / "cup.json").read_text())["top_k"]) == 2


@pytest.mark.slow
def test_long_names_are_cut_with_a_hash_and_clashing_stems_keep_their_extension(gradcam, tmp_path):
    """Files named one by one are all explained; a stem longer than 173 characters becomes its first
    164 characters, a hyphen and the first 8 hex digits of the whole stem's sha256."""
    longest = "a" * MAX_STEM
    too_long = "b" * (MAX_STEM + 1)
    paths = [
        _picture(tmp_path / f"{longest}.png"),
        _picture(tmp_path / f"{too_long}.png"),
        _picture(tmp_path / "shot.png"),
        _picture(tmp_path / "shot.X"),  # a PNG under an odd extension, named on the command line
    ]
    out = tmp_path / "out"
    status, _, err = gradcam(*paths, "--out", out, "--class", str(ESPRESSO))
    assert status == 0, err
    cut = "b" * 164 + "-" + hashlib.sha256(too_long.encode()).hexdigest()[:8]
    stems = [longest, cut, "shot_png", "shot_x"]
    assert len(cut) == MAX_STEM
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}.json" for stem in stems] + [f"{stem}__967_espresso.png" for stem in stems]
    )
    for stem, path in zip(stems, paths, strict=True):
        assert json.loads((out / f"{stem}.json").read_text())["image"] == str(path)


def test_an_unreadable_image_in_a_batch_is_counted_and_ends_with_exit_2(gradcam, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    _picture(photos / "cup.png")
    (photos / "scan.png").write_text("this was meant to be a scan")
    out = tmp_path / "out"
    status, _, err = gradcam(photos, "--out", out, "--class", str(ESPRESSO))
    assert status == 2
    assert _screen(err) == [
        f"gradcam: warning: skipped {photos / 'scan.png'}: cannot be read as an image: it is a text file, not an image",
        f"gradcam: explained 1 of 2 images into {out}",
        "gradcam: error: 1 of 2 images could not be read (see the warnings above); the others were written",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["cup.json", "cup__967_espresso.png"]


def test_a_file_of_the_user_at_an_overlay_name_stops_the_run_with_one_line(gradcam, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "cup__967_espresso.png"
    mine.write_bytes(b"my own picture")
    status, _, err = gradcam(_picture(tmp_path / "cup.png"), "--out", out, "--class", str(ESPRESSO))
    assert status == 2
    assert err == f"gradcam: error: {mine} exists and was not written by gradcam; move it or choose another --out\n"
    assert mine.read_bytes() == b"my own picture"


@pytest.mark.slow
def test_a_failed_write_leaves_a_claim_that_the_rerun_completes(gradcam, tmp_path, monkeypatch):
    cup = _picture(tmp_path / "cup.png", size=(40, 30))
    out = tmp_path / "out"
    argv = [cup, "--out", out, "--class", str(ESPRESSO), "--class", str(EGYPTIAN_CAT)]
    real_imencode = cv2.imencode
    calls = []

    def second_fails(ext, image, *args):
        calls.append(ext)
        return (False, None) if len(calls) == 2 else real_imencode(ext, image, *args)

    monkeypatch.setattr(cv2, "imencode", second_fails)
    status, _, err = gradcam(*argv)
    assert status == 2
    assert err == f"gradcam: error: cannot write to {out}: cannot encode a (30, 40, 3) image as PNG\n"
    names = ["cup__967_espresso.png", "cup__285_egyptian-cat.png"]
    assert sorted(p.name for p in out.iterdir()) == ["cup.json", names[0]]
    claim = json.loads((out / "cup.json").read_text())
    options = {"model": "efficientnet_lite0", "layer": "features", "classes": [ESPRESSO, EGYPTIAN_CAT]}
    options |= {"top_k": 5, "colormap": "jet", "alpha": 0.4}
    assert claim == {
        "written_by": "gradcam",
        "complete": False,
        "image": str(cup),
        "input": {"sha256": _sha256(cup), "options": options},
        "overlays": names,
    }

    monkeypatch.setattr(cv2, "imencode", real_imencode)
    status, _, err = gradcam(*argv)
    assert (status, err) == (0, f"gradcam: explained 1 of 1 image into {out}\n")
    assert sorted(p.name for p in out.iterdir()) == sorted(["cup.json", *names])
    assert json.loads((out / "cup.json").read_text())["complete"] is True

    # a kill after the last overlay, before the final JSON: every overlay there, the claim still unfinished
    (out / "cup.json").write_text(json.dumps(claim))
    files = {name: (out / name).stat().st_ino for name in names}  # a rewrite renames a new file over it
    status, _, err = gradcam(*argv)
    assert (status, err) == (0, f"gradcam: explained 1 of 1 image into {out}\n"), "redone, not skipped"
    assert all((out / name).stat().st_ino != files[name] for name in names)
    assert json.loads((out / "cup.json").read_text())["complete"] is True


# ---------------------------------------------------------------- the helpers a library user may call


def test_png_bytes_encodes_rgb_and_reuses_the_array_as_documented():
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[1, 2] = (10, 20, 30)
    original = rgb.copy()
    data = cli.png_bytes(rgb)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decoded, original)
    np.testing.assert_array_equal(rgb, original[..., ::-1])  # "the array is turned to BGR in place"


def test_overlay_name_keeps_64_characters_of_the_class_slug():
    assert cli.overlay_name("photo", 7, "Very Long Name " * 10) == (
        "photo__007_" + ("very-long-name-" * 5)[:64] + ".png"
    )


@pytest.mark.slow
def test_a_token_layer_of_a_vision_transformer(photos, tmp_path, monkeypatch, capsys):
    """--layer takes a ViT's token layer: the tokens are laid out as the 14 x 14 patch grid. The
    weights are random here (none install offline; torchvision downloads the real ones): the test
    shows the plumbing, not what a trained model sees."""
    import torchvision

    from gradcam_tutorial.models import get_spec

    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision starts it at zero
    monkeypatch.setattr(cli, "create_model", lambda name, pretrained=True: (vit, get_spec(name)))
    layer = "encoder.layers.encoder_layer_10.ln_1"
    status = cli.main([str(photos / "coffee.png"), "--model", "vit_b_16", "--layer", layer, "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "coffee.json").read_text())
    assert record["layer"] == layer and record["model"] == "vit_b_16"
    heatmap = np.array(record["classes"][0]["heatmap"])
    assert heatmap.shape == (14, 14) and heatmap.max() == 1.0
    # the last block's output reaches the head only through the class token: no map there
    status = cli.main(
        [str(photos / "coffee.png"), "--model", "vit_b_16", "--layer", "encoder.ln", "--out", str(tmp_path / "ln")]
    )
    assert status == 0
    assert np.array(json.loads((tmp_path / "ln" / "coffee.json").read_text())["classes"][0]["heatmap"]).max() == 0


def test_ctrl_c_during_a_run_prints_interrupted_on_a_line_of_its_own(gradcam, photos, tmp_path, monkeypatch):
    """The progress bar is cleared before the line, whenever the interrupt comes (a loaded machine
    once interrupted the first image, and the line followed the bar's text)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_explain_job", interrupted)
    status, _, err = gradcam(photos, "--out", tmp_path / "out")
    assert status == 130
    assert "image/s" in err  # the bar was showing
    assert err.strip().splitlines()[-1] == "gradcam: error: interrupted"
