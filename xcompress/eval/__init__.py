"""Model evaluation on PaddleOCR-format data sets: the one evaluation core.

:func:`evaluate` scores a model file on a data set and reports every setting;
:func:`evaluate_samples` is the core it calls (runner + card + samples -> metrics), shared by
training, quantize and export; :func:`task_metrics` says, per task, which metric ranks models
and which ones a budget may use.

Example:
    >>> from xcompress.eval import EvalConfig, evaluate                       # doctest: +SKIP
    >>> rep = evaluate("ppocr-v4-rec", "data/rec_val", EvalConfig(threads=2))  # doctest: +SKIP
    >>> rep.metrics["cer_nospace"], rep.metrics["cer"]                         # doctest: +SKIP
    (0.009, 0.011)
"""

from xcompress.eval.evaluate import evaluate
from xcompress.eval.metrics import TASK_METRICS, TaskMetrics, format_metrics, task_metrics
from xcompress.eval.report import EvalConfig, EvalReport, Failure
from xcompress.eval.tasks import TaskResult, evaluate_samples
from xcompress.eval.torch_runner import TorchRunner

__all__ = [
    "TASK_METRICS",
    "EvalConfig",
    "EvalReport",
    "Failure",
    "TaskMetrics",
    "TaskResult",
    "TorchRunner",
    "evaluate",
    "evaluate_samples",
    "format_metrics",
    "task_metrics",
]
