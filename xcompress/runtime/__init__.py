"""The runtime layer: one registered :class:`Runtime` descriptor per inference runtime.

A descriptor says everything the rest of xcompress needs to know about a runtime: the model
files it reads (suffixes) and their card ``format``, the distribution whose version results
record, how to open a :class:`Runner` (a float32 NCHW batch in, the first output out), how to
open a model for timing (and the session options recorded beside each latency), and which
ops it runs with int8 kernels. Evaluation, profiling, quantization and artifacts ask this
layer, so none of them branches on the backend, and adding a runtime is one descriptor.

Importing this package imports no backend: each runner imports its library when it opens a
model (``tests/test_lean_imports.py``).

Example:
    >>> runtime_for("model.onnx").name, get_runtime("litert").format
    ('ort', 'tflite')
    >>> model_suffixes()
    ('.onnx', '.tflite', '.pt')
    >>> runner = open_runner("model.onnx", threads=2)      # doctest: +SKIP
    >>> probs = runner.run(np.zeros((1, 3, 48, 320), np.float32))   # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np

from xcompress.errors import ModelError


class Runner(ABC):
    """Runs one model on one backend.

    ``runtime_name`` is set when the runner's :class:`Runtime` is registered, so every runner
    can say which runtime and version produced its outputs (:attr:`runtime_info`).
    """

    path: Path
    runtime_name: ClassVar[str] = ""

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

    @property
    def runtime_info(self) -> tuple[str, str]:
        """(distribution, version) of the runtime behind this runner, for reports; a runner of
        no registered runtime (one wrapping a torch module, say) gives its class name."""
        rt = _RUNTIMES.get(self.runtime_name)
        return (rt.package, rt.version()) if rt else (type(self).__name__, "unknown")


#: One inference on a fixed batch, as a profiler times it (its result is ignored).
TimedRun = Callable[[np.ndarray], object]


@dataclass(frozen=True, eq=False)
class Runtime:
    """What xcompress knows about one inference runtime, as data.

    Attributes:
        name: the name target files and results use (``ort``, ``litert``).
        format: the model card's ``format`` of its files (``onnx``, ``tflite``).
        suffixes: model file suffixes it reads, lower case, preferred first.
        package: the distribution whose version is recorded (``onnxruntime``).
        runner: the :class:`Runner` class that opens its files; None for a format xcompress
            reads (e.g. a torch checkpoint) but cannot run yet.
        timing_options: session options every timed session gets, recorded in each latency
            result (and restated by the board runner, which cannot import xcompress).
        timing_opener: opens a model for timing with less per-call overhead than
            :meth:`Runner.run`; None times :meth:`Runner.run` itself.
        int8_ops: op types it runs with int8 kernels when their inputs come from
            DequantizeLinear and their output goes to QuantizeLinear (anything else runs in
            float, so a QDQ pair between two such float ops is only noise and time).
        int8_weight_ops: the weight layers among them (what a "weights only" plan quantizes).
        int8_graph_ops: the op types to quantize so a whole backbone stays int8: the int8
            kernels plus ops the runtime folds into a quantized neighbour (Relu, Clip).
    """

    name: str
    format: str
    suffixes: tuple[str, ...]
    package: str
    runner: type[Runner] | None = None
    timing_options: Mapping[str, str] = field(default_factory=dict)
    timing_opener: Callable[[Path, int], TimedRun] | None = None
    int8_ops: frozenset[str] = frozenset()
    int8_weight_ops: tuple[str, ...] = ()
    int8_graph_ops: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        """Whether xcompress can run (and so evaluate and profile) this runtime's files."""
        return self.runner is not None

    def version(self) -> str:
        """Installed version of :attr:`package`, or ``unknown``."""
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return "unknown"

    def open(self, path: str | Path, threads: int | None = None) -> Runner:
        """A runner on ``path`` with ``threads`` intra-op threads (None: the runtime's default).

        Raises:
            ModelError: the runtime cannot run files yet, the file is missing or unloadable.
        """
        path = Path(path)
        if self.runner is None:
            raise ModelError(f"cannot run {path.name}: unsupported model format "
                             f"(supported: {', '.join(sorted(runtime_of_suffix()))})")  # fmt: skip
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return self.runner(path, threads=threads)

    def open_timed(self, path: Path, threads: int) -> TimedRun:
        """One inference on a fixed batch, for a profiler to time."""
        if self.timing_opener is not None:
            return self.timing_opener(path, threads)
        return self.open(path, threads=threads).run


