"""PP-OCR post-processing: CTC greedy decoding, DB boxes, direction labels.

All three follow PaddleOCR's inference code so that results are comparable with numbers users
already have:

- :func:`ctc_greedy_decode` — argmax per step, merge repeats, drop the blank (class 0); the
  score is the mean of the max probabilities of the kept steps (0 for an empty line).
- :class:`DBPostProcess` — threshold the probability map, take each contour's minimum-area
  rectangle, score it by the mean probability inside, expand it by ``area * ratio / perimeter``
  (pyclipper), take the rectangle again and scale it back to the source image.
- :func:`cls_decode` — argmax label and its probability.

Example:
    >>> import numpy as np
    >>> p = np.zeros((1, 4, 3), np.float32)
    >>> p[0, [0, 1, 3], 1] = 0.9; p[0, 2, 0] = 0.9          # a a <blank> a
    >>> [(t, round(s, 2)) for t, s in ctc_greedy_decode(p, ["a", "b"])]
    [('aa', 0.9)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from xcompress.card import Postprocess, default_postprocess
from xcompress.ocr.preprocess import SrcShape


def ctc_greedy_decode(probs: np.ndarray, charset: Sequence[str]) -> list[tuple[str, float]]:
    """Greedy CTC decoding as PaddleOCR's ``CTCLabelDecode``.

    Args:
        probs: (N, T, C) per-step class probabilities; class 0 is the blank and class
            ``i >= 1`` is ``charset[i - 1]``.
        charset: the model's characters (PP-OCR's dictionary plus the trailing space).

    Returns:
        One ``(text, score)`` per line; score = mean max-probability of the kept steps.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"CTC probabilities must be (N, T, C), got shape {probs.shape}")
    # index 0 (blank) decodes to "" so out-of-range-free indexing stays vectorized
    table = np.array(["", *charset], dtype=object)
    if probs.shape[2] > len(table):
        raise ValueError(
            f"model has {probs.shape[2]} classes but the charset gives {len(table)} (with blank)"
        )
    idx = probs.argmax(axis=2)
    prob = probs.max(axis=2)
    out: list[tuple[str, float]] = []
    for i in range(idx.shape[0]):
        keep = np.ones(idx.shape[1], bool)
        keep[1:] = idx[i, 1:] != idx[i, :-1]
        keep &= idx[i] != 0
        text = "".join(table[idx[i, keep]])
        score = float(prob[i, keep].mean()) if keep.any() else 0.0
        out.append((text, score))
    return out


def cls_decode(probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, float]]:
    """Direction labels: ``(labels[argmax], max probability)`` per row of (N, K) ``probs``."""
    probs = np.asarray(probs).reshape(len(probs), -1)
    idx = probs.argmax(axis=1)
    return [(labels[int(k)], float(probs[i, k])) for i, k in enumerate(idx)]


# --- DB --------------------------------------------------------------------------------------


def get_mini_boxes(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle of a contour, ordered (top-left, top-right, bottom-right,
    bottom-left) as PaddleOCR orders it, and its shorter side."""
    rect = cv2.minAreaRect(contour)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = (pts[0], pts[1]) if pts[1][1] > pts[0][1] else (pts[1], pts[0])
    right = (pts[2], pts[3]) if pts[3][1] > pts[2][1] else (pts[3], pts[2])
    # left = (top-left, bottom-left), right = (top-right, bottom-right)
    box = np.array([left[0], right[0], right[1], left[1]], np.float32)
    return box, float(min(rect[1]))


def box_score_fast(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the (integer-rounded) polygon ``box``, over its bounding box."""
    h, w = prob.shape[:2]
    box = box.copy()
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def box_score_slow(prob: np.ndarray, contour: np.ndarray) -> float:
    """Mean probability inside the contour itself (PaddleOCR's ``score_mode="slow"``)."""
    pts = np.asarray(contour, np.float32).reshape(-1, 2)
    return box_score_fast(prob, pts)


def unclip(box: np.ndarray, ratio: float) -> list[np.ndarray]:
    """Grow a polygon by ``area * ratio / perimeter`` with round joins (pyclipper)."""
    import pyclipper
    from shapely.geometry import Polygon

    poly = Polygon(box)
    distance = poly.area * ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.asarray(p, np.float32) for p in offset.Execute(distance)]


