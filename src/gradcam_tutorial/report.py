"""The evaluation behind the report "does the heatmap tell the truth?" (the notebook and the CLI).

``python -m gradcam_tutorial.report --photos N --out DIR`` explains the first ``N`` mirrored ImageNet
sample photos (spread evenly over the classes) for their *true* class with EfficientNet-Lite0 and
writes ``DIR/metrics.json`` with bootstrap intervals, plus figures of aggregate numbers only (no
photo is ever drawn). The notebook ``notebooks/report.py`` calls the same functions on fewer photos.
The metric definitions live in :mod:`gradcam_tutorial.metrics`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import metrics
from .cam import GradCAM
from .data import Sample, ValPhoto, imagenet_samples
from .explain import explain
from .images import demo_grid, load_image, restore_aspect
from .models import ModelSpec, create_model

METHODS = ("gradcam", "last_conv", "random", "center")
DEFAULT_STEPS = 5
DEFAULT_SANITY_PHOTOS = 20


def select_samples(n: int) -> list[Sample]:
    """``n`` sample photos spread evenly over the class order (always the same ones for the same n)."""
    samples = imagenet_samples()
    if not 1 <= n <= len(samples):
        raise ValueError(f"choose between 1 and {len(samples)} photos, not {n}")
    positions = np.unique(np.round(np.linspace(0, len(samples) - 1, n)).astype(int))
    return [samples[i] for i in positions]


def model_input(sample: Sample, spec: ModelSpec) -> torch.Tensor:
    """The ``(1, 3, H, W)`` network input of a sample photo."""
    return spec.preprocess(load_image(sample.path))


def top_k_accuracy(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[Sample | ValPhoto],
    k: int = 5,
    batch: int = 50,
    undo_stretch: bool = False,
) -> tuple[float, float]:
    """Top-1 and top-``k`` accuracy on ``photos`` with the model's own preprocessing.

    ``undo_stretch`` first gives each validation photo back its original aspect ratio
    (:func:`~gradcam_tutorial.images.restore_aspect`), so that Resize + CenterCrop sees the shapes
    the model was trained on rather than the mirror's 227x227 squash. Scoring runs on a
    channels-last copy of the model (1.6x less CPU time for EfficientNet-Lite0, same logits).
    """
    if not photos:
        raise ValueError("no photos to score")
    if undo_stretch and not all(isinstance(photo, ValPhoto) for photo in photos):
        raise TypeError("undo_stretch needs validation photos (ValPhoto), which know their original size")
    scorer = metrics.channels_last_copy(model)
    top1 = topk = 0
    for start in range(0, len(photos), batch):
        chunk = photos[start:start + batch]
        images = [load_image(photo.path) for photo in chunk]
        if undo_stretch:
            sizes = [photo.original_size for photo in chunk]  # type: ignore[union-attr]  # ValPhotos, checked above
            images = [restore_aspect(image, size) for image, size in zip(images, sizes)]
        with torch.inference_mode():
            x = torch.cat([spec.preprocess(image) for image in images]).contiguous(memory_format=torch.channels_last)
            ranked = scorer(x).topk(k, dim=1).indices
        truth = torch.tensor([photo.class_index for photo in chunk]).unsqueeze(1)
        top1 += int((ranked[:, :1] == truth).sum())
        topk += int((ranked == truth).any(dim=1).sum())
    return top1 / len(photos), topk / len(photos)


def gradcam_map(model: nn.Module, layer: str, x: torch.Tensor, class_idx: int) -> tuple[torch.Tensor, float]:
    """Grad-CAM for ``class_idx`` at ``layer``, min-max normalised and resized to the input size."""
    with GradCAM(model, layer) as cam:
        result = cam.compute(x, class_idx)
    return metrics.upsample(result.normalized()[0, 0], tuple(x.shape[-2:])), float(result.probabilities[0, 0])


# --- 1. pointing game on the demo grid ---------------------------------------------------------


def candidate_layers(spec: ModelSpec) -> list[str]:
    """The original post's layer, our default, and an earlier block, in that order."""
    return [spec.last_conv_layer, spec.target_layer, spec.earlier_layer]


