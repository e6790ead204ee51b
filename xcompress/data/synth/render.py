"""Draw one text line as a coverage mask and its exact ink box.

Text is drawn once, in white on black (``L`` mode), to get an anti-aliased coverage mask; the
caller tints and composites it on any ground. Keeping the mask separate is what lets the
detection generator know exactly where ink is, and lets tests check labels against pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xcompress.data.synth.fonts import pil_font


@dataclass(frozen=True)
class Line:
    """A rendered line: coverage in [0, 1] and the ink box corners (tl, tr, br, bl)."""

    mask: np.ndarray  # float32 (H, W)
    box: np.ndarray  # float32 (4, 2)


def render_line(text: str, font: Path, size: int, margin: int, stroke: int = 0) -> Line:
    """Render ``text`` at ``size`` px with ``margin`` px of empty canvas around the ink.

    Args:
        text: the line (one line, no newlines).
        font: TrueType/OpenType file.
        size: font size in pixels.
        margin: free pixels on every side (room for later rotation or warps).
        stroke: extra stroke width in pixels (bolder text).

    Example:
        >>> from xcompress.data.synth.fonts import discover_fonts
        >>> line = render_line("Total 12.50", discover_fonts(False)[0].path, 32, 8)
        >>> bool(line.mask.max() > 0.9)
        True
    """
    from PIL import Image, ImageDraw

    f = pil_font(font, size)
    left, top, right, bottom = f.getbbox(text, stroke_width=stroke)
    w, h = right - left + 2 * margin, bottom - top + 2 * margin
    canvas = Image.new("L", (max(w, 1), max(h, 1)), 0)
    ImageDraw.Draw(canvas).text(
        (margin - left, margin - top), text, font=f, fill=255, stroke_width=stroke, stroke_fill=255
    )
    mask = np.asarray(canvas, dtype=np.float32) / 255.0
    # The ink box from the actual pixels: font bboxes include side bearings and differ
    # between fonts; labels should hug the ink the way human annotators draw them.
    ys, xs = np.nonzero(mask > 0.1)
    if xs.size:
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    else:
        x0, x1, y0, y1 = margin, w - margin, margin, h - margin
    box = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return Line(mask=mask, box=box)


def composite(
    ground: np.ndarray, mask: np.ndarray, color: np.ndarray, x: int = 0, y: int = 0
) -> None:
    """Blend ``color`` into ``ground`` (float32 RGB, in place) with coverage ``mask`` at (x, y)."""
    h, w = mask.shape
    region = ground[y : y + h, x : x + w]
    a = mask[: region.shape[0], : region.shape[1], None]
    region *= 1.0 - a
    region += a * color
