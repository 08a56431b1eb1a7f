"""The output folder's completeness check, the one rule that decides whether a rerun skips an image."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gradcam_tutorial.outputs import OutputFolder

EXPECTED = {"sha256": "0" * 64, "options": {"model": "efficientnet_lite0", "alpha": 0.4}}
OVERLAYS = ["cup__967_espresso.png", "cup__285_egyptian-cat.png"]


def _finished(folder: Path) -> None:
    """What a run leaves for one image: its overlays, then its JSON marked complete."""
    for name in OVERLAYS:
        (folder / name).write_bytes(b"png")
    record = {"written_by": "gradcam", "complete": True, "input": EXPECTED, "overlays": OVERLAYS}
    (folder / "cup.json").write_text(json.dumps(record))


def _edit_record(**changes: object) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        record = json.loads((folder / "cup.json").read_text())
        (folder / "cup.json").write_text(json.dumps(record | changes))

    return edit


def _replace_overlay_by_link(folder: Path) -> None:
    (folder / OVERLAYS[1]).unlink()
    (folder / OVERLAYS[1]).symlink_to(folder / OVERLAYS[0])


UNFINISHED: dict[str, Callable[[Path], None]] = {
    # killed after the last overlay, before the final JSON: everything there but the mark
    "marked_unfinished": _edit_record(complete=False),
    "mark_missing": lambda folder: (folder / "cup.json").write_text(
        json.dumps({"written_by": "gradcam", "input": EXPECTED, "overlays": OVERLAYS})
    ),
    "mark_not_a_boolean": _edit_record(complete="true"),
    "other_input": _edit_record(input={**EXPECTED, "sha256": "1" * 64}),
    "other_options": _edit_record(input={**EXPECTED, "options": {"model": "efficientnet_lite0", "alpha": 0.6}}),
    "overlay_missing": lambda folder: (folder / OVERLAYS[1]).unlink(),
    "overlay_is_a_link": _replace_overlay_by_link,
    "not_written_by_gradcam": _edit_record(written_by="someone else"),
    "no_record": lambda folder: (folder / "cup.json").unlink(),
}


@pytest.mark.parametrize("damage", [None, *UNFINISHED])
def test_only_a_record_marked_complete_with_its_input_and_every_overlay_is_complete(tmp_path, damage):
    _finished(tmp_path)
    if damage is not None:
        UNFINISHED[damage](tmp_path)
    assert OutputFolder(tmp_path, []).complete("cup", EXPECTED) is (damage is None)