def pointing_by_layer(model: nn.Module, spec: ModelSpec, layers: Sequence[str] | None = None) -> dict[str, list[metrics.PointingResult]]:
    """Pointing game of each tile's class on the demo grid, per layer (one forward per layer)."""
    grid, tiles = demo_grid()
    boxes = [tile.box for tile in tiles]
    out = {}
    for layer in layers or candidate_layers(spec):
        explanation = explain(grid, model, spec, classes=[tile.class_index for tile in tiles], layer=layer)
        out[layer] = [metrics.pointing_game(explanation.heatmap(k), boxes, k) for k in range(len(tiles))]
    return out


# --- 3. faithfulness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Faithfulness:
    """Per-photo curves and probabilities, methods in :data:`METHODS` order."""

    class_indices: np.ndarray  # (n,)
    fractions: np.ndarray  # (steps + 1,)
    deletion: np.ndarray  # (n, methods, steps + 1)
    insertion: np.ndarray  # (n, methods, steps + 1)
    full_probability: np.ndarray  # (n,) class probability on the untouched input
    explained_probability: np.ndarray  # (n, methods) on the explanation map input * mask
    methods: tuple[str, ...] = METHODS

    def auc(self, curve: str) -> dict[str, np.ndarray]:
        values = metrics.curve_auc(getattr(self, curve))
        return {method: values[:, m] for m, method in enumerate(self.methods)}


def gradcam_small_shape(model: nn.Module, spec: ModelSpec, x: torch.Tensor) -> tuple[int, int]:
    """Spatial size of the target layer's output for input ``x`` (7x7 for 224 inputs here)."""
    shape: list[tuple[int, int]] = []
    layer = dict(model.named_modules())[spec.target_layer]
    handle = layer.register_forward_hook(lambda _m, _i, out: shape.append(tuple(out.shape[-2:])))
    try:
        with torch.inference_mode():
            model(x[:1])
    finally:
        handle.remove()
    return shape[-1]


def evaluate_faithfulness(
    model: nn.Module,
    spec: ModelSpec,
    samples: Sequence[Sample],
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Faithfulness:
    """Deletion/insertion curves and explanation-map probabilities for each photo's true class."""
    deletion, insertion, full, explained = [], [], [], []
    small = None
    scorer = metrics.channels_last_copy(model)
    for number, sample in enumerate(samples):
        x = model_input(sample, spec)
        if small is None:
            small = gradcam_small_shape(model, spec, x)
        size = tuple(x.shape[-2:])
        gradcam, probability = gradcam_map(model, spec.target_layer, x, sample.class_index)
        last_conv, _ = gradcam_map(model, spec.last_conv_layer, x, sample.class_index)
        # the random map has Grad-CAM's own resolution, so it is as blobby as the map it stands in for
        random = metrics.upsample(metrics.random_map(small, seed + sample.class_index), size)
        center = torch.from_numpy(metrics.center_map(size))
        maps = [gradcam, last_conv, random, center]
        curves = metrics.perturbation_curves(scorer, x[0], maps, sample.class_index, steps=steps, seed=seed)
        deletion.append(curves.deletion)
        insertion.append(curves.insertion)
        full.append(probability)
        explained.append(metrics.masked_probabilities(scorer, x[0], maps, sample.class_index))
        if progress is not None:
            progress(number + 1, len(samples))
    return Faithfulness(
        class_indices=np.array([s.class_index for s in samples]),
        fractions=np.linspace(0.0, 1.0, steps + 1),
        deletion=np.stack(deletion),
        insertion=np.stack(insertion),
        full_probability=np.array(full),
        explained_probability=np.stack(explained),
    )


# --- 2. sanity check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sanity:
    """Similarity of each randomised model's map to the trained model's, per photo and depth."""

    stages: list[str]  # stage re-initialised last at each depth, top first
    depths: list[int]  # number of stages re-initialised (1 = only the top one)
    spearman: dict[str, np.ndarray]  # method -> (n_photos, len(depths))
    ssim: dict[str, np.ndarray]


def saliency_maps(model: nn.Module, spec: ModelSpec, x: torch.Tensor, class_idx: int) -> dict[str, np.ndarray]:
    """Grad-CAM (default layer) and the plain input gradient, both at input size."""
    gradcam, _ = gradcam_map(model, spec.target_layer, x, class_idx)
    return {"gradcam": gradcam.numpy(), "gradient": metrics.gradient_saliency(model, x, class_idx)}


def sanity_check(
    model: nn.Module, spec: ModelSpec, samples: Sequence[Sample], depths: Sequence[int] | None = None, seed: int = 0
) -> Sanity:
    """Cascading randomisation: compare maps before and after re-initialising the top stages.

    ``depths`` picks after how many stages the maps are compared (default: every stage; the last
    one, all stages, is full randomisation).
    """
    stages = metrics.randomisation_stages(model)
    wanted = sorted(set(depths)) if depths is not None else list(range(1, len(stages) + 1))
    inputs = [model_input(s, spec) for s in samples]
    originals = [saliency_maps(model, spec, x, s.class_index) for x, s in zip(inputs, samples)]
    spearman = {m: np.zeros((len(samples), len(wanted))) for m in ("gradcam", "gradient")}
    ssim = {m: np.zeros((len(samples), len(wanted))) for m in ("gradcam", "gradient")}
    column = 0
    for depth, (_stage, randomised) in enumerate(metrics.cascading_randomisation(model, seed, stages), start=1):
        if depth not in wanted:
            continue
        for row, (x, sample) in enumerate(zip(inputs, samples)):
            maps = saliency_maps(randomised, spec, x, sample.class_index)
            for method, values in maps.items():
                spearman[method][row, column] = metrics.rank_correlation(originals[row][method], values)
                ssim[method][row, column] = metrics.structural_similarity(originals[row][method], values)
        column += 1
        if depth == wanted[-1]:
            break
    return Sanity([stages[d - 1] for d in wanted], wanted, spearman, ssim)


# --- summary, figures, CLI ---------------------------------------------------------------------


def interval(values: np.ndarray, seed: int = 0) -> dict[str, object]:
    """Mean and percentile-bootstrap 95 % interval."""
    low, high = metrics.bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)), "ci95": [low, high]}


