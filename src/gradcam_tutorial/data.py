"""Every file the project needs from the web, fetched the same way: URL + sha256 + cache + mirror.

A file is looked for, in order, in the local cache, in an optional read-only mirror folder (the
``GRADCAM_MIRROR`` environment variable, e.g. ``../shared/data``) and finally on the web through
pooch, which downloads into a temporary file and renames it only after the hash matched, so an
interrupted download never leaves a file that later passes as valid. A file whose hash does not
match is never used. When nothing works, :class:`DownloadError` says which URL, which hash and which
setting would have helped.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

MIRROR_ENV = "GRADCAM_MIRROR"
CACHE_ENV = "GRADCAM_CACHE"


class DownloadError(RuntimeError):
    """A remote file could be found neither in the cache, nor in the mirror, nor on the web."""


@dataclass(frozen=True)
class Remote:
    """A public file: where it lives, what it must hash to, and its path inside a mirror folder."""

    name: str
    url: str
    sha256: str


_RAW = "https://raw.githubusercontent.com"
CAT_AND_DOG = Remote(
    "cat_and_dog_hats.png",
    f"{_RAW}/jss367/files/main/cat_and_dog_hats.png",
    "6f611a5918234bf0e56cd127aa08ad1d8bbd9e46011236a73fd6f6daf61cb1a0",
)
IMAGENET_CLASSES_JSON = Remote(
    "imagenet_classes.json",
    f"{_RAW}/jss367/files/main/imagenet_classes.json",
    "46adaf3117ac141c4c1f9178f97389d7080124e1ffdc36282f73529915a90db1",
)
_SAMPLES_URL = f"{_RAW}/EliSchwartz/imagenet-sample-images/bc69043e2862758a1906c6a24a792bb28c6bb2ff"


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large files never sit in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloads are kept: ``$GRADCAM_CACHE`` or the OS cache folder."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    import pooch

    return Path(pooch.os_cache("gradcam-tutorial"))


def mirror_dir() -> Path | None:
    """The read-only mirror folder named by ``$GRADCAM_MIRROR``, if set."""
    configured = os.environ.get(MIRROR_ENV)
    return Path(configured).expanduser() if configured else None


def fetch(remote: Remote, *, progress: bool = True) -> Path:
    """Return a local path to ``remote`` whose sha256 matches, or raise :class:`DownloadError`."""
    tried: list[str] = []
    cached = cache_dir() / remote.name
    if cached.is_file():
        if sha256sum(cached) == remote.sha256:
            return cached
        try:
            cached.unlink()  # a stale or tampered copy is never used; fetch a good one below
            tried.append(f"cache copy {cached} had the wrong sha256 and was deleted")
        except OSError as error:  # a read-only cache: leave the copy, still never use it
            tried.append(
                f"cache copy {cached} had the wrong sha256 and could not be deleted ({error.strerror or error})"
            )
    mirror = mirror_dir()
    if mirror is not None:
        candidate = mirror / remote.name
        if not candidate.is_file():
            tried.append(f"mirror {mirror} has no {remote.name}")
        elif sha256sum(candidate) != remote.sha256:
            tried.append(f"mirror copy {candidate} has the wrong sha256 and was not used")
        else:
            return candidate
    else:
        tried.append(f"no mirror folder set (${MIRROR_ENV})")
    try:
        import pooch

        # pooch announces each download on stderr; a quiet fetch (notebooks) must print nothing
        pooch.get_logger().setLevel("INFO" if progress else "WARNING")
        path = pooch.retrieve(
            remote.url,
            known_hash=f"sha256:{remote.sha256}",
            fname=Path(remote.name).name,
            path=cache_dir() / Path(remote.name).parent,
            progressbar=progress,
        )
    except Exception as error:  # network, HTTP and hash failures all end the same way for the user
        tried.append(f"download failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
        raise DownloadError(
            f"cannot get {remote.name} from {remote.url} (expected sha256 {remote.sha256}); "
            f"{'; '.join(tried)}. Connect to the network, or set ${MIRROR_ENV} to a folder that "
            f"holds {remote.name}."
        ) from None
    return Path(path)


@dataclass(frozen=True)
class Sample:
    """One ImageNet sample photo of the mirror: its remote file and its true class index."""

    remote: Remote
    class_index: int

    @property
    def path(self) -> Path:
        return fetch(self.remote, progress=False)


def _manifest(name: str) -> list[dict[str, str]]:
    """The rows of a tab-separated manifest shipped beside this module."""
    text = resources.files(__package__).joinpath(name).read_text()
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


@cache
def imagenet_samples() -> tuple[Sample, ...]:
    """The 500 ImageNet sample photos (one per even class index), in class order.

    The class index is the position of the file's WordNet id in the sorted list of all 1000 ids;
    the mirror holds every even index, so the i-th file in sorted order is class 2*i (the manifest
    beside this module records that index and each file's hash).
    """
    return tuple(
        Sample(
            Remote(f"imagenet-samples/{row['file']}", f"{_SAMPLES_URL}/{row['file']}", row["sha256"]),
            int(row["class_index"]),
        )
        for row in _manifest("imagenet_samples.tsv")
    )


# --- ImageNet validation photos ------------------------------------------------------------------

_VAL_PHOTOS_URL = f"{_RAW}/VeriSilicon/acuity-dataset/aded2e9f22cd8fe0745aa57356c68cb95457aad9/ILSVRC2012_VAL_SET/data"
_VAL_METADATA_URL = f"{_RAW}/clovaai/wsolevaluation/96f4b88679af41f005824661f47e6fe3628af2aa/metadata/ILSVRC/test"
VAL_CLASS_LABELS = Remote(
    "imagenet-val/class_labels.txt",
    f"{_VAL_METADATA_URL}/class_labels.txt",
    "a226044e3e00900291053ecb8e68640385a196c5521c793d242df9e084e898b6",
)
VAL_IMAGE_SIZES = Remote(
    "imagenet-val/image_sizes.txt",
    f"{_VAL_METADATA_URL}/image_sizes.txt",
    "dde3957c4bf3bdab41ec759386c6ebaa8bed2c1790891ec3465e3a235ed63f3e",
)
VAL_LOCALIZATION = Remote(
    "imagenet-val/localization.txt",
    f"{_VAL_METADATA_URL}/localization.txt",
    "c4a9929837b61e9c2a03524f5b963945782ddc9930c4f8ea764cc10004c5ee62",
)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ValPhoto:
    """One ImageNet validation photo of the mirror, with its official label and object boxes.

    The stored file was stretched to 227x227 from ``original_size`` (width, height); ``boxes`` are
    in original pixels as (xmin, ymin, xmax, ymax) with exclusive right/bottom edges, so a box's
    width is simply ``xmax - xmin``. :meth:`boxes_at` maps them onto any resized copy of the photo.
    """

    remote: Remote
    class_index: int
    original_size: tuple[int, int]
    boxes: tuple[Box, ...]
    local: Path | None = None  # a user's own copy (already checked against ``remote.sha256``)

    @property
    def path(self) -> Path:
        """Fetched on use, so listing the photos never touches 1000 files (or downloads them)."""
        return self.local if self.local is not None else fetch(self.remote, progress=False)

    def boxes_at(self, size: tuple[int, int]) -> tuple[Box, ...]:
        """The boxes on a copy of the whole photo resized to ``size`` (e.g. the stored 227x227)."""
        sx, sy = size[0] / self.original_size[0], size[1] / self.original_size[1]
        return tuple((x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in self.boxes)


def _exclusive_box(text: str) -> Box:
    """``"xmin,ymin,xmax,ymax"`` as in localization.txt (0-based, inclusive: the pixel at xmax is
    inside the box) to a box whose right and bottom edges are exclusive."""
    x0, y0, x1, y1 = (int(value) for value in text.split(","))
    return (float(x0), float(y0), float(x1 + 1), float(y1 + 1))


@cache
def imagenet_val() -> tuple[ValPhoto, ...]:
    """The 1000 mirrored ImageNet validation photos, in file-name order.

    Labels, original sizes and boxes come from the manifest beside this module, a copy of the
    photos' lines of the three metadata files (:func:`imagenet_val_metadata` re-derives them from
    the fetched files, and a test checks they agree), so listing the photos reads no 50 000-line
    file; a photo's file is fetched only when its ``path`` is used.
    """
    return tuple(
        ValPhoto(
            Remote(f"imagenet-val/images/{row['file']}", f"{_VAL_PHOTOS_URL}/{row['file']}", row["sha256"]),
            int(row["class_index"]),
            (int(row["width"]), int(row["height"])),
            tuple(_exclusive_box(box) for box in row["boxes"].split(";")),
        )
        for row in _manifest("imagenet_val.tsv")
    )


@dataclass(frozen=True)
class ValMetadata:
    """What the official metadata files say about one validation photo (boxes as in the file)."""

    class_index: int
    size: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...]  # xmin, ymin, xmax, ymax; 0-based, inclusive


def _metadata_lines(remote: Remote, wanted: frozenset[str]) -> Iterator[tuple[str, list[int]]]:
    """(file name, numbers) of each line of a fetched metadata file that is about a wanted photo."""
    with open(fetch(remote, progress=False), encoding="utf-8") as handle:
        for line in handle:
            name, *values = line.strip().split(",")
            name = name.rsplit("/", 1)[-1]  # "val/ILSVRC2012_val_00000001.JPEG"
            if name in wanted:
                yield name, [int(value) for value in values]


def imagenet_val_metadata(files: frozenset[str] | None = None) -> dict[str, ValMetadata]:
    """Parse the fetched metadata files for the photos named in ``files`` (default: the mirrored 1000).

    Each file has a line per validation photo (per box in localization.txt) of all 50 000; only the
    wanted photos are kept (0.13 s). The manifest was written from this and the mirror's SHA256SUMS,
    and a test checks that they still agree.
    """
    wanted = files if files is not None else frozenset(p.remote.name.rsplit("/", 1)[-1] for p in imagenet_val())
    labels = {name: values[0] for name, values in _metadata_lines(VAL_CLASS_LABELS, wanted)}
    sizes = {name: (values[0], values[1]) for name, values in _metadata_lines(VAL_IMAGE_SIZES, wanted)}
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for name, values in _metadata_lines(VAL_LOCALIZATION, wanted):
        boxes.setdefault(name, []).append((values[0], values[1], values[2], values[3]))
    missing = sorted((wanted - labels.keys()) | (wanted - sizes.keys()))
    if missing:
        raise ValueError(f"not validation photos (no label or size): {', '.join(missing[:5])}")
    return {name: ValMetadata(labels[name], sizes[name], tuple(boxes.get(name, ()))) for name in sorted(wanted)}
