"""Inference runners: one small interface over onnxruntime (and, later, LiteRT and torch).

A :class:`Runner` takes a float32 NCHW batch and returns the model's first output. Runners are
registered by file suffix, so evaluation and profiling never branch on the backend.

Example:
    >>> runner = open_runner("model.onnx", threads=2)      # doctest: +SKIP
    >>> probs = runner.run(np.zeros((1, 3, 48, 320), np.float32))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xcompress.errors import ModelError


class Runner(ABC):
    """Runs one model on one backend."""

    path: Path

    @property
    @abstractmethod
    def input_name(self) -> str:
        """Name of the single image input."""

    @property
    @abstractmethod
    def output_name(self) -> str:
        """Name of the output that :meth:`run` returns."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run on a float32 NCHW batch and return the first output as float32."""


_RUNNERS: dict[str, Callable[..., Runner]] = {}


def register_runner(*suffixes: str) -> Callable[[Callable[..., Runner]], Callable[..., Runner]]:
    """Class decorator: use this runner for model files with these suffixes."""

    def deco(factory: Callable[..., Runner]) -> Callable[..., Runner]:
        for s in suffixes:
            _RUNNERS[s] = factory
        return factory

    return deco


def open_runner(path: str | Path, threads: int | None = None) -> Runner:
    """Open a model file with the runner registered for its suffix."""
    path = Path(path)
    # Importing the backends registers them; each imports its heavy library lazily.
    from xcompress.runtime import litert, ort  # noqa: F401

    factory = _RUNNERS.get(path.suffix.lower())
    if factory is None:
        known = ", ".join(sorted(_RUNNERS))
        raise ModelError(f"cannot run {path.name}: unsupported model format (supported: {known})")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    return factory(path, threads=threads)
