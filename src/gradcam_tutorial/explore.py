"""``gradcam explore PHOTO --out PAGE.html``: one self-contained page with the map of every class.

The page needs no server and fetches nothing: the photo (the crop the network sees, at the network's
input size, as a PNG data URL), every class's Grad-CAM map (min-max normalised as
:func:`~.cam.normalize_maps` does, then quantised to uint8: ``1000 x h x w`` bytes in base64), the
class names, their probabilities and the colour table of :func:`~.viz.colour_table` all ship inside
it. Its script draws a class's overlay the way :func:`~.viz.overlay` does: bilinear upsampling with
pixel centres aligned (``align_corners=False``), ``round(255 * value)`` half to even into the table,
and ``(1 - alpha) * photo + alpha * colour`` rounded half to even, so the canvas matches the
package's own overlay of that class (the page's maps are quantised, which costs at most one colour
level; the tests measure the difference).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import nn

    from .models import ModelSpec

PROG = "gradcam explore"
DEFAULT_ALPHA = 0.4  # viz.overlay's default heatmap weight


@dataclass(frozen=True)
class ExplorerData:
    """What the page shows: the network's view of the photo and every class's normalised map."""

    photo: Image.Image  # the crop the network sees, resized to its input size (RGB)
    maps: np.ndarray  # (classes, h, w) float32 in [0, 1], as normalize_maps gives them
    probabilities: np.ndarray  # (classes,) float64, softmax of the logits
    names: tuple[str, ...]

    def quantised(self) -> np.ndarray:
        """The maps as the page gets them: ``round(255 * map)`` as uint8."""
        return np.round(self.maps.astype(np.float64) * 255).astype(np.uint8)


def network_view(image: Image.Image, spec: ModelSpec) -> Image.Image:
    """The photo as the network sees it: ``spec.pixel_box`` cropped, resized by the spec's own Resize."""
    resize = spec.transform.transforms[0]
    crop = image.convert("RGB").crop(spec.pixel_box(image.size))
    return resize(crop)


def compute(image: Image.Image, model: nn.Module, spec: ModelSpec) -> ExplorerData:
    """Every class's Grad-CAM map for ``image`` in one pass (:class:`~.every_class.EveryClassCAM`)."""
    import torch

    from .cam import normalize_maps
    from .every_class import EveryClassCAM

    x = spec.preprocess(image.convert("RGB"))
    with EveryClassCAM(model, spec.target_layer, head=spec.classifier) as cam:
        result = cam.compute(x)
    maps = normalize_maps(result.maps.detach().float())[0].cpu().numpy().astype(np.float32)
    probabilities = torch.softmax(result.logits.detach().double(), dim=1)[0].cpu().numpy()
    return ExplorerData(network_view(image, spec), maps, probabilities, tuple(spec.categories))


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
        "mapShape": [classes, height, width],
        "maps": base64.b64encode(data.quantised().tobytes()).decode("ascii"),
        "names": list(data.names),
        "probabilities": [float(f"{p:.6g}") for p in data.probabilities],
        "table": base64.b64encode(np.ascontiguousarray(colour_table("jet")).tobytes()).decode("ascii"),
        "alpha": DEFAULT_ALPHA,
    }


def render_fragment(data: ExplorerData, title: str) -> str:
    """The explorer as one ``<div>`` with its styles, data and script inline, for any HTML page: the
    notebook's output, the site's page and the Jekyll post (one explorer per page: its ids are fixed)."""
    payload = json.dumps(page_payload(data, title), separators=(",", ":")).replace("</", "<\\/")
    return FRAGMENT.replace("@ALPHA@", str(DEFAULT_ALPHA)).replace("@DATA@", payload)


def render_page(data: ExplorerData, title: str) -> str:
    """The whole HTML page around :func:`render_fragment`."""
    return PAGE.replace("@TITLE@", html.escape(title)).replace("@FRAGMENT@", render_fragment(data, title))


@dataclass(frozen=True)
class Explorer:
    """What a notebook cell shows: the explorer as HTML, and one line of text where HTML is not shown."""

    data: ExplorerData
    title: str

    def _repr_html_(self) -> str:
        return render_fragment(self.data, self.title)

    def __repr__(self) -> str:
        return f"Grad-CAM explorer of {len(self.data.names)} classes for {self.title} (shown where HTML is)"


