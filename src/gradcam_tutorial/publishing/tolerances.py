"""How far the checked numbers move: ``diff`` against the stored references, ``spread`` across CPU variants.

``diff`` re-executes a notebook and shows which compared outputs changed and which checked numbers
moved beyond their tolerance, i.e. a real change, as opposed to a CPU's rounding. ``spread`` executes
under every variant in :data:`~.cpu_variants.SPREAD_VARIANTS`, measures each checked number's spread and
(``write``) rewrites the reference files with tolerances derived from it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import nbformat

from . import reference
from .cpu_variants import (
    REFERENCES,
    SPREAD_VARIANTS,
    TOLERANCE_FLOORS,
    compared_outputs,
    kernel_env,
    sanitize_file,
    text_changes,
)
from .execution import execute


def _execute_recording(source: Path, folder: Path, variant: Mapping[str, str]) -> tuple[Path, Path]:
    """Execute ``source`` into ``folder`` with every reference check recording its numbers there."""
    values = folder / "values"
    env = {
        **kernel_env(variant, source.parent),
        reference.MODE_ENV: "record",
        reference.RECORD_DIR_ENV: str(values.resolve()),
    }
    return execute(source, folder, env=env), values


def _reference_file(name: str, source: Path, references: Path | None) -> Path | None:
    """The stored reference of check ``name``: in ``references``, else found upwards (see :data:`REFERENCES`)."""
    if references is not None:
        return references / f"{name}.json"
    return reference.find_reference(name, source.parent) or reference.find_reference(name)


def _number_changes(source: Path, values: Path, references: Path | None) -> list[str]:
    """Each recorded check's numbers against its stored reference: what moved beyond its tolerance."""
    report = []
    for recorded in sorted(values.glob("*.json")):
        target = _reference_file(recorded.stem, source, references)
        current = json.loads(recorded.read_text())
        if target is None or not target.exists():
            where = target or REFERENCES / recorded.name
            report.append(f"{recorded.stem}: no reference file {where}; create it with `make references`")
            continue
        stored = reference.load(target)
        if current["parameters"] != stored["parameters"]:
            report.append(
                f"{recorded.stem}: run with parameters {current['parameters']}, "
                f"the reference has {stored['parameters']}"
            )
            continue
        report += [f"{recorded.stem}: {line}" for line in reference.mismatches(current["values"], stored)]
    return report


def diff(source: Path, write: bool = False, references: Path | None = None, sanitize: Path | None = None) -> int:
    """Re-execute ``source``; print compared outputs that changed and numbers beyond tolerance.

    ``references`` is the folder of reference files and ``sanitize`` nbval's sanitize file; by default
    both are looked for from the notebook's folder upwards, then from the working directory.
    """
    committed = source.with_suffix(".ipynb")
    with tempfile.TemporaryDirectory() as folder:
        executed, values = _execute_recording(source, Path(folder), {})
        new = nbformat.read(executed, as_version=4)
        report = []
        if committed.exists():
            sanitize = sanitize if sanitize is not None else sanitize_file(source.parent)
            before = compared_outputs(nbformat.read(committed, as_version=4), sanitize)
            report += text_changes(before, compared_outputs(new, sanitize), "nbval would fail")
        report += _number_changes(source, values, references)
        if write:
            nbformat.write(new, committed)
    print(
        f"{source}: "
        + (
            "no compared output changed and every checked number is within its tolerance"
            if not report
            else f"{len(report)} lines of changes"
        )
    )
    print("\n".join(report))
    if write:
        print(f"wrote {committed}")
    return 1 if report else 0


Outputs = dict[str, dict[str, dict[int, str]]]  # notebook -> variant -> compared outputs
Recorded = dict[str, dict[str, dict]]  # check -> variant -> recorded numbers


def _run_variants(
    sources: list[Path], out: Path, variants: Mapping[str, Mapping[str, str]], run: bool, sanitize: Path
) -> tuple[Outputs, Recorded]:
    """Execute every source under every variant into ``out/<variant>`` (or reuse that run)."""
    outputs: Outputs = {}
    recorded: Recorded = {}
    for name, variant in variants.items():
        for source in sources:
            executed = out / name / f"{source.stem}.ipynb"
            if run:
                started = time.perf_counter()
                executed, _ = _execute_recording(source, out / name, variant)
                print(f"{name:>16}: executed {source.name} in {time.perf_counter() - started:.1f} s", flush=True)
            texts = compared_outputs(nbformat.read(executed, as_version=4), sanitize)
            outputs.setdefault(source.stem, {})[name] = texts
        for path in sorted((out / name / "values").glob("*.json")):
            recorded.setdefault(path.stem, {})[name] = json.loads(path.read_text())
    return outputs, recorded