def rounded(value: object, digits: int = 4) -> object:
    """``value`` with every float rounded to ``digits`` decimals (for a JSON reader)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, float):
        return round(value, digits)
    return value


def summarise(
    faith: Faithfulness, pointing: dict[str, list[metrics.PointingResult]], sanity: Sanity, seed: int = 0
) -> dict[str, object]:
    """The numbers of ``metrics.json``, unrounded (see :mod:`.metrics` for the definitions).

    Unrounded so that a reader of the numbers rounds once: rounding to 4 decimals and then printing
    3 can turn a last-bit difference between two CPUs into a different third decimal.
    """
    insertion, deletion = faith.auc("insertion"), faith.auc("deletion")
    out: dict[str, object] = {
        "n_photos": int(len(faith.class_indices)),
        "steps": int(len(faith.fractions) - 1),
        "insertion_auc": {m: interval(insertion[m], seed) for m in faith.methods},
        "deletion_auc": {m: interval(deletion[m], seed) for m in faith.methods},
        "insertion_diff_ci95": list(metrics.paired_bootstrap_ci(insertion["gradcam"], insertion["random"], seed=seed)),
        "deletion_diff_ci95": list(metrics.paired_bootstrap_ci(deletion["gradcam"], deletion["random"], seed=seed)),
        "pointing_game": {layer: int(sum(r.hit for r in results)) for layer, results in pointing.items()},
        "pointing_shares": {layer: [float(r.shares[k]) for k, r in enumerate(results)] for layer, results in pointing.items()},
        "sanity_n_photos": int(sanity.spearman["gradcam"].shape[0]),
        "sanity_mean_abs_spearman": float(np.abs(sanity.spearman["gradcam"][:, -1]).mean()),
        "sanity_mean_abs_spearman_gradient": float(np.abs(sanity.spearman["gradient"][:, -1]).mean()),
        "sanity_mean_ssim": float(sanity.ssim["gradcam"][:, -1].mean()),
        "avg_drop": {},
        "increase_in_confidence": {},
        "mean_curves": {
            "fractions": [float(f) for f in faith.fractions],
            "deletion": {m: [float(v) for v in faith.deletion[:, i].mean(0)] for i, m in enumerate(faith.methods)},
            "insertion": {m: [float(v) for v in faith.insertion[:, i].mean(0)] for i, m in enumerate(faith.methods)},
        },
    }
    for index, method in enumerate(faith.methods):
        out["avg_drop"][method] = metrics.average_drop(faith.full_probability, faith.explained_probability[:, index])
        out["increase_in_confidence"][method] = metrics.increase_in_confidence(
            faith.full_probability, faith.explained_probability[:, index]
        )
    return out


def plot_curves(faith: Faithfulness, ax_deletion, ax_insertion) -> None:
    """Mean deletion and insertion curves per method on two matplotlib axes."""
    for curve, ax in (("deletion", ax_deletion), ("insertion", ax_insertion)):
        aucs = faith.auc(curve)
        for index, method in enumerate(faith.methods):
            mean = getattr(faith, curve)[:, index].mean(0)
            ax.plot(faith.fractions, mean, marker="o", ms=3, label=f"{method} (AUC {aucs[method].mean():.3f})")
        ax.set_xlabel(f"fraction of pixels {'removed' if curve == 'deletion' else 'inserted'}")
        ax.set_ylabel("probability of the true class")
        ax.set_title(f"{curve} (n = {len(faith.class_indices)})")
        ax.legend(fontsize=8)


def plot_sanity(sanity: Sanity, ax_spearman, ax_ssim) -> None:
    """Mean |Spearman| and SSIM to the trained model's map vs. randomisation depth."""
    for values, ax, label in ((sanity.spearman, ax_spearman, "mean |Spearman|"), (sanity.ssim, ax_ssim, "mean SSIM")):
        for method, table in values.items():
            series = np.abs(table).mean(0) if values is sanity.spearman else table.mean(0)
            ax.plot(range(len(sanity.depths)), series, marker="o", ms=3, label=method)
        ax.set_xticks(range(len(sanity.depths)), sanity.stages, rotation=90, fontsize=7)
        ax.set_xlabel("randomised down to (cumulative, from the top)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)


def write_figures(faith: Faithfulness, sanity: Sanity, summary: dict, out: Path) -> list[Path]:
    """Aggregate figures only (curves and bars of numbers, never a photo), as PNG files in ``out``.

    ``matplotlib.figure.Figure`` draws without pyplot, so no global backend is switched and a
    notebook that imports this module keeps its inline figures.
    """
    from matplotlib.figure import Figure

    def bars(ax_insertion, ax_deletion) -> None:
        for ax, key in ((ax_insertion, "insertion_auc"), (ax_deletion, "deletion_auc")):
            names = list(summary[key])
            means = np.array([summary[key][m]["mean"] for m in names])
            bounds = np.array([summary[key][m]["ci95"] for m in names])
            ax.bar(names, means, yerr=np.abs(bounds.T - means), capsize=4, color="tab:blue")
            ax.set_title(f"{key.replace('_', ' ')} (95 % bootstrap CI)")

    paths = []
    for name, draw, size in (
        ("curves.png", lambda axes: plot_curves(faith, *axes), (11, 4)),
        ("auc.png", lambda axes: bars(*axes), (10, 3.5)),
        ("sanity.png", lambda axes: plot_sanity(sanity, *axes), (11, 4)),
    ):
        fig = Figure(figsize=size)
        draw(fig.subplots(1, 2))
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=100)
    return paths