def explorer(image: Image.Image, model: nn.Module, spec: ModelSpec, title: str = "the picture") -> Explorer:
    """Every class's map of ``image`` in an explorer that a notebook displays (:class:`Explorer`)."""
    return Explorer(compute(image, model, spec), title)


FRAGMENT = """<div class="gcx" id="gcx">
<style>
.gcx{display:flex;flex-wrap:wrap;gap:16px;margin:12px 0;font:16px/1.4 system-ui,sans-serif;color:#222}
.gcx *{box-sizing:border-box}
.gcx .view{flex:1 1 300px;min-width:0;max-width:480px}
.gcx .pick{flex:1 1 240px;min-width:0;display:flex;flex-direction:column;gap:8px}
.gcx canvas{display:block;width:100%;height:auto;image-rendering:pixelated;background:#ddd}
.gcx label{display:block;font-size:.9rem}
.gcx input[type=text],.gcx input[type=range]{width:100%;font-size:1rem}
.gcx .chosen{font-weight:600;overflow-wrap:anywhere;margin:8px 0}
.gcx p{margin:0}
.gcx ol{position:relative;list-style:none;margin:0;padding:0;max-height:24rem;overflow-y:auto}
.gcx ol{border:1px solid #ccc;background:#fff}
.gcx li{display:flex;justify-content:space-between;gap:8px;padding:4px 8px;cursor:pointer}
.gcx li span:first-child{overflow-wrap:anywhere;min-width:0}
.gcx li[aria-selected=true]{background:#ffe08a}
</style>
<section class="view">
<!-- drawn at the network's input resolution (the crop it sees, e.g. 224 x 224 pixels), scaled by CSS -->
<canvas id="gcx-overlay" aria-label="the picture with the chosen class's Grad-CAM map"></canvas>
<p id="gcx-chosen" class="chosen" aria-live="polite"></p>
<label for="gcx-alpha">heatmap opacity <output id="gcx-alphaValue">@ALPHA@</output></label>
<input id="gcx-alpha" type="range" min="0" max="1" step="0.05" value="@ALPHA@">
</section>
<section class="pick">
<label for="gcx-search">class (type to search the 1000 ImageNet classes)</label>
<input id="gcx-search" type="text" list="gcx-classNames" autocomplete="off" placeholder="e.g. tabby">
<datalist id="gcx-classNames"></datalist>
<p>Classes by probability (click one, then &darr; / &uarr; step through them):</p>
<ol id="gcx-ranking" role="listbox" tabindex="0" aria-label="classes by probability"></ol>
</section>
<script type="application/json" id="gcx-data">@DATA@</script>
<script>
(() => {
"use strict";
const root = document.getElementById("gcx");
const D = JSON.parse(document.getElementById("gcx-data").textContent);
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const maps = bytes(D.maps), table = bytes(D.table);
const [K, MH, MW] = D.mapShape, [W, H] = D.size;
const order = D.probabilities.map((p, i) => i).sort((a, b) => D.probabilities[b] - D.probabilities[a]);
const canvas = document.getElementById("gcx-overlay");
canvas.width = W; canvas.height = H;
const ctx = canvas.getContext("2d", {willReadFrequently: true});
let photo = null, current = order[0], alpha = D.alpha;
// round half to even, as NumPy's round and OpenCV's saturate_cast do
const rint = (v) => { const r = Math.round(v); return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r; };
// source coordinates of bilinear upsampling with pixel centres aligned (align_corners=False)
function axis(outN, inN) {
  const lo = new Int32Array(outN), hi = new Int32Array(outN), t = new Float64Array(outN);
  const scale = inN / outN;
  for (let i = 0; i < outN; i++) {
    const s = Math.max((i + 0.5) * scale - 0.5, 0), f = Math.floor(s);
    lo[i] = f; hi[i] = Math.min(f + 1, inN - 1); t[i] = s - f;
  }
  return {lo, hi, t};
}
const ax = axis(W, MW), ay = axis(H, MH);
const pct = (p) => (100 * p).toFixed(p >= 0.001 ? 1 : 3) + "%";
function draw() {
  if (!photo) return;
  const out = ctx.createImageData(W, H), o = out.data, m = current * MH * MW;
  for (let y = 0; y < H; y++) {
    const r0 = m + ay.lo[y] * MW, r1 = m + ay.hi[y] * MW, ty = ay.t[y];
    for (let x = 0; x < W; x++) {
      const x0 = ax.lo[x], x1 = ax.hi[x], tx = ax.t[x];
      const top = maps[r0 + x0] + (maps[r0 + x1] - maps[r0 + x0]) * tx;
      const bottom = maps[r1 + x0] + (maps[r1 + x1] - maps[r1 + x0]) * tx;
      const v = (top + (bottom - top) * ty) / 255;
      const level = rint(255 * Math.min(Math.max(v, 0), 1)) * 3, p = 4 * (y * W + x);
      for (let c = 0; c < 3; c++) o[p + c] = rint((1 - alpha) * photo[p + c] + alpha * table[level + c]);
      o[p + 3] = 255;
    }
  }
  ctx.putImageData(out, 0, 0);
  canvas.dataset.drawn = String(current);
}
const ranking = document.getElementById("gcx-ranking"), items = new Array(K);
order.forEach((k, rank) => {
  const li = document.createElement("li"), name = document.createElement("span"), p = document.createElement("span");
  name.textContent = D.names[k]; p.textContent = pct(D.probabilities[k]);
  li.append(name, p); li.dataset.index = String(k); li.setAttribute("role", "option");
  li.addEventListener("click", () => select(k));
  ranking.append(li); items[k] = li;
});
const datalist = document.getElementById("gcx-classNames");
for (const name of [...D.names].sort()) {
  const o = document.createElement("option"); o.value = name; datalist.append(o);
}
function select(k) {
  if (items[current]) items[current].setAttribute("aria-selected", "false");
  current = k; items[k].setAttribute("aria-selected", "true");
  const li = items[k];  // scroll the list only, never the page around it
  if (li.offsetTop < ranking.scrollTop || li.offsetTop + li.offsetHeight > ranking.scrollTop + ranking.clientHeight) {
    ranking.scrollTop = li.offsetTop - ranking.clientHeight / 2;
  }
  const chosen = document.getElementById("gcx-chosen");
  chosen.textContent = D.names[k] + " \u2014 " + pct(D.probabilities[k]) + " (rank " + (order.indexOf(k) + 1) + ")";
  chosen.dataset.index = String(k);
  draw();
}
document.getElementById("gcx-search").addEventListener("input", (e) => {
  const want = e.target.value.trim().toLowerCase();
  const k = D.names.findIndex((n) => n.toLowerCase() === want);
  if (k >= 0) select(k);
});
const slider = document.getElementById("gcx-alpha");
slider.addEventListener("input", () => {
  alpha = Number(slider.value); document.getElementById("gcx-alphaValue").textContent = slider.value; draw();
});
ranking.addEventListener("keydown", (e) => {  // only while the list has focus: the page keeps its own arrows
  if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
  const rank = order.indexOf(current) + (e.key === "ArrowDown" ? 1 : -1);
  if (rank >= 0 && rank < K) select(order[rank]);
  e.preventDefault();
});
const img = new Image();
img.src = D.photo;
img.decode().then(() => {
  const scratch = document.createElement("canvas");
  scratch.width = W; scratch.height = H;
  const sctx = scratch.getContext("2d", {willReadFrequently: true});
  sctx.drawImage(img, 0, 0);
  photo = sctx.getImageData(0, 0, W, H).data;
  select(current);
  root.dataset.ready = "true";
});
})();
</script>
</div>"""

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
    return parser


def write_page(photo: Path, out: Path, model_name: str) -> int:
    """Compute every class's map for ``photo`` and write the page to ``out``; returns its size in bytes."""
    from .cli import UsageError
    from .images import load_image
    from .models import create_model, get_spec

    get_spec(model_name)  # an unknown model stops before the photo is read
    image = load_image(photo)
    model, spec = create_model(model_name)
    page = render_page(compute(image, model, spec), photo.name).encode("utf-8")
    try:
        out.write_bytes(page)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    return len(page)


def _write(args: argparse.Namespace) -> int:
    size = write_page(args.photo, args.out, args.model)
    print(f"gradcam: wrote {args.out} ({size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``gradcam explore``: exit 0 when the page is written, 2 (one line on stderr) on any user error."""
    from .cli import run_command

    return run_command(_parser(), sys.argv[1:] if argv is None else argv, _write)
