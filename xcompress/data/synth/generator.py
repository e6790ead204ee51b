"""Deterministic synthetic recognition crops and detection scenes.

Every sample ``i`` gets its own generator ``np.random.default_rng([seed, task_id, i])``, so a
sample depends only on (seed, task, index, fonts, charset): the same arguments give
byte-identical images and labels, and no global random state is touched.

Example:
    >>> cfg = SynthConfig(task="rec", count=10, seed=1, charset=tuple("0123456789 "))
    >>> ds = generate(cfg, "out/rec_synth")          # doctest: +SKIP
    >>> ds.task, len(ds)                             # doctest: +SKIP
    ('rec', 10)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from xcompress.data.labels import (
    ClsSample,
    Dataset,
    DetSample,
    RecSample,
    Sample,
    TextBox,
    write_labels,
)
from xcompress.data.synth.augment import (
    AugmentConfig,
    apply_geometric,
    apply_photometric,
    background,
    contrast_color,
    jpeg_quality,
    pick_colors,
)
from xcompress.data.synth.corpus import LANGS, draw_text, fit_text, random_text
from xcompress.data.synth.fonts import FontSpec, coverage, discover_fonts
from xcompress.data.synth.render import composite, render_line
from xcompress.errors import DataError
from xcompress.fsutil import atomic_dir, output_owner, write_json

SynthTask = Literal["rec", "det", "cls"]
_TASK_ID = {"rec": 1, "det": 2, "cls": 3}
_CJK_START = 0x2E80
#: The command name recorded in the output folder (a re-run may replace its own output).
SYNTH_COMMAND = "data synth"


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Args:
        task: ``"rec"`` (text-line crops), ``"det"`` (scenes with 4-point boxes) or
            ``"cls"`` (line crops, half of them upside down, labelled ``0`` / ``180``).
        count: number of images.
        seed: base seed; sample ``i`` uses ``default_rng([seed, task, i])``.
        lang: ``"en"``, ``"zh"``, ``"zh-wide"`` or ``"mix"`` (:data:`corpus.LANGS`).
        charset: characters labels may use (a recognizer's charset); None = any the font draws.
        fonts: font files to use; None = discover (DejaVu, plus CJK for zh/mix).
        augment: augmentation probabilities.
        rec_height: (min, max) crop height in pixels.
        det_width / det_height: (min, max) scene size in pixels.
        det_lines: (min, max) text lines per scene.
    """

    task: SynthTask
    count: int
    seed: int = 0
    lang: str = "en"
    charset: tuple[str, ...] | None = None
    fonts: tuple[Path, ...] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    rec_height: tuple[int, int] = (24, 64)
    det_width: tuple[int, int] = (640, 960)
    det_height: tuple[int, int] = (480, 720)
    det_lines: tuple[int, int] = (3, 12)

    def __post_init__(self) -> None:
        # Lists from Python callers become tuples, so configs stay hashable and comparable.
        if self.charset is not None:
            object.__setattr__(self, "charset", tuple(self.charset))
        if self.fonts is not None:
            object.__setattr__(self, "fonts", tuple(Path(f) for f in self.fonts))
        if self.task not in _TASK_ID:
            raise DataError(f"unknown synth task {self.task!r}: use rec, det or cls")
        if self.lang not in LANGS:
            raise DataError(f"unknown language {self.lang!r}: use one of {', '.join(LANGS)}")
        if self.count < 1:
            raise DataError(f"--count must be at least 1, got {self.count}")

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _TASK_ID[self.task], index])


# ----------------------------------------------------------------------------- text + font