def run(
    n_photos: int,
    out: Path,
    steps: int = DEFAULT_STEPS,
    sanity_photos: int = DEFAULT_SANITY_PHOTOS,
    seed: int = 0,
    model_name: str = "efficientnet_lite0",
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """The whole evaluation; writes ``out/metrics.json`` and figures and returns the summary."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model, spec = create_model(model_name)
    out.mkdir(parents=True, exist_ok=True)
    pointing = pointing_by_layer(model, spec)
    log(f"pointing game: {', '.join(f'{k} {sum(r.hit for r in v)}/4' for k, v in pointing.items())}")
    sanity = sanity_check(model, spec, select_samples(sanity_photos), depths=[len(metrics.randomisation_stages(model))], seed=seed)
    log(f"sanity check on {sanity_photos} photos done after {time.perf_counter() - started:.0f} s")

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            log(f"faithfulness: {done}/{total} photos, {time.perf_counter() - started:.0f} s")

    faith = evaluate_faithfulness(model, spec, select_samples(n_photos), steps=steps, seed=seed, progress=progress)
    summary = rounded(summarise(faith, pointing, sanity, seed))
    summary["model"] = model_name
    summary["seed"] = seed
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_figures(faith, sanity, summary, out)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradcam_tutorial.report", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40, help="number of mirrored sample photos (1..500)")
    parser.add_argument("--out", type=Path, default=Path("build/report"))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="deletion/insertion steps")
    parser.add_argument("--sanity-photos", type=int, default=DEFAULT_SANITY_PHOTOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    summary = run(args.photos, args.out, args.steps, args.sanity_photos, args.seed, args.model)
    print(json.dumps({k: summary[k] for k in ("n_photos", "insertion_diff_ci95", "deletion_diff_ci95", "pointing_game", "sanity_mean_abs_spearman", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
