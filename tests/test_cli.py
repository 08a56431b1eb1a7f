"""The ``gradcam`` command: what it writes, and one clean error line (exit 2) for every user mistake.

Most tests call :func:`gradcam_tutorial.cli.main` in-process with the session's model patched in (a
model load per test would dominate the runtime); two run the real console script and ``python -m``.
"""

from __future__ import annotations

import json
import os
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
        (["--model", "vgg16"], "unknown model 'vgg16'; choose one of efficientnet_lite0, resnet18"),
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


def test_cuda_requested_without_cuda(gradcam, photos, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, _, err = gradcam(photos / "coffee.png", "--device", "cuda", "--out", tmp_path)
    assert status == 2
    assert "CUDA is not available" in _one_error_line(err) and "--device cpu" in err


def test_out_is_a_file(gradcam, photos, tmp_path):
    (tmp_path / "taken").write_text("")
    status, _, err = gradcam(photos / "coffee.png", "--out", tmp_path / "taken")
    assert status == 2 and "not a folder" in _one_error_line(err)


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


def test_console_script_error_is_one_line(tmp_path):
    script = Path(sys.executable).with_name("gradcam")
    assert script.exists(), "the gradcam console script is not installed (pip install -e .)"
    done = subprocess.run(
        [str(script), str(tmp_path / "missing.jpg")], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == f"gradcam: error: {tmp_path / 'missing.jpg'}: no such file"


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


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "Exit status" in capsys.readouterr().out


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
    """SIGKILL and SIGINT at seeded random moments of a 16-image run, then a rerun finishes the job."""
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
    for trial in range(6):
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
