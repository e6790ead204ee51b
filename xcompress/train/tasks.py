"""Per-task parts of training, behind one small base class.

:class:`TrainTask` is what the loop needs from a task: sample sources, batching, losses
(with optional distillation) and held-out sets. ``rec`` = CTC (+ U-DML distillation),
``det`` = DB loss (+ probability-map distillation). The loop picks the task class from the
model's ``task`` through :data:`TASKS`.

Held-out sets are plain :mod:`xcompress.data` samples (images decoded once, in memory): the
loop scores them with :func:`xcompress.eval.evaluate_samples`, the evaluators ``xcompress
eval`` uses, so there is no training-only decoding or metric code here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np
import torch

from xcompress.card import ModelCard
from xcompress.data.labels import DetSample, RecSample, TextBox
from xcompress.errors import DataError, ModelError
from xcompress.models.base import OCRModel
from xcompress.train.data import CTCCodec, FolderSource, RecBatchSpec, SynthSource, collate
from xcompress.train.losses import ctc_loss, db_loss, feature_l2, prob_map_distill, symmetric_kl

if TYPE_CHECKING:
    from xcompress.train.loop import TrainConfig

SYNTH = "synth"


def synth_spec(spec: str, default: str) -> tuple[str, str] | None:
    """``(language, damage preset)`` of a synthetic data spec, or None for a folder.

    ``synth`` -> ``(default, "default")``, ``synth:zh`` -> ``("zh", "default")``,
    ``synth:zh:photo`` -> ``("zh", "photo")`` (the presets of ``xcompress data synth
    --augment``). Several specs mix languages and damage in one run.

    Example:
        >>> synth_spec("synth:zh-wide:photo", "en"), synth_spec("data/lines", "en")
        (('zh-wide', 'photo'), None)
    """
    from xcompress.data.synth.augment import AUGMENT_PRESETS
    from xcompress.data.synth.corpus import LANGS

    if spec == SYNTH:
        lang, preset = default, "default"
    elif spec.startswith(SYNTH + ":") and spec[len(SYNTH) + 1 :]:
        lang, _, preset = spec[len(SYNTH) + 1 :].partition(":")
        preset = preset or "default"
    else:
        return None
    if lang not in LANGS:
        raise DataError(f"data {spec!r}: unknown language {lang!r}: use one of "
                        f"{', '.join(LANGS)}")
    if preset not in AUGMENT_PRESETS:
        raise DataError(f"data {spec!r}: unknown damage {preset!r}: use one of "
                        f"{', '.join(AUGMENT_PRESETS)}")
    return lang, preset


def synth_lang(spec: str, default: str) -> str | None:
    """The language of a synthetic data spec (:func:`synth_spec`), or None for a folder."""
    got = synth_spec(spec, default)
    return None if got is None else got[0]


def synth_langs(charset: list[str] | None, langs: tuple[str, ...] = ("en", "zh"),
                min_cover: float = 0.9) -> list[str]:
    """The synthetic languages a recognizer's charset can write: each packaged corpus whose
    characters it covers (>= ``min_cover``). A bilingual PP-OCR recognizer gets both, so a
    compressed copy is refitted and distilled on both scripts, not on English alone (which
    left the Chinese lines of a pruned ppocr-v4-rec at 74% CER).

    Example:
        >>> import string
        >>> synth_langs(list(string.printable))
        ['en']
    """
    from xcompress.data.synth.corpus import corpus

    have = set(charset or ())
    out = []
    for lang in langs:
        chars = set("".join(corpus(lang))) - {" "}
        if chars and len(chars & have) / len(chars) >= min_cover:
            out.append(lang)
    return out


#: the synthetic language a student is distilled on for each corpus language: Chinese with
#: jieba's words, whose characters cover the charset (the phrase list alone left a pruned
#: ppocr-v4-rec at 14.8% CER* on held-out Chinese; with the words 4.8%)
TRAIN_LANG = {"zh": "zh-wide"}


def expand_synth(specs: list[str], charset: list[str] | None) -> list[str]:
    """``synth`` (no language) -> ``synth:LANG`` for every language of the charset
    (:func:`synth_langs`, Chinese as :data:`TRAIN_LANG` says); other specs as given."""
    langs = synth_langs(charset) if charset else []
    if SYNTH not in specs or not langs:
        return list(specs)
    out: list[str] = []
    for s in specs:
        out += [f"{SYNTH}:{TRAIN_LANG.get(lang, lang)}" for lang in langs] if s == SYNTH else [s]
    return out


#: seed offset of held-out synthetic sets: disjoint from every training stream
VAL_SEED = 1_000_003


class TrainTask(ABC):
    """What the training loop needs from one task."""

    task: ClassVar[str]

    def __init__(self, cfg: TrainConfig, model: OCRModel, card: ModelCard) -> None:
        self.cfg, self.model, self.card = cfg, model, card
        for spec in [*cfg.train, *cfg.val]:  # a mistyped spec fails now, not after minutes
            synth_spec(spec, cfg.synth_lang)

    @abstractmethod
    def sources(self) -> list[Any]:
        """Training sources, each with ``stream(seed, start) -> Iterator[sample]``."""

    @abstractmethod
    def val_sets(self) -> dict[str, list[Any]]:
        """Held-out sets by name: samples of :mod:`xcompress.data` whose ``image`` is the
        decoded BGR array, for :func:`xcompress.eval.evaluate_samples`."""

    @abstractmethod
    def batch(self, samples: list[Any]) -> tuple[torch.Tensor, Any]:
        """(input tensor, targets) for a list of samples."""

    @abstractmethod
    def losses(self, out: dict[str, torch.Tensor], target: Any,
               teacher_out: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Named loss terms (their sum is minimized)."""

    def check_teacher(self, card: ModelCard) -> None:
        if card.task != self.task:
            raise ModelError(f"teacher is a {card.task} model, student a {self.task} model")


