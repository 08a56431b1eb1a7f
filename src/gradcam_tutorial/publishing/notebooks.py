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

The package does not know where the repository keeps things: ``--references`` names the folder of
reference files and ``--sanitize`` nbval's sanitize file; without them, ``tests/reference`` and
``tests/nbval_sanitize.cfg`` are looked for from the notebook's folder upwards
(:func:`~.reference.find_upwards`), then from the working directory. ``spread --write`` writes to
``--references``, by default ``tests/reference`` in the working directory. The work is done in
:mod:`.execution`, :mod:`.cpu_variants` and :mod:`.tolerances`; their public names are re-exported here.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import jupytext
import nbformat

from .cpu_variants import (
    MIRROR_SUMS,
    NBVAL_VARIANTS,
    REFERENCES,
    SANITIZE,
    SPREAD_VARIANTS,
    TOLERANCE_FLOORS,
    compared_outputs,
    run_nbval,
    sanitize_file,
)
from .execution import execute, inject_parameters
from .tolerances import diff, spread

__all__ = [
    "MIRROR_SUMS",
    "NBVAL_VARIANTS",
    "REFERENCES",
    "SANITIZE",
    "SPREAD_VARIANTS",
    "TOLERANCE_FLOORS",
    "compared_outputs",
    "diff",
    "execute",
    "inject_parameters",
    "main",
    "pair_problems",
    "run_nbval",
    "sanitize_file",
    "spread",
]


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


def _parser() -> argparse.ArgumentParser:
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
    changes.add_argument(
        "--references", type=Path, default=None, help=f"folder of reference files (default: {REFERENCES} found upwards)"
    )
    measure = sub.add_parser("spread", help="measure each checked number's spread across CPU variants")
    measure.add_argument("sources", nargs="+", type=Path)
    measure.add_argument("--out", type=Path, default=Path("build/spread"))
    measure.add_argument("--write", action="store_true", help="rewrite the reference files and re-execute")
    measure.add_argument(
        "--references", type=Path, default=REFERENCES, help="folder --write rewrites (default: %(default)s)"
    )
    measure.add_argument(
        "--no-execute", action="store_true", help="reuse the last run's notebooks and numbers in --out"
    )
    for command in (nbval, changes, measure):
        command.add_argument(
            "--sanitize", type=Path, default=None, help=f"nbval's sanitize file (default: {SANITIZE} found upwards)"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except FileNotFoundError as error:  # a missing notebook, reference folder or sanitize file: one line
        parser.error(str(error))


def _run(args: argparse.Namespace) -> int:
    """The chosen command, on the parsed arguments."""
    if args.command == "execute":
        for source in args.sources:
            started = _dt.datetime.now()
            target = execute(source, args.out)
            print(f"executed {source} -> {target} in {(_dt.datetime.now() - started).total_seconds():.1f} s")
        return 0
    if args.command == "nbval":
        chosen = {name: NBVAL_VARIANTS[name] for name in args.variant} if args.variant else NBVAL_VARIANTS
        return run_nbval(args.notebooks, chosen, args.sanitize)
    if args.command == "diff":
        return max(diff(source, args.write, args.references, args.sanitize) for source in args.sources)
    if args.command == "spread":
        return spread(
            args.sources,
            args.out,
            args.write,
            run=not args.no_execute,
            references=args.references,
            sanitize=args.sanitize,
        )
    problems = [p for source in args.sources for p in pair_problems(source)]
    print("\n".join(problems) or "all pairs agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
