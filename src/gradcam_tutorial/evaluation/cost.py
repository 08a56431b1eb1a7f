"""How much Grad-CAM costs on top of the forward pass, against the original post and three peers.

``benchmarks/bench.py`` (``make bench``) prints and saves these timings; the report's cost section
runs the same code. Everything is timed in one process with two threads, after a warm-up, and
reported as medians. The methods are interleaved within
each repeat (forward, ours, naive, peers, forward, ours, ...) so that a burst of load from another
process slows all of them alike instead of one. Our ``GradCAM`` is made once and reused, as the
package recommends; each peer call builds its explainer afresh (hooks registered and removed in the
call), so no peer's hooks stay on the model and slow another method's measurement.

The naive method is the original blog post's approach written out: hooks on the layer (a forward
hook for the activation, a full backward hook for its gradient), then per class one forward pass
and ``logits[0, c].backward()`` through the whole network, parameter gradients included.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..cam import GradCAM, Targets
from ..images import demo_grid
from ..layers import resolve_layer
from ..methods import CAM_METHODS
from ..models import create_model
from .peers import RUNNERS, PeerRunner, preserve_model_state, pytorch_grad_cam_heatmaps

# Per model: which layer to explain; resnet18 as in the table, EfficientNet its registry default.
BENCH_LAYERS = {"resnet18": "layer4.1.conv2", "efficientnet_lite0": None}
GOALS: dict[str, tuple[str, float]] = {
    "ours_1/forward": ("<=", 1.15),
    "ours_9/forward": ("<=", 1.30),
    "naive_9/ours_9": (">=", 15.0),
    "ours_batch8/forward_batch8": ("<=", 1.15),
    # every gradient-based variant (Grad-CAM too, at VARIANT_LAYERS) shares the same passes: same bound
    **{f"{name}_9/forward": ("<=", 1.30) for name in CAM_METHODS if name != "scorecam"},
}
# Grad-CAM's variants, each timed for 1 and 9 classes, and pytorch-grad-cam's version for 9 classes
# (one call per class, as its users call it). Score-CAM runs one forward pass per varying channel of
# the layer, so it is timed in its own, fewer rounds (``score_cam_repeats``).
VARIANT_KEYS = ("ours_1_ms", "ours_9_ms", "peer_9_ms")
# The variants are timed at a layer the network calls once: pytorch-grad-cam explains the *first*
# call of a module called twice (EfficientNet's shared ``_swish``: the stem), so at ``_swish`` its
# Score-CAM would mask with the stem's 32 channels instead of the head's 1280. ``_conv_head`` feeds
# ``_swish`` through batch norm: the same 1280 channels, and the same short walk back.
VARIANT_LAYERS = {"resnet18": "layer4.1.conv2", "efficientnet_lite0": "_conv_head"}
TIMING_KEYS = (
    "forward_ms", "ours_1_ms", "ours_9_ms", "naive_1_ms", "naive_9_ms",
    "pytorch_grad_cam_1_ms", "pytorch_grad_cam_9_ms", "captum_1_ms", "captum_9_ms",
    "torchcam_1_ms", "torchcam_9_ms", "ours_batch8_ms", "forward_batch8_ms",
)  # fmt: skip


# One model's JSON-ready record: each TIMING_KEYS entry in ms, plus "ratios" and "goals".
BenchEntry = dict[str, Any]


def naive_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, class_idx: int) -> torch.Tensor:
    """One class the original way: a grad-enabled forward, then a full backward with parameter gradients."""
    activations: list[torch.Tensor] = []
    gradients: list[torch.Tensor] = []
    forward_handle = layer.register_forward_hook(lambda _m, _i, output: activations.append(output.detach()))

    def save_gradient(_module: nn.Module, _grad_input: object, grad_output: tuple[torch.Tensor, ...]) -> None:
        gradients.append(grad_output[0])

    backward_handle = layer.register_full_backward_hook(save_gradient)
    try:
        with torch.enable_grad():
            model.zero_grad()
            logits = model(x)
            logits[0, class_idx].backward()
    finally:
        forward_handle.remove()
        backward_handle.remove()
    # A module called twice is seen twice; the last forward call (first to get its gradient) feeds the head.
    weights = gradients[0].mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations[-1]).sum(dim=1))


@dataclass(frozen=True)
class _Workload:
    name: str
    model: nn.Module
    layer_name: str
    single: torch.Tensor  # (1, 3, 224, 224)
    batch: torch.Tensor  # (8, 3, 224, 224)
    classes: list[int]  # nine distinct classes, the image's top nine


def _workload(name: str, input_size: int = 224) -> _Workload:
    """The demo grid as the batch of one; its four photos and their mirror images as the batch of eight.

    ``input_size`` below the model's own only serves quick smoke tests of the benchmark itself.
    """
    model, spec = create_model(name, pretrained=name != "resnet18")  # random ResNet weights need no download
    layer_name = BENCH_LAYERS.get(name) or spec.target_layer
    image, tiles = demo_grid()
    photos = [image.crop(tile.box) for tile in tiles]
    photos += [photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for photo in photos]
    single = spec.preprocess(image)
    batch = torch.cat([spec.preprocess(photo) for photo in photos])
    if input_size != spec.input_size:
        resize = torch.nn.functional.interpolate
        single, batch = (resize(t, size=input_size, mode="bilinear", antialias=True) for t in (single, batch))
    with torch.no_grad():
        classes = model(single)[0].topk(9).indices.tolist()
    return _Workload(name, model.eval(), layer_name, single, batch, classes)


def _check_naive_matches_ours(work: _Workload) -> None:
    """Time only methods that compute the same maps: the naive version must agree with ours."""
    _, layer = resolve_layer(work.model, work.layer_name)
    with GradCAM(work.model, layer) as cam:
        ours = cam.compute(work.single, work.classes[0]).maps[:, 0]
    with preserve_model_state(work.model):
        naive = naive_gradcam(work.model, layer, work.single, work.classes[0])
    scale = float(ours.abs().max())
    if scale == 0 or float((naive - ours).abs().max()) > 1e-4 * scale:
        raise AssertionError(f"naive and one-pass Grad-CAM disagree on {work.layer_name}")


def _methods(work: _Workload) -> dict[str, Callable[[], object]]:
    model, x, batch, classes = work.model, work.single, work.batch, work.classes
    _, layer = resolve_layer(model, work.layer_name)
    cam = GradCAM(model, layer)  # one explainer, reused as the package recommends

    def forward(inputs: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.enable_grad():
                return model(inputs)

        return run

    def ours(inputs: torch.Tensor, targets: Targets) -> Callable[[], object]:
        return lambda: cam.compute(inputs, targets)

    def peer(runner: PeerRunner, classes: list[int]) -> Callable[[], object]:
        return lambda: runner(model, layer, x, classes)

    methods: dict[str, Callable[[], object]] = {
        "forward_ms": forward(x),
        "ours_1_ms": ours(x, classes[0]),
        "ours_9_ms": ours(x, [classes]),
        "naive_1_ms": lambda: naive_gradcam(model, layer, x, classes[0]),
        "naive_9_ms": lambda: [naive_gradcam(model, layer, x, c) for c in classes],
        "forward_batch8_ms": forward(batch),
        "ours_batch8_ms": ours(batch, None),
    }
    for name, runner in RUNNERS.items():
        methods[f"{name}_1_ms"] = peer(runner, classes[:1])
        methods[f"{name}_9_ms"] = peer(runner, classes)
    return {key: methods[key] for key in TIMING_KEYS}


def _variant_methods(work: _Workload, names: Sequence[str]) -> dict[tuple[str, str], Callable[[], object]]:
    """``(variant, key) -> call`` for each variant: ours for 1 and 9 classes, pytorch-grad-cam's for 9."""
    model, x, classes = work.model, work.single, work.classes
    _, layer = resolve_layer(model, VARIANT_LAYERS[work.name])
    methods: dict[tuple[str, str], Callable[[], object]] = {}

    def ours(cam: GradCAM, targets: Targets) -> Callable[[], object]:
        return lambda: cam.compute(x, targets)

    def peer(name: str) -> Callable[[], object]:
        return lambda: pytorch_grad_cam_heatmaps(name, model, layer, x, classes)

    for name in names:
        cam = CAM_METHODS[name](model, layer)  # one explainer per variant, reused
        methods[name, "ours_1_ms"] = ours(cam, classes[0])
        methods[name, "ours_9_ms"] = ours(cam, [classes])
        methods[name, "peer_9_ms"] = peer(name)
    return methods


