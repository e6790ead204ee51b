"""Seeded image augmentations and backgrounds for synthetic OCR data.

Two registries, applied in a fixed order so one seed always gives the same image:

* :data:`GEOMETRIC` — ``(image, points, rng) -> (image, points)``: rotation and perspective.
  The text polygons are moved by the same matrix as the pixels, so labels stay exact.
* :data:`PHOTOMETRIC` — ``(image, rng) -> image``: lighting, inversion, blur, motion blur,
  noise, then (off by default) low contrast and resolution loss. JPEG quality is applied by
  the writer (it picks the encoder quality).

Each op runs with the probability of the same-named field of :class:`AugmentConfig`; the
decision is drawn for every op whether or not it runs, so adding an op later does not shift
the random stream of the ones before it more than necessary. Ops added later
(``low_contrast``, ``downscale``) draw their coin only when enabled, so sets generated with
the defaults stay byte-identical.

:meth:`AugmentConfig.photo` is the preset for calibration data: inputs as phone photos and
scans show them (faint ink, resampled small text, focus blur, shake, sensor noise, heavy JPEG).

All images are uint8 RGB (H, W, 3); points are float32 (N, 2) pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Image = np.ndarray
Points = np.ndarray


@dataclass(frozen=True)
class AugmentConfig:
    """Probability of each augmentation (0 disables it).

    Example:
        >>> AugmentConfig(noise=0.0).noise
        0.0
    """

    rotate: float = 0.5
    perspective: float = 0.3
    lighting: float = 0.3
    invert: float = 0.08
    blur: float = 0.2
    motion_blur: float = 0.1
    noise: float = 0.3
    jpeg: float = 0.4
    texture: float = 0.5
    low_contrast: float = 0.0
    downscale: float = 0.0
    # Geometry limits
    max_rotate_deg: float = 4.0
    jpeg_quality: tuple[int, int] = (35, 90)

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all (clean renders, e.g. for tests)."""
        return cls(
            rotate=0,
            perspective=0,
            lighting=0,
            invert=0,
            blur=0,
            motion_blur=0,
            noise=0,
            jpeg=0,
            texture=0,
        )

    @classmethod
    def photo(cls) -> AugmentConfig:
        """Heavier damage, as photographs and scans show it: the default calibration data of
        ``xcompress quantize``. Calibrated on the light defaults, PP-OCRv4 rec's int8 model
        lost 1.6 CER points on degraded real-document lines while meeting its budget on the
        generator's own hold-out (issue 13): ranges must cover the inputs users send."""
        return cls(rotate=0.5, perspective=0.3, lighting=0.5, invert=0.08, blur=0.35,
                   motion_blur=0.2, noise=0.5, jpeg=0.8, texture=0.6, low_contrast=0.4,
                   downscale=0.3, jpeg_quality=(20, 75))



#: named presets (``xcompress data synth --augment NAME``)
AUGMENT_PRESETS: dict[str, Callable[[], AugmentConfig]] = {
    "default": AugmentConfig, "photo": AugmentConfig.photo, "none": AugmentConfig.none}


def augment_preset(name: str) -> AugmentConfig:
    """The preset called ``name``; DataError names the choices."""
    from xcompress.errors import DataError

    if name not in AUGMENT_PRESETS:
        raise DataError(f"unknown --augment {name!r}: use one of {', '.join(AUGMENT_PRESETS)}")
    return AUGMENT_PRESETS[name]()

# ----------------------------------------------------------------------------- geometry


def _warp(img: Image, pts: Points, m: np.ndarray) -> tuple[Image, Points]:
    h, w = img.shape[:2]
    out = cv2.warpPerspective(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    moved = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float32), m).reshape(-1, 2)
    return out, moved


def rotate(
    img: Image, pts: Points, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Image, Points]:
    """Rotate about the text's centre by a small angle (degrees ~ N(0, max/2), clipped)."""
    angle = float(
        np.clip(rng.normal(0, cfg.max_rotate_deg / 2), -cfg.max_rotate_deg, cfg.max_rotate_deg)
    )
    cx, cy = pts.mean(axis=0)
    m = np.vstack([cv2.getRotationMatrix2D((float(cx), float(cy)), angle, 1.0), [0, 0, 1]])
    return _warp(img, pts, m)


def perspective(
    img: Image, pts: Points, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Image, Points]:
    """Move the four corners of the text box independently by up to 8% of its height."""
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    box = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    jitter = rng.uniform(-0.08, 0.08, size=(4, 2)) * (y1 - y0)
    m = cv2.getPerspectiveTransform(box, (box + jitter).astype(np.float32))
    return _warp(img, pts, m)


Geometric = Callable[[Image, Points, np.random.Generator, AugmentConfig], tuple[Image, Points]]
GEOMETRIC: dict[str, Geometric] = {"rotate": rotate, "perspective": perspective}


def apply_geometric(
    img: Image, pts: Points, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Image, Points]:
    """Run every geometric op whose coin flip succeeds, in registry order."""
    for name, op in GEOMETRIC.items():
        if rng.random() < getattr(cfg, name):
            img, pts = op(img, pts, rng, cfg)
    return img, pts


# ----------------------------------------------------------------------------- photometric


def lighting(img: Image, rng: np.random.Generator) -> Image:
    """Uneven lighting: multiply by a linear gradient in a random direction (0.55..1.15)."""
    h, w = img.shape[:2]
    theta = rng.uniform(0, 2 * np.pi)
    lo, hi = rng.uniform(0.55, 0.85), rng.uniform(0.95, 1.15)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(theta) + yy * np.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    gain = (lo + (hi - lo) * t)[..., None]
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def invert(img: Image, rng: np.random.Generator) -> Image:
    """Light text on a dark ground (screens, signs)."""
    return 255 - img


