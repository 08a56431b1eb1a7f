"""A soak test: many Grad-CAM calls and constructions on one model must leave no hooks and no leak.

Hooks registered by a helper and never removed are the classic Grad-CAM bug: each call adds another,
they stack, memory grows and results change. This runs ``calls`` heatmap calls spread over
``constructions`` :class:`GradCAM` objects on one EfficientNet-Lite0 (some used as a context manager,
some never closed, some calls failing on purpose), checks every module's hook dictionaries after each
call, and measures resident memory growth after a warm-up. ``make soak`` runs it at full size.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from gradcam_tutorial.cam import GradCAM, TargetError
from gradcam_tutorial.classes import EGYPTIAN_CAT, ESPRESSO, MILITARY_UNIFORM, MOPED
from gradcam_tutorial.state import hook_snapshot

RSS_LIMIT_MB = 50.0


@dataclass
class SoakResult:
    """What a soak run saw; ``ok`` is the verdict the command line exits on."""

    calls: int
    constructions: int
    failed_on_purpose: int
    seconds: float
    rss_start_mb: float
    rss_end_mb: float
    limit_mb: float
    hook_problems: list[str] = field(default_factory=list)

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb

    @property
    def ok(self) -> bool:
        return not self.hook_problems and self.growth_mb < self.limit_mb

    def summary(self) -> str:
        return (
            f"{self.calls} heatmap calls ({self.failed_on_purpose} failing on purpose) over {self.constructions} "
            f"GradCAM constructions in {self.seconds:.1f} s ({1000 * self.seconds / max(self.calls, 1):.0f} ms/call)\n"
            f"hooks left behind: {len(self.hook_problems)}\n"
            f"RSS after warm-up {self.rss_start_mb:.1f} MB, at the end {self.rss_end_mb:.1f} MB, "
            f"growth {self.growth_mb:+.1f} MB (limit {self.limit_mb:.0f} MB)\n"
            f"verdict: {'OK' if self.ok else 'FAILED'}"
        )


def _differences(before: dict, after: dict) -> list[str]:
    return [
        f"{name}: {before.get(name)} -> {after.get(name)}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


def _rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def _one_call(cam: GradCAM, x: torch.Tensor, step: int) -> bool:
    """One call of a rotating kind; returns True when it failed on purpose (as it must)."""
    kind = step % 4
    if step % 25 == 24:  # an error raised inside the call, after the forward pass
        try:
            cam.compute_heatmap(x[:1], class_idx=5000)
        except TargetError:
            return True
        raise AssertionError("an out-of-range class was accepted")
    if kind == 0:
        cam.compute_heatmap(x[:1])
    elif kind == 1:
        cam.compute_heatmap(x[:1], class_idx=[EGYPTIAN_CAT, ESPRESSO])
    elif kind == 2:
        cam.compute(x, [[MILITARY_UNIFORM], [MOPED]])
    else:
        with torch.no_grad():  # a caller that turned autograd off
            cam.compute_heatmap(x[1:], class_idx=MOPED, normalize=False)
    return False


def soak(
    calls: int = 500,
    constructions: int = 50,
    model: nn.Module | None = None,
    layer: str | None = None,
    warmup: int = 10,
    limit_mb: float = RSS_LIMIT_MB,
    progress: bool = False,
) -> SoakResult:
    """Run the soak; hooks are checked after every call, RSS after ``warmup`` calls and at the end."""
    from gradcam_tutorial.images import demo_grid
    from gradcam_tutorial.models import create_model, get_spec

    spec = get_spec("efficientnet_lite0")
    if model is None:
        model, spec = create_model(spec.name)
    layer = layer or spec.target_layer
    grid, tiles = demo_grid(tile=224)
    x = torch.cat([spec.preprocess(grid.crop(tile.box)) for tile in tiles[:2]])
    constructions = max(1, min(constructions, calls))
    baseline = hook_snapshot(model)
    problems: list[str] = []
    failed = 0
    rss_start = _rss_mb()
    started = time.perf_counter()
    step = 0
    for n in range(constructions):
        share = calls // constructions + (1 if n < calls % constructions else 0)
        cam = GradCAM(model, layer)
        as_context = n % 2 == 0  # half are closed by `with`, half simply dropped
        if as_context:
            cam.__enter__()
        for _ in range(share):
            failed += _one_call(cam, x, step)
            step += 1
            now = hook_snapshot(model)
            if now != baseline:
                problems += [f"after call {step}: {d}" for d in _differences(baseline, now)]
                baseline = now  # report each leak once
            if step == warmup:
                rss_start = _rss_mb()
        if as_context:
            cam.__exit__(None, None, None)
        del cam
        if progress:
            print(f"\rconstruction {n + 1}/{constructions}, call {step}/{calls}", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    return SoakResult(
        step, constructions, failed, time.perf_counter() - started, rss_start, _rss_mb(), limit_mb, problems
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--constructions", type=int, default=50)
    parser.add_argument(
        "--limit-mb", type=float, default=RSS_LIMIT_MB, help="allowed RSS growth (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = soak(args.calls, args.constructions, limit_mb=args.limit_mb, progress=sys.stderr.isatty())
    print(result.summary())
    for problem in result.hook_problems[:20]:
        print(f"  {problem}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