def _about(check_name: str, variants: Iterable[str]) -> str:
    return (
        f"Reference numbers of the notebook check '{check_name}', recorded under the CPU variants "
        f"{', '.join(variants)} (see gradcam_tutorial.publishing.notebooks.SPREAD_VARIANTS). 'spread' is the largest "
        "difference between two variants; 'tolerance' is 10 x spread, at least the floor for the name, "
        "rounded up; 'decimals' marks a number that a compared cell prints rounded to that many decimals. "
        "Regenerate with `make references`."
    )


def _build_references(recorded: Recorded) -> tuple[dict[str, dict], dict[str, dict[str, float]], list[str]]:
    """A reference file per check from its runs under the variants, each check's spreads, and problems."""
    problems: list[str] = []
    summary = {}
    references: dict[str, dict] = {}
    for check_name, runs in recorded.items():
        baseline = next(iter(runs.values()))
        if any(
            r["parameters"] != baseline["parameters"]
            or r["printed"] != baseline["printed"]
            or r["nonnegative"] != baseline["nonnegative"]
            for r in runs.values()
        ):
            problems.append(f"{check_name}: the variants ran with different parameters")
            continue
        built = reference.build(
            {n: r["values"] for n, r in runs.items()},
            baseline["parameters"],
            baseline["printed"],
            TOLERANCE_FLOORS,
            _about(check_name, runs),
            baseline["nonnegative"],
        )
        problems += [f"{check_name}: {line}" for line in reference.printing_problems(built)]
        summary[check_name] = {key: entry["spread"] for key, entry in built["values"].items()}
        worst = sorted(built["values"].items(), key=lambda item: -item[1]["spread"])[:8]
        print(f"\n{check_name}: {len(built['values'])} names; largest spreads across variants:")
        for key, entry in worst:
            print(f"  {key:<48} spread {entry['spread']:<10.3g} tolerance {entry['tolerance']:.3g}")
        references[check_name] = built
    return references, summary, problems


def spread(
    sources: list[Path],
    out: Path,
    write: bool = False,
    variants: Mapping[str, Mapping[str, str]] = SPREAD_VARIANTS,
    run: bool = True,
    references: Path = REFERENCES,
    sanitize: Path | None = None,
) -> int:
    """Execute under every CPU variant; measure each checked number's spread; compare outputs.

    ``run=False`` reuses the notebooks and numbers that the last run left in ``out``.

    With ``write``, the reference files in ``references`` (default :data:`REFERENCES` in the working
    directory) are rewritten from the measured spread (values from the first variant, tolerance
    ``max(floor, 10 x spread)``) and the notebooks are executed once more as they are, so their
    committed outputs pass their own checks.
    """
    sanitize = sanitize if sanitize is not None else sanitize_file(sources[0].parent)
    outputs, recorded = _run_variants(sources, out, variants, run, sanitize)
    problems: list[str] = []
    for stem, by_variant in outputs.items():
        first = next(iter(by_variant))
        for name, texts in by_variant.items():
            problems += text_changes(by_variant[first], texts, f"{stem}, {first} -> {name}")
    built, summary, more = _build_references(recorded)
    problems += more
    if write and not problems:
        references.mkdir(parents=True, exist_ok=True)
        for check_name, stored in built.items():
            (references / f"{check_name}.json").write_text(json.dumps(stored, indent=1) + "\n")
            print(f"wrote {references / (check_name + '.json')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "spread.json").write_text(
        json.dumps({"variants": variants, "spread": summary, "problems": problems}, indent=1) + "\n"
    )
    print("\n" + ("\n".join(problems) if problems else "every compared output is identical under every variant"))
    if write and problems:
        print("nothing written: fix the problems above first")
    if write and not problems:
        for source in sources:
            execute(source)
            print(f"re-executed {source}")
    return 1 if problems else 0