class TextPicker:
    """Draws (text, font) pairs whose every character the model can output and the font draws.

    Args:
        fonts: candidate fonts.
        lang: corpus language.
        charset: allowed label characters, or None.
    """

    def __init__(self, fonts: tuple[FontSpec, ...], lang: str, charset: tuple[str, ...] | None):
        self.fonts = fonts
        self.lang = lang
        allowed_model = set(charset) if charset is not None else None
        self.allowed: dict[Path, frozenset[str]] = {}
        for f in fonts:
            cov = coverage(f.path)
            self.allowed[f.path] = cov & allowed_model if allowed_model is not None else cov
        self.fallbacks = 0
        self.latin = [f for f in fonts if not f.cjk]
        self.cjk = [f for f in fonts if f.cjk]
        if not any(any(not c.isspace() for c in a) for a in self.allowed.values()):
            raise DataError(
                "the charset and the fonts share no drawable character: check --model/--charset"
            )

    def _font_for(self, rng: np.random.Generator, raw: str) -> FontSpec:
        has_cjk = any(ord(c) >= _CJK_START for c in raw)
        if has_cjk and self.cjk:
            pool = self.cjk
        elif self.latin and (not self.cjk or rng.random() < 0.85):
            pool = self.latin
        else:
            pool = self.cjk or self.latin
        return pool[int(rng.integers(len(pool)))]

    def pick(
        self, rng: np.random.Generator, max_len: int, font: FontSpec | None = None
    ) -> tuple[str, FontSpec]:
        """A fitted text and its font (``font`` if given); after 12 corpus draws that leave
        nothing usable, random allowed characters (counted in :attr:`fallbacks`)."""
        fixed = font
        font = fixed or self.fonts[0]
        for _ in range(12):
            raw = draw_text(rng, self.lang)
            font = fixed or self._font_for(rng, raw)
            text = fit_text(raw, self.allowed[font.path], max_len=max_len)
            if text:
                return text, font
        self.fallbacks += 1
        allowed = sorted(self.allowed[font.path])
        if not any(not c.isspace() for c in allowed):
            font = next(f for f in self.fonts if any(not c.isspace() for c in self.allowed[f.path]))
            allowed = sorted(self.allowed[font.path])
        return random_text(rng, allowed, max_len=min(max_len, 12)), font


# ----------------------------------------------------------------------------- recognition


def make_rec_sample(
    rng: np.random.Generator, picker: TextPicker, cfg: SynthConfig
) -> tuple[np.ndarray, str]:
    """One text-line crop (RGB uint8) and its text, like a detector's crop of a real line."""
    text, font = picker.pick(rng, max_len=40)
    size = int(rng.integers(28, 49))
    stroke = 1 if rng.random() < 0.1 else 0
    margin = size  # room for rotation/perspective without clipping ink
    line = render_line(text, font.path, size, margin, stroke)
    h, w = line.mask.shape
    bg_color, ink = pick_colors(rng)
    img = background(rng, h, w, bg_color, cfg.augment)
    composite(img, line.mask, ink)
    img = img.astype(np.uint8)
    img, box = apply_geometric(img, line.box, rng, cfg.augment)
    # Crop around the (moved) ink box with uneven padding, as real detector boxes are
    # loose by different amounts on each side (DB unclip, annotator habits).
    x0, y0 = box.min(axis=0)
    x1, y1 = box.max(axis=0)
    lh = float(y1 - y0)
    pad = rng.uniform([0.05, 0.05, 0.05, 0.05], [0.5, 0.3, 0.5, 0.3]) * max(lh, size * 0.5)
    cx0 = int(np.clip(np.floor(x0 - pad[0]), 0, w - 1))
    cy0 = int(np.clip(np.floor(y0 - pad[1]), 0, h - 1))
    cx1 = int(np.clip(np.ceil(x1 + pad[2]), cx0 + 1, w))
    cy1 = int(np.clip(np.ceil(y1 + pad[3]), cy0 + 1, h))
    crop = img[cy0:cy1, cx0:cx1]
    lo, hi = cfg.rec_height
    th = int(rng.integers(lo, hi + 1))
    tw = max(1, round(crop.shape[1] * th / crop.shape[0]))
    interp = cv2.INTER_AREA if th < crop.shape[0] else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (tw, th), interpolation=interp)
    return apply_photometric(crop, rng, cfg.augment), text


