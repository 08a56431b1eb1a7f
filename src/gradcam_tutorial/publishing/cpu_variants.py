"""The CPU variants one machine stands in for, what nbval compares, and nbval run under each variant.

Committed outputs must not depend on the CPU that wrote them (see :mod:`.reference`): nbval compares
the sanitized text outputs (:func:`compared_outputs`), and :func:`run_nbval` runs it once per
variant in :data:`NBVAL_VARIANTS`.
"""

from __future__ import annotations

import configparser
import difflib
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import nbformat

from . import reference

# Where the repository keeps the reference files and nbval's sanitizer, relative to its root. The
# package does not know where that root is: the commands take --references and --sanitize, and
# without them look for these paths from the notebook's folder upwards, then from the working directory.
REFERENCES = Path("tests") / "reference"
SANITIZE = Path("tests") / "nbval_sanitize.cfg"
# The data mirror (shared/data, e.g. beside a checkout), looked for upwards from the notebook's
# folder and handed to the kernels when GRADCAM_MIRROR is unset (see gradcam_tutorial.data).
MIRROR_SUMS = Path("shared") / "data" / "SHA256SUMS"

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


def sanitize_file(start: Path | None = None) -> Path:
    """:data:`SANITIZE` in ``start`` (a notebook's folder) or a folder above it, else above the working
    directory; a missing file is an error, since nbval without it would compare timings and addresses."""
    found = (reference.find_upwards(SANITIZE, start) if start is not None else None) or reference.find_upwards(SANITIZE)
    if found is None:
        where = " or ".join(dict.fromkeys(str(p.resolve()) for p in (start, Path.cwd()) if p is not None))
        raise FileNotFoundError(f"no {SANITIZE} in {where} or a folder above: pass --sanitize")
    return found


def _sanitizer(sanitize: Path) -> list[tuple[re.Pattern[str], str]]:
    """The regex replacements of the sanitize file, in file order, as nbval applies them."""
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(sanitize):
        raise FileNotFoundError(f"cannot read the nbval sanitize file {sanitize}")
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def compared_outputs(notebook: nbformat.NotebookNode, sanitize: Path | None = None) -> dict[int, str]:
    """``{code cell number: sanitized text}`` of the outputs nbval compares (images excluded).

    ``sanitize`` is nbval's sanitize file; by default :func:`sanitize_file` from the working directory.
    """
    from nbval.plugin import find_comment_markers, find_metadata_tags

    patterns = _sanitizer(sanitize if sanitize is not None else sanitize_file())
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


def kernel_env(variant: Mapping[str, str], start: Path) -> dict[str, str]:
    """The variant's settings, plus the data mirror found upwards from ``start`` when none is set."""
    env = dict(variant)
    sums = reference.find_upwards(MIRROR_SUMS, start)
    if "GRADCAM_MIRROR" not in os.environ and sums is not None:
        env["GRADCAM_MIRROR"] = str(sums.parent.resolve())
    return env


def run_nbval(
    notebooks: list[Path], variants: Mapping[str, Mapping[str, str]] = NBVAL_VARIANTS, sanitize: Path | None = None
) -> int:
    """nbval strict over ``notebooks`` once per CPU variant (pytest runs in the working directory).

    Each notebook gets its own pytest process, and as many run at once as the variant's thread count
    leaves cores for (one at a time with 2 threads on 2 cores, both notebooks at once with 1 thread).
    ``sanitize`` is nbval's sanitize file, by default :func:`sanitize_file` from the first notebook's folder.
    """
    from concurrent.futures import ThreadPoolExecutor

    sanitize = sanitize if sanitize is not None else sanitize_file(notebooks[0].parent)
    failed = []
    for name, variant in variants.items():
        env = {**os.environ, **kernel_env(variant, notebooks[0].parent)}
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
                str(sanitize),
                str(notebook),
            ]
            return subprocess.run(command, env=env, capture_output=True, text=True)

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


def text_changes(before: Mapping[int, str], after: Mapping[int, str], label: str) -> list[str]:
    """A unified diff, per code cell, of the compared outputs that differ between two runs."""
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
