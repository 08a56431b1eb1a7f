"""The tutorial's claims, checked on real weights and real images (the arrays behind its figures)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcam_tutorial import classes as C
from gradcam_tutorial import create_model, explain, last_conv2d, last_spatial_layer, load_image
from gradcam_tutorial.data import CAT_AND_DOG, fetch, imagenet_samples
from gradcam_tutorial.models import WeightsUnavailableError
from gradcam_tutorial.publishing import reference
from gradcam_tutorial.regions import region_shares

REFERENCE = Path(__file__).parent / "reference" / "tutorial.json"


@pytest.mark.slow
def test_offline_model_top1_on_the_mirrored_samples(effnet):
    """At least 85 % top-1 with the model's own preprocessing on the 500 mirrored sample photos.

    These are ImageNet *training* photos, so this shows the weights and preprocessing are wired up
    right, not how the model does on unseen photos (tests/test_validation_photos.py measures that).
    """
    model, spec = effnet
    samples = imagenet_samples()
    assert len(samples) == 500
    correct = 0
    for start in range(0, len(samples), 50):
        chunk = samples[start : start + 50]
        batch = torch.cat([spec.preprocess(load_image(s.path)) for s in chunk])
        with torch.no_grad():
            predicted = model(batch).argmax(dim=1)
        correct += sum(int(p) == s.class_index for p, s in zip(predicted, chunk, strict=True))
    assert correct / len(samples) >= 0.85, f"top-1 {correct / len(samples):.3f}"


@pytest.mark.slow
def test_post_image_dog_left_cat_right(effnet):
    """On the original post's photo, dog classes light up the left half and cat classes the right."""
    model, spec = effnet
    image = load_image(fetch(CAT_AND_DOG))
    result = explain(image, model, spec, [C.VIZSLA, C.REDBONE, C.TABBY, C.EGYPTIAN_CAT])
    half = image.width // 2
    left = [float(h[:, :half].sum() / h.sum()) for h in result.heatmaps]
    assert left[0] > 0.6 and left[1] > 0.6, f"dog maps, share on the left: {left[:2]}"
    assert left[2] < 0.4 and left[3] < 0.4, f"cat maps, share on the left: {left[2:]}"


@pytest.mark.slow
def test_grid_each_object_in_its_own_quadrant(effnet, grid):
    model, spec = effnet
    image, tiles = grid
    result = explain(image, model, spec, [t.class_index for t in tiles])
    for k, tile in enumerate(tiles):
        shares = region_shares(result.heatmaps[k], [t.box for t in tiles])
        assert shares.argmax() == k and shares[k] > 0.5, f"{tile.name}: {shares.round(2)}"


@pytest.mark.slow
def test_tutorial_heatmaps_match_stored_references(effnet, grid):
    """The figures' arrays: layer-resolution maps of the post's nine classes on the grid.

    Recomputed here outside the notebook and compared with the tutorial's reference numbers, each
    within the tolerance stored beside it (derived from the spread measured across CPU variants).
    """
    model, spec = effnet
    image, _ = grid
    result = explain(image, model, spec, list(C.POST_CLASSES))
    stored = reference.load(REFERENCE)
    assert stored["parameters"] == {"MODEL": "efficientnet_lite0", "IMAGE": "grid"}
    names = ("post_class_probabilities", "post_class_small_heatmaps")
    subset = {**stored, "values": {k: stored["values"][k] for k in names}}
    current = {"post_class_probabilities": result.probabilities, "post_class_small_heatmaps": result.small_heatmaps}
    assert reference.mismatches(current, subset) == []
    assert result.class_indices == list(C.POST_CLASSES)


@pytest.mark.slow
def test_resnet18_path_without_weights(grid):
    """The original post's architecture: the scan, the default layer and a full explanation run."""
    torch.manual_seed(0)
    model, spec = create_model("resnet18", pretrained=False)
    assert last_conv2d(model) == "layer4.1.conv2" == spec.last_conv_layer
    assert last_spatial_layer(model) == "layer4" == spec.target_layer
    image, _ = grid
    for layer in (spec.last_conv_layer, spec.target_layer):
        result = explain(image, model, spec, [C.VIZSLA, C.EGYPTIAN_CAT], layer=layer)
        assert result.heatmaps.shape == (2, image.height, image.width)
        assert np.isfinite(result.heatmaps).all() and result.heatmaps.min() >= 0 and result.heatmaps.max() <= 1


def test_resnet18_offline_without_cached_weights_fails_clearly(tmp_path, monkeypatch):
    """The download torchvision really makes is intercepted, and no socket opens, so the test is the
    same on a connected machine as offline: no weights on disk gives one clear line, not a traceback.

    torchvision binds ``load_state_dict_from_url`` into ``torchvision.models._api`` at import time;
    patching ``torch.hub``'s name afterwards would leave the real download in place.
    """
    import socket

    import torchvision.models._api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    downloads: list[str] = []
    connections: list[object] = []

    def refuse_download(url, *args, **kwargs):
        downloads.append(url)
        raise urllib.error.URLError(f"no network for {url}")

    def refuse_socket(*args, **kwargs):
        connections.append(args)
        raise OSError("the test forbids network access")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse_download)
    for name in ("create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse_socket)
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse_socket)
    with pytest.raises(WeightsUnavailableError) as error:
        create_model("resnet18")
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert downloads == [url], "torchvision's download was not intercepted"
    assert connections == [], "something reached for the network past the intercepted download"
    message = str(error.value)
    assert "resnet18-f37072fd.pth" in message and "efficientnet_lite0" in message
    assert "\n" not in message


