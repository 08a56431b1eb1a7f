"""``gradcam explore PHOTO --out PAGE.html``: one self-contained page with the map of every class.

The page needs no server and fetches nothing: the picture (at most :data:`DISPLAY_SIDE` pixels on
its longer side, as a PNG data URL) with the box the network sees in it, every class's Grad-CAM map
(min-max normalised as :func:`~.cam.normalize_maps` does, then quantised to uint8: ``1000 x h x w``
bytes in base64), each map's share in named regions of the picture, the class names, their
probabilities and the colour table of :func:`~.viz.colour_table` all ship inside it. Its script
(``assets/explorer.js``, which the JupyterLab widget of :mod:`.publishing.explore_widget` runs too)
draws a class's overlay as :func:`~.viz.overlay` does on :func:`~.viz.heatmap_on_photo`'s map (see
:meth:`ExplorerData.overlay`), so the canvas matches the package's own overlay of that class: the
maps are quantised, which costs at most one colour level, and the tests measure the difference.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .regions import Box, placed_shares, quadrants

if TYPE_CHECKING:
    from torch import nn

    from .models import ModelSpec

PROG = "gradcam explore"
DEFAULT_ALPHA = 0.4  # viz.overlay's default heatmap weight
DISPLAY_SIDE = 384  # the shipped picture's longer side at most, in pixels: the page stays small


@dataclass(frozen=True)
class ExplorerData:
    """What the explorer shows: the picture, where the network looks in it, and every class's map."""

    photo: Image.Image  # the whole picture (RGB), scaled to at most DISPLAY_SIDE pixels a side
    box: tuple[int, int, int, int]  # the network's view in photo's pixels (left, top, right, bottom)
    maps: np.ndarray  # (classes, h, w) float32 in [0, 1], as normalize_maps gives them
    probabilities: np.ndarray  # (classes,) float64, softmax of the logits
    names: tuple[str, ...]
    regions: tuple[str, ...]  # names of the regions that shares divides each map between
    shares: np.ndarray  # (classes, regions): share of each map's mass, on the full-size picture

    def quantised(self) -> np.ndarray:
        """The maps as the page gets them: ``round(255 * map)`` as uint8."""
        return np.round(self.maps.astype(np.float64) * 255).astype(np.uint8)

    def overlay(self, k: int, alpha: float = DEFAULT_ALPHA, quantised: bool = False) -> np.ndarray:
        """What the page draws for class ``k``: :func:`~.viz.overlay` of its map placed in the box
        (from the page's uint8 map with ``quantised``)."""
        from .viz import heatmap_on_photo, overlay

        small = self.quantised()[k] / np.float32(255) if quantised else self.maps[k]
        return overlay(self.photo, heatmap_on_photo(small, self.photo.size, self.box), alpha=alpha)


def display_picture(image: Image.Image, box: Sequence[int]) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The picture scaled to at most :data:`DISPLAY_SIDE` pixels a side, and ``box`` scaled with it."""
    scale = min(1.0, DISPLAY_SIDE / max(image.size))
    if scale == 1.0:
        return image, (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    left, top, right, bottom = (round(v * scale) for v in box)
    return image.resize(size, Image.Resampling.LANCZOS), (left, top, max(right, left + 1), max(bottom, top + 1))


def compute(
    image: Image.Image,
    model: nn.Module,
    spec: ModelSpec,
    regions: Mapping[str, Box] | None = None,
    layer: nn.Module | str | None = None,
) -> ExplorerData:
    """Every class's Grad-CAM map for ``image`` at ``layer`` (default: the spec's) in one pass
    (:class:`~.every_class.EveryClassCAM`: from the classifier's weights at the spec's layer, by
    forward mode at any other), and each map's share in ``regions`` (boxes in the picture's pixels;
    default: its quadrants)."""
    import torch

    from .cam import normalize_maps
    from .every_class import EveryClassCAM
    from .images import to_rgb
    from .layers import resolve_layer

    image = to_rgb(image)
    regions = quadrants(image.size) if regions is None else regions
    default = resolve_layer(model, spec.target_layer)[1]
    chosen = default if layer is None else resolve_layer(model, layer)[1]
    head = spec.classifier if chosen is default else None
    with EveryClassCAM(model, chosen, head=head) as cam:
        result = cam.compute(spec.preprocess(image))
    maps = normalize_maps(result.maps.detach().float())[0].cpu().numpy().astype(np.float32)
    probabilities = torch.softmax(result.logits.detach().double(), dim=1)[0].cpu().numpy()
    pixel_box = spec.pixel_box(image.size)
    shares = placed_shares(maps, image.size, pixel_box, list(regions.values()))
    photo, box = display_picture(image, pixel_box)
    return ExplorerData(photo, box, maps, probabilities, tuple(spec.categories), tuple(regions), shares)


def _png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def page_payload(data: ExplorerData, title: str) -> dict[str, object]:
    """The JSON the page's script reads."""
    from .viz import colour_table

    classes, height, width = data.maps.shape
    return {
        "title": title,
        "photo": _png_data_url(data.photo),
        "size": [data.photo.width, data.photo.height],
        "box": list(data.box),
        "mapShape": [classes, height, width],
        "maps": base64.b64encode(data.quantised().tobytes()).decode("ascii"),
        "names": list(data.names),
        "probabilities": [float(f"{p:.6g}") for p in data.probabilities],
        "regions": list(data.regions),
        "shares": np.round(data.shares, 4).tolist(),
        "table": base64.b64encode(np.ascontiguousarray(colour_table("jet")).tobytes()).decode("ascii"),
        "alpha": DEFAULT_ALPHA,
    }


