"""Peak memory of the ``gradcam`` command on a large photo, against the same command on a small one.

Run ``python benchmarks/bench_memory.py``. It writes a JPEG of about 40 megapixels (the demo
grid of pip-installed photos, enlarged), explains ten classes on it with the real CLI in a fresh
process, and reads that process's peak resident set size from the kernel. The same command on a
224x224 photo with one class is the baseline: importing torch and loading the model cost most of it
on any photo, so the difference is what the photo's size and the number of classes add.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gradcam_tutorial.images import MAX_PIXELS, demo_grid

GOAL_MB = 1500.0  # peak RSS of the whole CLI process, 40 MP photo, ten classes


def _peak_rss_mb(command: Sequence[str], env: dict[str, str]) -> float:
    """Run ``command`` to completion in a fresh process and return its peak RSS in MB.

    ``ru_maxrss`` of RUSAGE_CHILDREN is the largest peak among waited-for children, so each
    measurement runs under its own small Python parent that reports its single child's peak.
    """
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "if done.returncode: sys.exit(done.stderr[-2000:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return float(done.stdout.strip().splitlines()[-1])


def write_photo(path: Path, pixels: int) -> tuple[int, int]:
    """A 3:2 JPEG of just under ``pixels`` pixels with real picture content; returns its size."""
    grid, _ = demo_grid()
    width = int((pixels * 1.5) ** 0.5)
    height = pixels // width
    grid.resize((width, height)).save(path, quality=90)
    return width, height


def measure(pixels: int = MAX_PIXELS, classes: int = 10, workdir: Path | None = None) -> dict[str, float | int]:
    """Peak RSS (MB) of the CLI on a ``pixels`` photo with ``classes`` classes, and on a small photo."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with tempfile.TemporaryDirectory(dir=workdir) as name:
        folder = Path(name)
        width, height = write_photo(folder / "large.jpg", pixels)
        demo_grid()[0].resize((224, 224)).save(folder / "small.jpg", quality=90)
        cli = [sys.executable, "-m", "gradcam_tutorial"]
        flags = [flag for index in range(classes) for flag in ("--class", str(index))]
        large = _peak_rss_mb([*cli, str(folder / "large.jpg"), "--out", str(folder / "out-large"), *flags], env)
        small = _peak_rss_mb([*cli, str(folder / "small.jpg"), "--out", str(folder / "out-small"), "--class", "0"], env)
    return {
        "width": width,
        "height": height,
        "classes": classes,
        "peak_mb": large,
        "baseline_mb": small,
        "added_mb": large - small,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("build/bench-memory.json"), help="where to write the JSON results"
    )
    parser.add_argument("--classes", type=int, default=10, help="--class flags given to the CLI")
    args = parser.parse_args(argv)
    result = measure(classes=args.classes)
    megapixels = result["width"] * result["height"] / 1e6
    verdict = "met" if result["peak_mb"] < GOAL_MB else "MISSED"
    print(
        f"gradcam CLI, {result['width']}x{result['height']} JPEG ({megapixels:.1f} MP), {args.classes} classes: "
        f"peak RSS {result['peak_mb']:.0f} MB (goal < {GOAL_MB:.0f} MB: {verdict})"
    )
    print(
        f"the same CLI on a 224x224 photo, one class: {result['baseline_mb']:.0f} MB; "
        f"the large photo adds {result['added_mb']:.0f} MB"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
