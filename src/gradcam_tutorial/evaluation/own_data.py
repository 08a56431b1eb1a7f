"""Your own photos for the full run: a folder, a labels file and a boxes file in the formats of
ImageNet's validation metadata (``class_labels.txt``, ``localization.txt``).

Every line that cannot be used is reported with its reason and skipped, never dropped silently:
a malformed line, a class outside the model's 1000, a file that is missing or is not an image, a
box that is empty or lies outside its photo, a photo without a box or without a label. Photos are
used at their own size (nothing stretched them, unlike the mirror's copies).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..data import Box, Remote, ValPhoto, sha256sum

CLASSES = 1000


def _lines(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line number, file name, the other fields) of each non-empty line of a metadata file."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            name, *fields = (field.strip() for field in line.split(","))
            out.append((number, name.rsplit("/", 1)[-1], fields))  # "val/ILSVRC2012_val_00000001.JPEG"
    return out


def read_labels(path: Path, problem: Callable[[str], None]) -> dict[str, int]:
    labels: dict[str, int] = {}
    for number, name, fields in _lines(path):
        where = f"{path.name} line {number}"
        if len(fields) != 1 or not fields[0].lstrip("-").isdigit():
            problem(f"{where}: expected FILE,CLASS_INDEX")
        elif not 0 <= int(fields[0]) < CLASSES:
            problem(f"{where}: class {fields[0]} is outside 0..{CLASSES - 1}")
        elif name in labels:
            problem(f"{where}: {name} is labelled twice; the first label is kept")
        else:
            labels[name] = int(fields[0])
    return labels


def read_boxes(path: Path, problem: Callable[[str], None]) -> dict[str, list[tuple[int, tuple[int, ...]]]]:
    """File name -> (line number, (xmin, ymin, xmax, ymax)) per box, 0-based and inclusive."""
    boxes: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for number, name, fields in _lines(path):
        if len(fields) != 4 or not all(f.lstrip("-").isdigit() for f in fields):
            problem(f"{path.name} line {number}: expected FILE,XMIN,YMIN,XMAX,YMAX")
            continue
        boxes.setdefault(name, []).append((number, tuple(int(f) for f in fields)))
    return boxes


def _photo(folder: Path, name: str, label: int, found: list, problem: Callable[[str], None]) -> ValPhoto | None:
    path = folder / name
    try:
        with Image.open(path) as image:
            size = image.size
    except (OSError, UnidentifiedImageError) as error:
        problem(f"{name}: cannot be read as an image ({type(error).__name__}); skipped")
        return None
    kept: list[Box] = []
    for number, (x0, y0, x1, y1) in found:
        if not (0 <= x0 <= x1 < size[0] and 0 <= y0 <= y1 < size[1]):
            problem(f"boxes line {number}: box {x0},{y0},{x1},{y1} is empty or outside {name} ({size[0]}x{size[1]})")
        else:
            kept.append((float(x0), float(y0), float(x1 + 1), float(y1 + 1)))  # exclusive right/bottom edges
    if not kept:
        problem(f"{name}: no usable box; skipped")
        return None
    remote = Remote(f"own/{name}", path.resolve().as_uri(), sha256sum(path))
    return ValPhoto(remote, label, size, tuple(kept), local=path)


def read_photos(
    folder: Path, labels: Path, boxes: Path, problem: Callable[[str], None] | None = None
) -> list[ValPhoto]:
    """The usable photos of ``folder`` in file-name order; each unusable line or photo goes to
    ``problem`` (default: a line on stderr) with its reason. No usable photo at all is an error."""
    problems: list[str] = []
    report = problem or problems.append
    by_label, by_box = read_labels(labels, report), read_boxes(boxes, report)
    for name in sorted(set(by_box) - set(by_label)):
        report(f"{name}: has boxes but no label; skipped")
    photos = []
    for name in sorted(by_label):
        if name not in by_box:
            report(f"{name}: has a label but no box; skipped")
        elif not (folder / name).is_file():
            report(f"{name}: not in {folder}; skipped")
        elif (photo := _photo(folder, name, by_label[name], by_box[name], report)) is not None:
            photos.append(photo)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if not photos:
        raise ValueError(f"no usable photo in {folder} with {labels.name} and {boxes.name}")
    return photos
