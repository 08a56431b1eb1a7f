"""The full run's per-photo records: one Parquet file per unit of work, one row per photo x method x
measure, so a run can be split (shards, workers), killed and resumed, and summarised afterwards.

A unit's file is written to a temporary name and renamed only when complete, so a killed run never
leaves a file that passes as done; resuming skips every unit whose file exists. Each file's schema
metadata keeps what the unit cost (seconds, ROAD's imputation counters) and where it ran (CPU,
threads, versions, engine), so the merge can report per-stage time and refuse mixed software.
pyarrow is imported on use: the reader's environment (``make report``) never needs it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("model", "stage", "unit", "position", "photo", "sha256", "method", "measure", "value", "values")


def stage_family(stage: str) -> str:
    """The stage's runner: ``"variants@features"`` -> ``"variants"`` (the rest names its layer)."""
    return stage.split("@", 1)[0]


@dataclass(frozen=True)
class Unit:
    """A slice ``[start, stop)`` of one stage's photo list, the smallest piece of work a run skips,
    shards or hands to a worker."""

    stage: str
    index: int  # within the stage
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.stage}/{self.index:05d}"

    @property
    def family(self) -> str:
        return stage_family(self.stage)


@dataclass
class Rows:
    """A unit's rows being collected: one per photo x method x measure, a number or a list of them."""

    model: str
    unit: Unit
    columns: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in COLUMNS})

    def add(
        self,
        position: int,
        photo: str,
        sha256: str,
        method: str,
        measure: str,
        value: float | Sequence[float] | np.ndarray,
    ) -> None:
        many = isinstance(value, (list, tuple, np.ndarray))
        row = (
            self.model,
            self.unit.stage,
            self.unit.index,
            position,
            photo,
            sha256,
            method,
            measure,
            math.nan if many else float(value),  # type: ignore[arg-type]
            [float(v) for v in np.asarray(value, dtype=np.float64).ravel()] if many else None,
        )
        for name, item in zip(COLUMNS, row, strict=True):
            self.columns[name].append(item)


def unit_path(root: Path, unit: Unit) -> Path:
    return root / unit.stage / f"{unit.index:05d}.parquet"


def done(root: Path, unit: Unit) -> bool:
    """The unit's records are complete (a killed write leaves only a temporary file)."""
    return unit_path(root, unit).is_file()


def write(root: Path, rows: Rows, meta: dict[str, Any]) -> Path:
    """The unit's rows as one Parquet file, ``meta`` (JSON-able) in its schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("model", pa.string()),
            ("stage", pa.string()),
            ("unit", pa.int32()),
            ("position", pa.int32()),
            ("photo", pa.string()),
            ("sha256", pa.string()),
            ("method", pa.string()),
            ("measure", pa.string()),
            ("value", pa.float64()),
            ("values", pa.list_(pa.float64())),
        ],
        metadata={"gradcam_unit": json.dumps(meta)},
    )
    table = pa.Table.from_pydict(rows.columns, schema=schema)
    path = unit_path(root, rows.unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)  # atomic: the file is there complete or not at all
    return path


@dataclass(frozen=True)
class Table:
    """Every unit's rows of a run, indexed by (stage, method, measure) -> position -> value(s)."""

    values: dict[tuple[str, str, str], dict[int, float | list[float]]]
    meta: dict[str, dict[str, Any]]  # unit name -> its metadata

    def column(self, stage: str, method: str, measure: str, n: int) -> np.ndarray:
        """``(n,)`` numbers by position, NaN where no photo has one."""
        out = np.full(n, np.nan)
        for position, value in self.values.get((stage, method, measure), {}).items():
            out[position] = value
        return out

    def lists(self, stage: str, method: str, measure: str, n: int) -> list[np.ndarray]:
        """Each position's list of numbers (a curve, a row of depths), in position order."""
        found = self.values.get((stage, method, measure), {})
        missing = [p for p in range(n) if p not in found]
        if missing:
            raise KeyError(f"{stage}: no {method}/{measure} for positions {missing[:5]}")
        return [np.asarray(found[p], dtype=np.float64) for p in range(n)]


def read(root: Path, units: Iterable[Unit]) -> Table:
    """Every listed unit's rows; a missing unit is an error that names it (and what to run)."""
    import pyarrow.parquet as pq

    units = list(units)
    missing = [unit.name for unit in units if not done(root, unit)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(units)} units have no records in {root} (first: {', '.join(missing[:3])}); "
            "run the missing shards (or the run without --shard) to complete them"
        )
    values: dict[tuple[str, str, str], dict[int, float | list[float]]] = {}
    meta = {}
    for unit in units:
        table = pq.read_table(unit_path(root, unit))
        meta[unit.name] = json.loads(table.schema.metadata[b"gradcam_unit"])
        data = table.to_pydict()
        for stage, position, method, measure, value, many in zip(
            data["stage"], data["position"], data["method"], data["measure"], data["value"], data["values"], strict=True
        ):
            values.setdefault((stage, method, measure), {})[position] = many if many is not None else value
    return Table(values, meta)