# ----------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class DetScene:
    """A detection scene: image (RGB uint8), its boxes, and the text coverage mask.

    ``ink`` is where text pixels are (after geometry), used by tests to check boxes.
    """

    image: np.ndarray
    boxes: tuple[TextBox, ...]
    ink: np.ndarray


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Non-text shapes (boxes, bars, circles) so a detector must tell text from other edges."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 7))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.rectangle(
                img,
                (x, y),
                (x + int(rng.integers(20, w // 3)), y + int(rng.integers(20, h // 3))),
                color,
                int(rng.choice([-1, 1, 2, 3])),
            )
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(8, h // 6)), color, int(rng.choice([-1, 2])))
        else:
            x2, y2 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.line(img, (x, y), (x2, y2), color, int(rng.integers(1, 4)))


def _angle(rng: np.random.Generator) -> float:
    r = rng.random()
    if r < 0.7:
        return float(rng.normal(0, 1.0))
    if r < 0.93:
        return float(rng.uniform(5, 25) * rng.choice([-1, 1]))
    return float(rng.uniform(25, 60) * rng.choice([-1, 1]))


@dataclass(frozen=True)
class _Piece:
    """A rendered (possibly rotated) line ready to paste: mask, label polygon, text."""

    mask: np.ndarray
    poly: np.ndarray  # label polygon in mask coordinates (tl, tr, br, bl in reading order)
    outward: np.ndarray  # unit offsets that grow ``poly`` outwards, per corner
    text: str
    font: FontSpec
    tiny: bool
    grow: float


def _prepare(
    rng: np.random.Generator,
    picker: TextPicker,
    size: int,
    angle: float,
    tiny: bool,
    font: FontSpec | None = None,
) -> _Piece:
    text, font = picker.pick(rng, max_len=28, font=font)
    line = render_line(text, font.path, size, margin=4)
    mask, box = line.mask, line.box
    if abs(angle) > 0.3:
        mh, mw = mask.shape
        m = cv2.getRotationMatrix2D((mw / 2, mh / 2), angle, 1.0)
        cos, sin = abs(m[0, 0]), abs(m[0, 1])
        nw, nh = int(np.ceil(mw * cos + mh * sin)), int(np.ceil(mw * sin + mh * cos))
        m[0, 2] += nw / 2 - mw / 2
        m[1, 2] += nh / 2 - mh / 2
        mask = cv2.warpAffine(mask, m, (nw, nh), flags=cv2.INTER_LINEAR)
        box = cv2.transform(box[None], m)[0]
    # Label polygon: the ink box grown by a little, as annotators draw (and as the DB
    # detector's unclipped boxes come out), along the text's own axes.
    grow = max(1.0, 0.12 * size)
    along = (box[1] - box[0]) / max(float(np.linalg.norm(box[1] - box[0])), 1e-6)
    across = (box[3] - box[0]) / max(float(np.linalg.norm(box[3] - box[0])), 1e-6)
    signs = np.float32([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    outward = signs[:, :1] * along + signs[:, 1:] * across
    return _Piece(mask, box + grow * outward, outward, text, font, tiny, grow)


class _Canvas:
    """A scene being built: ground image, text coverage, and the placed label polygons."""

    def __init__(self, img: np.ndarray) -> None:
        from shapely.geometry import Polygon

        self._polygon = Polygon
        self.img = img
        self.h, self.w = img.shape[:2]
        self.ink = np.zeros((self.h, self.w), np.float32)
        self.placed: list[tuple[object, np.ndarray, str, bool]] = []

    def free(self, piece: _Piece, x: int, y: int, gap: float) -> bool:
        """Whether ``piece`` at (x, y) is inside the image and ``gap`` px from other text."""
        mh, mw = piece.mask.shape
        if x < 2 or y < 2 or x + mw > self.w - 2 or y + mh > self.h - 2:
            return False
        shape = self._polygon(piece.poly + np.float32([x, y])).buffer(gap)
        return all(not shape.intersects(p) for p, *_ in self.placed)

    def ground(self, piece: _Piece, x: int, y: int) -> np.ndarray:
        """Mean colour under the piece's ink (what its text colour must stand out from)."""
        mh, mw = piece.mask.shape
        region = self.img[y : y + mh, x : x + mw]
        cover = piece.mask > 0.1
        return region[cover].mean(axis=0) if cover.any() else region.reshape(-1, 3).mean(axis=0)

    def paste(self, piece: _Piece, x: int, y: int, color: np.ndarray) -> None:
        mh, mw = piece.mask.shape
        composite(self.img, piece.mask, color, x, y)
        view = self.ink[y : y + mh, x : x + mw]
        np.maximum(view, piece.mask, out=view)
        poly = piece.poly + np.float32([x, y])
        self.placed.append((self._polygon(poly), poly, piece.text, piece.tiny))

    def plate(self, piece: _Piece, x: int, y: int, color: np.ndarray) -> None:
        """A sign plate slightly larger than the label polygon, behind the text."""
        edge = piece.poly + np.float32([x, y]) + 0.6 * piece.grow * piece.outward
        cv2.fillPoly(self.img, [np.round(edge).astype(np.int32)], color.tolist())


def _place_block(rng: np.random.Generator, picker: TextPicker, canvas: _Canvas, n: int) -> None:
    """A paragraph: ``n`` left-aligned lines in one font and colour, tightly spaced, as in
    documents and receipts (adjacent lines a detector must keep apart)."""
    size = int(rng.integers(16, 33))
    spacing = size * rng.uniform(1.25, 1.7)
    x0 = int(rng.integers(4, max(5, canvas.w // 2)))
    y0 = int(rng.integers(4, max(5, canvas.h - int(spacing * n) - 4)))
    font, color = None, None
    for j in range(n):
        piece = _prepare(rng, picker, size, 0.0, tiny=False, font=font)
        x, y = x0, int(y0 + j * spacing)
        if not canvas.free(piece, x, y, gap=1.0):
            continue
        font = piece.font
        if color is None:
            color = contrast_color(rng, canvas.ground(piece, x, y))
        canvas.paste(piece, x, y, color)


def _place_free(rng: np.random.Generator, picker: TextPicker, canvas: _Canvas) -> None:
    """One line of random size and angle at a random free spot (skipped if none is found)."""
    tiny = rng.random() < 0.08  # unreadably small text: a "###" don't-care region
    size = int(rng.integers(7, 11)) if tiny else int(rng.integers(16, 57))
    piece = _prepare(rng, picker, size, _angle(rng), tiny)
    mh, mw = piece.mask.shape
    if mw >= canvas.w - 8 or mh >= canvas.h - 8:
        return  # does not fit this scene
    for _ in range(25):
        x = int(rng.integers(2, canvas.w - mw - 2))
        y = int(rng.integers(2, canvas.h - mh - 2))
        if canvas.free(piece, x, y, gap=4 + piece.grow):
            break
    else:
        return
    ground = canvas.ground(piece, x, y)
    if rng.random() < 0.2:  # a sign plate behind the text
        ground = np.clip(ground + rng.uniform(-120, 120, 3), 0, 255)
        canvas.plate(piece, x, y, ground)
    canvas.paste(piece, x, y, contrast_color(rng, ground))


def make_det_scene(rng: np.random.Generator, picker: TextPicker, cfg: SynthConfig) -> DetScene:
    """One scene: an optional paragraph block plus free lines (3..12 in all), some rotated,
    never overlapping, with exact 4-point boxes."""
    w = int(rng.integers(cfg.det_width[0], cfg.det_width[1] + 1))
    h = int(rng.integers(cfg.det_height[0], cfg.det_height[1] + 1))
    bg_color, _ = pick_colors(rng)
    img = background(rng, h, w, bg_color, cfg.augment)
    _clutter(rng, img)
    canvas = _Canvas(img)
    n_lines = int(rng.integers(cfg.det_lines[0], cfg.det_lines[1] + 1))
    n_block = int(rng.integers(2, min(6, n_lines) + 1)) if rng.random() < 0.35 else 0
    if n_block:
        _place_block(rng, picker, canvas, n_block)
    for _ in range(n_lines - n_block):
        _place_free(rng, picker, canvas)
    img_u8 = np.clip(canvas.img, 0, 255).astype(np.uint8)
    ink = canvas.ink
    polys = [p for _, p, _, _ in canvas.placed]
    if polys and rng.random() < cfg.augment.perspective:
        # Whole-scene perspective with corners pulled inwards only, so every box stays
        # inside the image; boxes and ink move with the same matrix.
        src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        dst = src + rng.uniform(0, 0.07, size=(4, 2)).astype(np.float32) * np.float32(
            [[w, h], [-w, h], [-w, -h], [w, -h]]
        )
        m = cv2.getPerspectiveTransform(src, dst)
        img_u8 = cv2.warpPerspective(img_u8, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        ink = cv2.warpPerspective(ink, m, (w, h))
        polys = [cv2.perspectiveTransform(p[:, None], m)[:, 0] for p in polys]
    img_u8 = apply_photometric(img_u8, rng, cfg.augment)
    limit = np.float32([w - 1, h - 1])
    # Rounded as the label file stores them, so the returned boxes equal the re-read ones.
    boxes = tuple(
        TextBox(
            tuple((round(float(x), 2), round(float(y), 2)) for x, y in np.clip(p, 0, limit)),
            "###" if tiny else text,
            ignore=tiny,
        )
        for p, (_, _, text, tiny) in zip(polys, canvas.placed, strict=True)
    )
    return DetScene(image=img_u8, boxes=boxes, ink=ink)


# ----------------------------------------------------------------------------- writing


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    # Fixed encoder settings (no progressive/optimize flags) make the bytes reproducible.
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise DataError("JPEG encoding failed")
    return buf.tobytes()


def _fonts(cfg: SynthConfig) -> tuple[FontSpec, ...]:
    if cfg.fonts is None:
        return discover_fonts(cjk=cfg.lang in ("zh", "zh-wide", "mix"))
    specs = []
    for p in cfg.fonts:
        p = Path(p)
        if not p.is_file():
            raise DataError(f"font file {p} does not exist")
        specs.append(FontSpec(p, cjk="中" in coverage(p)))
    return tuple(specs)


def generate(
    cfg: SynthConfig,
    out: str | Path,
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Write a synthetic data set (``images/*.jpg``, ``label.txt``, ``synth.json``) to ``out``.

    The set is built in a temporary folder and renamed onto ``out`` at the end, so an
    interrupted run leaves nothing half-written.

    Args:
        cfg: what to generate.
        out: destination folder; must be absent, empty, or a previous ``data synth`` output
            (replaced) unless ``force``.
        force: write into a non-empty ``out``; files this generator did not write are kept.
        progress: called with 1 after each image (e.g. a progress bar's advance).

    Returns:
        The written data set, as :func:`xcompress.data.load_dataset` would read it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file, not a folder: choose another --out")
    if (
        out.is_dir()
        and any(out.iterdir())
        and not force
        and output_owner(out) != SYNTH_COMMAND
    ):
        raise DataError(f"{out} exists and is not empty: choose another --out or pass --force")
    fonts = _fonts(cfg)
    picker = TextPicker(fonts, cfg.lang, cfg.charset)
    make = _MAKERS[cfg.task]
    samples = []
    with atomic_dir(out, command=SYNTH_COMMAND) as tmp:
        (tmp / "images").mkdir()
        for i in range(cfg.count):
            rng = cfg.rng(i)
            image, label, quality = make(rng, picker, cfg)
            rel = Path("images") / f"{i:06d}.jpg"
            (tmp / rel).write_bytes(_encode_jpeg(image, quality))
            samples.append((rel, label))
            if progress is not None:
                progress(1)
        kind = _SAMPLE_TYPES[cfg.task]
        final: list[Sample] = [kind(rel, lab) for rel, lab in samples]
        write_labels(tmp / "label.txt", cfg.task, final)
        write_json(tmp / "synth.json", {**_manifest(cfg, fonts), "random_texts": picker.fallbacks})
    return Dataset(
        task=cfg.task,
        root=out.absolute(),
        samples=tuple(replace(s, image=out.absolute() / s.image) for s in final),
        name=out.name,
        label_file=out / "label.txt",
    )


def _rec_maker(rng: np.random.Generator, picker: TextPicker, cfg: SynthConfig):
    image, text = make_rec_sample(rng, picker, cfg)
    return image, text, jpeg_quality(rng, cfg.augment)


def _det_maker(rng: np.random.Generator, picker: TextPicker, cfg: SynthConfig):
    scene = make_det_scene(rng, picker, cfg)
    return scene.image, scene.boxes, jpeg_quality(rng, cfg.augment)


def _cls_maker(rng: np.random.Generator, picker: TextPicker, cfg: SynthConfig):
    image, _ = make_rec_sample(rng, picker, cfg)
    flip = rng.random() < 0.5
    if flip:  # upside-down text, as a cls model must detect
        image = np.ascontiguousarray(image[::-1, ::-1])
    return image, "180" if flip else "0", jpeg_quality(rng, cfg.augment)


_MAKERS = {"rec": _rec_maker, "det": _det_maker, "cls": _cls_maker}
_SAMPLE_TYPES: dict[str, type] = {"rec": RecSample, "det": DetSample, "cls": ClsSample}


def _manifest(cfg: SynthConfig, fonts: tuple[FontSpec, ...]) -> dict:
    """What made this set, without machine-specific paths (keeps the file reproducible)."""
    d = asdict(cfg)
    charset = d.pop("charset")
    d.pop("fonts")
    d["charset_size"] = None if charset is None else len(charset)
    d["charset_sha256"] = (
        None if charset is None else hashlib.sha256("\n".join(charset).encode()).hexdigest()
    )
    d["fonts"] = [f.name for f in fonts]
    return json.loads(json.dumps(d))
