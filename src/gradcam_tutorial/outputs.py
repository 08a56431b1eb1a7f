"""An output folder that never loses a user's file.

The command line writes overlays and one JSON per image into a folder the user names. Three rules
keep whatever else is in that folder safe:

* **Only its own files are replaced.** A file counts as the command's own when a JSON the command
  wrote (marked ``"written_by": "gradcam"``) lists it; anything else at a target name, and any
  symbolic link, stops the run with a one-line error before it is touched.
* **Every write is atomic.** Bytes go to a hidden temporary file in the same folder (created
  exclusively, so never through a planted link), are flushed to disk, and are renamed over the
  final name. An interrupted run leaves no partial file under a final name. An image's JSON is
  written first with ``"complete": false`` and the overlay names it claims, and rewritten with
  ``"complete": true`` after the overlays: a rerun after an interruption knows those overlays are
  its own and redoes them.
* **A rerun skips finished work.** An image whose JSON records the same input bytes and options and
  whose overlays are all there is not explained again (``--force`` redoes it).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .data import sha256sum

WRITTEN_BY = "gradcam"
TEMP_PREFIX = ".gradcam-tmp-"


def slug(text: str, fallback: str = "image") -> str:
    """A file-name- and URL-safe version of ``text``: letters, digits, ``.``, ``_`` and ``-`` kept, other
    runs (spaces, commas, apostrophes in class names) one hyphen, lower case; ``fallback`` if empty."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or fallback


class OutputError(Exception):
    """The output folder cannot be used without risking a file the command did not write."""


def fingerprint(image: Path, options: Mapping[str, object]) -> dict[str, object] | None:
    """What an image's outputs depend on: the input's bytes (sha256) and the command's options.

    ``None`` for anything but a readable regular file (opening a FIFO would wait forever).
    """
    try:
        if not stat.S_ISREG(image.stat().st_mode):
            return None
    except OSError:
        return None
    return {"sha256": sha256sum(image), "options": dict(options)}


class OutputFolder:
    """The folder ``--out`` names, with the files earlier runs of the command wrote into it."""

    def __init__(self, folder: Path, inputs: Sequence[Path]):
        self.folder = folder
        resolved = folder.resolve()
        for image in inputs:
            if image.parent.resolve() == resolved:
                raise OutputError(
                    f"--out {folder} is the folder the input {image.name} is in; choose another folder "
                    "(outputs would mix with the inputs and be explained as inputs on the next run)"
                )
        self.records = self._own_records()

    def _own_records(self) -> dict[str, dict]:
        """``{json name: record}`` of every JSON in the folder that this command wrote."""
        records: dict[str, dict] = {}
        if not self.folder.is_dir():
            return records
        for path in self.folder.glob("*.json"):
            if path.is_symlink() or not path.is_file():
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("written_by") == WRITTEN_BY:
                records[path.name] = record
        return records

    def _owned(self, name: str) -> bool:
        if name in self.records:
            return True
        return any(name in record.get("overlays", ()) for record in self.records.values())

    def check(self, name: str) -> None:
        """Raise :class:`OutputError` if writing ``name`` could replace a file the command did not write."""
        path = self.folder / name
        try:
            mode = path.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file where a folder goes)
            return
        if stat.S_ISLNK(mode):
            raise OutputError(
                f"{path} is a symbolic link; {WRITTEN_BY} never writes through links, remove it or choose another --out"
            )
        if not stat.S_ISREG(mode) or not self._owned(name):
            raise OutputError(f"{path} exists and was not written by {WRITTEN_BY}; move it or choose another --out")

    def complete(self, stem: str, expected: Mapping[str, object]) -> bool:
        """Whether ``stem``'s outputs are all there, from the same input and options."""
        record = self.records.get(f"{stem}.json")
        if record is None or record.get("complete") is not True or record.get("input") != dict(expected):
            return False
        return all(
            (self.folder / name).is_file() and not (self.folder / name).is_symlink()
            for name in record.get("overlays", ())
        )

    def write(self, name: str, data: bytes) -> None:
        """Atomically put ``data`` under ``name`` (checked with :meth:`check` first)."""
        self.check(name)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def write_record(self, stem: str, record: Mapping[str, object], complete: bool) -> None:
        """Write ``stem``'s JSON, marked as this command's; it must list the overlays in ``"overlays"``."""
        name = f"{stem}.json"
        marked = {"written_by": WRITTEN_BY, "complete": complete, **record}
        self.write(name, (json.dumps(marked, indent=1) + "\n").encode())
        self.records[name] = marked
