"""OCR-aware signals: how far an int8 model's outputs are from the float model's.

Ranking layers by sensitivity needs a signal that is cheap (one run per layer) and that
follows what users see, not a tensor norm. Each task has one, registered by task name:

* rec: CTC greedy-decoding disagreement, the edit distance between the int8 and the float
  decodings divided by the float decodings' length (a CER against the float model), plus a
  small term for the mean change of the per-step top probability, to break ties between
  layers that flip no character on a small probe set;
* det: 1 - IoU of the binarized probability maps (DB threshold) of the two models, plus the
  mean absolute probability change;
* cls: the fraction of flipped labels plus the mean absolute probability change.

Example:
    >>> sig = get_signal("det")
    >>> a = [np.zeros((1, 1, 8, 8), np.float32)]; a[0][..., 2:6, 2:6] = 0.9
    >>> round(sig.disagreement(a, a, card=None), 3)
    0.0
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from xcompress.card import ModelCard
from xcompress.eval.metrics import task_metrics

_TIE = 0.1  # weight of the continuous tie-breaker next to the discrete signal


class Signal(ABC):
    """Disagreement between reference (float) and candidate outputs; 0 means identical.

    The budget metrics are the task's declarations
    (:func:`xcompress.eval.metrics.task_metrics`), not the signal's own: set by
    :func:`register_signal` from the task.
    """

    task: str
    #: metric the budget is checked on by default, and whether a larger value is better
    metric: str
    higher_is_better: bool
    #: metrics the budget may be checked on instead (``--metric``), all lower- or all
    #: higher-is-better like ``metric``
    metrics: tuple[str, ...] = ()

    @abstractmethod
    def disagreement(
        self, ref: Sequence[np.ndarray], out: Sequence[np.ndarray], card: ModelCard | None
    ) -> float:
        """One number over all probe samples (list entries are per-sample outputs)."""

    def drop(self, fp32: dict[str, float], int8: dict[str, float]) -> float:
        """Accuracy lost by int8 on the budget metric (positive = worse)."""
        d = fp32[self.metric] - int8[self.metric]
        return d if self.higher_is_better else -d


_SIGNALS: dict[str, Signal] = {}


def register_signal(cls: type[Signal]) -> type[Signal]:
    """Class decorator: register one instance under ``cls.task``, with the task's budget
    metrics (default, choices, direction) from :mod:`xcompress.eval.metrics`."""
    tm = task_metrics(cls.task)
    cls.metric, cls.metrics = tm.default_budget, tm.budget
    cls.higher_is_better = tm.higher_is_better
    _SIGNALS[cls.task] = cls()
    return cls


def get_signal(task: str, metric: str | None = None) -> Signal:
    """The signal of ``task`` ('rec', 'det', 'cls'), its budget on ``metric`` (None: default).

    Raises:
        KeyError: a metric the task cannot budget on (the message lists the choices).
    """
    sig = _SIGNALS[task]
    if metric is None or metric == sig.metric:
        return sig
    if metric not in sig.metrics:
        raise KeyError(f"--metric for a {task} model is one of {', '.join(sig.metrics)}, "
                       f"not {metric!r}")
    other = copy.copy(sig)
    other.metric = metric
    return other


@register_signal
class RecSignal(Signal):
    task = "rec"  # budget: cer_nospace unless --metric cer (see xcompress.eval.metrics)

    def disagreement(self, ref, out, card):
        from rapidfuzz.distance import Levenshtein

        from xcompress.ocr.postprocess import ctc_greedy_decode

        charset = card.charset if card is not None and card.charset else None
        errors = chars = 0
        tie = []
        for r, o in zip(ref, out, strict=True):
            if charset is not None:
                tr = [t for t, _ in ctc_greedy_decode(r, charset)]
                to = [t for t, _ in ctc_greedy_decode(o, charset)]
            else:  # no charset (tests): compare the class index sequences
                tr = ["".join(chr(0x100 + i) for i in r.argmax(-1)[k]) for k in range(len(r))]
                to = ["".join(chr(0x100 + i) for i in o.argmax(-1)[k]) for k in range(len(o))]
            for a, b in zip(tr, to, strict=True):
                errors += Levenshtein.distance(a, b)
                chars += max(len(a), 1)
            tie.append(float(np.abs(r.max(-1) - o.max(-1)).mean()))
        return errors / max(chars, 1) + _TIE * float(np.mean(tie))


@register_signal
class DetSignal(Signal):
    task = "det"
    thresh = 0.3  # PaddleOCR's DB binarization threshold

    def disagreement(self, ref, out, card):
        if card is not None and card.postprocess is not None and card.postprocess.thresh:
            thresh = card.postprocess.thresh
        else:
            thresh = self.thresh
        inter = union = 0
        tie = []
        for r, o in zip(ref, out, strict=True):
            a, b = r > thresh, o > thresh
            inter += int(np.logical_and(a, b).sum())
            union += int(np.logical_or(a, b).sum())
            tie.append(float(np.abs(r - o).mean()))
        iou = inter / union if union else 1.0
        return (1.0 - iou) + _TIE * float(np.mean(tie))


@register_signal
class ClsSignal(Signal):
    task = "cls"

    def disagreement(self, ref, out, card):
        flips, n, tie = 0, 0, []
        for r, o in zip(ref, out, strict=True):
            r2, o2 = r.reshape(len(r), -1), o.reshape(len(o), -1)
            flips += int((r2.argmax(1) != o2.argmax(1)).sum())
            n += len(r2)
            tie.append(float(np.abs(r2 - o2).mean()))
        return flips / max(n, 1) + _TIE * float(np.mean(tie))
