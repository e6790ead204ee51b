"""The PP-OCR system: detect text boxes on a page, crop each, fix its direction, read it.

Follows PaddleOCR's ``TextSystem`` (``tools/infer/predict_system.py``) so end-to-end numbers
are comparable with the ones users have: DB boxes sorted top-to-bottom then left-to-right
(:func:`sorted_boxes`), a perspective crop of each box, turned upright when it is tall
(:func:`rotate_crop`), the angle classifier's ``180`` applied when it is confident
(``cls_thresh``), then recognition; lines read with a score below ``drop_score`` are dropped.

The members are any runners (onnxruntime, LiteRT, a torch module) with their cards, so any
mix of fp32, int8 ONNX and TFLite models makes a system.

Example:
    >>> sys = OcrSystem.open("ppocr-v4-det", "ppocr-v4-cls", "ppocr-v4-rec")   # doctest: +SKIP
    >>> [(line.text, round(line.score, 2)) for line in sys(page_bgr).lines]      # doctest: +SKIP
    [('Invoice 2026-12', 0.97)]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from xcompress.ocr import system_defaults as defaults

if TYPE_CHECKING:
    from xcompress.artifact import Artifact
    from xcompress.card import ModelCard

#: members of a system, in pipeline order
MEMBERS = ("det", "cls", "rec")


def sorted_boxes(boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Reading order as PaddleOCR's ``sorted_boxes``: by the first corner's (y, x), then
    boxes whose first corners lie within 10 px vertically are put left to right."""
    out = sorted(boxes, key=lambda b: (float(b[0][1]), float(b[0][0])))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            if abs(out[j + 1][0][1] - out[j][0][1]) < 10 and out[j + 1][0][0] < out[j][0][0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def rotate_crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's quadrilateral warped to an upright rectangle (PaddleOCR's
    ``get_rotate_crop_image``): width and height from the longer opposite sides, cubic
    interpolation, replicated borders; a crop at least 1.5x taller than wide is turned 90
    degrees, since a text line is wider than tall."""
    pts = np.asarray(box, np.float32).reshape(4, 2)
    w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(pts, dst)
    crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE,
                               flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


@dataclass(frozen=True)
class SystemConfig:
    """PaddleOCR's ``TextSystem`` settings.

    Attributes:
        drop_score: lines read with a lower CTC score are dropped (PaddleOCR: 0.5).
        cls_thresh: a crop is turned 180 degrees when the classifier says ``180`` with at
            least this probability (PaddleOCR: 0.9).
        cls_batch: crops per classifier call (PaddleOCR: 6; the classifier's input has a
            fixed size, so batching does not change its output).
        rec_batch: crops per recognizer call (PaddleOCR's ``rec_batch_num``: 6). Crops are
            sorted by width/height and each batch is padded to its widest crop, as PaddleOCR
            does; 1 reads every crop alone (padded only up to the model's minimum width).
    """

    drop_score: float = defaults.DROP_SCORE
    cls_thresh: float = defaults.CLS_THRESH
    cls_batch: int = defaults.CLS_BATCH
    rec_batch: int = defaults.REC_BATCH


@dataclass(frozen=True)
class Line:
    """One line the system read: its box on the page, text and recognition score."""

    box: np.ndarray
    text: str
    score: float


@dataclass(frozen=True)
class PageResult:
    """What the system found on one page, and the seconds each member took."""

    lines: list[Line]
    detected: list[np.ndarray] = field(default_factory=list)  # every box, before drop_score
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class Member:
    """A member model: its runner (``run(batch) -> array``) and card."""

    runner: object
    card: ModelCard
    artifact: Artifact | None = None


class OcrSystem:
    """Detector, optional angle classifier and recognizer run as one pipeline.

    Args:
        det, rec: the detector and recognizer members.
        cls: the angle classifier, or None to skip direction classification.
        config: PaddleOCR's system settings (:class:`SystemConfig`).
    """

    def __init__(self, det: Member, rec: Member, cls: Member | None = None,
                 config: SystemConfig | None = None) -> None:
        for role, m, task in (("det", det, "det"), ("rec", rec, "rec"), ("cls", cls, "cls")):
            if m is not None and m.card.task != task:
                from xcompress.errors import ModelError

                raise ModelError(f"system {role}: {m.card.name} is a {m.card.task} model, "
                                 f"not {task}; give DET,CLS,REC in that order")
        self.det, self.cls, self.rec = det, cls, rec
        self.config = config or SystemConfig()
        from xcompress.ocr.postprocess import DBPostProcess

        self._db = DBPostProcess(det.card.resolved_postprocess())

    @classmethod
    def open(cls, det: str | Artifact, cls_model: str | Artifact | None, rec: str | Artifact,
             threads: int | None = None, config: SystemConfig | None = None) -> OcrSystem:
        """Open each member (zoo name, folder, file or :class:`Artifact`) with its runtime."""
        from xcompress.artifact import Artifact, resolve_model
        from xcompress.runtime import open_runner

        def member(m: str | Artifact, task: str) -> Member:
            art = m if isinstance(m, Artifact) else resolve_model(m, task=task)  # type: ignore[arg-type]
            return Member(open_runner(art.path, threads=threads), art.card, art)

        return cls(member(det, "det"), member(rec, "rec"),
                   None if cls_model is None else member(cls_model, "cls"), config)

    def detect(self, page: np.ndarray) -> list[np.ndarray]:
        """Text boxes on ``page`` (BGR), in reading order."""
        from xcompress.ocr.preprocess import preprocess_for

        prepared = preprocess_for(self.det.card, [page])
        boxes, _ = self._db(self.det.runner.run(prepared.batch), prepared.src_shapes)
        return sorted_boxes(boxes[0])

    def classify(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """The crops, each turned 180 degrees where the classifier is confident it is."""
        from xcompress.ocr.postprocess import cls_decode
        from xcompress.ocr.preprocess import preprocess_for

        assert self.cls is not None
        labels = self.cls.card.resolved_postprocess().labels or ["0", "180"]
        out = list(crops)
        step = self.config.cls_batch
        for start in range(0, len(crops), step):
            part = crops[start:start + step]
            probs = self.cls.runner.run(preprocess_for(self.cls.card, part).batch)
            for k, (label, score) in enumerate(cls_decode(probs, labels)):
                if "180" in label and score > self.config.cls_thresh:
                    out[start + k] = cv2.rotate(part[k], cv2.ROTATE_180)
        return out

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) per crop, in the crops' order, ``config.rec_batch`` crops per call."""
        from xcompress.ocr.postprocess import ctc_greedy_decode
        from xcompress.ocr.preprocess import preprocess_for, ratio_batches

        charset = self.rec.card.charset or []
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        ratios = [c.shape[1] / float(c.shape[0]) for c in crops]
        for idx in ratio_batches(ratios, self.config.rec_batch):
            batch = preprocess_for(self.rec.card, [crops[i] for i in idx]).batch
            probs = self.rec.runner.run(batch)
            for i, read in zip(idx, ctc_greedy_decode(probs, charset), strict=True):
                out[i] = read
        return out

    def __call__(self, page: np.ndarray) -> PageResult:
        """Read every line of ``page`` (HWC uint8 BGR)."""
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        boxes = self.detect(page)
        seconds["det"] = time.perf_counter() - t
        crops = [rotate_crop(page, b) for b in boxes]
        if self.cls is not None and crops:
            t = time.perf_counter()
            crops = self.classify(crops)
            seconds["cls"] = time.perf_counter() - t
        t = time.perf_counter()
        read = self.recognize(crops)
        seconds["rec"] = time.perf_counter() - t
        lines = [Line(b, text, score) for b, (text, score) in zip(boxes, read, strict=True)
                 if score >= self.config.drop_score]
        return PageResult(lines, boxes, seconds)