class RecTask(TrainTask):
    """CTC recognition; distillation = KL both ways between CTC posteriors + feature L2."""

    task = "rec"

    def __init__(self, cfg: TrainConfig, model: OCRModel, card: ModelCard) -> None:
        super().__init__(cfg, model, card)
        if not card.charset:
            raise ModelError("the model's card has no charset; a recognizer needs one")
        self.codec = CTCCodec(card.charset)
        self.spec = RecBatchSpec(height=model.input_height or 48, max_width=cfg.max_width)

    def sources(self) -> list[Any]:
        out: list[Any] = []
        for s in self.cfg.train:
            spec = synth_spec(s, self.cfg.synth_lang)
            out.append(SynthSource(self.codec.charset, *spec) if spec is not None
                       else FolderSource(s, self.codec))  # fmt: skip
        return out

    def val_sets(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for s in self.cfg.val:
            spec = synth_spec(s, self.cfg.synth_lang)
            if spec is not None:
                src = SynthSource(self.codec.charset, *spec)
                items = src.items(self.cfg.seed + VAL_SEED, self.cfg.val_count)
                name = SYNTH if s == SYNTH else s
            else:
                folder = FolderSource(s, self.codec)
                name, items = folder.name, folder.items()
            out[name] = [RecSample(image=im, text=t) for im, t in items]  # type: ignore[arg-type]
        return out

    def batch(self, samples: list[Any]) -> tuple[torch.Tensor, Any]:
        x, _ = collate([im for im, _ in samples], self.spec)
        return x, [self.codec.encode(t) for _, t in samples]

    def check_teacher(self, card: ModelCard) -> None:
        super().check_teacher(card)
        if card.charset != self.card.charset:
            raise ModelError("teacher and student must share the charset")

    def losses(self, out, target, teacher_out):  # type: ignore[no-untyped-def]
        d = self.cfg.distill
        terms = {"ctc": ctc_loss(out["logits"], target)}
        if teacher_out is None or d is None:
            return terms
        terms["ctc"] = terms["ctc"] * d.ctc_weight
        if d.kl_weight:
            terms["kl"] = d.kl_weight * symmetric_kl(
                out["logits"], teacher_out["logits"], d.temperature
            )
        if d.feature_weight and out["features"].shape == teacher_out["features"].shape:
            terms["feature"] = d.feature_weight * feature_l2(
                out["features"], teacher_out["features"]
            )
        return terms


# ----------------------------------------------------------------------------- detection


class SynthDetSource:
    """Synthetic detection scenes from :mod:`xcompress.data.synth`, streamed on the fly."""

    def __init__(self, lang: str = "en", augment: str = "default") -> None:
        from xcompress.data.synth import SynthConfig, TextPicker
        from xcompress.data.synth.augment import augment_preset
        from xcompress.data.synth.generator import _fonts

        self.cfg = SynthConfig(task="det", count=1, lang=lang, augment=augment_preset(augment))
        self.picker = TextPicker(_fonts(self.cfg), lang, None)

    def sample(self, seed: int, index: int) -> tuple[np.ndarray, list[np.ndarray], list[bool]]:
        from xcompress.data.synth import make_det_scene

        scene = make_det_scene(np.random.default_rng([seed, 2, index]), self.picker, self.cfg)
        img = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
        return img, [b.array for b in scene.boxes], [b.ignore for b in scene.boxes]

    def items(self, seed: int, count: int) -> list[Any]:
        return [self.sample(seed, i) for i in range(count)]

    def stream(self, seed: int, start: int = 0) -> Iterator[Any]:
        i = start
        while True:
            yield self.sample(seed, i)
            i += 1


class FolderDetSource:
    """A PaddleOCR-format detection set (``label.txt`` with JSON boxes)."""

    def __init__(self, path: str) -> None:
        from xcompress.data.labels import load_dataset

        ds = load_dataset(path, "det")
        self.name = ds.name or str(path)
        self.samples = list(ds.samples)
        if not self.samples:
            raise DataError(f"{path} has no detection samples")

    def _load(self, s: Any) -> Any:
        from xcompress.data.labels import read_image

        return read_image(s.image), [b.array for b in s.boxes], [b.ignore for b in s.boxes]

    def items(self) -> list[Any]:
        return [self._load(s) for s in self.samples]

    def held_out(self) -> list[DetSample]:
        """The set's samples with decoded images and their own boxes (text, ignore flags)."""
        from xcompress.data.labels import read_image

        return [DetSample(image=read_image(s.image), boxes=s.boxes)  # type: ignore[arg-type]
                for s in self.samples]  # fmt: skip

    def stream(self, seed: int, start: int = 0) -> Iterator[Any]:
        n, i = len(self.samples), start
        while True:
            epoch, k = divmod(i, n)
            yield self._load(
                self.samples[int(np.random.default_rng([seed, epoch]).permutation(n)[k])]
            )
            i += 1


def fit_square(
    img: np.ndarray, polys: list[np.ndarray], size: int
) -> tuple[np.ndarray, list[np.ndarray], tuple[int, int]]:
    """Resize so the image fits in ``size``×``size`` (ratio kept), pad; scale the polygons."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh))
    return canvas, [p * np.float32([nw / w, nh / h]) for p in polys], (nh, nw)


class DetTask(TrainTask):
    """DB detection; distillation = BCE + dice between student and teacher shrink maps."""

    task = "det"

    def __init__(self, cfg: TrainConfig, model: OCRModel, card: ModelCard) -> None:
        super().__init__(cfg, model, card)
        if cfg.det_size % 32:
            raise DataError(f"--det-size must be a multiple of 32, got {cfg.det_size}")
        # the card's PP-OCR normalisation, with a side limit that keeps the square canvas as
        # it is (det_size is a multiple of 32, so DetResizeForTest does not resize it)
        self.pre = card.resolved_preprocess().model_copy(
            update={"limit_side_len": cfg.det_size, "limit_type": "max"}
        )

    def sources(self) -> list[Any]:
        return [SynthDetSource(*spec) if (spec := synth_spec(s, self.cfg.synth_lang)) is not None
                else FolderDetSource(s) for s in self.cfg.train]  # fmt: skip

    def val_sets(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for s in self.cfg.val:
            spec = synth_spec(s, self.cfg.synth_lang)
            if spec is not None:
                src = SynthDetSource(*spec)
                items = src.items(self.cfg.seed + VAL_SEED, self.cfg.val_count)
                out[s] = [_det_sample(*item) for item in items]
            else:
                folder = FolderDetSource(s)
                out[folder.name] = folder.held_out()
        return out

    def _norm(self, canvas: np.ndarray) -> np.ndarray:
        from xcompress.ocr.preprocess import det_resize_norm

        return det_resize_norm(canvas, self.pre)[0]

    def batch(self, samples: list[Any]) -> tuple[torch.Tensor, Any]:
        from xcompress.train.db_targets import db_targets

        size = self.cfg.det_size
        xs, maps = [], []
        for img, polys, ignore in samples:
            canvas, scaled, _ = fit_square(img, polys, size)
            xs.append(self._norm(canvas))
            maps.append(db_targets(scaled, ignore, size, size))
        target = {k: torch.from_numpy(np.stack([m[k] for m in maps]))[:, None] for k in maps[0]}
        return torch.from_numpy(np.stack(xs)), target

    def losses(self, out, target, teacher_out):  # type: ignore[no-untyped-def]
        d = self.cfg.distill
        terms = {"db": db_loss(out, target)}
        if teacher_out is not None and d is not None and d.map_weight:
            terms["db"] = terms["db"] * d.ctc_weight
            terms["map"] = d.map_weight * prob_map_distill(out["shrink"], teacher_out["shrink"])
        return terms


def _det_sample(img: np.ndarray, polys: list[np.ndarray], ignore: list[bool]) -> DetSample:
    boxes = tuple(TextBox(points=p, ignore=i) for p, i in zip(polys, ignore, strict=True))
    return DetSample(image=img, boxes=boxes)  # type: ignore[arg-type]


TASKS: dict[str, type[TrainTask]] = {t.task: t for t in (RecTask, DetTask)}
