"""The full run's throughput: one process on two threads against Ray with two one-thread workers.

``python benchmarks/bench_full_run.py`` (part of ``make bench``). Both run the same units of the
same small run (the report's measures at its step count and ROAD percentages, on fewer photos) into
fresh record folders, one after the other in this run; each is timed from start to merged results,
Ray's start-up included. Printed: each engine's seconds and validation photos per second, their
ratio, and what 50 000 photos would take per worker at the measured per-photo cost.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from gradcam_tutorial.evaluation import report
from gradcam_tutorial.evaluation.config import FullRunConfig

CONFIG = FullRunConfig(
    val_photos=40, faith_photos=6, check_photos=0, sanity_photos=4, variant_photos=4, score_cam_photos=0
)


def timed(engine: str, root: Path) -> float:
    """Seconds of one complete run (units and merge) with ``engine``."""
    torch.set_num_threads(2 if engine == "sequential" else 1)
    started = time.perf_counter()
    report.run(root / "out", CONFIG, log=lambda line: None, records_dir=root / "records", engine=engine, workers=2)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench-full-run.json"))
    args = parser.parse_args()
    seconds = {}
    for engine in ("sequential", "ray"):
        with tempfile.TemporaryDirectory() as folder:
            seconds[engine] = timed(engine, Path(folder))
    photos = CONFIG.val_photos
    rate = {engine: photos / value for engine, value in seconds.items()}
    result = {
        "config": {"val_photos": photos, "faith_photos": CONFIG.faith_photos, "steps": CONFIG.steps},
        "seconds": seconds,
        "photos_per_second": rate,
        "ray_vs_sequential": rate["ray"] / rate["sequential"],
    }
    for engine in seconds:
        print(f"{engine:<11} {seconds[engine]:7.1f} s  {rate[engine]:.3f} photos/s")
    print(f"Ray (2 workers x 1 thread) vs one process (2 threads): {result['ray_vs_sequential']:.2f}x the throughput")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
