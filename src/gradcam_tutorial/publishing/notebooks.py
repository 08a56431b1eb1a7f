"""Executing the paired notebooks, checking that each pair agrees, and keeping outputs CPU-proof.

The ``.py`` (py:percent) is the source; the ``.ipynb`` is its executed twin. ``execute`` runs the
``.py`` in a fresh kernel and writes the twin, so a committed ``.ipynb`` is always the output of the
committed ``.py``; ``pair_problems`` finds a pair that drifted apart.

Committed outputs must not depend on the CPU that wrote them (see :mod:`gradcam_tutorial.publishing.reference`).
Three more commands serve that:

* ``nbval``: nbval strict over every notebook once per CPU variant in :data:`NBVAL_VARIANTS` (this
  machine as it is, oneDNN limited to AVX2, oneDNN limited to SSE4.1 on one thread); ``make test``
  runs it.
* ``diff``: re-execute a notebook and show which compared outputs changed and which checked numbers
  moved beyond their tolerance, i.e. a real change, as opposed to a CPU's rounding.
* ``spread``: execute under every variant in :data:`SPREAD_VARIANTS`, measure how far each checked
  number moves, check that every compared output is identical, and (``--write``) rewrite the
  reference files with tolerances derived from the measured spread.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import datetime as _dt
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import jupytext
import nbformat

from . import reference

ROOT = Path(__file__).resolve().parents[3]
REFERENCES = ROOT / "tests" / "reference"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"

# How one machine stands in for others. ONEDNN_MAX_CPU_ISA caps the convolution kernels oneDNN may
# pick; ATEN_CPU_CAPABILITY and MKL_ENABLE_INSTRUCTIONS cap PyTorch's own vectorised kernels and the
# matrix products of the linear layer the same way; OMP_NUM_THREADS sets the thread count the
# notebooks pass to torch.set_num_threads (2 when unset).
_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
_SSE41 = {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
NBVAL_VARIANTS: dict[str, dict[str, str]] = {
    "as-is": {},
    "avx2": _AVX2,
    "sse41-1-thread": {**_SSE41, "OMP_NUM_THREADS": "1"},
}
SPREAD_VARIANTS: dict[str, dict[str, str]] = {
    "as-is": {},
    "as-is-1-thread": {"OMP_NUM_THREADS": "1"},
    "avx2": _AVX2,
    "avx2-1-thread": {**_AVX2, "OMP_NUM_THREADS": "1"},
    "sse41": _SSE41,
    "sse41-1-thread": {**_SSE41, "OMP_NUM_THREADS": "1"},
}
# Tolerance floors by name prefix (the tolerance is 10x the measured spread, never below these).
TOLERANCE_FLOORS = {"": 1e-6}


@contextlib.contextmanager
def _environment(changes: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for kernels started inside the block (they copy os.environ)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def inject_parameters(notebook: nbformat.NotebookNode, parameters: Mapping[str, object]) -> None:
    """Add a cell that overrides ``parameters`` right after the cell tagged ``parameters``.

    The same convention as papermill: the notebook's defaults stay visible, the override follows
    them in a cell tagged ``injected-parameters``.
    """
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))


def execute(
    source: Path,
    out_dir: Path | None = None,
    timeout: int = 1200,
    env: Mapping[str, str] | None = None,
    parameters: Mapping[str, object] | None = None,
) -> Path:
    """Run ``source`` (a .py notebook) top to bottom in a new kernel; write and return the .ipynb."""
    from nbclient import NotebookClient

    os.environ.pop("MPLBACKEND", None)  # a kernel told to use Agg would show no figures at all
    notebook = jupytext.read(source)
    if parameters:
        inject_parameters(notebook, parameters)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(source.parent.resolve())}},
    )
    with _environment(env or {}):
        client.execute()
    notebook.metadata["gradcam_tutorial"] = {"executed": _dt.date.today().isoformat()}
    target = (out_dir or source.parent) / (source.stem + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def _sanitizer() -> list[tuple[re.Pattern[str], str]]:
    """The regex replacements of tests/nbval_sanitize.cfg, in file order, as nbval applies them."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SANITIZE)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def compared_outputs(notebook: nbformat.NotebookNode) -> dict[int, str]:
    """``{code cell number: sanitized text}`` of the outputs nbval compares (images excluded)."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    patterns = _sanitizer()
    out: dict[int, str] = {}
    for number, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        options = dict(find_metadata_tags(cell.metadata)) | dict(find_comment_markers(cell.source))
        if options.get("skip") or options.get("check") is False:
            continue
        parts = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                parts += [str(v) for k, v in sorted(output.data.items()) if not k.startswith("image/")]
            elif output.output_type == "error":
                parts.append(f"{output.ename}: {output.evalue}")
        text = "".join(parts)
        for pattern, replacement in patterns:
            text = pattern.sub(replacement, text)
        out[number] = text
    return out


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ())))
        for cell in notebook.cells
        if cell.source.strip()
    ]


def pair_problems(source: Path) -> list[str]:
    """What is wrong with the pair ``source`` (.py) / its .ipynb; an empty list when all agree."""
    twin = source.with_suffix(".ipynb")
    if not twin.exists():
        return [f"{twin} is missing: run `make notebooks`"]
    executed = nbformat.read(twin, as_version=4)
    problems = []
    if _cells(jupytext.read(source)) != _cells(executed):
        problems.append(f"{twin} does not match {source}: the .py was edited without re-executing (`make notebooks`)")
    for number, cell in enumerate(executed.cells):
        if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None:
            problems.append(f"{twin}: code cell {number} has no execution count (not executed)")
    return problems


def _kernel_env(variant: Mapping[str, str]) -> dict[str, str]:
    env = dict(variant)
    mirror = ROOT.parent / "shared" / "data"
    if "GRADCAM_MIRROR" not in os.environ and (mirror / "SHA256SUMS").exists():
        env["GRADCAM_MIRROR"] = str(mirror)
    return env


def run_nbval(notebooks: list[Path], variants: Mapping[str, Mapping[str, str]] = NBVAL_VARIANTS) -> int:
    """nbval strict over ``notebooks`` once per CPU variant.

    Each notebook gets its own pytest process, and as many run at once as the variant's thread count
    leaves cores for (one at a time with 2 threads on 2 cores, both notebooks at once with 1 thread).
    """
    from concurrent.futures import ThreadPoolExecutor

    failed = []
    for name, variant in variants.items():
        env = {**os.environ, **_kernel_env(variant)}
        env.pop("MPLBACKEND", None)
        threads = int(variant.get("OMP_NUM_THREADS", "2"))
        workers = max(1, min(len(notebooks), (os.cpu_count() or 1) // threads))
        settings = " ".join(f"{k}={v}" for k, v in variant.items()) or "this machine as it is"
        print(f"== nbval, CPU variant {name} ({settings}), {workers} notebook(s) at a time", flush=True)

        def one(notebook: Path, env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--nbval",
                "--nbval-current-env",
                "--nbval-sanitize-with",
                str(SANITIZE),
                str(notebook),
            ]
            return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, notebooks))
        for notebook, result in zip(notebooks, results, strict=True):
            log = result.stdout + result.stderr
            kept = log if result.returncode else "\n".join(log.strip().splitlines()[-1:])
            print(f"{notebook}: {kept.strip()}", flush=True)
            if result.returncode:
                failed.append(f"{name} ({notebook})")
        verdict = "passed" if all(r.returncode == 0 for r in results) else "FAILED"
        print(f"== nbval, CPU variant {name}: {verdict} in {time.perf_counter() - started:.1f} s", flush=True)
    if failed:
        print(f"nbval failed under: {', '.join(failed)}")
    return 1 if failed else 0


def _execute_recording(source: Path, folder: Path, variant: Mapping[str, str]) -> tuple[Path, Path]:
    """Execute ``source`` into ``folder`` with every reference check recording its numbers there."""
    values = folder / "values"
    env = {**_kernel_env(variant), reference.MODE_ENV: "record", reference.RECORD_DIR_ENV: str(values.resolve())}
    return execute(source, folder, env=env), values


def _text_changes(before: Mapping[int, str], after: Mapping[int, str], label: str) -> list[str]:
    lines = []
    for number in sorted(set(before) | set(after)):
        old, new = before.get(number, ""), after.get(number, "")
        if old != new:
            lines.append(f"code cell {number}: compared output changed ({label})")
            lines += [
                "    " + line
                for line in difflib.unified_diff(
                    old.splitlines(), new.splitlines(), "before", "after", lineterm="", n=1
                )
            ]
    return lines


def diff(source: Path, write: bool = False, references: Path = REFERENCES) -> int:
    """Re-execute ``source``; print compared outputs that changed and numbers beyond tolerance."""
    committed = source.with_suffix(".ipynb")
    with tempfile.TemporaryDirectory() as folder:
        executed, values = _execute_recording(source, Path(folder), {})
        new = nbformat.read(executed, as_version=4)
        report = []
        if committed.exists():
            report += _text_changes(
                compared_outputs(nbformat.read(committed, as_version=4)), compared_outputs(new), "nbval would fail"
            )
        for recorded in sorted(values.glob("*.json")):
            target = references / recorded.name
            current = json.loads(recorded.read_text())
            if not target.exists():
                report.append(f"{recorded.stem}: no reference file {target}; create it with `make references`")
                continue
            stored = reference.load(target)
            if current["parameters"] != stored["parameters"]:
                report.append(
                    f"{recorded.stem}: run with parameters {current['parameters']}, "
                    f"the reference has {stored['parameters']}"
                )
                continue
            report += [f"{recorded.stem}: {line}" for line in reference.mismatches(current["values"], stored)]
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


def spread(
    sources: list[Path],
    out: Path,
    write: bool = False,
    variants: Mapping[str, Mapping[str, str]] = SPREAD_VARIANTS,
    run: bool = True,
) -> int:
    """Execute under every CPU variant; measure each checked number's spread; compare outputs.

    ``run=False`` reuses the notebooks and numbers that the last run left in ``out``.

    With ``write``, the reference files are rewritten from the measured spread (values from the first
    variant, tolerance ``max(floor, 10 x spread)``) and the notebooks are executed once more as they
    are, so their committed outputs pass their own checks.
    """
    problems: list[str] = []
    outputs: dict[str, dict[str, dict[int, str]]] = {}
    recorded: dict[str, dict[str, dict]] = {}
    for name, variant in variants.items():
        for source in sources:
            executed = out / name / f"{source.stem}.ipynb"
            if run:
                started = time.perf_counter()
                executed, _ = _execute_recording(source, out / name, variant)
                print(f"{name:>16}: executed {source.name} in {time.perf_counter() - started:.1f} s", flush=True)
            outputs.setdefault(source.stem, {})[name] = compared_outputs(nbformat.read(executed, as_version=4))
        for path in sorted((out / name / "values").glob("*.json")):
            recorded.setdefault(path.stem, {})[name] = json.loads(path.read_text())
    for stem, by_variant in outputs.items():
        first = next(iter(by_variant))
        for name, texts in by_variant.items():
            problems += _text_changes(by_variant[first], texts, f"{stem}, {first} -> {name}")
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
        about = (
            f"Reference numbers of the notebook check '{check_name}', recorded under the CPU variants "
            f"{', '.join(runs)} (see gradcam_tutorial.publishing.notebooks.SPREAD_VARIANTS). 'spread' is the largest "
            "difference between two variants; 'tolerance' is 10 x spread, at least the floor for the name, "
            "rounded up; 'decimals' marks a number that a compared cell prints rounded to that many decimals. "
            "Regenerate with `make references`."
        )
        built = reference.build(
            {n: r["values"] for n, r in runs.items()},
            baseline["parameters"],
            baseline["printed"],
            TOLERANCE_FLOORS,
            about,
            baseline["nonnegative"],
        )
        problems += [f"{check_name}: {line}" for line in reference.printing_problems(built)]
        summary[check_name] = {key: entry["spread"] for key, entry in built["values"].items()}
        worst = sorted(built["values"].items(), key=lambda item: -item[1]["spread"])[:8]
        print(f"\n{check_name}: {len(built['values'])} names; largest spreads across variants:")
        for key, entry in worst:
            print(f"  {key:<48} spread {entry['spread']:<10.3g} tolerance {entry['tolerance']:.3g}")
        references[check_name] = built
    if write and not problems:
        REFERENCES.mkdir(parents=True, exist_ok=True)
        for check_name, built in references.items():
            (REFERENCES / f"{check_name}.json").write_text(json.dumps(built, indent=1) + "\n")
            print(f"wrote {REFERENCES / (check_name + '.json')}")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradcam_tutorial.publishing.notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute .py notebooks and write their .ipynb")
    run.add_argument("sources", nargs="+", type=Path)
    run.add_argument("--out", type=Path, default=None, help="folder for the .ipynb (default: beside the .py)")
    check = sub.add_parser("check", help="report drifted or unexecuted pairs")
    check.add_argument("sources", nargs="+", type=Path)
    nbval = sub.add_parser("nbval", help="nbval strict over the committed notebooks under each CPU variant")
    nbval.add_argument("notebooks", nargs="+", type=Path)
    nbval.add_argument("--variant", action="append", choices=sorted(NBVAL_VARIANTS), help="default: all")
    changes = sub.add_parser("diff", help="re-execute; show changed outputs and numbers beyond tolerance")
    changes.add_argument("sources", nargs="+", type=Path)
    changes.add_argument("--write", action="store_true", help="also replace the committed .ipynb")
    measure = sub.add_parser("spread", help="measure each checked number's spread across CPU variants")
    measure.add_argument("sources", nargs="+", type=Path)
    measure.add_argument("--out", type=Path, default=Path("build/spread"))
    measure.add_argument("--write", action="store_true", help="rewrite tests/reference/ and re-execute")
    measure.add_argument(
        "--no-execute", action="store_true", help="reuse the last run's notebooks and numbers in --out"
    )
    args = parser.parse_args(argv)
    if args.command == "execute":
        for source in args.sources:
            started = _dt.datetime.now()
            target = execute(source, args.out)
            print(f"executed {source} -> {target} in {(_dt.datetime.now() - started).total_seconds():.1f} s")
        return 0
    if args.command == "nbval":
        chosen = {name: NBVAL_VARIANTS[name] for name in args.variant} if args.variant else NBVAL_VARIANTS
        return run_nbval(args.notebooks, chosen)
    if args.command == "diff":
        return max(diff(source, args.write) for source in args.sources)
    if args.command == "spread":
        return spread(args.sources, args.out, args.write, run=not args.no_execute)
    problems = [p for source in args.sources for p in pair_problems(source)]
    print("\n".join(problems) or "all pairs agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
