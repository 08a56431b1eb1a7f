"""The full run's units on Ray (``--engine ray``): Ray Data hands units to a pool of actors, each of
which builds the model, its hooks and the photo list once and writes every unit's records itself.

Grad-CAM needs autograd, so the actors run the report's own runners as they are (no
``inference_mode``). Local Ray on this machine by default, a cluster with ``address``; each worker
uses ``threads`` threads, so ``workers * threads`` should not exceed the cores. Ray is an optional
extra (``pip install 'gradcam-tutorial[ray]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import CACHE_ENV, MIRROR_ENV, ValPhoto
from .config import FullRunConfig
from .records import Unit


class UnitWorker:
    """One Ray actor: the run's context built once, then any number of units."""

    def __init__(self, config: FullRunConfig, photos: Sequence[ValPhoto] | None, root: str, threads: int) -> None:
        import torch

        from .report import build_context

        torch.set_num_threads(threads)
        self.context = build_context(config, photos)
        self.root = Path(root)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from .report import record_unit

        names, seconds = [], []
        for stage, index, start, stop in zip(
            batch["stage"], batch["index"], batch["start"], batch["stop"], strict=True
        ):
            unit = Unit(str(stage), int(index), int(start), int(stop))
            meta = record_unit(self.context, self.root, unit, "ray")
            names.append(unit.name)
            seconds.append(meta["seconds"])
        return {"unit": np.array(names), "seconds": np.array(seconds)}


def run_on_ray(
    config: FullRunConfig,
    photos: Sequence[ValPhoto] | None,
    root: Path,
    units: Sequence[Unit],
    workers: int = 2,
    address: str | None = None,
    threads: int = 1,
) -> int:
    """Run ``units`` on ``workers`` actors, each writing its units' records; returns how many ran."""
    import ray

    passed = {name: os.environ[name] for name in (MIRROR_ENV, CACHE_ENV, "PYTHONHASHSEED") if name in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"runtime_env": {"env_vars": passed}, "log_to_driver": False}
        if address is None:
            options.update(num_cpus=workers * threads, include_dashboard=False)
        ray.init(address=address, **options)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        items = [{"stage": u.stage, "index": u.index, "start": u.start, "stop": u.stop} for u in units]
        done = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            UnitWorker,
            fn_constructor_kwargs={"config": config, "photos": photos, "root": str(root), "threads": threads},
            batch_size=1,
            concurrency=workers,
            num_cpus=threads,
        )
        return len(done.take_all())
    finally:
        if started_here:
            ray.shutdown()
