"""ROAD's imputation: SuperLU in our nested-dissection order against SuperLU's own ordering.

``python benchmarks/bench_road.py`` (part of ``make bench``). The masks are the report's: for each
photo of the demo grid (four pip-installed photos and their mirror images), Grad-CAM's map of its
class at the default layer and a random map at Grad-CAM's resolution, each removed at 10-90 % in
both orders (MoRF, LeRF), 224 x 224 inputs. Each round factorises and solves every mask's system
once in each ordering (alternating which goes first, one mask at a time, nothing cached); the
medians over rounds, per mask, and their ratio are printed, with the largest difference between
the two orderings' fills. :mod:`gradcam_tutorial.evaluation.road` keeps the faster one.
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
from gradcam_tutorial.evaluation import baselines, road
from gradcam_tutorial.evaluation.shared import gradcam_map
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


# SuperLU's column orderings compared: ours (the unknowns are numbered in nested-dissection order
# and kept), and SuperLU's own minimum degree on A^T + A, its best for a symmetric matrix
ORDERINGS: dict[str, road.PermcSpec] = {"dissection": "NATURAL", "superlu_mmd": "MMD_AT_PLUS_A"}


def _impute_all(
    work: list[tuple[torch.Tensor, list[np.ndarray]]], permc_spec: road.PermcSpec
) -> tuple[float, list[np.ndarray]]:
    """Every mask's linear fill (no noise), each system built, factorised and solved from scratch."""
    fills, spent = [], 0.0
    for image, masks in work:
        values = image.reshape(image.shape[0], -1).double().numpy()
        for mask in masks:
            started = time.perf_counter()
            system = road._linear_system(mask)
            rhs = road._kept_sums(values, mask)[:, system.pixels]
            fills.append(road._SuperLU(system, permc_spec).solve(rhs))
            spent += time.perf_counter() - started
    return spent, fills


def run(rounds: int) -> dict[str, object]:
    work = workload()
    n_masks = sum(len(masks) for _, masks in work)
    seconds: dict[str, list[float]] = {name: [] for name in ORDERINGS}
    difference = 0.0
    for number in range(rounds):
        names = list(ORDERINGS) if number % 2 == 0 else list(reversed(ORDERINGS))
        fills = {}
        for name in names:
            spent, fills[name] = _impute_all(work, ORDERINGS[name])
            seconds[name].append(spent)
        pairs = zip(fills["dissection"], fills["superlu_mmd"], strict=True)
        difference = max([difference, *(float(np.abs(a - b).max()) for a, b in pairs)])
    per_mask = {name: statistics.median(values) / n_masks for name, values in seconds.items()}
    return {
        "masks": n_masks,
        "rounds": rounds,
        "solver": road.solver_name(),
        "ms_per_mask": {name: value * 1000 for name, value in per_mask.items()},
        "mmd_over_dissection": per_mask["superlu_mmd"] / per_mask["dissection"],
        "max_abs_difference": difference,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench-road.json"), help="where to write the JSON")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per solver (median reported)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = run(args.rounds)
    ms = result["ms_per_mask"]
    assert isinstance(ms, dict)
    print(
        f"{result['masks']} masks, {result['solver']}, median of {args.rounds} rounds: "
        f"nested dissection {ms['dissection']:.1f} ms per mask, SuperLU's minimum degree {ms['superlu_mmd']:.1f} ms, "
        f"ratio {result['mmd_over_dissection']:.2f}; "
        f"largest difference between their fills {result['max_abs_difference']:.1e}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
