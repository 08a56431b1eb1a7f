"""Executing the paired notebooks and checking that each pair still agrees.

The ``.py`` (py:percent) is the source; the ``.ipynb`` is its executed twin. ``execute`` runs the
``.py`` in a fresh kernel and writes the twin, so a committed ``.ipynb`` is always the output of the
committed ``.py``; ``pair_problems`` finds a pair that drifted apart.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

import jupytext
import nbformat


def execute(source: Path, out_dir: Path | None = None, timeout: int = 1200) -> Path:
    """Run ``source`` (a .py notebook) top to bottom in a new kernel; write and return the .ipynb."""
    from nbclient import NotebookClient

    os.environ.pop("MPLBACKEND", None)  # a kernel told to use Agg would show no figures at all
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(source.parent.resolve())}},
    )
    client.execute()
    notebook.metadata["gradcam_tutorial"] = {"executed": _dt.date.today().isoformat()}
    target = (out_dir or source.parent) / (source.stem + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradcam_tutorial.notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute .py notebooks and write their .ipynb")
    run.add_argument("sources", nargs="+", type=Path)
    run.add_argument("--out", type=Path, default=None, help="folder for the .ipynb (default: beside the .py)")
    check = sub.add_parser("check", help="report drifted or unexecuted pairs")
    check.add_argument("sources", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "execute":
        for source in args.sources:
            started = _dt.datetime.now()
            target = execute(source, args.out)
            print(f"executed {source} -> {target} in {(_dt.datetime.now() - started).total_seconds():.1f} s")
        return 0
    problems = [p for source in args.sources for p in pair_problems(source)]
    print("\n".join(problems) or "all pairs agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
