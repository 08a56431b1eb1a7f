"""Class indices and names (classes.py): checked ranges, either wording, close-name suggestions."""

from __future__ import annotations

import difflib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcam_tutorial.classes import (
    EGYPTIAN_CAT,
    PERSIAN_CAT,
    SIAMESE_CAT,
    TIGER_CAT,
    ClassNameError,
    imagenet_categories,
    post_categories,
    resolve_class,
)

# ---------------------------------------------------------------- issue 6, cases 14-15: class indices and names


@pytest.mark.parametrize("value", [-1, 1000, "-1", "1000", "2.5", 2.5, None, True])
def test_14_class_index_out_of_range_or_not_an_integer(value):
    with pytest.raises(ClassNameError, match=r"out of range|whole number|index or a name"):
        resolve_class(value)


def test_14b_numpy_integer_is_an_index():
    assert resolve_class(np.int64(TIGER_CAT)) == TIGER_CAT


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


# ------------------------------------------------------------------ classes


@pytest.fixture(scope="module")
def post_names() -> list[str]:
    return json.loads((Path(os.environ["GRADCAM_MIRROR"]) / "imagenet_classes.json").read_text())


def _refused_class(value, categories=None) -> str:
    with pytest.raises(ClassNameError) as caught:
        resolve_class(value, categories)
    return str(caught.value)


def test_the_post_class_list_is_the_mirrored_json(post_names, capsys):
    assert post_categories() == tuple(post_names)
    assert capsys.readouterr() == ("", "")


def test_the_post_class_list_downloads_quietly(post_names, tmp_path, monkeypatch, capfd):
    import pooch

    source = Path(os.environ["GRADCAM_MIRROR"]) / "imagenet_classes.json"
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADCAM_MIRROR", str(tmp_path / "empty_mirror"))

    def offline_retrieve(url, known_hash, fname, path, progressbar=False):
        """Stands in for the network: announces itself as pooch does, draws a bar only if asked."""
        pooch.get_logger().info("Downloading data from '%s' to file '%s'.", url, fname)
        if progressbar:
            print(f"{fname}: 100%|##########| 10.5k/10.5k", file=sys.stderr)
        target = Path(path) / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", offline_retrieve)
    capfd.readouterr()
    assert post_categories() == tuple(post_names)
    assert capfd.readouterr() == ("", "")


def test_class_indices_in_any_integer_form_are_checked_against_the_range():
    assert [resolve_class(v) for v in (0, 999, np.int64(281), "  12 ", "+3", "0")] == [0, 999, 281, 12, 3, 0]
    assert _refused_class(1000) == "class index 1000 is out of range 0..999"
    assert _refused_class("-1") == "class index -1 is out of range 0..999"
    assert _refused_class(3, ("a", "b", "c")) == "class index 3 is out of range 0..2"
    for text in ("2.5", " 1e3 ", "1E3", ".5", "3.", "-2.0e-1"):
        assert _refused_class(text) == f"class index {text.strip()!r} is not a whole number"
    for value in (True, 2.5, None, [1]):
        assert _refused_class(value) == f"class must be an index or a name, not {value!r}"
    assert _refused_class("   ") == "class name is empty"


def test_class_names_resolve_in_either_wording(post_names):
    torchvision = imagenet_categories()
    assert resolve_class("TIGER CAT") == 282
    assert resolve_class("tabby") == resolve_class("Tabby Cat") == 281  # post's wording
    assert resolve_class("Egyptian Mau") == post_names.index("Egyptian Mau") == 285
    assert resolve_class("mau") == 285  # a part of a name only the post uses
    assert resolve_class("  shepherd ") == torchvision.index("German shepherd")
    assert resolve_class("cardigan") == 264 == torchvision.index("Cardigan")  # the first of two 'cardigan's
    assert resolve_class("tiger") == torchvision.index("tiger")  # exact beats partial
    assert resolve_class("b", ("a", "b")) == 1  # a caller's own names
    assert resolve_class("ze", ("a", "b", "zebra fish")) == 2
    assert _refused_class("Egyptian Mau", ("a", "b", "c")) == "no ImageNet class is named 'Egyptian Mau'"


def test_without_the_post_json_only_torchvision_wording_resolves(tmp_path, monkeypatch):
    from gradcam_tutorial import classes

    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADCAM_MIRROR", str(tmp_path / "empty_mirror"))
    classes._post_categories_if_available.cache_clear()  # forget the mirrored copy read earlier
    try:
        assert resolve_class("Egyptian cat") == 285
        assert (
            _refused_class("Egyptian Mau") == "no ImageNet class is named 'Egyptian Mau'; did you mean 'egyptian cat'?"
        )
    finally:
        classes._post_categories_if_available.cache_clear()


@pytest.mark.parametrize("part", ["cat", "sea", "ball", "dog"])
def test_a_part_of_several_names_lists_them(post_names, part):
    torchvision = imagenet_categories()
    matches = sorted({i for names in (torchvision, post_names) for i, n in enumerate(names) if part in n.lower()})
    listed = ", ".join(f"{torchvision[i]} {i}" for i in matches[:12])
    more = f" and {len(matches) - 12} more" if len(matches) > 12 else ""
    wanted = f"class name {part!r} matches {len(matches)} classes: {listed}{more}; give one exactly"
    assert _refused_class(part) == wanted
    if part == "sea":
        assert len(matches) == 12 and not more
    if part == "ball":
        assert more == " and 1 more"


@pytest.mark.parametrize("name", ["tabbby", "terier", "zzqqxx"])
def test_an_unknown_class_name_suggests_up_to_five_close_names(name):
    lowered = [n.lower() for n in imagenet_categories()]
    close = difflib.get_close_matches(name, lowered, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    assert _refused_class(name) == f"no ImageNet class is named {name!r}{hint}"
    if name == "terier":
        assert len(difflib.get_close_matches(name, lowered, n=6, cutoff=0.6)) == 6
    if name == "tabbby":
        assert close[0] == "tabby"
