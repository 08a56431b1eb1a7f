"""ROAD: remove pixels without painting them grey, so the score measures the map, not the grey.

Deletion (Petsiuk et al. 2018) replaces removed pixels with one colour, and the sharp edges of the
removed shape can themselves change the class; the model may then be "reading the mask" rather than
missing the evidence. ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML) instead fills the removed pixels by *noisy linear imputation*: every
removed pixel equals the weighted mean of its 8 neighbours (direct neighbours 1/6, diagonal 1/12;
neighbours outside the image are dropped and the remaining weights renormalised), kept pixels are
fixed, and Gaussian noise is added to the filled-in pixels only. The fill carries no information
beyond what the kept pixels already show, so the class probability after removal tells how much
evidence the removed pixels held.

Orders: MoRF removes the p % *most* relevant pixels (a faithful map makes the probability fall:
low mean), LeRF the p % *least* relevant (a faithful map keeps it high: high mean). Each map is
summarised by its mean probability over the percentages per order, and by the gap LeRF - MoRF
(higher = more faithful). Ties in the saliency order are broken by a seeded random permutation
(:func:`~gradcam_tutorial.evaluation.faithfulness.saliency_rank`), so a flat map gains nothing from raster order.

Choices written down:

* p % of ``H * W`` pixels is ``rint(p / 100 * H * W)`` pixels (round half to even).
* Noise std 0.01 in the network's normalised input, the value of Rong et al.'s code and of
  pytorch-grad-cam's ``NoisyLinearImputer``; it only keeps the fill from being perfectly smooth.
* The linear system is symmetric positive definite (the weights are symmetric in the offset). It is
  solved exactly, in float64, with one sparse factorisation shared by the colour channels: SciPy's
  SuperLU without pivoting (the matrix needs none), in a geometric nested-dissection order of the
  pixel grid (halves first, the separating row or column last) that the solver keeps: on 224 x 224
  inputs it factorises about twice as fast as SuperLU's own minimum-degree ordering
  (``benchmarks/bench_road.py`` measures both).
* The factorisation is most of ROAD's cost, so it is never repeated needlessly: all of a photo's
  masks are solved together, equal masks once, the distinct ones in as many threads as torch uses
  (SuperLU releases the GIL), and a mask that comes back (a baseline shared by every photo, such
  as the centre prior) keeps its factors. The noise is drawn afterwards, in the order of one mask at
  a time, so the inputs are bit for bit those of imputing each mask on its own.
* Removing every pixel leaves nothing to interpolate from (the system is singular): that is an error.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu
from torch import nn

from .faithfulness import SCORING_BATCH, class_probabilities, map_ranks, saliency_rank

NOISE_STD = 0.01
ORDERS = ("morf", "lerf")
# (row offset, column offset, weight): direct neighbours 1/6, diagonal ones 1/12 (sum 1)
NEIGHBOURS = tuple((dy, dx, 1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
_WEIGHTS = np.array([weight for _dy, _dx, weight in NEIGHBOURS])

Map = torch.Tensor | np.ndarray
PermcSpec = Literal["NATURAL", "MMD_AT_PLUS_A", "MMD_ATA", "COLAMD"]  # SuperLU's column orderings


@lru_cache(maxsize=8)
def _dissection_order(height: int, width: int, leaf: int = 2) -> np.ndarray:
    """Flat pixel indices in nested-dissection order: each half before the line that splits them.

    With 8-neighbour coupling one row (or column) separates the two halves, so eliminating the
    halves first keeps LU fill near the O(n log n) optimum for grids. Any subset of pixels inherits
    a valid order (a separator's remnant still separates), so one order per image size serves all masks.
    """
    out: list[np.ndarray] = []

    def split(block: np.ndarray) -> None:
        rows, cols = block.shape
        if rows * cols == 0:
            return
        if rows <= leaf and cols <= leaf:
            out.append(block.ravel())
        elif rows >= cols:
            split(block[: rows // 2])
            split(block[rows // 2 + 1 :])
            out.append(block[rows // 2])
        else:
            split(block[:, : cols // 2])
            split(block[:, cols // 2 + 1 :])
            out.append(block[:, cols // 2])

    split(np.arange(height * width).reshape(height, width))
    order = np.concatenate(out)
    order.flags.writeable = False
    return order


@lru_cache(maxsize=8)
def _neighbours(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's 8 neighbours as flat indices in :data:`NEIGHBOURS`' order (``H * W``: outside
    the image), and its total in-image weight (the diagonal of its equation). Shared by every mask."""
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int32), width)
    table = np.empty((height * width, len(NEIGHBOURS)), dtype=np.int32)
    for k, (dy, dx, _weight) in enumerate(NEIGHBOURS):
        r, c = rows + dy, cols + dx
        table[:, k] = np.where((r >= 0) & (r < height) & (c >= 0) & (c < width), r * width + c, height * width)
    total = ((table < height * width) * _WEIGHTS).sum(1)
    table.flags.writeable = total.flags.writeable = False
    return table, total


