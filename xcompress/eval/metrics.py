"""What each task's numbers mean: its headline metric, its budget metrics, what to show.

Every part that ranks, budgets or prints accuracy reads this one table — ``xcompress eval``'s
table, training's best-checkpoint choice, quantize's ``--max-drop`` budget and ``--metric``
choices, the export summaries — so "the metric of a recognizer" cannot mean two things.

Recognition's headline is the CER ignoring spaces (``cer_nospace``): PaddleOCR's RecMetric
ignores spaces by default, and the Chinese PP-OCR recognizers drop the spaces between English
words that a reader does not miss. ``cer`` (spaces counted) is always reported beside it and
may be chosen as the budget instead.

Example:
    >>> rec = task_metrics("rec")
    >>> rec.headline, rec.higher_is_better, rec.budget
    ('cer_nospace', False, ('cer_nospace', 'cer'))
    >>> round(rec.drop({"cer_nospace": 0.010}, {"cer_nospace": 0.015}), 6)   # positive: worse
    0.005
    >>> task_metrics("det").better(0.9, 0.8)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskMetrics:
    """One task's metric declarations.

    Attributes:
        task: ``rec``, ``det`` or ``cls``.
        headline: the metric that ranks models and checkpoints of this task.
        higher_is_better: direction of ``headline`` and of every ``budget`` metric.
        budget: metrics an accuracy budget may be checked on, the default first.
        shown: the order in which a full report lists the metrics (the rest follow).
        summary: the few metrics a one-line summary prints, ``headline`` first (rec: both
            CERs).
    """

    task: str
    headline: str
    higher_is_better: bool
    budget: tuple[str, ...]
    shown: tuple[str, ...]
    summary: tuple[str, ...]

    @property
    def default_budget(self) -> str:
        """The metric a budget is checked on unless the user picks another one."""
        return self.budget[0]

    def better(self, a: float, b: float) -> bool:
        """True if headline value ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def goodness(self, value: float) -> float:
        """``value`` signed so that larger is better (for ``max`` and running bests)."""
        return value if self.higher_is_better else -value

    def drop(
        self, reference: Mapping[str, float], new: Mapping[str, float], metric: str | None = None
    ) -> float:
        """Accuracy lost from ``reference`` to ``new`` on ``metric`` (default: headline);
        positive means worse."""
        key = metric or self.headline
        d = float(reference[key]) - float(new[key])
        return d if self.higher_is_better else -d


TASK_METRICS: dict[str, TaskMetrics] = {
    m.task: m
    for m in (
        TaskMetrics(
            task="rec",
            headline="cer_nospace",
            higher_is_better=False,
            budget=("cer_nospace", "cer"),
            shown=("line_accuracy", "cer", "line_accuracy_nospace", "cer_nospace", "ned"),
            summary=("cer_nospace", "cer", "line_accuracy_nospace"),
        ),
        TaskMetrics(
            task="det",
            headline="hmean",
            higher_is_better=True,
            budget=("hmean",),
            shown=("precision", "recall", "hmean"),
            summary=("hmean", "precision", "recall"),
        ),
        TaskMetrics(
            task="cls",
            headline="accuracy",
            higher_is_better=True,
            budget=("accuracy",),
            shown=("accuracy",),
            summary=("accuracy",),
        ),
    )
}


def task_metrics(task: str) -> TaskMetrics:
    """The metric declarations of ``task``.

    Raises:
        KeyError: an unknown task (the message lists the known ones).
    """
    try:
        return TASK_METRICS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r} (known: {', '.join(TASK_METRICS)})") from None


def format_metrics(task: str, metrics: Mapping[str, float], names: tuple[str, ...] = ()) -> str:
    """``"cer_nospace 0.0123, cer 0.0150, ..."``: the task's summary metrics (or ``names``)
    that ``metrics`` holds, four decimals each.

    Example:
        >>> format_metrics("rec", {"cer": 0.02, "cer_nospace": 0.01, "line_accuracy": 0.9})
        'cer_nospace 0.0100, cer 0.0200'
    """
    keys = names or task_metrics(task).summary
    return ", ".join(f"{k} {float(metrics[k]):.4f}" for k in keys if k in metrics)
