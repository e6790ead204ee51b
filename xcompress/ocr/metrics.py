"""OCR metrics: recognition line accuracy / CER / NED, detection P/R/Hmean, cls accuracy.

Recognition metrics are reported both as-is and ignoring spaces (``*_nospace``): PaddleOCR's
``RecMetric`` strips spaces by default, and the Chinese PP-OCR recognizers often drop the
spaces between English words, so the two views differ a lot.

Detection matching follows PaddleOCR's ``DetectionIoUEvaluator`` (ICDAR 2015 protocol):
predictions that lie mostly (> 50 % of their area) inside a "don't care" ground truth
(``###`` or ``ignore``) are discarded, then ground truths and predictions are matched one to
one, greedily in ground-truth order, when their IoU is above ``iou`` (strictly, as PaddleOCR).

Example:
    >>> m = rec_metrics(["hello world", "abc"], ["hello world", "abd"])
    >>> m.line_accuracy, round(m.cer, 4)
    (0.5, 0.0714)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

IGNORE_TEXT = "###"  # PaddleOCR's "don't care" transcription


@dataclass(frozen=True)
class RecMetrics:
    """Recognition metrics over a set of lines (fractions in [0, 1])."""

    n: int
    line_accuracy: float
    cer: float  # total edit distance / total label characters
    ned: float  # PaddleOCR's norm_edit_dis: 1 - mean(ED / max(len(pred), len(label)))
    line_accuracy_nospace: float
    cer_nospace: float
    ned_nospace: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _rec_view(preds: Sequence[str], labels: Sequence[str]) -> tuple[float, float, float]:
    correct = 0
    total_ed = 0
    total_chars = 0
    ned_sum = 0.0
    for p, t in zip(preds, labels, strict=True):
        ed = Levenshtein.distance(p, t)
        correct += p == t
        total_ed += ed
        total_chars += len(t)
        longest = max(len(p), len(t))
        ned_sum += ed / longest if longest else 0.0
    n = len(labels)
    if n == 0:
        return 0.0, 0.0, 0.0
    # an all-empty label set has no characters to err on: any predicted char counts fully
    cer = total_ed / total_chars if total_chars else float(total_ed > 0)
    return correct / n, cer, 1.0 - ned_sum / n


def char_errors(pred: str, label: str) -> float:
    """Per-line CER: ``ED(pred, label) / len(label)`` (1.0 for an empty label with a prediction)."""
    ed = Levenshtein.distance(pred, label)
    return ed / len(label) if label else float(ed > 0)


def rec_metrics(preds: Sequence[str], labels: Sequence[str]) -> RecMetrics:
    """Line accuracy, CER and NED, as-is and ignoring spaces.

    Args:
        preds: recognized texts.
        labels: ground-truth texts, same length.

    Returns:
        :class:`RecMetrics`; for ``["abc"]`` vs ``["abd"]``: accuracy 0, CER 1/3, NED 2/3.
    """
    acc, cer, ned = _rec_view(preds, labels)
    strip = lambda s: s.replace(" ", "")  # noqa: E731
    acc_ns, cer_ns, ned_ns = _rec_view([strip(p) for p in preds], [strip(t) for t in labels])
    return RecMetrics(len(labels), acc, cer, ned, acc_ns, cer_ns, ned_ns)


# --- detection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetMetrics:
    """Detection metrics at one IoU threshold."""

    precision: float
    recall: float
    hmean: float
    matched: int
    n_gt: int  # ground truths that count (not ignored)
    n_det: int  # predictions that count (not inside an ignored region)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _polygon(points):
    from shapely.geometry import Polygon

    return Polygon(np.asarray(points, np.float64).reshape(-1, 2))


def _gt_fields(gt) -> tuple[np.ndarray, bool]:
    """(points, ignore) of a TextBox-like object or a plain dict."""
    if isinstance(gt, dict):
        pts, text, ign = gt["points"], gt.get("transcription", ""), gt.get("ignore", False)
    else:
        pts, text, ign = gt.points, getattr(gt, "text", ""), getattr(gt, "ignore", False)
    return np.asarray(pts, np.float64), bool(ign) or text == IGNORE_TEXT


def _match_image(preds, gts, iou: float, area_precision: float = 0.5) -> tuple[int, int, int]:
    """(matched, n_gt care, n_det care) for one image."""
    gt_polys, gt_ignore = [], []
    for gt in gts:
        pts, ign = _gt_fields(gt)
        poly = _polygon(pts)
        if not poly.is_valid:  # PaddleOCR's evaluator skips self-intersecting polygons
            continue
        gt_polys.append(poly)
        gt_ignore.append(ign)
    det_polys = [p for p in (_polygon(d) for d in preds) if p.is_valid]
    det_ignore = [False] * len(det_polys)
    ignored_gts = [g for g, ign in zip(gt_polys, gt_ignore, strict=True) if ign]
    for j, d in enumerate(det_polys):
        if d.area == 0:
            continue
        for g in ignored_gts:
            if d.intersection(g).area / d.area > area_precision:
                det_ignore[j] = True
                break
    matched = 0
    gt_used = [False] * len(gt_polys)
    det_used = [False] * len(det_polys)
    for i, g in enumerate(gt_polys):
        if gt_ignore[i]:
            continue
        for j, d in enumerate(det_polys):
            if det_used[j] or det_ignore[j] or gt_used[i]:
                continue
            inter = g.intersection(d).area
            union = g.area + d.area - inter
            if union > 0 and inter / union > iou:
                gt_used[i] = det_used[j] = True
                matched += 1
    return matched, gt_ignore.count(False), det_ignore.count(False)


def det_metrics(preds: Sequence[Sequence], gts: Sequence[Sequence], iou: float = 0.5) -> DetMetrics:
    """Precision, recall and Hmean over a set of pages (PaddleOCR's DetectionIoUEvaluator).

    Args:
        preds: per page, predicted quadrilaterals (array-likes of shape (4, 2) or (k, 2)).
        gts: per page, ground truths: ``TextBox``-like objects (``points``, ``text``,
            ``ignore``) or dicts with ``points`` / ``transcription`` / ``ignore``.
        iou: a pair matches when IoU > ``iou``.

    Returns:
        :class:`DetMetrics`; precision = matched / counted predictions, recall = matched /
        counted ground truths (0 when there are none).
    """
    matched = n_gt = n_det = 0
    for p, g in zip(preds, gts, strict=True):
        m, ng, nd = _match_image(p, g, iou)
        matched += m
        n_gt += ng
        n_det += nd
    recall = matched / n_gt if n_gt else 0.0
    precision = matched / n_det if n_det else 0.0
    hmean = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetMetrics(precision, recall, hmean, matched, n_gt, n_det)


# --- classification --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClsMetrics:
    """Direction classification accuracy."""

    n: int
    accuracy: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def cls_metrics(preds: Sequence[str], labels: Sequence[str]) -> ClsMetrics:
    """Fraction of predicted labels equal to the ground truth (compared as strings)."""
    n = len(labels)
    correct = sum(str(p) == str(t) for p, t in zip(preds, labels, strict=True))
    return ClsMetrics(n, correct / n if n else 0.0)


# --- end to end ------------------------------------------------------------------------------


def half_width(text: str) -> str:
    """Full-width forms to half-width (PaddleOCR's ``strQ2B``): U+3000 to a space and
    U+FF01..U+FF5E to ASCII, so ``（１）`` and ``(1)`` count as the same text."""
    out = []
    for ch in text:
        code = ord(ch)
        if code == 0x3000:
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        out.append(chr(code))
    return "".join(out)


#: per-page counts of :func:`e2e_page` (the e2e metrics are ratios of their sums)
E2E_COLUMNS = ("hit_nospace", "hit", "n_dt", "n_gt", "edits_nospace", "chars_nospace",
               "edits", "chars")


def e2e_page(preds: Sequence[tuple[Sequence, str]], gts: Sequence, iou: float = 0.5
             ) -> np.ndarray:
    """End-to-end counts of one page, as PaddleOCR's ``tools/end2end/eval_end2end.py``.

    Every (prediction, ground truth) pair with polygon IoU >= ``iou`` is a candidate; pairs
    are taken one to one, highest IoU first. A matched pair is a hit when its texts are
    equal — ignoring spaces after full-width forms are made half-width (PaddleOCR's
    default), and as-is (``hit``). Don't-care ground truths (``###`` / ``ignore``) are left
    out, with the prediction matched to one of them (PaddleOCR has no don't-care regions
    in its end-to-end labels; this keeps such regions from counting either way).

    Args:
        preds: (quadrilateral, text) per line the system read.
        gts: ground truths (``TextBox``-like or dicts, as :func:`det_metrics`).

    Returns:
        :data:`E2E_COLUMNS` counts; edits / chars are summed over matched pairs only (the
        CER of the lines both found and read).
    """
    gt_items = []
    for g in gts:
        pts, ign = _gt_fields(g)
        text = g["transcription"] if isinstance(g, dict) else getattr(g, "text", "")
        poly = _polygon(pts)
        gt_items.append((poly if poly.is_valid else poly.buffer(0), text, ign))
    dt_items = []
    for box, text in preds:
        poly = _polygon(box)
        dt_items.append((poly if poly.is_valid else poly.buffer(0), text))
    pairs = []
    for i, (g, _, _) in enumerate(gt_items):
        for j, (d, _) in enumerate(dt_items):
            inter = g.intersection(d).area
            union = g.area + d.area - inter
            if union > 0 and inter / union >= iou:
                pairs.append((inter / union, i, j))
    pairs.sort(key=lambda p: -p[0])
    gt_used = [False] * len(gt_items)
    dt_used = [False] * len(dt_items)
    dt_dropped = [False] * len(dt_items)
    c = dict.fromkeys(E2E_COLUMNS, 0)
    for _, i, j in pairs:
        if gt_used[i] or dt_used[j]:
            continue
        gt_used[i] = dt_used[j] = True
        _, gt_text, ign = gt_items[i]
        if ign:
            dt_dropped[j] = True
            continue
        dt_text = dt_items[j][1]
        g_ns, d_ns = half_width(gt_text).replace(" ", ""), half_width(dt_text).replace(" ", "")
        c["hit_nospace"] += g_ns == d_ns
        c["hit"] += gt_text == dt_text
        c["edits_nospace"] += Levenshtein.distance(d_ns, g_ns)
        c["chars_nospace"] += len(g_ns)
        c["edits"] += Levenshtein.distance(dt_text, gt_text)
        c["chars"] += len(gt_text)
    c["n_dt"] = sum(not d for d in dt_dropped)
    c["n_gt"] = sum(not ign for _, _, ign in gt_items)
    return np.asarray([c[k] for k in E2E_COLUMNS], np.float64)


def e2e_metrics(counts: np.ndarray) -> dict[str, float]:
    """End-to-end precision / recall / Hmean (``e2e_*``, ignoring spaces; ``*_asis``
    as-is) and the CER of matched lines, from :func:`e2e_page` rows (summed over pages)."""
    c = dict(zip(E2E_COLUMNS, np.asarray(counts, np.float64).reshape(-1, len(E2E_COLUMNS))
                 .sum(0), strict=True))

    def prh(hit: float) -> tuple[float, float, float]:
        p = hit / c["n_dt"] if c["n_dt"] else 0.0
        r = hit / c["n_gt"] if c["n_gt"] else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    p, r, h = prh(c["hit_nospace"])
    pa, ra, ha = prh(c["hit"])
    return {
        "e2e_precision": p, "e2e_recall": r, "e2e_hmean": h,
        "e2e_precision_asis": pa, "e2e_recall_asis": ra, "e2e_hmean_asis": ha,
        "matched_cer_nospace": c["edits_nospace"] / c["chars_nospace"] if c["chars_nospace"]
        else 0.0,
        "matched_cer": c["edits"] / c["chars"] if c["chars"] else 0.0,
        "n_gt": c["n_gt"], "n_dt": c["n_dt"],
    }
