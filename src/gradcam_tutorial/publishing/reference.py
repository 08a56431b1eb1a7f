"""Numbers a notebook prints, checked against stored references with explicit tolerances.

Convolutions on different CPUs (oneDNN picks AVX-512, AVX2 or SSE4.1 kernels) and with different
thread counts round differently in the last bits. A number printed with enough digits then differs
from machine to machine, and nbval, which compares printed text, fails on the next machine. So a
notebook prints such numbers in a cell whose output nbval ignores and hands the same numbers to
:func:`check`, which compares them with a reference file whose every value carries the tolerance it
is allowed (and the spread measured across CPU variants that the tolerance was derived from).

``GRADCAM_REFERENCE_MODE=record`` (set by ``python -m gradcam_tutorial.publishing.notebooks diff`` and
``... spread``) makes :func:`check` write the current numbers to ``$GRADCAM_RECORD_DIR/<name>.json``
instead of failing, so the tools can show which numbers moved and by how much.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

MODE_ENV = "GRADCAM_REFERENCE_MODE"
RECORD_DIR_ENV = "GRADCAM_RECORD_DIR"

Values = Mapping[str, Any]  # name -> number or (nested) list/array of numbers


class ReferenceMismatch(AssertionError):
    """Numbers moved beyond their stored tolerance: a real change, not an ISA wobble."""


def flatten(values: Values) -> dict[str, list[float]]:
    """``{name: flat list of floats}``; arrays and nested lists are flattened in C order."""
    return {name: np.asarray(value, dtype=np.float64).ravel().tolist() for name, value in values.items()}


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def mismatches(current: Values, reference: Mapping[str, Any]) -> list[str]:
    """One line per number that is missing, extra or further from its reference than allowed."""
    stored = reference["values"]
    flat = flatten(current)
    problems = [f"{name}: not in the reference" for name in flat if name not in stored]
    problems += [f"{name}: in the reference but not computed" for name in stored if name not in flat]
    for name, now in flat.items():
        if name not in stored:
            continue
        entry = stored[name]
        before = np.asarray(entry["value"], dtype=np.float64).ravel()
        if before.size != len(now):
            problems.append(f"{name}: {len(now)} numbers, the reference has {before.size}")
            continue
        deviation = np.abs(np.asarray(now) - before)
        bad = ~(deviation <= entry["tolerance"])  # NaN counts as a mismatch
        for position in np.flatnonzero(bad):
            where = f"{name}[{position}]" if before.size > 1 else name
            problems.append(
                f"{where}: {now[position]:.6g}, reference {before[position]:.6g}, "
                f"|difference| {deviation[position]:.3g} > tolerance {entry['tolerance']:.3g}"
            )
    return problems


def printing_problems(reference: Mapping[str, Any]) -> list[str]:
    """Values printed in a compared cell whose printed digits could change within their tolerance.

    An entry with ``"decimals": d`` is printed (in its own units) rounded to ``d`` decimals in a cell
    that nbval compares. If no rounding boundary lies within ``tolerance`` of the reference value,
    every machine whose number passes :func:`check` prints the same digits, so nbval cannot fail
    for a CPU's rounding; otherwise the value must be printed coarser or in an ignored cell. Zero is
    a boundary too (``-0.00`` against ``0.00``) unless the entry is ``"nonnegative"`` by construction
    (probabilities, shares, maps after a ReLU or min-max scaling).
    """
    problems = []
    for name, entry in reference["values"].items():
        if "decimals" not in entry:
            continue
        scale = 10.0 ** entry["decimals"]
        for position, value in enumerate(np.asarray(entry["value"], dtype=np.float64).ravel()):
            scaled = value * scale
            margin = abs(scaled - math.floor(scaled) - 0.5) / scale
            if entry.get("nonnegative"):
                if value < 0:
                    problems.append(f"{name}[{position}] = {value:.6g} is declared non-negative")
            elif abs(scaled) < 0.5:
                margin = min(margin, abs(value))
            if margin <= entry["tolerance"]:
                problems.append(
                    f"{name}[{position}] = {value:.6g} is printed to {entry['decimals']} decimals but lies "
                    f"{margin:.2g} from a rounding boundary, within its tolerance {entry['tolerance']:.2g}"
                )
    return problems


def find_upwards(relative: str | os.PathLike[str], start: str | os.PathLike[str] | None = None) -> Path | None:
    """The file ``relative`` to ``start`` (default: the working directory) or to a folder above it.

    A notebook runs from its own folder in JupyterLab and nbclient, from the repository root as a
    script, or as a copy somewhere else, so a path relative to the repository is looked for upwards.
    An absolute ``relative`` is returned as it is if it exists.
    """
    here = Path(start) if start is not None else Path.cwd()
    for folder in (here, *here.resolve().parents):
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def find_reference(name: str, start: str | os.PathLike[str] | None = None) -> Path | None:
    """``tests/reference/<name>.json`` above ``start``; a copy of a notebook outside the repository
    finds none, and its numbers then go unchecked rather than failing (see :func:`check`)."""
    return find_upwards(Path("tests") / "reference" / f"{name}.json", start)


def check(
    name: str,
    values: Values,
    reference_path: str | os.PathLike[str] | None,
    parameters: Mapping[str, Any],
    printed: Mapping[str, int] | None = None,
    nonnegative: Collection[str] = (),
) -> str:
    """Compare ``values`` with the reference file and return a one-line, machine-independent verdict.

    The reference holds numbers for one set of notebook ``parameters``; with other parameters, or no
    reference file (``None``, or a path that does not exist), there is nothing to compare against and
    the verdict says so. ``printed`` names the values that a
    compared cell prints, with the decimals it rounds them to, and ``nonnegative`` those that are
    never below zero by construction (see :func:`printing_problems`).
    Raises :class:`ReferenceMismatch` listing every number beyond its tolerance.
    """
    count = sum(len(v) for v in flatten(values).values())
    if os.environ.get(MODE_ENV) == "record":
        record(name, values, parameters, printed or {}, nonnegative)
        if reference_path is None or not Path(reference_path).exists():
            return f"{name}: {count} numbers recorded; there is no reference yet"
    if reference_path is None or not Path(reference_path).exists():
        return f"{name}: {count} numbers; no reference file here (tests/reference/{name}.json), so they are not checked"
    path = Path(reference_path)
    reference = load(path)
    if dict(parameters) != reference["parameters"]:
        return (
            f"{name}: {count} numbers; the reference is for parameters {reference['parameters']}, "
            "so they are not checked"
        )
    problems = mismatches(values, reference) + printing_problems(reference)
    declared = {key: entry["decimals"] for key, entry in reference["values"].items() if "decimals" in entry}
    positive = {key for key, entry in reference["values"].items() if entry.get("nonnegative")}
    if dict(printed or {}) != declared or set(nonnegative) != positive:
        problems.append(
            f"printed decimals {dict(printed or {})} or non-negative names {sorted(nonnegative)} "
            "differ from the reference's"
        )
    if problems:
        headline = f"{name}: {len(problems)} problems with {count} numbers checked against {path.name}"
        if os.environ.get(MODE_ENV) == "record":
            return headline  # the notebook tools list the problems themselves
        raise ReferenceMismatch(headline + ":\n" + "\n".join(problems))
    return f"{name}: all {count} numbers within their stored tolerances of {path.name}"


def record(
    name: str,
    values: Values,
    parameters: Mapping[str, Any],
    printed: Mapping[str, int],
    nonnegative: Collection[str] = (),
) -> Path:
    """Write the current numbers to ``$GRADCAM_RECORD_DIR/<name>.json`` (for the notebook tools)."""
    folder = Path(os.environ.get(RECORD_DIR_ENV, "build/reference-record"))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    content = {
        "parameters": dict(parameters),
        "printed": dict(printed),
        "nonnegative": sorted(nonnegative),
        "values": flatten(values),
    }
    target.write_text(json.dumps(content) + "\n")
    return target


def tolerance_for(spread: float, floor: float, factor: float = 10.0) -> float:
    """The tolerance a value gets: ``factor`` times its measured spread, never below ``floor``.

    Rounded up to two significant digits so the file stays readable.
    """
    raw = max(floor, factor * spread)
    exponent = math.floor(math.log10(raw)) - 1
    digits = math.ceil(raw / 10**exponent * (1 - 1e-12))  # 1e-12: 10.000000000000002 is 10
    return float(f"{digits}e{exponent}")  # a clean decimal, not 3.7999999999999995e-05


def build(
    runs: Mapping[str, Mapping[str, list[float]]],
    parameters: Mapping[str, Any],
    printed: Mapping[str, int],
    floors: Mapping[str, float],
    about: str,
    nonnegative: Collection[str] = (),
) -> dict[str, Any]:
    """A reference file from the same numbers recorded under several CPU variants.

    ``runs`` maps variant name -> flattened values; the first variant's numbers become the reference
    values, the largest difference between any two variants becomes ``spread`` and the tolerance is
    :func:`tolerance_for` of it, with the floor of the longest matching name prefix in ``floors``
    (which must hold a default under ``""``).
    """
    names = list(runs)
    first = runs[names[0]]
    values = {}
    for key, value in first.items():
        stack = np.array([runs[n][key] for n in names], dtype=np.float64)
        spread = float(f"{float((stack.max(0) - stack.min(0)).max()) if stack.size else 0.0:.3g}")
        floor = floors[max((prefix for prefix in floors if key.startswith(prefix)), key=len, default="")]
        values[key] = {
            "value": value[0] if len(value) == 1 else value,
            "tolerance": tolerance_for(spread, floor),
            "spread": spread,
        }
        if key in printed:
            values[key]["decimals"] = printed[key]
        if key in nonnegative:
            values[key]["nonnegative"] = True
    return {"about": about, "variants": names, "parameters": dict(parameters), "values": values}
