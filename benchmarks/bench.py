"""Time Grad-CAM against one forward pass, the original post's method and three peer libraries.

``python benchmarks/bench.py --out build/bench.json`` (``make bench``); the timing code is
:mod:`gradcam_tutorial.evaluation.cost`, which the report's cost section also runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from gradcam_tutorial.evaluation.cost import BENCH_LAYERS, format_table, run_benchmark
from gradcam_tutorial.methods import CAM_METHODS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench.json"), help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per method (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2, the tutorial's machine)")
    parser.add_argument("--models", nargs="+", default=["resnet18", "efficientnet_lite0"], choices=sorted(BENCH_LAYERS))
    parser.add_argument(
        "--variants",
        nargs="*",
        default=list(CAM_METHODS),
        choices=list(CAM_METHODS),
        help="Grad-CAM variants to time (none: skip them)",
    )
    parser.add_argument(
        "--score-cam-repeats",
        type=int,
        default=1,
        help="timed rounds for Score-CAM (one forward pass per channel of the layer)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.score_cam_repeats < 1:
        parser.error("--repeats and --score-cam-repeats must be at least 1 and --warmup at least 0")
    results = run_benchmark(
        args.models,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        variants=args.variants,
        score_cam_repeats=args.score_cam_repeats,
    )
    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"median of {args.repeats} rounds after {args.warmup} warm-up "
        f"(Score-CAM: {args.score_cam_repeats} round{'s' if args.score_cam_repeats > 1 else ''})\n"
    )
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