def blur(img: Image, rng: np.random.Generator) -> Image:
    """Gaussian blur (out-of-focus camera); sigma 0.4..1.2 px at 48 px line height.

    Scaled with the crop height for line crops, capped for scenes (whose text is no taller
    than a crop), so text stays readable.
    """
    sigma = rng.uniform(0.4, 1.2) * float(np.clip(min(img.shape[:2]) / 48.0, 0.5, 1.3))
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)


def motion_blur(img: Image, rng: np.random.Generator) -> Image:
    """Linear motion blur along a random direction (hand shake)."""
    k = int(rng.integers(3, 7))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(img, -1, kernel)


def noise(img: Image, rng: np.random.Generator) -> Image:
    """Gaussian sensor noise (std 3..12 grey levels)."""
    sigma = rng.uniform(3, 12)
    n = rng.normal(0, sigma, size=img.shape[:2] + (1,)).astype(np.float32)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def low_contrast(img: Image, rng: np.random.Generator) -> Image:
    """Faint ink or a washed-out photo: pixel values pulled towards the mean (to 30..75%)."""
    a = img.astype(np.float32)
    m = float(a.mean())
    return np.clip(m + (a - m) * rng.uniform(0.3, 0.75), 0, 255).astype(np.uint8)


def downscale(img: Image, rng: np.random.Generator) -> Image:
    """Captured at a lower resolution, then scaled back up (45..75% of the size)."""
    h, w = img.shape[:2]
    f = rng.uniform(0.45, 0.75)
    small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


Photometric = Callable[[Image, np.random.Generator], Image]
PHOTOMETRIC: dict[str, Photometric] = {
    "lighting": lighting,
    "invert": invert,
    "blur": blur,
    "motion_blur": motion_blur,
    "noise": noise,
    "low_contrast": low_contrast,
    "downscale": downscale,
}
#: ops added after the first release: their coin is drawn only when enabled
_LATER_OPS = frozenset({"low_contrast", "downscale"})


def apply_photometric(img: Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image:
    """Run every photometric op whose coin flip succeeds, in registry order."""
    for name, op in PHOTOMETRIC.items():
        p = getattr(cfg, name)
        if name in _LATER_OPS and p <= 0:
            continue
        if rng.random() < p:
            img = op(img, rng)
    return img


def jpeg_quality(rng: np.random.Generator, cfg: AugmentConfig, default: int = 95) -> int:
    """The JPEG encoder quality for this sample (low quality = compression artefacts)."""
    lo, hi = cfg.jpeg_quality
    return int(rng.integers(lo, hi + 1)) if rng.random() < cfg.jpeg else default


# ----------------------------------------------------------------------------- colours, grounds


def _lum(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def pick_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(background, text) RGB colours with enough luminance contrast to read.

    Mostly dark text on light paper, sometimes coloured inks and grounds.
    """
    if rng.random() < 0.6:  # paper-like: near-white ground, near-black / blue / red ink
        bg = rng.uniform(200, 255, 3) - rng.uniform(0, 25) * np.array([0, 0.3, 1.0])
        ink = _pick_ink(rng)
    else:
        while True:
            bg = rng.uniform(0, 255, 3)
            fg = rng.uniform(0, 255, 3)
            if abs(_lum(bg) - _lum(fg)) > 110:
                return bg.astype(np.float32), fg.astype(np.float32)
    return bg.astype(np.float32), ink.astype(np.float32)


def _pick_ink(rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.7:
        return np.full(3, rng.uniform(0, 70))
    if kind < 0.85:
        return np.array([rng.uniform(0, 40), rng.uniform(20, 70), rng.uniform(90, 160)])  # blue
    return np.array([rng.uniform(120, 190), rng.uniform(0, 40), rng.uniform(0, 40)])  # red


def contrast_color(rng: np.random.Generator, ground: np.ndarray) -> np.ndarray:
    """A text colour readable on ``ground`` (mean RGB of the area under the text)."""
    for _ in range(20):
        fg = rng.uniform(0, 255, 3)
        if abs(_lum(fg) - _lum(ground)) > 100:
            return fg.astype(np.float32)
    return np.full(3, 0.0 if _lum(ground) > 127 else 255.0, np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    small = rng.normal(0, 1, size=(max(2, h * cells // max(w, 1)), cells)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def background(
    rng: np.random.Generator, h: int, w: int, base: np.ndarray, cfg: AugmentConfig
) -> Image:
    """A ground of ``base`` colour: plain, or (with ``cfg.texture``) a gradient, blotchy
    paper, fine grain or ruled lines."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    if rng.random() < cfg.texture:
        kind = int(rng.integers(4))
        if kind == 0:  # linear gradient towards another tint
            other = np.clip(base + rng.uniform(-60, 60, 3), 0, 255)
            t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
            t = t[None, :, None] if t.size == w else t[:, None, None]
            img = img * (1 - t) + other * t
        elif kind == 1:  # blotchy paper
            img += _smooth_noise(rng, h, w, int(rng.integers(3, 12)))[..., None] * rng.uniform(
                5, 18
            )
        elif kind == 2:  # fine grain
            img += rng.normal(0, rng.uniform(3, 9), size=(h, w, 1)).astype(np.float32)
        else:  # ruled / grid lines, as on forms and notebooks
            step = (
                int(rng.integers(max(8, h // 4), max(9, h // 2 + 1)))
                if h < 120
                else int(rng.integers(24, 60))
            )
            line = np.clip(base - rng.uniform(30, 80), 0, 255)
            img[::step, :] = line
            if rng.random() < 0.3:
                img[:, ::step] = line
    return np.clip(img, 0, 255)
