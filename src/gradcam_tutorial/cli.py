"""The ``gradcam`` command: explain images from the shell, with errors a user can act on.

Every mistake a user can make (a missing file, an unknown class, a layer without a spatial map, no
weights offline) ends with one line ``gradcam: error: <message>`` on stderr and exit status 2, never
a traceback. In a batch, an image that cannot be read is reported and skipped so the good ones are
still explained; the exit status is then 2 as well, so a script notices (see :func:`main`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

from .cam import GradCAM, TargetError
from .classes import ClassNameError, resolve_class
from .data import DownloadError
from .explain import Explanation, explain
from .images import ImageError, load_image
from .layers import LayerError, resolve_layer
from .models import REGISTRY, UnknownModelError, WeightsUnavailableError, create_model, get_spec
from .outputs import OutputError, OutputFolder, fingerprint, slug

PROG = "gradcam"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
HEATMAP_DECIMALS = 4
# The package's errors are all things the user can fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (
    ImageError,
    ClassNameError,
    TargetError,
    LayerError,
    DownloadError,
    WeightsUnavailableError,
    UnknownModelError,
)


class UsageError(Exception):
    """A command-line mistake found after parsing (no images found, CUDA missing, bad --out)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        _error_line(f"{message} (see {PROG} --help)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Explain what an ImageNet classifier looks at: Grad-CAM overlays and JSON per image.",
        epilog="Exit status: 0 when every image was explained, 2 on any error (unreadable images in a "
        "batch are reported and skipped; the rest are still written).",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files and/or folders of images")
    parser.add_argument(
        "--model", default="efficientnet_lite0", help=f"one of {', '.join(REGISTRY)} (default: %(default)s)"
    )
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="CLASS",
        help="ImageNet class index or name to explain; repeat for several (default: the top-1 prediction)",
    )
    parser.add_argument("--layer", help="dotted module name of the target layer (default: the model's own)")
    parser.add_argument(
        "--top-k", type=_positive_int, default=5, help="predictions listed in the JSON (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=Path("gradcam-output"), help="output folder (default: %(default)s)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default: %(default)s)"
    )
    parser.add_argument(
        "--colormap", choices=("jet", "viridis"), default="jet", help="overlay colours (default: %(default)s)"
    )
    parser.add_argument(
        "--alpha", type=_unit_float, default=0.4, help="heatmap opacity in the overlay (default: %(default)s)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="explain again images whose outputs in --out are complete (by default a rerun skips them)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _error_line(message: str) -> None:
    """Print one ``gradcam: error:`` line; a multi-line message is folded so it stays one line."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _warning_line(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


@dataclass(frozen=True)
class Job:
    """One image to explain and the name stem its outputs get."""

    path: Path
    stem: str


def collect_images(paths: Sequence[Path]) -> tuple[list[Path], int]:
    """Images named directly or found (non-recursively) in folders, and how many other files were ignored.

    A file named on the command line is always tried, whatever its extension, so its error is shown;
    in a folder only files with an image extension are taken.
    """
    images: list[Path] = []
    ignored = 0
    for path in paths:
        try:
            is_folder = path.is_dir()
            children = sorted(path.iterdir()) if is_folder else []
        except PermissionError:
            raise UsageError(f"{path}: cannot be read: permission denied") from None
        if not is_folder:
            images.append(path)  # missing files too: load_image reports them in the usual words
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            if child.suffix.lower() in IMAGE_SUFFIXES:
                # broken links, FIFOs and the like under an image name are tried too, so that
                # load_image says what they are and the run counts them as failures
                images.append(child)
            else:
                ignored += 1
    return images, ignored


# Longest stem that leaves room in a 255-byte file name for "__NNN_<longest class slug>.png".
MAX_STEM = 255 - len("__000_.png") - 64 - 8


def _short_stem(stem: str) -> str:
    """``stem`` cut to :data:`MAX_STEM` characters, with a hash of the whole so cut names stay unique."""
    if len(stem) <= MAX_STEM:
        return stem
    return f"{stem[: MAX_STEM - 9]}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"


def plan_outputs(images: Sequence[Path]) -> list[Job]:
    """Give every image a unique output stem: its file stem, plus its extension or a counter on a clash.

    Stems are slugs (ASCII), cut to :data:`MAX_STEM` so that every output name fits in 255 bytes.
    """
    stems = Counter(path.stem for path in images)
    jobs: list[Job] = []
    used: set[str] = set()
    for path in images:
        stem = slug(path.stem) if stems[path.stem] == 1 else slug(f"{path.stem}_{path.suffix.lstrip('.')}")
        stem = _short_stem(stem)
        candidate, n = stem, 1
        while candidate in used:
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate)
        jobs.append(Job(path, candidate))
    return jobs


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG (OpenCV: several times faster than Pillow's default level
    on a 40 MP overlay, at a similar size). The array is turned to BGR in place."""
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb))
    if not ok:
        raise OSError(f"cannot encode a {rgb.shape} image as PNG")
    return encoded.tobytes()


