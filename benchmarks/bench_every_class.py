"""Time every class's Grad-CAM map (all 1000) against one forward pass, in one run.

``python benchmarks/bench_every_class.py --out build/bench-every-class.json`` (part of ``make
bench``). For each model, the forward pass alone and
:class:`~gradcam_tutorial.every_class.EveryClassCAM` at the default layer (from the classifier's
weights, and by forward mode) and at the earlier layer (by forward mode), each beside
:class:`~gradcam_tutorial.GradCAM` walking back once per class. Medians of interleaved rounds (the
slow rows at the earlier layer: fewer rounds); the goal is the weights' ratio at the default layer.
Timings do not depend on the weights, so ResNet-18 runs with random ones where its own cannot load.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from gradcam_tutorial import GradCAM, WeightsUnavailableError, create_model, demo_grid, get_spec
from gradcam_tutorial.evaluation.cost import time_rounds
from gradcam_tutorial.every_class import EveryClassCAM

GOAL = 2.0  # every class at the default layer, at most this many forward passes


def _model(name: str) -> tuple[torch.nn.Module, str]:
    try:
        return create_model(name)[0], "ImageNet weights"
    except WeightsUnavailableError:
        return create_model(name, pretrained=False)[0], "random weights (timing only)"


def measure(name: str, rounds: int, slow_rounds: int, warmup: int, input_size: int | None = None) -> dict[str, object]:
    spec = get_spec(name)
    model, weights = _model(name)
    x = spec.preprocess(demo_grid()[0])
    if input_size is not None:  # smaller inputs only for quick smoke tests of this script
        x = torch.nn.functional.interpolate(x, size=input_size, mode="bilinear", antialias=True)
    every = [list(range(1000))]

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def timed(cam: GradCAM) -> Callable[[], object]:
        return lambda: cam.compute(x, every)

    fast = {
        "forward": forward,
        "weights": timed(EveryClassCAM(model, spec.target_layer, head=spec.classifier)),
        "forward_mode": timed(EveryClassCAM(model, spec.target_layer)),
        "per_class": timed(GradCAM(model, spec.target_layer)),
    }
    slow = {
        "forward": forward,
        "forward_mode_earlier": timed(EveryClassCAM(model, spec.earlier_layer)),
        "per_class_earlier": timed(GradCAM(model, spec.earlier_layer)),
    }
    timings = time_rounds(fast, rounds=rounds, warmup=warmup)
    slow_timings = time_rounds(slow, rounds=slow_rounds, warmup=min(warmup, 1))
    per_forward = {key: value / timings["forward"] for key, value in timings.items() if key != "forward"}
    per_forward.update(
        {key: value / slow_timings["forward"] for key, value in slow_timings.items() if key != "forward"}
    )
    timings.update({key: value for key, value in slow_timings.items() if key != "forward"})
    return {
        "model": name,
        "weights": weights,
        "layer": spec.target_layer,
        "earlier_layer": spec.earlier_layer,
        "ms": timings,
        "per_forward": per_forward,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench-every-class.json"))
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (median reported)")
    parser.add_argument("--slow-rounds", type=int, default=3, help="timed rounds at the earlier layer")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [measure(name, args.rounds, args.slow_rounds, args.warmup, args.input_size) for name in args.models]
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.rounds} rounds; all 1000 classes")
    for entry in results:
        ms, ratio = entry["ms"], entry["per_forward"]
        assert isinstance(ms, dict) and isinstance(ratio, dict)
        print(f"\n{entry['model']} ({entry['weights']}): forward pass {ms['forward']:.1f} ms")
        rows = (
            ("weights", f"`{entry['layer']}`, classifier's weights"),
            ("forward_mode", f"`{entry['layer']}`, forward mode"),
            ("per_class", f"`{entry['layer']}`, GradCAM, one walk back per class"),
            ("forward_mode_earlier", f"`{entry['earlier_layer']}`, forward mode"),
            ("per_class_earlier", f"`{entry['earlier_layer']}`, GradCAM, one walk back per class"),
        )
        for key, label in rows:
            print(f"  {label:<52}{ms[key]:>9.1f} ms {ratio[key]:>7.2f} x forward")
        verdict = "met" if ratio["weights"] <= GOAL else "NOT met"
        print(f"  goal: all classes at `{entry['layer']}` within {GOAL} x the forward pass: {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
