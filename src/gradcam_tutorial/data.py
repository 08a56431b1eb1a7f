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
        cached.unlink()  # a stale or tampered copy is never used; fetch a good one below
        tried.append(f"cache copy {cached} had the wrong sha256 and was deleted")
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


@cache
def imagenet_samples() -> tuple[Sample, ...]:
    """The 500 ImageNet sample photos (one per even class index), in class order.

    The class index is the position of the file's WordNet id in the sorted list of all 1000 ids;
    the mirror holds every even index, so the i-th file in sorted order is class 2*i (the manifest
    beside this module records that index and each file's hash).
    """
    text = resources.files(__package__).joinpath("imagenet_samples.tsv").read_text()
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return tuple(
        Sample(
            Remote(f"imagenet-samples/{row['file']}", f"{_SAMPLES_URL}/{row['file']}", row["sha256"]),
            int(row["class_index"]),
        )
        for row in rows
    )
