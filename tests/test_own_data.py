"""evaluation/own_data.py and ``--photos/--labels/--boxes``: a user's folder in ImageNet's metadata
formats is read with every unusable line reported (never dropped silently), and the full run works
on it. The photos are scikit-image's, written as JPEG files into a folder the test makes."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from skimage import data as skdata

from gradcam_tutorial.evaluation import report
from gradcam_tutorial.evaluation.own_data import read_photos

# scikit-image photo -> ImageNet class (tabby 281, espresso 967, rocket 812)
PHOTOS = {"chelsea": 281, "coffee": 967, "rocket": 812}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    photos = root / "photos"
    photos.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(skdata, name)()).save(photos / f"{name}.jpg", quality=90)
    (photos / "notes.jpg").write_text("not an image")
    labels = root / "labels.txt"
    labels.write_text(
        "\n".join(
            [
                *(f"val/{name}.jpg,{index}" for name, index in PHOTOS.items()),
                "val/notes.jpg,1",
                "val/missing.jpg,2",
                "val/unboxed.jpg,3",
                "val/chelsea.jpg,4",
                "broken line",
                "val/big.jpg,1000",
            ]
        )
        + "\n"
    )
    boxes = root / "boxes.txt"
    boxes.write_text(
        "\n".join(
            [
                "val/chelsea.jpg,140,20,340,290",
                "val/chelsea.jpg,0,0,451,10",  # 451 is outside the 451-pixel-wide photo (0-based)
                "val/coffee.jpg,60,20,550,380",
                "val/rocket.jpg,190,20,300,420",
                "val/notes.jpg,0,0,5,5",
                "val/missing.jpg,0,0,5,5",
                "val/orphan.jpg,0,0,5,5",
                "val/coffee.jpg,1,2,three,4",
            ]
        )
        + "\n"
    )
    return photos, labels, boxes


def test_a_folder_is_read_and_every_unusable_line_is_reported(folder):
    problems: list[str] = []
    photos = read_photos(*folder, problem=problems.append)
    assert [(p.path.name, p.class_index) for p in photos] == [
        ("chelsea.jpg", 281),
        ("coffee.jpg", 967),
        ("rocket.jpg", 812),
    ]
    chelsea = photos[0]
    assert chelsea.original_size == (451, 300) and chelsea.boxes == ((140.0, 20.0, 341.0, 291.0),)
    assert len(chelsea.remote.sha256) == 64 and chelsea.boxes_at(chelsea.original_size) == chelsea.boxes
    assert problems == [
        "labels.txt line 7: chelsea.jpg is labelled twice; the first label is kept",
        "labels.txt line 8: expected FILE,CLASS_INDEX",
        "labels.txt line 9: class 1000 is outside 0..999",
        "boxes.txt line 8: expected FILE,XMIN,YMIN,XMAX,YMAX",
        "orphan.jpg: has boxes but no label; skipped",
        "boxes line 2: box 0,0,451,10 is empty or outside chelsea.jpg (451x300)",
        "missing.jpg: not in " + str(folder[0]) + "; skipped",
        "notes.jpg: cannot be read as an image (UnidentifiedImageError); skipped",
        "unboxed.jpg: has a label but no box; skipped",
    ]


def test_a_folder_without_a_usable_photo_is_an_error(folder, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("val/missing.jpg,2\n")
    with pytest.raises(ValueError, match="no usable photo in"):
        read_photos(folder[0], labels, folder[2], problem=lambda line: None)


@pytest.mark.slow
def test_the_full_run_works_on_your_own_photos(folder, tmp_path, capsys):
    photos, labels, boxes = folder
    arguments = ["--photos", str(photos), "--labels", str(labels), "--boxes", str(boxes)]
    counts = ["--faith-photos", "1", "--check-photos", "0", "--sanity-photos", "2", "--variant-photos", "1"]
    counts += ["--score-cam-photos", "0", "--steps", "2", "--unit-photos", "1", "--out", str(tmp_path)]
    assert report.main(arguments + counts) == 0
    assert "skipped: orphan.jpg: has boxes but no label" in capsys.readouterr().err
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["val"]["n_photos"] == data["localisation"]["n_photos"] == 3
    assert "train_sample" not in data  # the mirror's training samples belong to the mirror's runs
    assert data["faithfulness"]["n_photos"] == 1 and data["sanity"]["n_photos"] == 2
    assert len(data["config"]["input_sha256"]["all"]) == 64
