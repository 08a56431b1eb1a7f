"""The mirrored ImageNet validation photos: labels, sizes and boxes as the official files say, and the
accuracy they give, which is lower than on the 500 training-set sample photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam_tutorial.data import (
    VAL_CLASS_LABELS,
    VAL_IMAGE_SIZES,
    VAL_LOCALIZATION,
    Remote,
    ValPhoto,
    fetch,
    imagenet_samples,
    imagenet_val,
    imagenet_val_metadata,
)
from gradcam_tutorial.evaluation.accuracy import top_k_accuracy
from gradcam_tutorial.images import restore_aspect

# tests/test_tutorial.py::test_offline_model_top1_on_the_mirrored_samples; the data README measures 88.2 %
TRAINING_PHOTOS_TOP1 = 0.88
SPOT_CHECKED = ("ILSVRC2012_val_00000347.JPEG", "ILSVRC2012_val_00010040.JPEG", "ILSVRC2012_val_00048552.JPEG")


def _raw_lines(remote: Remote, name: str) -> list[list[int]]:
    """The numbers on every line of a fetched metadata file that names ``name``, parsed by hand."""
    with open(fetch(remote, progress=False), encoding="utf-8") as handle:
        return [[int(v) for v in line.strip().split(",")[1:]] for line in handle if line.startswith(f"val/{name},")]


def _by_name() -> dict[str, ValPhoto]:
    return {photo.remote.name.rsplit("/", 1)[-1]: photo for photo in imagenet_val()}


def test_val_photos_exist_and_boxes_lie_inside_them():
    photos = imagenet_val()
    assert len(photos) == 1000
    assert len({p.remote.name for p in photos}) == 1000
    assert len({p.class_index for p in photos}) == 626  # the mirror's README says 725; the labels say 626
    assert all(p.path.is_file() for p in photos)  # fetch checks each file's sha256
    for photo in photos:
        width, height = photo.original_size
        assert photo.boxes, photo.remote.name
        for x0, y0, x1, y1 in photo.boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (photo.remote.name, photo.boxes)
    with Image.open(photos[0].path) as stored:
        assert stored.size == (227, 227)


def test_manifest_agrees_with_the_fetched_metadata_files():
    """Every photo's label, size and boxes in the package manifest are those of the official files."""
    metadata = imagenet_val_metadata()
    by_name = _by_name()
    assert metadata.keys() == by_name.keys()
    for name, meta in metadata.items():
        photo = by_name[name]
        assert photo.class_index == meta.class_index
        assert photo.original_size == meta.size
        assert photo.boxes == tuple((x0, y0, x1 + 1.0, y1 + 1.0) for x0, y0, x1, y1 in meta.boxes)


@pytest.mark.parametrize("name", SPOT_CHECKED)
def test_spot_checked_photos_match_the_raw_lines(name):
    photo = _by_name()[name]
    assert _raw_lines(VAL_CLASS_LABELS, name) == [[photo.class_index]]
    assert _raw_lines(VAL_IMAGE_SIZES, name) == [list(photo.original_size)]
    raw_boxes = _raw_lines(VAL_LOCALIZATION, name)
    assert [[x0, y0, x1 + 1, y1 + 1] for x0, y0, x1, y1 in raw_boxes] == [list(map(int, b)) for b in photo.boxes]


def test_a_photo_with_a_known_box():
    """ILSVRC2012_val_00000355: a chow (260), 333x500, one box; the file's edges are inclusive."""
    photo = _by_name()["ILSVRC2012_val_00000355.JPEG"]
    with open(fetch(VAL_LOCALIZATION, progress=False), encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if "_val_00000355." in line]
    assert lines == ["val/ILSVRC2012_val_00000355.JPEG,76,135,292,473"]
    assert photo.class_index == 260
    assert photo.original_size == (333, 500)
    assert photo.boxes == ((76.0, 135.0, 293.0, 474.0),)
    (box,) = photo.boxes_at((227, 227))
    assert box == pytest.approx((76 * 227 / 333, 135 * 227 / 500, 293 * 227 / 333, 474 * 227 / 500))


@pytest.mark.parametrize(
    ("original", "pixels", "expected"),
    [
        ((500, 375), None, (262, 197)),  # landscape, about 227 * 227 pixels
        ((333, 500), None, (185, 278)),  # portrait
        ((500, 375), 500 * 375, (500, 375)),  # the original size itself
        ((400, 400), None, (227, 227)),  # square: nothing to undo
    ],
)
def test_restore_aspect_gives_the_original_shape(original, pixels, expected):
    # a vertical bar at 40-60 % of the width must stay there: the stretch is undone, nothing is cropped
    pixels_in = np.zeros((227, 227, 3), np.uint8)
    pixels_in[:, 91:136] = 255
    restored = restore_aspect(Image.fromarray(pixels_in), original, pixels)
    assert restored.size == expected
    assert abs(restored.width / restored.height - original[0] / original[1]) < 0.01
    column = np.asarray(restored)[restored.height // 2, :, 0] > 127
    assert abs(column.argmax() / restored.width - 0.4) < 0.01 and abs(column.sum() / restored.width - 0.2) < 0.02


def test_undo_stretch_needs_the_original_size(effnet):
    model, spec = effnet
    with pytest.raises(TypeError, match="original size"):
        top_k_accuracy(model, spec, imagenet_samples()[:2], undo_stretch=True)


@pytest.mark.slow
def test_accuracy_on_all_validation_photos(effnet):
    """All 1000 photos as stored (about 30 s on 2 idle cores): measured top-1 81.3 % / top-5 94.9 %.
    Unseen photos score well under the training-set sample photos' 88 %, so that figure is optimistic."""
    model, spec = effnet
    top1, top5 = top_k_accuracy(model, spec, imagenet_val())
    assert top1 >= 0.77 and top5 >= 0.92, (top1, top5)
    assert top1 < TRAINING_PHOTOS_TOP1


@pytest.mark.slow
def test_accuracy_with_the_aspect_ratio_restored(effnet):
    """Undoing the 227x227 stretch does not help (measured 79.9 % / 94.6 %, 1.4 points under the
    stretched photos; 25 photos gained, 39 lost), probably because the 0.875 centre crop of a
    restored photo drops more of its long side, while training's random crops stretch by up to 4:3."""
    model, spec = effnet
    top1, top5 = top_k_accuracy(model, spec, imagenet_val(), undo_stretch=True)
    assert top1 >= 0.76 and top5 >= 0.92, (top1, top5)
    assert top1 < TRAINING_PHOTOS_TOP1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lites_with_their_own_preprocessing_on_200_spread_photos(name):
    """On all 1000 photos as stored (2026-12-06, docs/measurements.md) Lite1 scored 82.3 % / 95.1 % and
    Lite2 82.0 % / 95.4 %, against Lite0's 81.3 % / 94.9 %; their published ImageNet top-1 is 76.7 % and
    77.6 % (Lite0 75.1 %). Every fifth photo keeps the test short: Lite1 86.5 % / 94.5 %, Lite2
    87.0 % / 95.5 % there, and Lite1 with the ImageNet statistics instead of its own 79.0 % / 91.5 %.
    (At Lite0's 224 pixels Lite1 scores 87.5 % on these photos: the size is test_models.py's check.)"""
    from gradcam_tutorial import create_model
    from gradcam_tutorial.evaluation.shared import spread

    model, spec = create_model(name)
    top1, top5 = top_k_accuracy(model, spec, spread(list(imagenet_val()), 200))
    assert top1 >= 0.82 and top5 >= 0.93, (top1, top5)
