"""Per-sample counts behind each task's metrics, and paired bootstrap intervals of a
difference between two models measured on the same samples.

A budget checked on 150 lines is a measurement with an error bar: one character more or
less moves a CER by ~0.07 points there. Every metric here is a ratio of sums of per-sample
counts, so resampling the samples (with replacement, the same draw for both models) and
recomputing both metrics gives the spread of their difference on another draw of the same
kind of data. Written here (numpy, a few lines) because scipy's ``bootstrap`` resamples a
statistic of one array, not a ratio of sums over two paired ones.

Example:
    >>> a = np.array([[1, 10, 1, 10], [0, 10, 0, 10]], float)
    >>> b = np.array([[2, 10, 2, 10], [0, 10, 0, 10]], float)
    >>> round(metrics_from_counts("rec", b)["cer"] - metrics_from_counts("rec", a)["cer"], 3)
    0.05
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: columns of a task's per-sample counts
COUNT_COLUMNS = {
    "rec": ("edits_nospace", "chars_nospace", "edits", "chars"),
    "det": ("matched", "n_gt", "n_det"),
    "cls": ("correct", "n"),
    # a system end to end: xcompress.ocr.metrics.E2E_COLUMNS (one row per page)
    "e2e": ("hit_nospace", "hit", "n_dt", "n_gt", "edits_nospace", "chars_nospace", "edits",
            "chars"),
}
RESAMPLES = 2000
_CHUNK = 100  # resamples drawn at a time (RESAMPLES is a multiple of it)


def rec_counts(preds: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """(edits, label characters) per line, spaces removed and as-is (as ``rec_metrics``)."""
    from rapidfuzz.distance import Levenshtein

    rows = []
    for p, t in zip(preds, labels, strict=True):
        ps, ts = p.replace(" ", ""), t.replace(" ", "")
        rows.append((Levenshtein.distance(ps, ts), len(ts), Levenshtein.distance(p, t), len(t)))
    return np.asarray(rows, np.float64).reshape(-1, 4)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1e-12), (num > 0).astype(np.float64))


def metrics_from_counts(task: str, counts: np.ndarray) -> dict[str, float]:
    """The task's budget metrics from summed counts (``counts``: one row per sample, or
    a stack of resampled sums of shape (R, columns) with ``counts.ndim == 3`` summed first)."""
    c = counts.sum(-2)
    if task == "rec":
        out = {"cer_nospace": _ratio(c[..., 0], c[..., 1]), "cer": _ratio(c[..., 2], c[..., 3])}
    elif task == "det":
        p = _ratio(c[..., 0], c[..., 2])
        r = _ratio(c[..., 0], c[..., 1])
        out = {"precision": p, "recall": r,
               "hmean": np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)}
    elif task == "e2e":
        out = {}
        for hit, key in ((0, "e2e_hmean"), (1, "e2e_hmean_asis")):
            p = _ratio(c[..., hit], c[..., 2])
            r = _ratio(c[..., hit], c[..., 3])
            out[key] = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        out["matched_cer_nospace"] = _ratio(c[..., 4], c[..., 5])
    else:
        out = {"accuracy": _ratio(c[..., 0], c[..., 1])}
    return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}


def paired_interval(task: str, a: np.ndarray, b: np.ndarray, metric: str,
                    level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of ``metric(b) - metric(a)`` over paired resamples of the samples."""
    if len(a) != len(b):
        raise ValueError(f"paired counts need the same samples ({len(a)} vs {len(b)})")
    if len(a) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    sums_a, sums_b = [], []
    for _ in range(0, RESAMPLES, _CHUNK):  # bounded memory on large sets: (chunk, n, k)
        idx = rng.integers(0, len(a), size=(_CHUNK, len(a)))
        sums_a.append(a[idx].sum(1))
        sums_b.append(b[idx].sum(1))
    # one summed row per resample: metrics_from_counts sums axis -2 (a single row)
    da = metrics_from_counts(task, np.concatenate(sums_a)[:, None, :])[metric]
    db = metrics_from_counts(task, np.concatenate(sums_b)[:, None, :])[metric]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(db - da, [tail, 100 - tail])
    return float(lo), float(hi)