def overlay_name(stem: str, index: int, name: str) -> str:
    return f"{stem}__{index:03d}_{slug(name)[:64]}.png"


def explanation_record(
    job: Job, explanation: Explanation, model: str, overlays: Sequence[str], notes: Sequence[str]
) -> dict:
    """The JSON written beside the overlays: predictions, layer, and each class's small heatmap."""
    return {
        "image": str(job.path),
        "size": list(explanation.image.size),
        "model": model,
        "layer": explanation.layer,
        "visible_box": [round(v, 2) for v in explanation.box],
        "top_k": [{"index": i, "name": n, "probability": round(p, 6)} for i, n, p in explanation.top_k],
        "classes": [
            {
                "index": index,
                "name": name,
                "probability": round(probability, 6),
                "overlay": overlay,
                "heatmap": np.round(small.astype(np.float64), HEATMAP_DECIMALS).tolist(),
            }
            for index, name, probability, small, overlay in zip(
                explanation.class_indices,
                explanation.class_names,
                explanation.probabilities,
                explanation.small_heatmaps,
                overlays,
                strict=True,
            )
        ],
        "warnings": list(notes),
    }


def _check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(
                "--device cuda: CUDA is not available here (no GPU, or a CPU-only PyTorch build); use --device cpu"
            )


@contextmanager
def _progress(jobs: list[Job]) -> Iterator[Iterator[Job]]:
    """The jobs with a progress bar that is gone from the terminal as soon as the block ends, also by
    Ctrl-C: the ``interrupted`` line then starts a line of its own."""
    from tqdm import tqdm

    bar = tqdm(jobs, desc=PROG, unit="image", file=sys.stderr, disable=len(jobs) < 2, leave=False)
    try:
        yield iter(bar)
    finally:
        bar.close()