_SCORERS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "fast": lambda prob, box, contour: box_score_fast(prob, box),
    "slow": lambda prob, box, contour: box_score_slow(prob, contour),
}

MIN_SIZE = 3  # PaddleOCR's DBPostProcess.min_size


class DBPostProcess:
    """DB probability maps to quadrilaterals in source-image pixels.

    Args:
        post: ``kind="db"`` settings (thresh, box_thresh, unclip_ratio, max_candidates,
            use_dilation, score_mode); unset fields take PaddleOCR's defaults.

    Call with ``(prob_map, src_shapes)`` where ``prob_map`` is (N, 1, H, W) or (N, H, W) and
    ``src_shapes`` is one ``(src_h, src_w, ratio_h, ratio_w)`` per page. Returns
    ``(boxes, scores)``: per page a list of (4, 2) float32 arrays and a list of floats.

    Example:
        >>> prob = np.zeros((1, 64, 64), np.float32); prob[0, 20:30, 10:50] = 0.9
        >>> boxes, scores = DBPostProcess(default_postprocess("det"))(prob, [(64, 64, 1, 1)])
        >>> len(boxes[0]), round(scores[0][0], 2)
        (1, 0.9)
    """

    def __init__(self, post: Postprocess | None = None) -> None:
        d = default_postprocess("det")
        post = post or d

        def pick(name: str):
            value = getattr(post, name)
            return getattr(d, name) if value is None else value

        self.thresh: float = pick("thresh")
        self.box_thresh: float = pick("box_thresh")
        self.unclip_ratio: float = pick("unclip_ratio")
        self.max_candidates: int = pick("max_candidates")
        self.use_dilation: bool = pick("use_dilation")
        self.score = _SCORERS[pick("score_mode")]

    def __call__(
        self, prob_map: np.ndarray, src_shapes: Sequence[SrcShape]
    ) -> tuple[list[list[np.ndarray]], list[list[float]]]:
        prob_map = np.asarray(prob_map, np.float32)
        if prob_map.ndim == 4:
            prob_map = prob_map[:, 0]
        all_boxes, all_scores = [], []
        for prob, (src_h, src_w, _, _) in zip(prob_map, src_shapes, strict=True):
            mask = (prob > self.thresh).astype(np.uint8)
            if self.use_dilation:
                mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
            boxes, scores = self._boxes_from_bitmap(prob, mask, int(src_w), int(src_h))
            all_boxes.append(boxes)
            all_scores.append(scores)
        return all_boxes, all_scores

    def _boxes_from_bitmap(
        self, prob: np.ndarray, mask: np.ndarray, dest_w: int, dest_h: int
    ) -> tuple[list[np.ndarray], list[float]]:
        height, width = mask.shape
        contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes: list[np.ndarray] = []
        scores: list[float] = []
        for contour in contours[: self.max_candidates]:
            points, short = get_mini_boxes(contour)
            if short < MIN_SIZE:
                continue
            score = self.score(prob, points, contour)
            if score < self.box_thresh:
                continue
            grown = unclip(points, self.unclip_ratio)
            if len(grown) != 1:  # the offset split or vanished: not one text region
                continue
            box, short = get_mini_boxes(grown[0].reshape(-1, 1, 2))
            if short < MIN_SIZE + 2:
                continue
            # Scaled back and clipped to the last pixel, as DBPostProcess + TextDetector's
            # clip_det_res do; TextDetector then drops boxes with a side of 3 px or less.
            box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_w), 0, dest_w - 1)
            box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_h), 0, dest_h - 1)
            if min(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[0] - box[3])) <= 3:
                continue
            boxes.append(box)
            scores.append(score)
        return boxes, scores
