"""Latency and cost of models on targets.

- :mod:`xcompress.profile.base`: :class:`ProfileConfig`, :class:`LatencyResult`,
  :class:`Comparison`, the :class:`Profiler` base and its registry by target kind.
- :mod:`xcompress.profile.host`: this machine, in-process.
- :mod:`xcompress.profile.flops`: MACs / FLOPs / parameters of an ONNX model at a shape.
- :mod:`xcompress.profile.run`: the ``xcompress profile`` job (resolve, count, time).

Example:
    >>> from xcompress.profile import ProfileConfig, get_profiler
    >>> cfg = ProfileConfig(shape=(1, 3, 48, 320), runs=50)
    >>> get_profiler("host").profile("m.onnx", cfg).median_ms    # doctest: +SKIP
    7.93
"""

from xcompress.profile.base import (
    Comparison,
    LatencyResult,
    Loaded,
    ProfileConfig,
    Profiler,
    get_profiler,
    profiler_kinds,
    register_profiler,
)
from xcompress.profile.machine import Machine

__all__ = [
    "Comparison",
    "LatencyResult",
    "Loaded",
    "Machine",
    "ProfileConfig",
    "Profiler",
    "get_profiler",
    "profiler_kinds",
    "register_profiler",
]
