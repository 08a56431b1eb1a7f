"""Summarise a mutmut run (``make mutate``): counts and score per module, and the survivors left to explain.

A mutant counts as caught when a test failed on it, its tests ran past mutmut's time limit (a
suite that hangs fails CI too), or mypy rejected it (``make test`` runs mypy before the tests). A
surviving mutant listed in ``equivalent.toml`` (a change no caller can observe, with the reason)
leaves the score's denominator, so each run shows only new survivors.
Mutants a stopped run never reached ("not checked") are counted apart and fail the goal.
Run from the repository root after ``mutmut run``; mutmut's own results are read from ``mutants/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

EQUIVALENT = Path(__file__).with_name("equivalent.toml")
CAUGHT = ("killed", "timeout", "caught by type check")


@dataclass(frozen=True)
class Mutation:
    """One mutant as a reader knows it: the function it lives in and the lines it changes."""

    function: str
    removed: tuple[str, ...]
    added: tuple[str, ...]


def function_of(mutant: str) -> str:
    """``pkg.mod.x_f__mutmut_3`` -> ``pkg.mod.x_f``: stable when mutants are renumbered."""
    return mutant.rsplit("__mutmut_", 1)[0]


def mutation_of(mutant: str, diff: str) -> Mutation:
    lines = diff.splitlines()
    removed = tuple(s[1:].strip() for s in lines if s.startswith("-") and not s.startswith("---"))
    added = tuple(s[1:].strip() for s in lines if s.startswith("+") and not s.startswith("+++"))
    return Mutation(function_of(mutant), removed, added)


def load_equivalents(path: Path = EQUIVALENT) -> dict[Mutation, str]:
    """The reviewed equivalent mutants: each entry's function, changed lines and one-line reason."""
    entries = tomllib.loads(path.read_text()).get("equivalent", []) if path.exists() else []
    found = {}
    for entry in entries:
        if not entry.get("reason", "").strip():
            raise ValueError(f"{path}: an equivalent mutant needs a reason: {entry}")
        key = Mutation(entry["function"], tuple(entry["removed"]), tuple(entry["added"]))
        found[key] = entry["reason"]
    return found


def module_of(path: Path) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[parts.index("gradcam_tutorial") :])


def summarise(equivalents: dict[Mutation, str]) -> dict:
    """Per-module counts from mutmut's result files, with every unexplained survivor's diff."""
    modules: dict[str, Counter[str]] = {}
    unexplained: list[dict[str, str]] = []
    used: set[Mutation] = set()
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        counts = modules.setdefault(module_of(path), Counter())
        for mutant, exit_code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[exit_code]
            if status not in (*CAUGHT, "not checked"):
                diff = get_diff_for_mutant(mutant, path=path)
                mutation = mutation_of(mutant, diff)
                if mutation in equivalents:
                    used.add(mutation)
                    status = "equivalent"
                else:
                    unexplained.append({"mutant": mutant, "status": status, "diff": diff})
            counts[status] += 1
    table = {}
    for name, counts in sorted(modules.items()):
        table[name] = dict(counts, total=sum(counts.values()), score=score(counts))
    everything: Counter[str] = sum(modules.values(), Counter())
    return {
        "modules": table,
        "total": dict(everything, total=sum(everything.values()), score=score(everything)),
        "unexplained": unexplained,
        "stale_equivalents": [vars(m) | {"reason": r} for m, r in equivalents.items() if m not in used],
    }


def score(counts: Counter[str]) -> float | None:
    """Caught over the mutants checked, less the equivalent ones."""
    relevant = sum(counts.values()) - counts["equivalent"] - counts["not checked"]
    return sum(counts[s] for s in CAUGHT) / relevant if relevant else None


def markdown(summary: dict) -> str:
    columns = ["killed", "caught by type check", "timeout", "survived", "no tests", "segfault", "suspicious"]
    columns += ["equivalent", "not checked"]
    columns.append("total")
    rows = ["| module | " + " | ".join(columns) + " | score |", "|---" * (len(columns) + 2) + "|"]
    for name, counts in [*summary["modules"].items(), ("all", summary["total"])]:
        cells = [str(counts.get(c, 0)) for c in columns]
        shown = "-" if counts["score"] is None else f"{100 * counts['score']:.1f} %"
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {shown} |")
    text = ["# Mutation testing (make mutate)", "", *rows, ""]
    text.append(f"## Survivors not in {EQUIVALENT.name} ({len(summary['unexplained'])})")
    for item in summary["unexplained"]:
        text += ["", f"### {item['mutant']} ({item['status']})", "", "```diff", item["diff"], "```"]
    if summary["stale_equivalents"]:
        text += ["", f"## Entries of {EQUIVALENT.name} that matched no surviving mutant"]
        text += [f"- {e['function']}: {e['reason']}" for e in summary["stale_equivalents"]]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/mutation"))
    parser.add_argument("--goal", type=float, default=0.90, help="fail below this score over all listed modules")
    args = parser.parse_args(argv)
    summary = summarise(load_equivalents())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = markdown(summary)
    (args.out / "summary.md").write_text(text)
    print(text.split("\n## ")[0])
    total = summary["total"]["score"]
    unchecked = summary["total"].get("not checked", 0)
    if unchecked:
        print(f"{unchecked} mutants were not checked (the run stopped early): the score covers the rest")
    print(
        f"score {100 * (total or 0):.1f} % (goal {100 * args.goal:.0f} %), {len(summary['unexplained'])} survivors "
        f"to explain; details in {args.out / 'summary.md'}"
    )
    return 0 if total is not None and total >= args.goal and not unchecked else 1


if __name__ == "__main__":
    sys.exit(main())
