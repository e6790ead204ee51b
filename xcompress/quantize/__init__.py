"""Accuracy-aware int8 post-training quantization of OCR ONNX models.

The library entry is :func:`quantize`; ``xcompress quantize`` only parses its arguments.

- :mod:`~xcompress.quantize.config`: :class:`QuantizeConfig` (saved in the output card).
- :mod:`~xcompress.quantize.api`: :func:`quantize`, the sequence of the stages below.
- :mod:`~xcompress.quantize.inputs`: calibration / budget sets and their preprocessed inputs.
- :mod:`~xcompress.quantize.stages`: plan timing, calibration choice, float fallback, final
  latency; each a frozen result.
- :mod:`~xcompress.quantize.report`: ``report.json`` from the stage results, ``report.md``.
- :mod:`~xcompress.quantize.rewrites`: graph rewrites (registry of :class:`Rewrite`).
- :mod:`~xcompress.quantize.calibrate`: shape-agnostic histograms and calibration methods.
- :mod:`~xcompress.quantize.plans`: rewrites + op types to quantize, chosen by measured speed.
- :mod:`~xcompress.quantize.signals`: OCR-aware sensitivity signals per task.
- :mod:`~xcompress.quantize.fallback`: keep the most sensitive layers float until the budget holds.

Example:
    >>> from xcompress.quantize import QuantizeConfig, quantize          # doctest: +SKIP
    >>> res = quantize("ppocr-v4-rec", "data/calib", "out/rec-int8", QuantizeConfig())
    >>> res.report["size"]["ratio"] < 0.3
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xcompress.quantize.config import QuantizeConfig

if TYPE_CHECKING:
    from xcompress.quantize.api import QuantizeResult, quantize

__all__ = ["QuantizeConfig", "QuantizeResult", "quantize"]


def __getattr__(name: str) -> Any:
    # onnx and onnxruntime load only when quantize is used (keeps `import xcompress` lean)
    if name in ("quantize", "QuantizeResult"):
        from xcompress.quantize import api

        return getattr(api, name)
    raise AttributeError(name)
