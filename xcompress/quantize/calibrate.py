"""Activation statistics and calibration methods that work on inputs of any shape.

onnxruntime's Percentile and Entropy calibrators stack every batch's activations into one
array, so text lines of different widths (the normal case for a recognizer) crash them with
"inhomogeneous shapes"; padding every line to one width would instead calibrate on padding.
Here each tensor's values are flattened into a running histogram, which does not care about
shapes: lines are calibrated at their natural width, pages at their own size.

The histogram is symmetric around 0 with a power-of-two range; when a batch exceeds the
range, the range doubles (as often as needed) and old bins are merged pairwise, so the result
is exactly what one pass with the final range would give, without a first min/max pass.

Calibration methods are a registry: each maps a :class:`TensorStats` to a ``(low, high)``
range; ``xcompress.quantize`` hands the ranges to onnxruntime's quantizer.

Example:
    >>> st = TensorStats(); st.update(np.linspace(-1, 3, 1001, dtype=np.float32))
    >>> get_calibrator("minmax")(st)
    (-1.0, 3.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

BINS = 4096  # even, power of two: merging halves stays aligned with 0


class TensorStats:
    """Running min, max and symmetric histogram of one tensor's values."""

    def __init__(self, bins: int = BINS, max_samples: int = 1 << 23) -> None:
        self.bins = bins
        self.max_samples = max_samples
        self.min = np.inf
        self.max = -np.inf
        self.range = 0.0  # histogram covers [-range, range]
        self.hist = np.zeros(bins, np.int64)
        self.count = 0

    def update(self, values: np.ndarray) -> None:
        """Add a batch of values (any shape; non-finite values are ignored)."""
        v = np.asarray(values, np.float32).ravel()
        if v.size == 0:
            return
        lo, hi = float(v.min()), float(v.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):  # rare: filter only when needed
            v = v[np.isfinite(v)]
            if v.size == 0:
                return
            lo, hi = float(v.min()), float(v.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        amax = max(abs(lo), abs(hi), 1e-12)
        if self.range == 0.0:
            self.range = float(2.0 ** np.ceil(np.log2(amax)))
        while amax > self.range:
            self._double()
        if v.size > self.max_samples:
            # a strided subsample bounds the cost on huge maps; min/max stay exact. Kept
            # large on purpose: with small subsamples the far tails (percentile 99.9999)
            # became noise, and the chosen ranges changed with how lines were batched.
            v = v[:: -(-v.size // self.max_samples)]
        # np.histogram is several times slower than binning by hand + bincount
        idx = ((v + self.range) * (self.bins / (2.0 * self.range))).astype(np.int64)
        np.clip(idx, 0, self.bins - 1, out=idx)
        self.hist += np.bincount(idx, minlength=self.bins)
        self.count += v.size

    def _double(self) -> None:
        # New bin j covers old bins 2j-B/2 and 2j-B/2+1: merge pairs into the central half.
        merged = self.hist.reshape(-1, 2).sum(1)
        self.hist = np.zeros(self.bins, np.int64)
        q = self.bins // 4
        self.hist[q : q + self.bins // 2] = merged
        self.range *= 2.0

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(-self.range, self.range, self.bins + 1)

    def quantile(self, q: float) -> float:
        """Approximate q-quantile (0..1) from the histogram, clamped to the exact min/max."""
        if self.count == 0:
            return 0.0
        cdf = np.cumsum(self.hist) / self.count
        i = int(np.searchsorted(cdf, q, side="left"))
        edges = self.edges
        value = float(edges[min(i + 1, self.bins)])
        return float(np.clip(value, self.min, self.max))


Calibrator = Callable[..., tuple[float, float]]
_CALIBRATORS: dict[str, Calibrator] = {}


def register_calibrator(name: str) -> Callable[[Calibrator], Calibrator]:
    """Decorator: register ``fn(stats, **options) -> (low, high)`` under ``name``."""

    def deco(fn: Calibrator) -> Calibrator:
        _CALIBRATORS[name] = fn
        return fn

    return deco


def calibrator_names() -> list[str]:
    """Registered calibration methods."""
    return list(_CALIBRATORS)


def get_calibrator(name: str) -> Calibrator:
    """The calibration function registered as ``name`` (KeyError lists the known ones)."""
    try:
        return _CALIBRATORS[name]
    except KeyError:
        raise KeyError(f"unknown calibration method {name!r} ({', '.join(_CALIBRATORS)})") from None


def _with_zero(lo: float, hi: float) -> tuple[float, float]:
    # quantized ranges always contain 0 (zero must be exact: padding, ReLU outputs)
    return min(lo, 0.0), max(hi, 0.0)


@register_calibrator("minmax")
def minmax_range(stats: TensorStats, **_: Any) -> tuple[float, float]:
    """The exact smallest and largest value seen."""
    if stats.count == 0:
        return 0.0, 0.0
    return float(stats.min), float(stats.max)


@register_calibrator("percentile")
def percentile_range(
    stats: TensorStats, percentile: float = 99.999, **_: Any
) -> tuple[float, float]:
    """Clip each tail at ``percentile``: ``[q(1-p), q(p)]`` of the value distribution."""
    if stats.count == 0:
        return 0.0, 0.0
    p = percentile / 100.0
    lo = stats.quantile(1.0 - p) if stats.min < 0 else float(stats.min)
    hi = stats.quantile(p) if stats.max > 0 else float(stats.max)
    return float(lo), float(hi)


@register_calibrator("entropy")
def entropy_range(stats: TensorStats, levels: int = 128, **_: Any) -> tuple[float, float]:
    """The clipping threshold with the least KL divergence from the observed distribution.

    TensorRT's method on the histogram of ``|x|``: for each candidate threshold, the clipped
    distribution is compared with its ``levels``-level quantized version.
    """
    if stats.count == 0:
        return 0.0, 0.0
    half = stats.bins // 2
    absh = (stats.hist[half:] + stats.hist[:half][::-1]).astype(np.float64)
    step = stats.range / half
    nz = np.nonzero(absh)[0]
    last = int(nz[-1]) + 1 if nz.size else levels
    best, best_i = np.inf, last
    for i in range(levels, last + 1, max(1, (last - levels) // 128 or 1)):
        p = absh[:i].copy()
        p[i - 1] += absh[i:].sum()
        # quantize i bins into `levels` groups, spread each group's mass over its non-empty bins
        gidx = (np.arange(i) * levels) // i
        nzb = absh[:i] > 0
        mass = np.bincount(gidx, weights=absh[:i], minlength=levels)
        cnt = np.bincount(gidx, weights=nzb.astype(np.float64), minlength=levels)
        q = np.where(nzb, mass[gidx] / np.maximum(cnt[gidx], 1.0), 0.0)
        ps, qs = p / p.sum(), q / max(q.sum(), 1e-12)
        m = ps > 0
        kl = float(np.sum(ps[m] * np.log(ps[m] / np.maximum(qs[m], 1e-12))))
        if kl < best:
            best, best_i = kl, i
    t = best_i * step
    return float(max(stats.min, -t)), float(min(stats.max, t))


#: candidate fractions of the observed min / max tried by :func:`mse_range`
_MSE_GRID = np.geomspace(0.05, 1.0, 96)


@register_calibrator("mse")
def mse_range(stats: TensorStats, levels: int = 256, **_: Any) -> tuple[float, float]:
    """The range with the least expected squared quantization error of this tensor.

    A per-tensor range search on the histogram (no model runs): for a range ``[lo, hi]`` of
    ``levels`` steps, values inside cost the rounding noise ``step**2 / 12``, values outside
    their clipping distance squared. ``hi`` and ``lo`` are searched in turn (two rounds) over
    fractions 0.05..1 of the observed max / min. Unlike one global percentile this lets a
    tensor with a long, thin tail (PP-OCRv5 rec's hard-swish outputs feeding depthwise convs)
    and a compact one each get their own clip. Written here because onnxruntime's
    calibrators need equal-shaped batches (see the module docstring) and have no MSE search.
    """
    if stats.count == 0:
        return 0.0, 0.0
    centers = (stats.edges[:-1] + stats.edges[1:]) / 2
    keep = stats.hist > 0
    x, w = centers[keep], stats.hist[keep].astype(np.float64)
    lo0, hi0 = min(float(stats.min), 0.0), max(float(stats.max), 0.0)
    if hi0 - lo0 <= 0:
        return float(stats.min), float(stats.max)

    def cost(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # (k,) candidates -> (k,) costs
        step = (hi - lo) / (levels - 1)
        under = np.minimum(x[None, :] - lo[:, None], 0.0)
        over = np.maximum(x[None, :] - hi[:, None], 0.0)
        clip = ((under + over) ** 2 * w[None, :]).sum(1)
        inside = ((x[None, :] >= lo[:, None]) & (x[None, :] <= hi[:, None])) * w[None, :]
        return clip + inside.sum(1) * step**2 / 12.0

    lo, hi = lo0, hi0
    for _round in range(2):
        if hi0 > 0:
            his = hi0 * _MSE_GRID
            hi = float(his[int(np.argmin(cost(np.full_like(his, lo), his)))])
        if lo0 < 0:
            los = lo0 * _MSE_GRID
            lo = float(los[int(np.argmin(cost(los, np.full_like(los, hi))))])
    return float(max(lo, stats.min)), float(min(hi, stats.max))


def collect_stats(
    run: Callable[[np.ndarray], Sequence[np.ndarray]],
    names: Sequence[str],
    batches: Iterable[np.ndarray],
    on_batch: Callable[[], None] | None = None,
) -> dict[str, TensorStats]:
    """Feed ``batches`` through ``run`` (returns one array per name) and gather statistics."""
    stats = {n: TensorStats() for n in names}
    for batch in batches:
        for n, value in zip(names, run(batch), strict=True):
            stats[n].update(value)
        if on_batch is not None:
            on_batch()
    return stats


def compute_ranges(
    stats: dict[str, TensorStats], method: str, **options: Any
) -> dict[str, tuple[float, float]]:
    """``{tensor: (low, high)}`` by the named method; each range contains 0."""
    fn = get_calibrator(method)
    return {n: _with_zero(*fn(s, **options)) for n, s in stats.items() if s.count}
