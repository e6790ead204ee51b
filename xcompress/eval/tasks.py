"""Per-task evaluation loops, registered by task name: the one evaluation core.

Each :class:`TaskEvaluator` runs a runner over a data set with the card's pre/post-processing
(:mod:`xcompress.ocr`) and returns metrics plus the worst samples. A runner is anything with
``run(batch: np.ndarray) -> np.ndarray``: an onnxruntime / LiteRT :class:`~xcompress.runtime.Runner`
or a torch module wrapped in :class:`~xcompress.eval.torch_runner.TorchRunner`, so ``xcompress
eval``, training's held-out scores, quantize and export all score models with the same code.
Adding a task means registering one subclass; callers use :func:`evaluate_samples` and never
branch on the task.

A sample's ``image`` is a file path (data-set samples) or an already decoded HWC uint8 BGR
array (training's held-out sets, generated in memory); failures name the latter by index.

Example:
    >>> from xcompress.data import RecSample                                  # doctest: +SKIP
    >>> res = evaluate_samples(runner, card, [RecSample(img, "2026")])       # doctest: +SKIP
    >>> res.metrics["cer_nospace"], res.metrics["cer"]                        # doctest: +SKIP
    (0.0, 0.0)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xcompress.card import ModelCard
from xcompress.errors import ModelError
from xcompress.eval.report import Failure

# advance(n): called after n more samples are done (drives the progress bar)
Advance = Callable[[int], None]


@dataclass(frozen=True)
class TaskResult:
    metrics: dict[str, float]
    failures: list[Failure]  # every sample that was not perfect, worst first
    #: per-sample counts the metrics are sums of (``xcompress.eval.bootstrap.COUNT_COLUMNS``)
    counts: np.ndarray | None = None


class TaskEvaluator(ABC):
    """Evaluates one task: run the model on every sample, score the outputs."""

    task: str

    @abstractmethod
    def evaluate(
        self, runner, card: ModelCard, samples: Sequence, batch_size: int, advance: Advance
    ) -> TaskResult:
        """Run ``runner`` over ``samples`` (data-set samples of this task)."""


_EVALUATORS: dict[str, TaskEvaluator] = {}


def register_evaluator(cls: type[TaskEvaluator]) -> type[TaskEvaluator]:
    _EVALUATORS[cls.task] = cls()
    return cls


def evaluator_for(task: str) -> TaskEvaluator:
    """The registered evaluator of ``task``."""
    return _EVALUATORS[task]


def evaluate_samples(
    runner, card: ModelCard, samples: Sequence, batch_size: int = 1, advance: Advance | None = None
) -> TaskResult:
    """Score ``runner`` on ``samples`` with ``card``'s task, pre- and post-processing.

    Args:
        runner: anything with ``run(batch) -> np.ndarray`` (a runtime runner, or a
            :class:`~xcompress.eval.torch_runner.TorchRunner` around a torch module).
        card: the model's card (task, charset, pre/post-processing).
        samples: data-set samples of the card's task (``image`` a path or a BGR array).
        batch_size: lines per call (rec / cls; det runs one page at a time), see
            :class:`~xcompress.eval.EvalConfig` for why 1 is the default.
        advance: called with the number of samples done after each call (progress bars).

    Returns:
        :class:`TaskResult`: the task's metrics (see :mod:`xcompress.eval.metrics`) and
        every imperfect sample, worst first.
    """
    done = advance or (lambda n: None)
    return evaluator_for(card.task).evaluate(runner, card, samples, batch_size, done)


def _pixels(image) -> np.ndarray:
    """A sample's BGR pixels: the array itself, or the decoded file."""
    if isinstance(image, np.ndarray):
        return image
    from xcompress.data import read_image

    return read_image(image)


def _name(image, index: int) -> str:
    """What a failure calls a sample: its path, or ``#index`` for an in-memory image."""
    return f"#{index}" if isinstance(image, np.ndarray) else str(image)


def _image_size(path) -> tuple[int, int]:
    """(h, w) from the file header, without decoding pixels (for sorting by aspect ratio).

    A file PIL cannot open is decoded with :func:`~xcompress.data.read_image`, which
    raises a one-line :class:`~xcompress.errors.DataError` if OpenCV cannot read it either.
    An in-memory image gives its own shape.
    """
    if isinstance(path, np.ndarray):
        return path.shape[0], path.shape[1]
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001  PIL raises OSError, SyntaxError, ValueError, ...
        from xcompress.data import read_image

        h, w = read_image(path).shape[:2]
    return h, w