def _plan(args: argparse.Namespace) -> tuple[list[Job], OutputFolder, list[int] | None]:
    """Check everything that can be checked before the model loads: classes, device, images, --out."""
    spec = get_spec(args.model)
    classes = [resolve_class(c, spec.categories) for c in args.classes] if args.classes else None
    _check_device(args.device)
    images, ignored = collect_images(args.paths)
    if not images:
        raise UsageError(
            f"no image files found in {', '.join(map(str, args.paths))} "
            f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    jobs = plan_outputs(images)
    try:
        folder = OutputFolder(args.out, images)
        for job in jobs:  # a foreign file under any JSON name stops the run before anything is written
            folder.check(f"{job.stem}.json")
    except OutputError as error:
        raise UsageError(str(error)) from None
    if ignored:
        _warning_line(f"ignored {ignored} folder entr{'y' if ignored == 1 else 'ies'} without an image extension")
    return jobs, folder, classes


def _read_image(path: Path, batch: bool) -> tuple[Image.Image, list[str]] | None:
    """The image and the warnings reading it raised (shown as they come); None for an unreadable
    image of a ``batch`` (reported and skipped), while a single image's error ends the run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = load_image(path)
        except ImageError as error:
            if not batch:
                raise
            _warning_line(f"skipped {error}")
            return None
    notes = [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]
    for note in notes:
        _warning_line(note)
    return image, notes


def _explain_job(
    job: Job,
    args: argparse.Namespace,
    folder: OutputFolder,
    options: dict,
    explainer: Callable[[Image.Image], Explanation],
    batch: bool,
) -> str:
    """One image: "done"; "skipped" when its outputs are complete for the same input and ``options``;
    "failed" when it cannot be read. The JSON record claims the overlays before they are written."""
    from .viz import overlay

    try:
        expected = fingerprint(job.path, options)
    except OSError:
        expected = None
    # expected is None for a file that cannot be read: load_image below says why in the usual words
    if expected is not None and not args.force and folder.complete(job.stem, expected):
        return "skipped"
    if (read := _read_image(job.path, batch)) is None:
        return "failed"
    image, notes = read
    explanation = explainer(image)
    names = [
        overlay_name(job.stem, i, n) for i, n in zip(explanation.class_indices, explanation.class_names, strict=True)
    ]
    try:
        for name in names:
            folder.check(name)
        claim = {"image": str(job.path), "input": expected, "overlays": names}
        folder.write_record(job.stem, claim, complete=False)  # the overlays below are ours from now on
        for k, name in enumerate(names):  # one full-size map at a time: a 40 MP map is 160 MB
            picture = overlay(image, explanation.heatmap(k), alpha=args.alpha, colormap=args.colormap)
            folder.write(name, png_bytes(picture))
            del picture  # before the next map is made
        record = explanation_record(job, explanation, args.model, names, notes)
        folder.write_record(job.stem, {**record, "input": expected, "overlays": names}, complete=True)
    except OutputError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write to {args.out}: {error.strerror or error}") from None
    return "done"


def _summary(out: Path, total: int, outcomes: Counter[str]) -> int:
    """Say on stderr what was done; the exit status is 2 when an image of the batch could not be read."""
    failed, skipped, plural = outcomes["failed"], outcomes["skipped"], "s" if total != 1 else ""
    print(f"{PROG}: explained {total - failed - skipped} of {total} image{plural} into {out}", file=sys.stderr)
    if skipped:
        message = f"skipped {skipped} whose outputs were already complete (--force explains them again)"
        print(f"{PROG}: {message}", file=sys.stderr)
    if failed:
        _error_line(f"{failed} of {total} images could not be read (see the warnings above); the others were written")
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    """Explain every image; raise a user error for anything that stops the whole run."""
    jobs, folder, classes = _plan(args)
    model, spec = create_model(args.model)
    model = model.to(args.device)
    layer, _ = resolve_layer(model, args.layer if args.layer else spec.target_layer)
    cam = GradCAM(model, layer)  # one for the whole run: it learns how the layer is called
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {args.out}: {error.strerror or error}") from None
    options = {"model": args.model, "layer": layer, "classes": classes}
    options |= {"top_k": args.top_k, "colormap": args.colormap, "alpha": args.alpha}
    explainer = functools.partial(
        explain, model=model, spec=spec, classes=classes, layer=layer, top_k=args.top_k, cam=cam
    )
    with _progress(jobs) as progress:
        outcomes = Counter(_explain_job(job, args, folder, options, explainer, len(jobs) > 1) for job in progress)
    return _summary(args.out, len(jobs), outcomes)


def run_command(
    parser: argparse.ArgumentParser, argv: Sequence[str], action: Callable[[argparse.Namespace], int]
) -> int:
    """Parse ``argv`` and run ``action`` on it, as every ``gradcam`` command does: its status, 2 with
    one line on stderr for a user error, 130 on Ctrl-C."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return int(done.code or 0)
    try:
        return action(args)
    except (*USER_ERRORS, UsageError) as error:
        _error_line(str(error))
        return 2
    except KeyboardInterrupt:
        _error_line("interrupted")
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcam`` console script and ``python -m gradcam_tutorial``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["explore"]:  # gradcam explore PHOTO --out PAGE.html: the every-class page
        from .explore import main as explore_main

        return explore_main(argv[1:])
    return run_command(build_parser(), argv, run)


if __name__ == "__main__":
    sys.exit(main())
