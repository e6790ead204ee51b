"""DB training targets: shrink map, threshold map and their masks (DB, Liao et al. 2020).

For each text polygon with area A and perimeter L, the shrink offset is
``D = A * (1 - r²) / L`` (r = 0.4). The shrink map is 1 inside the polygon shrunk by D; the
threshold map is, inside the polygon dilated by D, ``1 - dist(pixel, polygon edges) / D``
(clipped) rescaled to [0.3, 0.7]. Ignored and degenerate polygons are masked out of the
shrink loss. Polygon offsetting uses pyclipper (the library DB's reference code uses);
the edge distance is a small vectorized numpy computation.

Example:
    >>> t = db_targets([np.array([[10, 10], [60, 10], [60, 30], [10, 30]], np.float32)],
    ...                [False], 40, 80)
    >>> t["shrink"].max(), t["shrink"][20, 35], t["shrink"][11, 11]
    (1.0, 1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pyclipper


def _offset(poly: np.ndarray, delta: float) -> list[np.ndarray]:
    pco = pyclipper.PyclipperOffset()
    pco.AddPath([tuple(map(int, p)) for p in np.round(poly)], pyclipper.JT_ROUND,
                pyclipper.ET_CLOSEDPOLYGON)  # fmt: skip
    return [np.asarray(p, dtype=np.int32) for p in pco.Execute(delta)]


def _edge_distance(xs: np.ndarray, ys: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance of every grid point to the nearest polygon edge."""
    best = np.full(xs.shape, np.inf, dtype=np.float32)
    for i in range(len(poly)):
        p1, p2 = poly[i], poly[(i + 1) % len(poly)]
        e = p2 - p1
        denom = float(e @ e) or 1e-6
        t = np.clip(((xs - p1[0]) * e[0] + (ys - p1[1]) * e[1]) / denom, 0.0, 1.0)
        d = np.hypot(xs - (p1[0] + t * e[0]), ys - (p1[1] + t * e[1]))
        np.minimum(best, d, out=best)
    return best


def db_targets(
    polys: Sequence[np.ndarray],
    ignore: Sequence[bool],
    h: int,
    w: int,
    shrink_ratio: float = 0.4,
    thresh_min: float = 0.3,
    thresh_max: float = 0.7,
    min_side: float = 3.0,
) -> dict[str, np.ndarray]:
    """Float32 ``[h, w]`` maps: ``shrink``, ``shrink_mask``, ``thresh``, ``thresh_mask``."""
    shrink = np.zeros((h, w), np.float32)
    shrink_mask = np.ones((h, w), np.float32)
    thresh = np.zeros((h, w), np.float32)
    thresh_mask = np.zeros((h, w), np.float32)
    for poly, ign in zip(polys, ignore, strict=True):
        poly = np.asarray(poly, np.float32).reshape(-1, 2)
        ipoly = np.round(poly).astype(np.int32)
        area = abs(cv2.contourArea(poly))
        length = cv2.arcLength(poly, True)
        rect_w, rect_h = cv2.minAreaRect(poly)[1]
        if ign or min(rect_w, rect_h) < min_side or area < 1 or length < 1:
            cv2.fillPoly(shrink_mask, [ipoly], 0.0)
            continue
        d = area * (1 - shrink_ratio**2) / length
        shrunk = _offset(poly, -d)
        if not shrunk:
            cv2.fillPoly(shrink_mask, [ipoly], 0.0)
            continue
        cv2.fillPoly(shrink, shrunk, 1.0)
        dilated = _offset(poly, d)
        if not dilated:
            continue
        big = dilated[0]
        cv2.fillPoly(thresh_mask, [big], 1.0)
        x0, y0 = np.maximum(big.min(0), 0)
        x1, y1 = np.minimum(big.max(0), [w - 1, h - 1])
        if x1 < x0 or y1 < y0:
            continue
        ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
        t = 1.0 - np.clip(_edge_distance(xs, ys, poly) / d, 0.0, 1.0)
        region = thresh[y0 : y1 + 1, x0 : x1 + 1]
        np.maximum(region, t, out=region)
    thresh = thresh * (thresh_max - thresh_min) + thresh_min
    return {"shrink": shrink, "shrink_mask": shrink_mask, "thresh": thresh,
            "thresh_mask": thresh_mask}  # fmt: skip
