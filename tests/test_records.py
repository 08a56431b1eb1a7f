"""evaluation/records.py: a unit's rows survive the Parquet round trip exactly, a killed write never
counts as done, and reading a run with a unit missing names it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradcam_tutorial.evaluation import records
from gradcam_tutorial.evaluation.records import Rows, Unit

UNIT = Unit("faithfulness", 3, 0, 2)


def _rows() -> Rows:
    rows = Rows("efficientnet_lite0", UNIT)
    rows.add(0, "a.JPEG", "ab" * 32, "gradcam", "deletion", np.array([0.9, 1 / 3, 0.0]))
    rows.add(0, "a.JPEG", "ab" * 32, "model", "full_probability", np.float32(0.1))
    rows.add(1, "b.JPEG", "cd" * 32, "scorecam", "energy", math.nan)
    rows.add(1, "b.JPEG", "cd" * 32, "gradcam", "pointing", True)
    return rows


def test_rows_round_trip_exactly_with_their_metadata(tmp_path):
    path = records.write(tmp_path, _rows(), {"seconds": 1.5, "engine": "sequential"})
    assert path == tmp_path / "faithfulness" / "00003.parquet" and records.done(tmp_path, UNIT)
    assert not list(tmp_path.rglob("*.partial"))
    table = records.read(tmp_path, [UNIT])
    assert table.meta == {"faithfulness/00003": {"seconds": 1.5, "engine": "sequential"}}
    assert [list(v) for v in table.lists("faithfulness", "gradcam", "deletion", 1)] == [[0.9, 1 / 3, 0.0]]
    probability = table.column("faithfulness", "model", "full_probability", 3)
    assert probability[0] == float(np.float32(0.1)) and np.isnan(probability[1:]).all()  # float32 kept exactly
    assert table.column("faithfulness", "gradcam", "pointing", 2)[1] == 1.0
    assert np.isnan(table.column("faithfulness", "scorecam", "energy", 2)).all()


def test_a_killed_write_is_not_done_and_a_missing_unit_is_named(tmp_path):
    other = Unit("sanity", 0, 0, 4)
    records.write(tmp_path, _rows(), {"seconds": 1.0})
    (tmp_path / "sanity").mkdir()
    (tmp_path / "sanity" / ".00000.parquet.123.partial").write_bytes(b"PAR1 half a file")
    assert not records.done(tmp_path, other)
    with pytest.raises(FileNotFoundError, match=r"1 of 2 units have no records .*sanity/00000"):
        records.read(tmp_path, [UNIT, other])


def test_a_position_without_its_list_is_an_error(tmp_path):
    records.write(tmp_path, _rows(), {"seconds": 1.0})
    with pytest.raises(KeyError, match=r"no gradcam/deletion for positions \[1, 2\]"):
        records.read(tmp_path, [UNIT]).lists("faithfulness", "gradcam", "deletion", 3)


def test_records_are_keyed_by_config_photos_and_code(monkeypatch):
    """A changed count, photo or source file names a new records folder: a resumed run never mixes
    records of other settings or other code with its own."""
    from gradcam_tutorial.data import imagenet_val
    from gradcam_tutorial.evaluation import config as run_config

    config = run_config.FullRunConfig(val_photos=4, faith_photos=2, sanity_photos=2, variant_photos=2)
    photos = run_config.choose_photos(config, imagenet_val())
    key = run_config.run_key(config, photos)
    assert run_config.run_key(config, photos) == key and len(key) == 16
    fewer = run_config.FullRunConfig(val_photos=4, faith_photos=1, sanity_photos=2, variant_photos=2)
    assert run_config.run_key(fewer, photos) != key
    other = run_config.choose_photos(config, imagenet_val()[1:])
    assert run_config.run_key(config, other) != key
    monkeypatch.setattr(run_config, "code_sha256", lambda: "0" * 64)
    assert run_config.run_key(config, photos) != key