@dataclass(frozen=True)
class _System:
    """The matrix ``M`` of one mask's imputation, ``M x = b``: its upper triangle in CSR form.

    Row i says ``sum_j w_ij * (x_i - v_j) = 0`` over the in-image neighbours j of removed pixel i,
    i.e. ``x_i`` is their renormalised weighted mean: ``M`` holds the total weight on the diagonal
    and ``-w_ij`` for removed neighbours; kept neighbours go to ``b`` (:func:`_kept_sums`). Unknown
    i is pixel ``pixels[i]``, numbered in :func:`_dissection_order`, which is the elimination order.
    """

    pixels: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray


@lru_cache(maxsize=8)
def _upper_rows(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every mask's matrix row of each pixel, before the mask: the pixel itself, then its in-image
    neighbours that come after it in :func:`_dissection_order`, sorted by that order (``H * W``
    pads the rest), ``(H * W, 9)``; and their entries, the total weight then the negated weights.

    Removing pixels renumbers the rest but keeps their order, so one sort serves every mask.
    """
    table, total = _neighbours(height, width)
    position = np.empty(height * width + 1, dtype=np.int64)
    position[_dissection_order(height, width)] = np.arange(height * width)
    position[-1] = height * width  # outside: after everything
    after = position[table]
    after = np.where(after > position[: height * width, None], after, height * width)  # earlier or outside: pad
    by_position = np.argsort(after, axis=1, kind="stable")
    later = np.where(
        np.take_along_axis(after, by_position, 1) < height * width,
        np.take_along_axis(table, by_position, 1),
        height * width,
    )
    columns = np.concatenate([np.arange(height * width)[:, None], later], axis=1).astype(np.int32)
    entries = np.concatenate([total[:, None], -_WEIGHTS[by_position]], axis=1)
    columns.flags.writeable = entries.flags.writeable = False
    return columns, entries


def _linear_system(removed: np.ndarray) -> _System:
    """The :class:`_System` of the ``removed`` (H, W) pixels, built from the shared tables of
    :func:`_upper_rows`: a row keeps its removed entries, in the unknowns' numbering."""
    height, width = removed.shape
    flat = removed.ravel()
    order = _dissection_order(height, width)
    pixels = order[flat[order]]
    n = pixels.size
    unknown_id = np.full(flat.size + 1, -1, dtype=np.int32)  # -1: kept, or (the last) outside
    unknown_id[pixels] = np.arange(n, dtype=np.int32)
    table, entries = _upper_rows(height, width)
    columns = unknown_id[table[pixels]]  # (n, 9): the diagonal first, then increasing columns
    stored = np.flatnonzero(columns >= 0)  # flat positions of the entries the CSR form stores
    indptr = np.searchsorted(stored, np.arange(0, columns.size + 1, columns.shape[1]))
    return _System(pixels, indptr, columns.ravel()[stored], entries[pixels].ravel()[stored])


def _kept_sums(values: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``(C, H * W)``: each pixel's weighted sum over its kept in-image neighbours (``b`` of
    :class:`_System`, read at its ``pixels``)."""
    channels, (height, width) = values.shape[0], removed.shape
    padded = np.zeros((channels, height + 2, width + 2))
    padded[:, 1:-1, 1:-1] = values.reshape(channels, height, width) * ~removed
    sums = np.zeros((channels, height, width))
    for dy, dx, weight in NEIGHBOURS:
        sums += weight * padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
    return sums.reshape(channels, -1)


class _SuperLU:
    """SciPy's SuperLU of one mask's system: an LU without pivoting (the matrix is symmetric positive
    definite) in the unknowns' own order, which is :func:`_dissection_order`'s."""

    def __init__(self, system: _System, permc_spec: PermcSpec = "NATURAL") -> None:
        n = system.pixels.size
        upper = sp.csr_matrix((system.data, system.indices, system.indptr), shape=(n, n))
        full = (upper + upper.T - sp.diags(upper.diagonal())).tocsc()
        self.lu = splu(full, permc_spec=permc_spec, diag_pivot_thresh=0.0, options={"SymmetricMode": True})

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.lu.solve(np.asfortranarray(rhs.T)).T


def solver_name() -> str:
    """The sparse solver ROAD's imputation uses, with its library's version (the report records it)."""
    return f"SuperLU (scipy {importlib.metadata.version('scipy')})"


def _factorise(system: _System) -> _SuperLU:
    return _SuperLU(system)


class _Factorisations:
    """Factors of the imputation systems of masks that come back.

    A mask seen once (most maps' masks) is factorised and forgotten; one seen a second time (a
    baseline map shared by every photo of one size, such as the centre prior) is kept, so every
    later photo reuses its factors: one solve instead of a factorisation plus a solve.
    """

    def __init__(self, keep: int = 32, remember: int = 4096) -> None:
        self.keep, self.remember = keep, remember
        self.seen: OrderedDict[bytes, None] = OrderedDict()
        self.factors: OrderedDict[bytes, tuple[_SuperLU, _System]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, mask: np.ndarray, key: bytes) -> tuple[_SuperLU, _System]:
        with self.lock:
            if key in self.factors:
                self.factors.move_to_end(key)
                return self.factors[key]
            again = key in self.seen
            self.seen[key] = None
            self.seen.move_to_end(key)
            while len(self.seen) > self.remember:
                self.seen.popitem(last=False)
        system = _linear_system(mask)
        entry = (_factorise(system), system)
        if again:
            with self.lock:
                self.factors[key] = entry
                while len(self.factors) > self.keep:
                    self.factors.popitem(last=False)
        return entry


_FACTORISATIONS = _Factorisations()


@dataclass
class ImputationClock:
    """What imputing has cost in this process: wall seconds, masks asked for, systems solved.

    An evaluation reads it before and after to say how much of its time was imputation rather than
    network passes (``make report-full``'s ``cost`` -> ``road_imputation``).
    """

    seconds: float = 0.0
    masks: int = 0
    solved: int = 0


IMPUTATION = ImputationClock()


def _mask_key(mask: np.ndarray) -> bytes:
    return hashlib.sha1(np.packbits(mask).tobytes() + repr(mask.shape).encode()).digest()


def _fill(values: np.ndarray, mask: np.ndarray, key: bytes) -> np.ndarray:
    """The linear imputation (no noise) of ``mask``'s pixels, ``(C, n_removed)`` in raster order."""
    solver, system = _FACTORISATIONS.get(mask, key)
    filled = np.empty((values.shape[0], mask.size))
    filled[:, system.pixels] = solver.solve(_kept_sums(values, mask)[:, system.pixels])
    return filled[:, np.flatnonzero(mask)]


def _fills(image: torch.Tensor, masks: Sequence[np.ndarray], workers: int | None = None) -> list[np.ndarray]:
    """:func:`_fill` of ``image`` (C, H, W) for each mask: equal masks solved once, the distinct ones
    in ``workers`` threads (default: torch's thread count; SuperLU releases the GIL), largest first."""
    started = time.perf_counter()
    values = image.detach().reshape(image.shape[0], -1).cpu().double().numpy()
    keys = [_mask_key(mask) for mask in masks]
    distinct = {key: mask for key, mask in zip(keys, masks, strict=True) if mask.any()}
    largest_first = sorted(distinct, key=lambda key: -int(distinct[key].sum()))
    workers = max(1, min(workers or torch.get_num_threads(), len(largest_first)))
    if workers == 1:
        solved = {key: _fill(values, distinct[key], key) for key in largest_first}
    else:
        with ThreadPoolExecutor(workers) as pool:
            futures = {key: pool.submit(_fill, values, distinct[key], key) for key in largest_first}
            solved = {key: future.result() for key, future in futures.items()}
    IMPUTATION.seconds += time.perf_counter() - started
    IMPUTATION.masks += len(masks)
    IMPUTATION.solved += len(solved)
    return [solved[key] if key in solved else np.empty((values.shape[0], 0)) for key in keys]


def _check_mask(image: torch.Tensor, removed: torch.Tensor | np.ndarray) -> np.ndarray:
    mask = np.asarray(removed.detach().cpu() if isinstance(removed, torch.Tensor) else removed).astype(bool)
    if image.dim() != 3 or tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"image {tuple(image.shape)} must be (C, H, W) and mask {tuple(mask.shape)} (H, W)")
    if mask.all():
        raise ValueError("every pixel is removed: there is nothing left to impute from")
    return mask


def _noisy_copy(
    image: torch.Tensor, mask: np.ndarray, filled: np.ndarray, noise_std: float, generator: torch.Generator | None
) -> torch.Tensor:
    out = image.detach().contiguous().clone()
    if not mask.any():
        return out
    imputed = torch.from_numpy(filled)
    if noise_std:
        imputed = imputed + noise_std * torch.randn(imputed.shape, generator=generator, dtype=torch.float64)
    flat = out.view(out.shape[0], -1)
    flat[:, torch.from_numpy(np.flatnonzero(mask)).to(out.device)] = imputed.to(out.dtype).to(out.device)
    return out


def impute(
    image: torch.Tensor,
    removed: torch.Tensor | np.ndarray,
    noise_std: float = NOISE_STD,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A copy of ``image`` (C, H, W) whose ``removed`` (H, W) pixels are linearly imputed plus noise.

    Kept pixels are returned bit for bit; noise ``N(0, noise_std^2)`` (from ``generator``, or the
    global RNG) is added to the imputed pixels only, drawn as a ``(C, n_removed)`` block in raster order.
    """
    mask = _check_mask(image, removed)
    (filled,) = _fills(image, [mask], workers=1)
    return _noisy_copy(image, mask, filled, noise_std, generator)


def removal_count(n_pixels: int, percentage: float) -> int:
    """How many of ``n_pixels`` make ``percentage`` % (0..100), rounded half to even."""
    if not 0 <= percentage <= 100:
        raise ValueError(f"percentage {percentage} is outside 0..100")
    return int(np.rint(percentage / 100 * n_pixels))


def removed_masks(saliency: Map, percentages: Sequence[float], order: str, seed: int = 0) -> torch.Tensor:
    """``(len(percentages), H, W)`` bool: the p % most (``"morf"``) or least (``"lerf"``) relevant pixels.

    The order is :func:`saliency_rank`'s, so ties fall in a seeded random order and both orders use
    the same tie-break: MoRF at p and LeRF at 100 - p remove complementary sets.
    """
    return _ranked_masks(saliency_rank(saliency, seed), np.shape(saliency), percentages, order)


def _ranked_masks(rank: torch.Tensor, shape: tuple[int, ...], percentages: Sequence[float], order: str) -> torch.Tensor:
    """:func:`removed_masks` from the map's :func:`saliency_rank` (flat), for a map of ``shape``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    n = rank.numel()
    if order == "lerf":
        rank = n - 1 - rank
    counts = torch.tensor([removal_count(n, p) for p in percentages], dtype=rank.dtype)
    return (rank[None, :] < counts[:, None]).reshape(len(counts), *shape)


def road_inputs(
    image: torch.Tensor,
    saliency: Map,
    percentages: Sequence[float],
    order: str,
    noise_std: float = NOISE_STD,
    seed: int = 0,
) -> torch.Tensor:
    """``(len(percentages), C, H, W)`` imputed copies of ``image``, one per removal percentage.

    ``seed`` fixes both the tie-break and the noise (one generator, drawn in percentage order), so
    different maps of the same image see the same noise stream: their scores differ by the map only.
    """
    return _road_batch(image, [saliency], percentages, (order,), noise_std, seed)


def _road_batch(
    image: torch.Tensor,
    saliencies: Sequence[Map],
    percentages: Sequence[float],
    orders: Sequence[str],
    noise_std: float,
    seed: int,
    ranks: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """:func:`road_inputs` for every saliency and order, concatenated; all imputations solved together."""
    image = image.squeeze(0) if image.dim() == 4 else image
    for saliency in saliencies:
        if tuple(np.shape(saliency)) != tuple(image.shape[-2:]):
            raise ValueError(f"saliency map has shape {tuple(np.shape(saliency))}, input is {tuple(image.shape[-2:])}")
    masks = [
        _check_mask(image, mask)
        for rank in map_ranks(saliencies, seed, ranks)
        for order in orders
        for mask in _ranked_masks(rank, tuple(image.shape[-2:]), percentages, order).numpy()
    ]
    fills = _fills(image, masks)
    copies = []
    for start in range(0, len(masks), len(percentages)):
        generator = torch.Generator().manual_seed(seed)  # the same noise stream for every map and order
        for index in range(start, start + len(percentages)):
            copies.append(_noisy_copy(image, masks[index], fills[index], noise_std, generator))
    return torch.stack(copies)


def road_scores(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    saliencies: Sequence[Map],
    class_idx: int,
    percentages: Sequence[float],
    noise_std: float = NOISE_STD,
    seed: int = 0,
    chunk: int = SCORING_BATCH,
    ranks: Sequence[torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities after ROAD removal: ``{"morf": (n_maps, n_pct), "lerf": (n_maps, n_pct)}``.

    ``model`` should be in eval mode; :func:`~gradcam_tutorial.evaluation.faithfulness.channels_last_copy` of it is
    faster on CPU. All imputed inputs are scored in batches of ``chunk``. ``ranks``: each map's
    ``saliency_rank(map, seed)``, when the caller has them already (deletion and insertion rank too).
    """
    batch = _road_batch(image, saliencies, percentages, ORDERS, noise_std, seed, ranks)
    probs = class_probabilities(model, batch, class_idx, chunk).reshape(len(saliencies), len(ORDERS), len(percentages))
    return {order: probs[:, i] for i, order in enumerate(ORDERS)}


def road_gap(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Per map: mean LeRF probability minus mean MoRF probability (higher = more faithful)."""
    return np.asarray(scores["lerf"]).mean(-1) - np.asarray(scores["morf"]).mean(-1)