_RUNTIMES: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime:
    """Add a runtime descriptor; its runner learns its runtime's name.

    Example:
        >>> register_runtime(Runtime("coreml", "mlpackage", (".mlpackage",), "coremltools"))
        ...                                                       # doctest: +SKIP
    """
    for s in runtime.suffixes:
        if s != s.lower() or not s.startswith("."):
            raise ValueError(f"runtime {runtime.name}: suffix {s!r} must be like '.onnx'")
    _RUNTIMES[runtime.name] = runtime
    if runtime.runner is not None:
        runtime.runner.runtime_name = runtime.name
    return runtime


def list_runtimes(runnable_only: bool = False) -> list[Runtime]:
    """Registered runtimes, in registration order (the built-in ones: ort, litert, torch)."""
    return [rt for rt in _RUNTIMES.values() if rt.runnable or not runnable_only]


def runtime_names(runnable_only: bool = True) -> list[str]:
    """Names of the registered runtimes (by default only those xcompress can run)."""
    return [rt.name for rt in list_runtimes(runnable_only)]


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return _RUNTIMES[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r} ({', '.join(_RUNTIMES)})") from None


def runtime_for(path: str | Path) -> Runtime | None:
    """The runtime that reads files with ``path``'s suffix, or None."""
    suffix = Path(path).suffix.lower()
    return next((rt for rt in _RUNTIMES.values() if suffix in rt.suffixes), None)


def model_suffixes() -> tuple[str, ...]:
    """Every model file suffix xcompress reads (runnable or not), in registration order."""
    return tuple(s for rt in _RUNTIMES.values() for s in rt.suffixes)


def format_of_suffix() -> dict[str, str]:
    """Model file suffix -> the card ``format`` of such files."""
    return {s: rt.format for rt in _RUNTIMES.values() for s in rt.suffixes}


def runtime_of_suffix() -> dict[str, str]:
    """Model file suffix -> the runtime that runs such files (runnable runtimes only)."""
    return {s: rt.name for rt in list_runtimes(runnable_only=True) for s in rt.suffixes}


def runner_packages() -> dict[str, str]:
    """Runner class module -> the distribution it runs on (for runners that predate
    :attr:`Runner.runtime_info`)."""
    return {rt.runner.__module__: rt.package for rt in list_runtimes(True) if rt.runner}


def open_runner(path: str | Path, threads: int | None = None) -> Runner:
    """Open a model file with the runner of the runtime registered for its suffix.

    Raises:
        ModelError: a format no runtime runs, a missing file, or one the runtime rejects.
    """
    rt = runtime_for(path)
    if rt is None or not rt.runnable:
        known = ", ".join(sorted(runtime_of_suffix()))
        raise ModelError(
            f"cannot run {Path(path).name}: unsupported model format (supported: {known})"
        )
    return rt.open(path, threads=threads)


#: Torch checkpoints: artifacts and cards know the format; there is no torch runner yet.
TORCH = Runtime(name="torch", format="torch", suffixes=(".pt",), package="torch")

# The built-in runtimes, in the order suffix lists show them. Each module imports its backend
# only when it opens a model.
from xcompress.runtime import litert, ort  # noqa: E402

for _rt in (ort.ORT, litert.LITERT, TORCH):
    register_runtime(_rt)
