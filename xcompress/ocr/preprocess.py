"""PP-OCR preprocessing: BGR uint8 images to normalized NCHW float32 arrays.

The arithmetic follows PaddleOCR's inference code so that a model sees exactly the numbers it
was trained and evaluated on:

- recognition (``resize_norm_img``): height 48, width ``ceil(48 * w / h)`` capped at the batch
  width ``int(48 * max_wh_ratio)`` (at least 320), zero padding on the right after normalizing;
- classification: the same rule with a fixed width (192);
- detection (``DetResizeForTest`` + ``NormalizeImage``): the long (``max``) or short (``min``)
  side scaled towards ``limit_side_len``, both sides rounded to multiples of 32, then
  ``(x * scale - mean) / std`` with mean/std applied in the image's own channel order (PaddleOCR
  applies the ImageNet RGB mean to BGR images; the models were trained that way).

Example:
    >>> import numpy as np
    >>> x = rec_resize_norm(np.full((32, 100, 3), 255, np.uint8))
    >>> x.shape, float(x[0, 0, 0]), float(x[0, 0, -1])
    ((3, 48, 320), 1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from xcompress.card import ModelCard, Preprocess

REC_SHAPE = (3, 48, 320)
CLS_SHAPE = (3, 48, 192)

# A source shape as DB post-processing needs it: (src_h, src_w, ratio_h, ratio_w).
SrcShape = tuple[int, int, float, float]


def _normalize(img: np.ndarray, scale: float, mean: Sequence[float], std: Sequence[float]):
    """``(img * scale - mean) / std`` per channel, HWC float32."""
    mean_a = np.asarray(mean, np.float32).reshape(1, 1, -1)
    std_a = np.asarray(std, np.float32).reshape(1, 1, -1)
    return (img.astype(np.float32) * np.float32(scale) - mean_a) / std_a


def _to_color(img_bgr: np.ndarray, color: str) -> np.ndarray:
    if img_bgr.ndim == 2:
        img_bgr = cv2.cvtColor(img_bgr, cv2.COLOR_GRAY2BGR)
    return img_bgr[:, :, ::-1] if color == "RGB" else img_bgr


def _resize_pad_line(
    img_bgr: np.ndarray, height: int, width: int, pre: Preprocess | None
) -> np.ndarray:
    """Resize a text line to ``height`` keeping its ratio (width capped), normalize, pad right."""
    pre = pre or Preprocess(kind="rec")
    img = _to_color(img_bgr, pre.color)
    h, w = img.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / float(h))))
    resized_w = max(resized_w, 1)
    resized = cv2.resize(img, (resized_w, height))
    norm = _normalize(resized, pre.scale, pre.mean, pre.std).transpose(2, 0, 1)
    out = np.zeros((norm.shape[0], height, width), np.float32)
    out[:, :, :resized_w] = norm
    return out


def rec_width(image_shape: tuple[int, int, int], max_wh_ratio: float | None) -> int:
    """Padded width of a recognition batch: ``int(H * max(max_wh_ratio, W / H))``."""
    _, h, w = image_shape
    ratio = max(w / h, max_wh_ratio or 0.0)
    return int(h * ratio)


def rec_resize_norm(
    img_bgr: np.ndarray,
    image_shape: tuple[int, int, int] = REC_SHAPE,
    max_wh_ratio: float | None = None,
    pre: Preprocess | None = None,
) -> np.ndarray:
    """One text line as PaddleOCR's ``resize_norm_img``: (3, H, W) float32, zero-padded right.

    Args:
        img_bgr: HWC uint8 BGR crop of one text line.
        image_shape: (C, H, W); W is the minimum padded width.
        max_wh_ratio: the widest width/height ratio of the batch; the padded width is
            ``int(H * max(max_wh_ratio, W / H))``.
        pre: scale/mean/std/color to use (PP-OCR's ``(x/255-0.5)/0.5``, BGR when None).

    Returns:
        float32 array (C, H, padded width).
    """
    return _resize_pad_line(img_bgr, image_shape[1], rec_width(image_shape, max_wh_ratio), pre)


def rec_batch(
    images: Sequence[np.ndarray],
    image_shape: tuple[int, int, int] = REC_SHAPE,
    pre: Preprocess | None = None,
) -> np.ndarray:
    """A batch of text lines padded to the batch's widest ratio, as PaddleOCR's TextRecognizer.

    Returns:
        float32 array (N, C, H, W) with ``W = int(H * max(W0 / H, max_i w_i / h_i))``.
    """
    ratio = max(img.shape[1] / float(img.shape[0]) for img in images)
    return np.stack([rec_resize_norm(img, image_shape, ratio, pre) for img in images])


def ratio_batches(ratios: Sequence[float], batch_size: int) -> list[list[int]]:
    """Index batches of text lines in PaddleOCR's TextRecognizer order: numpy's default
    argsort of width / height, so each batch pads little and lines of equal ratio share the
    same batches as there (batched results stay comparable with PaddleOCR's)."""
    order = [int(i) for i in np.argsort(np.asarray(ratios, np.float64))]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cls_resize_norm(
    img_bgr: np.ndarray,
    image_shape: tuple[int, int, int] = CLS_SHAPE,
    pre: Preprocess | None = None,
) -> np.ndarray:
    """A text line for the direction classifier: fixed (3, 48, 192), ratio kept, padded right."""
    return _resize_pad_line(img_bgr, image_shape[1], image_shape[2], pre)


def det_resize_norm(img_bgr: np.ndarray, pre: Preprocess) -> tuple[np.ndarray, tuple[float, float]]:
    """A page for DB detection, as PaddleOCR's ``DetResizeForTest`` + ``NormalizeImage``.

    Args:
        img_bgr: HWC uint8 BGR page.
        pre: ``kind="det"`` preprocessing (limit_side_len, limit_type, scale, mean, std).

    Returns:
        (float32 array (3, H', W') with H', W' multiples of 32, (ratio_h, ratio_w)) where
        ``ratio = resized / original`` per axis.

    Example:
        >>> from xcompress.card import default_preprocess
        >>> x, (rh, rw) = det_resize_norm(np.zeros((500, 1000, 3), np.uint8),
        ...                               default_preprocess("det"))
        >>> x.shape, round(rh, 3), round(rw, 3)
        ((3, 480, 960), 0.96, 0.96)
    """
    img = _to_color(img_bgr, pre.color)
    h, w = img.shape[:2]
    limit = pre.limit_side_len or 960
    if (pre.limit_type or "max") == "max":
        ratio = limit / float(max(h, w)) if max(h, w) > limit else 1.0
    else:
        ratio = limit / float(min(h, w)) if min(h, w) < limit else 1.0
    resize_h = max(int(round(int(h * ratio) / 32) * 32), 32)
    resize_w = max(int(round(int(w * ratio) / 32) * 32), 32)
    resized = cv2.resize(img, (resize_w, resize_h))
    norm = _normalize(resized, pre.scale, pre.mean, pre.std).transpose(2, 0, 1)
    return np.ascontiguousarray(norm), (resize_h / float(h), resize_w / float(w))


@dataclass(frozen=True)
class Prepared:
    """A model-ready batch and, per image, its source shape (h, w, ratio_h, ratio_w)."""

    batch: np.ndarray
    src_shapes: list[SrcShape]


def _prep_rec(pre: Preprocess, images: Sequence[np.ndarray]) -> Prepared:
    shape = pre.image_shape or REC_SHAPE
    batch = rec_batch(images, shape, pre)
    return Prepared(batch, [(im.shape[0], im.shape[1], 1.0, 1.0) for im in images])


def _prep_cls(pre: Preprocess, images: Sequence[np.ndarray]) -> Prepared:
    shape = pre.image_shape or CLS_SHAPE
    batch = np.stack([cls_resize_norm(im, shape, pre) for im in images])
    return Prepared(batch, [(im.shape[0], im.shape[1], 1.0, 1.0) for im in images])


def _prep_det(pre: Preprocess, images: Sequence[np.ndarray]) -> Prepared:
    arrays, shapes = [], []
    for im in images:
        x, (rh, rw) = det_resize_norm(im, pre)
        arrays.append(x)
        shapes.append((im.shape[0], im.shape[1], rh, rw))
    if len({a.shape for a in arrays}) > 1:
        # PaddleOCR detects one page at a time; padding pages to one size would change the
        # probability map near the borders, so mixed sizes are refused rather than padded.
        raise ValueError("det pages of different resized sizes cannot share a batch; pass one")
    return Prepared(np.stack(arrays), shapes)


_PREPROCESSORS: dict[str, Callable[[Preprocess, Sequence[np.ndarray]], Prepared]] = {
    "rec": _prep_rec,
    "cls": _prep_cls,
    "det": _prep_det,
}


def preprocess_for(card: ModelCard, images: Sequence[np.ndarray]) -> Prepared:
    """Preprocess BGR images as the card says (its preprocessing or PP-OCR's default).

    Args:
        card: the model's card; ``card.resolved_preprocess().kind`` picks the rule.
        images: HWC uint8 BGR images (text lines for rec/cls, pages for det).

    Returns:
        :class:`Prepared` with the (N, C, H, W) float32 batch and the source shapes.

    Example:
        >>> card = ModelCard(name="m", task="rec", charset=["a"])
        >>> preprocess_for(card, [np.zeros((24, 480, 3), np.uint8)]).batch.shape
        (1, 3, 48, 960)
    """
    pre = card.resolved_preprocess()
    return _PREPROCESSORS[pre.kind](pre, images)