@cache
def asset(name: str) -> str:
    """One of the explorer's files in ``assets/``: its script, styles and markup."""
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def payload_json(data: ExplorerData, title: str) -> str:
    """:func:`page_payload` as JSON that is safe inside a ``<script>`` element."""
    return json.dumps(page_payload(data, title), separators=(",", ":")).replace("</", "<\\/")


def render_fragment(data: ExplorerData, title: str) -> str:
    """The explorer as one ``<div>`` with its styles, data and script inline, for any HTML page: the
    notebook's output, the site's page and the Jekyll post (one explorer per page: its ids are fixed)."""
    return fragment(payload_json(data, title))


def fragment(payload: str) -> str:
    """:func:`render_fragment` around an already encoded :func:`payload_json` (the widget keeps one)."""
    return (
        f'<div class="gcx" id="gcx">\n<style>\n{asset("explorer.css")}</style>\n{asset("explorer.html")}'
        f'<script type="application/json" id="gcx-data">{payload}</script>\n'
        f"<script>\n(() => {{\n{asset('explorer.js')}"
        'const root = document.getElementById("gcx");\n'
        'mountExplorer(root, JSON.parse(root.querySelector("#gcx-data").textContent));\n'
        "})();\n</script>\n</div>"
    )


def render_page(data: ExplorerData, title: str) -> str:
    """The whole HTML page around :func:`render_fragment`."""
    return PAGE.replace("@TITLE@", html.escape(title)).replace("@FRAGMENT@", render_fragment(data, title))


@dataclass(frozen=True)
class Explorer:
    """What a notebook cell shows: the explorer as HTML, and one line of text where HTML is not shown."""

    data: ExplorerData
    title: str

    @property
    def selected(self) -> int:
        """The class shown first, the most probable (an HTML page cannot tell the kernel a click)."""
        return int(self.data.probabilities.argmax())

    @property
    def selected_name(self) -> str:
        return self.data.names[self.selected]

    def _repr_html_(self) -> str:
        return render_fragment(self.data, self.title)

    def __repr__(self) -> str:
        return f"Grad-CAM explorer of {len(self.data.names)} classes for {self.title} (shown where HTML is)"


def explorer(
    image: Image.Image,
    model: nn.Module,
    spec: ModelSpec,
    title: str = "the picture",
    regions: Mapping[str, Box] | None = None,
) -> Explorer:
    """Every class's map of ``image`` in an explorer that a notebook shows as HTML (:class:`Explorer`);
    in JupyterLab, :func:`~.publishing.explore_widget.explorer_widget` also tells the kernel the pick."""
    return Explorer(compute(image, model, spec, regions), title)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Grad-CAM explorer: @TITLE@</title>
<style>
body{margin:0;background:#fafafa}
main{max-width:1000px;margin:0 auto;padding:12px}
h1{font:600 1.2rem/1.4 system-ui,sans-serif;margin:0 0 8px;overflow-wrap:anywhere}
</style></head>
<body><main>
<h1>Grad-CAM of every class: @TITLE@</h1>
@FRAGMENT@
</main></body></html>
"""


def _parser() -> argparse.ArgumentParser:
    from .cli import _Parser
    from .models import REGISTRY

    parser = _Parser(
        prog=PROG,
        description="Write one self-contained HTML page showing the Grad-CAM map of any ImageNet class for a photo.",
    )
    parser.add_argument("photo", type=Path, metavar="PHOTO", help="the photo to explain")
    parser.add_argument("--out", type=Path, required=True, metavar="PAGE", help="the HTML page to write")
    parser.add_argument(
        "--model", default="efficientnet_lite0", help=f"one of {', '.join(REGISTRY)} (default: %(default)s)"
    )
    parser.add_argument("--layer", help="dotted module name of the target layer (default: the model's own)")
    return parser


def write_page(photo: Path, out: Path, model_name: str, layer: str | None = None) -> int:
    """Compute every class's map for ``photo`` and write the page to ``out``; returns its size in bytes."""
    from .cli import UsageError
    from .images import load_image
    from .models import create_model, get_spec

    get_spec(model_name)  # an unknown model stops before the photo is read
    image = load_image(photo)
    model, spec = create_model(model_name)
    data = compute(image, model, spec, layer=layer)
    title = photo.name if layer is None else f"{photo.name}, layer {layer}"
    page = render_page(data, title).encode("utf-8")
    try:
        out.write_bytes(page)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    return len(page)


def _write(args: argparse.Namespace) -> int:
    size = write_page(args.photo, args.out, args.model, args.layer)
    print(f"gradcam: wrote {args.out} ({size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``gradcam explore``: exit 0 when the page is written, 2 (one line on stderr) on any user error."""
    from .cli import run_command

    return run_command(_parser(), sys.argv[1:] if argv is None else argv, _write)
