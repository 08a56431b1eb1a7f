"""The ``gradcam`` command's contract, word for word: its help, its progress bar, its messages, its names.

What a user reads (``--help``, the lines on stderr, the terminal after the progress bar is gone) and
what a script relies on (exit status, output file names, the JSON's fields) is checked exactly here,
against expectations written out by hand or computed with hashlib, numpy and the documented crop
geometry, never with the package's own helpers. The CLI runs in-process on the session's model.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from gradcam_tutorial import cli

HELP = """\
usage: gradcam [-h] [--model MODEL] [--class CLASS] [--layer LAYER] [--top-k TOP_K] [--out OUT]
               [--device {cpu,cuda}] [--colormap {jet,viridis}] [--alpha ALPHA] [--force]
               PATH [PATH ...]

Explain what an ImageNet classifier looks at: Grad-CAM overlays and JSON per image.

positional arguments:
  PATH                  image files and/or folders of images

options:
  -h, --help            show this help message and exit
  --model MODEL         one of efficientnet_lite0, resnet18 (default: efficientnet_lite0)
  --class CLASS         ImageNet class index or name to explain; repeat for several (default: the
                        top-1 prediction)
  --layer LAYER         dotted module name of the target layer (default: the model's own)
  --top-k TOP_K         predictions listed in the JSON (default: 5)
  --out OUT             output folder (default: gradcam-output)
  --device {cpu,cuda}   where the model runs (default: cpu)
  --colormap {jet,viridis}
                        overlay colours (default: jet)
  --alpha ALPHA         heatmap opacity in the overlay (default: 0.4)
  --force               explain again images whose outputs in --out are complete (by default a
                        rerun skips them)

Exit status: 0 when every image was explained, 2 on any error (unreadable images in a batch are
reported and skipped; the rest are still written).
"""

ESPRESSO, EGYPTIAN_CAT = 967, 285
MAX_STEM = 173  # 255 bytes - "__000_.png" - a 64-character class part - 8 spare


@pytest.fixture()
def gradcam(monkeypatch, effnet, capsys):
    """Call ``gradcam`` in-process with the session model; returns (status, stdout, stderr)."""
    monkeypatch.setattr(cli, "create_model", lambda name, pretrained=True: effnet)

    def call(*argv: str | Path) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return call


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


def test_help_text_lists_every_option_with_its_choices_and_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert cli.main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out == HELP
    assert err == ""


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


def test_an_output_folder_inside_a_file_is_one_line(gradcam, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "out"
    status, _, err = gradcam(_picture(tmp_path / "cup.png"), "--out", out)
    assert status == 2
    assert err == f"gradcam: error: cannot create output folder {out}: Not a directory\n"
    assert (tmp_path / "notes.txt").read_text() == "mine"


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