SOURCE = Path(__file__).resolve().parents[1] / "notebooks" / "tutorial.py"
EXECUTED = SOURCE.with_suffix(".ipynb")


def _code_outputs(path: Path) -> list[str]:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    texts = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o.output_type == "error"], f"a cell raised: {cell.source[:80]}"
        texts.append("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"))
    return texts


def _table(texts: list[str], header: str) -> list[list[str]]:
    """The rows of the printed table whose first line starts with ``header``."""
    (text,) = [t for t in texts if t.startswith(header)]
    return [line.split() for line in text.split("\n\n")[0].strip().splitlines()[1:]]


def _main_path(path: Path = EXECUTED) -> list:
    """The executed tutorial's cells up to the heading of Part 2 (the post's path, read on its own)."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    ends = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("# Part 2")]
    assert len(ends) == 1, "one '# Part 2' heading ends the main path"
    return cells[: ends[0]]


def _words(cells: list) -> int:
    return sum(len(c.source.split()) for c in cells if c.cell_type == "markdown")


def _has_figure(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def test_first_overlay_within_15_code_cells_and_1200_words():
    """A reader from the post sees a heatmap on the picture early: the overlay drawn by hand, with
    OpenCV's colour map, in a cell that shows a figure."""
    cells = _main_path()
    first = next(i for i, c in enumerate(cells) if c.cell_type == "code" and "applyColorMap" in c.source)
    assert _has_figure(cells[first]), "the cell that builds the overlay by hand draws it"
    code_cells = sum(c.cell_type == "code" for c in cells[: first + 1])
    assert code_cells <= 15, f"the first overlay is code cell {code_cells}"
    assert _words(cells[:first]) <= 1200, f"{_words(cells[:first])} words of markdown before the first overlay"


def test_main_path_is_short_and_shows_its_overlay_steps():
    cells = _main_path()
    assert _words(cells) <= 2000, f"the main path has {_words(cells)} words of markdown"
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    for step in ("cv2.resize", "COLORMAP_JET", "COLOR_BGR2RGB", "0.6", "0.4", "register_forward_hook", "struct("):
        assert step in code, f"{step} is not visible in the main path's code"


def test_main_path_draws_the_posts_nine_classes(effnet):
    """A figure of the nine classes, then a table with a row for each of them, in the main path."""
    cells = _main_path()
    names = effnet[1].categories
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or not _has_figure(cell) or "POST_CLASSES" not in cell.source:
            continue
        table = next(c for c in cells[i + 1 :] if c.cell_type == "code")
        text = "".join(o.get("text", "") for o in table.outputs if o.output_type == "stream")
        rows = [line for line in text.splitlines() if line[:17].strip() in {names[c][:17] for c in C.POST_CLASSES}]
        assert len(rows) == len(C.POST_CLASSES), text
        return
    pytest.fail("no figure of the post's nine classes in the main path")


def test_reference_is_found_from_the_root_and_from_notebooks_but_not_outside(tmp_path, monkeypatch):
    root = SOURCE.parents[1]
    expected = root / "tests" / "reference" / "tutorial.json"
    for folder in (root, root / "notebooks"):
        monkeypatch.chdir(folder)
        assert reference.find_reference("tutorial") == expected
    monkeypatch.chdir(tmp_path)
    assert reference.find_reference("tutorial") is None
    verdict = reference.check("tutorial", {"x": [1.0]}, None, {"MODEL": "efficientnet_lite0", "IMAGE": "grid"})
    assert verdict.endswith("so they are not checked")


@pytest.mark.slow
def test_tutorial_adapts_to_the_posts_photo_as_a_copy_outside_the_repository(tmp_path):
    """With the post's photo, run as a copy outside the repository (where a reader puts it): every
    table is filled, the sentences adapt to the photo's two halves, and the number check says it has
    nothing to check against. One execution (about a minute and a half): a user's own photo takes the
    same cells with four quadrants instead of two halves (regions.quadrants, tested in test_regions)."""
    import shutil

    from gradcam_tutorial.publishing import notebooks

    copy = tmp_path / "copy" / "tutorial.py"
    copy.parent.mkdir()
    shutil.copy(SOURCE, copy)
    texts = _code_outputs(notebooks.execute(copy, tmp_path / "out", parameters={"IMAGE": "cat_and_dog"}))
    everything = "\n".join(texts)
    nine = _table(texts, "class               prob.")
    assert len(nine) == 9, "one row per class of the post"
    grid = _table(texts, "class                    probability")
    assert len(grid) == 6, "one row per explained class"
    assert len(_table(texts, "class                    layer")) == 12
    assert "tile" not in everything
    assert "no reference file here" in texts[-1] and "not checked" in texts[-1]
    assert all(name in everything for name in ["left half", "right half"])
    assert "(NOT its own)" not in everything, "dog classes on the left, cat classes on the right"
    assert everything.count("(its own)") == 7
    assert "classes of objects in the picture: 7" in everything
    assert [row[-1] for row in grid].count("yes") == 5