def _batches(samples: Sequence, batch_size: int, sort_by_ratio: bool) -> list[list[int]]:
    """Index batches; sorted by width/height like PaddleOCR so each batch pads little."""
    from xcompress.ocr.preprocess import ratio_batches

    if sort_by_ratio and batch_size > 1:
        ratios = []
        for s in samples:
            h, w = _image_size(s.image)
            ratios.append(w / h)
        return ratio_batches(ratios, batch_size)
    order = list(range(len(samples)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@register_evaluator
class RecEvaluator(TaskEvaluator):
    """Text-line recognition: CTC greedy decoding, line accuracy / CER / NED."""

    task = "rec"

    def evaluate(self, runner, card, samples, batch_size, advance) -> TaskResult:
        from xcompress.eval.bootstrap import rec_counts
        from xcompress.ocr.metrics import char_errors, rec_metrics
        from xcompress.ocr.postprocess import ctc_greedy_decode
        from xcompress.ocr.preprocess import preprocess_for

        if not card.charset:
            raise ModelError(f"{card.name} has no charset: a recognizer's card must list it")
        preds: list[tuple[str, float]] = [("", 0.0)] * len(samples)
        for idx in _batches(samples, batch_size, sort_by_ratio=True):
            prepared = preprocess_for(card, [_pixels(samples[i].image) for i in idx])
            probs = runner.run(prepared.batch)
            if probs.ndim != 3 or probs.shape[2] != len(card.charset) + 1:
                raise ModelError(
                    f"{card.name} outputs shape {tuple(probs.shape)} but its charset has "
                    f"{len(card.charset)} characters (+1 blank): the card does not fit the model"
                )
            for i, res in zip(idx, ctc_greedy_decode(probs, card.charset), strict=True):
                preds[i] = res
            advance(len(idx))
        texts = [p[0] for p in preds]
        labels = [s.text for s in samples]
        metrics = rec_metrics(texts, labels).as_dict()
        metrics.pop("n")
        metrics["mean_score"] = float(np.mean([p[1] for p in preds])) if preds else 0.0
        failures = [
            Failure(
                image=_name(s.image, i), expected=s.text, got=t, cer=char_errors(t, s.text),
                score=sc,
            )
            for i, (s, (t, sc)) in enumerate(zip(samples, preds, strict=True))
            if t != s.text
        ]
        failures.sort(key=lambda f: -(f.cer or 0.0))
        return TaskResult(metrics, failures, rec_counts(texts, labels))


@register_evaluator
class DetEvaluator(TaskEvaluator):
    """Text detection: DB boxes, precision / recall / Hmean at IoU 0.5 (one page per call)."""

    task = "det"

    def evaluate(self, runner, card, samples, batch_size, advance) -> TaskResult:
        from xcompress.ocr.metrics import det_metrics
        from xcompress.ocr.postprocess import DBPostProcess
        from xcompress.ocr.preprocess import preprocess_for

        post = DBPostProcess(card.resolved_postprocess())
        preds: list[list[np.ndarray]] = []
        for s in samples:
            prepared = preprocess_for(card, [_pixels(s.image)])
            prob = runner.run(prepared.batch)
            boxes, _ = post(prob, prepared.src_shapes)
            preds.append(boxes[0])
            advance(1)
        gts = [list(s.boxes) for s in samples]
        metrics = det_metrics(preds, gts).as_dict()
        failures, counts = [], []
        for i, (s, p, g) in enumerate(zip(samples, preds, gts, strict=True)):
            m = det_metrics([p], [g])
            counts.append((m.matched, m.n_gt, m.n_det))
            if m.matched < m.n_gt or m.matched < m.n_det:
                failures.append(
                    Failure(
                        image=_name(s.image, i),
                        expected=f"{m.n_gt} boxes",
                        got=f"{m.n_det} boxes, {m.matched} matched",
                        hmean=m.hmean,
                    )
                )
        failures.sort(key=lambda f: f.hmean if f.hmean is not None else 1.0)
        return TaskResult({k: float(v) for k, v in metrics.items()}, failures,
                          np.asarray(counts, np.float64).reshape(-1, 3))


@register_evaluator
class ClsEvaluator(TaskEvaluator):
    """Direction classification: argmax label, accuracy."""

    task = "cls"

    def evaluate(self, runner, card, samples, batch_size, advance) -> TaskResult:
        from xcompress.ocr.metrics import cls_metrics
        from xcompress.ocr.postprocess import cls_decode
        from xcompress.ocr.preprocess import preprocess_for

        labels = card.resolved_postprocess().labels or ["0", "180"]
        preds: list[tuple[str, float]] = [("", 0.0)] * len(samples)
        for idx in _batches(samples, batch_size, sort_by_ratio=False):
            prepared = preprocess_for(card, [_pixels(samples[i].image) for i in idx])
            for i, res in zip(idx, cls_decode(runner.run(prepared.batch), labels), strict=True):
                preds[i] = res
            advance(len(idx))
        got = [p[0] for p in preds]
        metrics = cls_metrics(got, [s.label for s in samples]).as_dict()
        metrics.pop("n")
        failures = [
            Failure(image=_name(s.image, i), expected=s.label, got=g, score=sc)
            for i, (s, (g, sc)) in enumerate(zip(samples, preds, strict=True))
            if g != s.label
        ]
        failures.sort(key=lambda f: -(f.score or 0.0))  # confidently wrong first
        counts = np.asarray([(g == s.label, 1) for s, g in zip(samples, got, strict=True)],
                            np.float64).reshape(-1, 2)
        return TaskResult({k: float(v) for k, v in metrics.items()}, failures, counts)