def time_rounds(methods: dict[Any, Callable[[], object]], rounds: int, warmup: int) -> dict[Any, float]:
    """Median ms per method over ``rounds`` interleaved rounds, after ``warmup`` untimed ones."""
    samples: dict[Any, list[float]] = {key: [] for key in methods}
    for round_index in range(warmup + rounds):
        for key, method in methods.items():
            start = time.perf_counter()
            method()
            elapsed = (time.perf_counter() - start) * 1000.0
            if round_index >= warmup:
                samples[key].append(elapsed)
    return {key: statistics.median(values) for key, values in samples.items()}


def ratios(timings: dict[str, float], variants: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """The ratios the goals are stated in (the variants' only for those measured)."""
    measured = {
        "ours_1/forward": timings["ours_1_ms"] / timings["forward_ms"],
        "ours_9/forward": timings["ours_9_ms"] / timings["forward_ms"],
        "naive_9/ours_9": timings["naive_9_ms"] / timings["ours_9_ms"],
        "ours_batch8/forward_batch8": timings["ours_batch8_ms"] / timings["forward_batch8_ms"],
    }
    for name, entry in (variants or {}).items():
        if f"{name}_9/forward" in GOALS:
            measured[f"{name}_9/forward"] = entry["ours_9_ms"] / timings["forward_ms"]
    return measured


def goal_met(name: str, value: float) -> bool:
    comparison, bound = GOALS[name]
    return value <= bound if comparison == "<=" else value >= bound


def benchmark_model(
    name: str,
    repeats: int,
    warmup: int,
    input_size: int = 224,
    variants: Sequence[str] = tuple(CAM_METHODS),
    score_cam_repeats: int = 1,
) -> BenchEntry:
    """Median milliseconds per method for one model, with its ratios and which goals they meet."""
    work = _workload(name, input_size)
    _check_naive_matches_ours(work)
    methods = _methods(work)
    gradient_variants = [v for v in variants if v != "scorecam"]
    variant_methods = _variant_methods(work, gradient_variants)
    with preserve_model_state(work.model):
        medians = time_rounds({**methods, **variant_methods}, repeats, warmup)
        if "scorecam" in variants:
            medians.update(time_rounds(_variant_methods(work, ["scorecam"]), score_cam_repeats, 0))
    timings: BenchEntry = {key: medians[key] for key in methods}
    by_variant: dict[str, dict[str, float]] = {}
    for variant in variants:
        by_variant[variant] = {key: medians[variant, key] for key in VARIANT_KEYS}
    measured = ratios(timings, by_variant)
    timings["variants"] = by_variant
    timings["ratios"] = measured
    timings["goals"] = {key: goal_met(key, value) for key, value in measured.items()}
    return timings


def run_benchmark(
    model_names: Sequence[str] = ("resnet18", "efficientnet_lite0"),
    repeats: int = 15,
    warmup: int = 2,
    threads: int = 2,
    input_size: int = 224,
    variants: Sequence[str] = tuple(CAM_METHODS),
    score_cam_repeats: int = 1,
) -> dict[str, BenchEntry]:
    """Benchmark each model in turn; torch's thread count is set for the run and restored after."""
    unknown = sorted(set(variants) - set(CAM_METHODS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(CAM_METHODS)}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {
            name: benchmark_model(name, repeats, warmup, input_size, variants, score_cam_repeats)
            for name in model_names
        }
    finally:
        torch.set_num_threads(previous_threads)


def format_table(results: dict[str, BenchEntry], goals: bool = True) -> str:
    """Timings in ms per model and method (with the multiple of a forward pass), the variants (pgc:
    pytorch-grad-cam's version; pgc/ours how many times slower it is for nine classes), then the goals
    (``goals=False`` leaves out the verdicts, e.g. for a run too short to judge them)."""
    lines = []
    for name, entry in results.items():
        forward = {"_batch8_ms": float(entry["forward_batch8_ms"]), "_ms": float(entry["forward_ms"])}
        lines.append(f"{name}")
        lines.append(f"  {'method':<24}{'ms':>10}{'x forward':>11}")
        for key in TIMING_KEYS:
            value = float(entry[key])
            reference = forward["_batch8_ms"] if key.endswith("_batch8_ms") else forward["_ms"]
            lines.append(f"  {key.removesuffix('_ms'):<24}{value:>10.1f}{value / reference:>11.2f}")
        if entry.get("variants"):
            header = f"  {'variant':<14}{'ours_1 ms':>11}{'x fwd':>9}{'ours_9 ms':>11}{'x fwd':>9}"
            lines.append(f"{header}{'pgc_9 ms':>11}{'pgc/ours':>10}")
            for variant, row in entry["variants"].items():
                one, nine, peer = (float(row[key]) for key in VARIANT_KEYS)
                lines.append(
                    f"  {variant:<14}{one:>11.1f}{one / forward['_ms']:>9.2f}{nine:>11.1f}"
                    f"{nine / forward['_ms']:>9.2f}{peer:>11.1f}{peer / nine:>10.1f}"
                )
        for ratio, value in entry["ratios"].items() if goals else ():
            comparison, bound = GOALS[ratio]
            verdict = "met" if goal_met(ratio, value) else "MISSED"
            lines.append(f"  goal {ratio:<27} {value:7.2f} {comparison} {bound:<5} {verdict}")
        lines.append("")
    return "\n".join(lines)
