"""ImageNet class names and the lookup from a user's words to a class index.

Offline, the names come from torchvision's weight metadata (no download). The original post's JSON
list is the same 1000 classes in the same order, but 307 names are worded differently (281 is
'tabby' here and 'tabby cat' there), so a lookup accepts either wording.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import numbers
import re
from functools import cache

from .data import IMAGENET_CLASSES_JSON, fetch

# The class indices the original post explores, by name, so code reads as what it means.
GOOSE = 99
REDBONE = 168
VIZSLA = 211
GERMAN_SHEPHERD = 235
GREAT_DANE = 246
CHOW = 260
TABBY = 281
TIGER_CAT = 282
PERSIAN_CAT = 283
SIAMESE_CAT = 284
EGYPTIAN_CAT = 285
MILITARY_UNIFORM = 652
MOPED = 665
COWBOY_HAT = 515
ESPRESSO = 967
# The nine classes the original post draws a heatmap for, in index order.
POST_CLASSES = (GOOSE, VIZSLA, GERMAN_SHEPHERD, GREAT_DANE, CHOW, TABBY, TIGER_CAT, EGYPTIAN_CAT, COWBOY_HAT)


class ClassNameError(ValueError):
    """A class given by the user names no ImageNet class, or several, or is out of range."""


@cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order, from torchvision (offline)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def post_categories() -> tuple[str, ...]:
    """The original post's class-name list (downloaded by URL + sha256, or read from the mirror)."""
    return tuple(json.loads(fetch(IMAGENET_CLASSES_JSON, progress=False).read_text()))


def resolve_class(value: int | str, categories: tuple[str, ...] | None = None) -> int:
    """Turn an index or a (partial) class name into an index, or explain why it cannot.

    An exact name (case-insensitive) always wins; otherwise a unique substring match is accepted,
    several matches are listed, and a name matching nothing gets the closest names suggested.
    """
    names = categories if categories is not None else imagenet_categories()
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise ClassNameError(f"class must be an index or a name, not {value!r}")
    if isinstance(value, numbers.Integral):
        value = int(value)  # numpy and torch integers are indices too
    elif re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    elif re.fullmatch(r"\s*[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\s*", value):
        raise ClassNameError(f"class index {value.strip()!r} is not a whole number")
    if isinstance(value, int):
        if not 0 <= value < len(names):
            raise ClassNameError(f"class index {value} is out of range 0..{len(names) - 1}")
        return value
    wanted = value.strip().lower()
    if not wanted:
        raise ClassNameError("class name is empty")
    alternatives = [names]
    if len(names) == 1000:
        # the JSON is optional: without it only torchvision's wording is known
        with contextlib.suppress(Exception):
            alternatives.append(_post_categories_if_available())
    for wording in alternatives:
        exact = [i for i, name in enumerate(wording) if name.lower() == wanted]
        if exact:
            return exact[0]
    partial = sorted({i for wording in alternatives for i, n in enumerate(wording) if wanted in n.lower()})
    if len(partial) == 1:
        return partial[0]
    if partial:
        listed = ", ".join(f"{names[i]} {i}" for i in partial[:12])
        more = f" and {len(partial) - 12} more" if len(partial) > 12 else ""
        raise ClassNameError(f"class name {value!r} matches {len(partial)} classes: {listed}{more}; give one exactly")
    close = difflib.get_close_matches(wanted, [n.lower() for n in names], n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ClassNameError(f"no ImageNet class is named {value!r}{hint}")


@cache
def _post_categories_if_available() -> tuple[str, ...]:
    """The post's wording when the JSON is cached or mirrored; never starts a download."""
    from .data import cache_dir, mirror_dir, sha256sum

    for folder in (cache_dir(), mirror_dir()):
        if folder is None:
            continue
        path = folder / IMAGENET_CLASSES_JSON.name
        if path.is_file() and sha256sum(path) == IMAGENET_CLASSES_JSON.sha256:
            return tuple(json.loads(path.read_text()))
    raise FileNotFoundError(IMAGENET_CLASSES_JSON.name)
