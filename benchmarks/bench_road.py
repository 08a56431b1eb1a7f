"""ROAD's imputation: MKL's PARDISO against SciPy's SuperLU on the same removal masks, in one run.

``python benchmarks/bench_road.py`` (part of ``make bench``). The masks are the report's: for each
photo of the demo grid (four pip-installed photos and their mirror images), Grad-CAM's map of its
class at the default layer and a random map at Grad-CAM's resolution, each removed at 10-90 % in
both orders (MoRF, LeRF), 224 x 224 inputs. Each round imputes every mask once with each solver
(alternating which goes first, nothing cached between rounds); the medians over rounds, per mask,
and their ratio are printed, with the largest difference between the two solvers' fills.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gradcam_tutorial.cam import GradCAM
from gradcam_tutorial.evaluation import baselines, pardiso, road
from gradcam_tutorial.evaluation.report import gradcam_map
from gradcam_tutorial.images import demo_grid
from gradcam_tutorial.models import create_model
from gradcam_tutorial.viz import resize_heatmap

PERCENTAGES = (10.0, 30.0, 50.0, 70.0, 90.0)


def workload() -> list[tuple[torch.Tensor, list[np.ndarray]]]:
    """Each photo's input (C, H, W) and its 20 removal masks (two maps, two orders, five percentages)."""
    model, spec = create_model("efficientnet_lite0")
    image, tiles = demo_grid()
    photos = [(image.crop(tile.box), tile.class_index) for tile in tiles]
    photos += [(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), index) for photo, index in photos]
    out = []
    with GradCAM(model, spec.target_layer) as cam:
        for number, (photo, class_index) in enumerate(photos):
            x = spec.preprocess(photo)
            heatmap, _, small = gradcam_map(cam, x, class_index)
            random = resize_heatmap(baselines.random_map(small, number), (x.shape[-2], x.shape[-1]))
            masks = [
                mask
                for saliency in (heatmap.numpy(), random)
                for order in road.ORDERS
                for mask in road.removed_masks(saliency, PERCENTAGES, order).numpy()
            ]
            out.append((x[0], masks))
    return out


def _impute_all(
    work: list[tuple[torch.Tensor, list[np.ndarray]]], solver: str, workers: int
) -> tuple[float, list[np.ndarray]]:
    before = road._FACTORISATIONS
    road._FACTORISATIONS = road._Factorisations(solver=solver)  # nothing kept from another solver or round
    try:
        started = time.perf_counter()
        fills = [fill for image, masks in work for fill in road._fills(image, masks, workers)]
        return time.perf_counter() - started, fills
    finally:
        road._FACTORISATIONS = before


def run(rounds: int, workers: int) -> dict[str, object]:
    if not pardiso.available():
        raise SystemExit("MKL's PARDISO is not available here: nothing to compare (pip install mkl)")
    work = workload()
    n_masks = sum(len(masks) for _, masks in work)
    seconds: dict[str, list[float]] = {"pardiso": [], "superlu": []}
    difference = 0.0
    for number in range(rounds):
        order = ("pardiso", "superlu") if number % 2 == 0 else ("superlu", "pardiso")
        fills = {}
        for solver in order:
            spent, fills[solver] = _impute_all(work, solver, workers)
            seconds[solver].append(spent)
        difference = max(
            [difference, *(float(np.abs(a - b).max()) for a, b in zip(fills["pardiso"], fills["superlu"], strict=True))]
        )
    per_mask = {solver: statistics.median(values) / n_masks for solver, values in seconds.items()}
    return {
        "masks": n_masks,
        "rounds": rounds,
        "workers": workers,
        "solvers": {solver: road.solver_name(solver) for solver in road.SOLVERS},
        "ms_per_mask": {solver: value * 1000 for solver, value in per_mask.items()},
        "superlu_over_pardiso": per_mask["superlu"] / per_mask["pardiso"],
        "max_abs_difference": difference,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench-road.json"), help="where to write the JSON")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per solver (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="masks solved at once (the report uses torch's 2)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    result = run(args.rounds, args.threads)
    ms = result["ms_per_mask"]
    assert isinstance(ms, dict)
    print(
        f"{result['masks']} masks, {args.threads} at once, median of {args.rounds} rounds: "
        f"PARDISO {ms['pardiso']:.1f} ms per mask, SuperLU {ms['superlu']:.1f} ms, "
        f"SuperLU / PARDISO {result['superlu_over_pardiso']:.2f}; "
        f"largest difference between their fills {result['max_abs_difference']:.1e}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
