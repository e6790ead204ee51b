"""Model evaluation on PaddleOCR-format data sets.

Example:
    >>> from xcompress.eval import EvalConfig, evaluate                       # doctest: +SKIP
    >>> rep = evaluate("ppocr-v4-rec", "data/rec_val", EvalConfig(threads=2))  # doctest: +SKIP
    >>> rep.metrics["line_accuracy"], rep.metrics["cer"]                       # doctest: +SKIP
    (0.93, 0.011)
"""

from xcompress.eval.evaluate import evaluate
from xcompress.eval.report import EvalConfig, EvalReport, Failure

__all__ = ["EvalConfig", "EvalReport", "Failure", "evaluate"]
