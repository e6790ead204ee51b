"""Latency profiling: configs, results, the :class:`Profiler` base and its registry.

A profiler times a model on one kind of target (this machine, an emulated ARM64 board, a
real board over SSH). Subclasses implement three small methods — :meth:`Profiler.load`,
:meth:`Profiler.time_round` and :meth:`Profiler.machine` — and inherit :meth:`Profiler.profile`
(warm-up, timed runs, statistics) and :meth:`Profiler.compare`, which times two models
*alternately in one run* (rounds in ABBA order), the only fair way to compare latencies on a
machine whose speed drifts (shared cores, thermal throttling, frequency scaling).

Example:
    >>> from xcompress.profile import ProfileConfig, get_profiler
    >>> prof = get_profiler("host")
    >>> cfg = ProfileConfig(shape=(1, 3, 48, 320))
    >>> res = prof.profile("model.onnx", cfg)                    # doctest: +SKIP
    >>> prof.compare("int8.onnx", "model.onnx", cfg).ratio       # doctest: +SKIP
    0.71
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xcompress.errors import ModelError, XCompressError
from xcompress.profile.machine import Machine
from xcompress.runtime import Runtime, get_runtime, list_runtimes, runtime_for, runtime_of_suffix
from xcompress.targets import Target

# Model file suffix -> runtime name used in target files, and runtime name -> the
# distribution whose version is recorded: views of the runtime layer's descriptors.
RUNTIME_OF_SUFFIX: dict[str, str] = runtime_of_suffix()
RUNTIME_DIST: dict[str, str] = {rt.name: rt.package for rt in list_runtimes()}

_BOOTSTRAP_SAMPLES = 1000


class ProfileConfig(BaseModel):
    """How to time a model.

    Attributes:
        shape: input shape, e.g. ``(1, 3, 48, 320)``.
        threads: intra-op threads; None uses the target's ``default_threads``, else all cores.
        warmup: untimed runs first (lets allocators, caches and thread pools settle).
        runs: timed runs per model.
        min_time_s: if set, keep timing past ``runs`` until the timed runs add up to this many
            seconds (per model), so fast models get enough samples.
        seed: seed of the random input.
        round_runs: in :meth:`Profiler.compare`, runs of one model per turn before switching.
        ratio_precision: in :meth:`Profiler.compare`, keep timing rounds past ``runs`` (and
            ``min_time_s``) until the 95% interval of the ratio is within this fraction of it
            on each side (0.02: +-2%), or until ``max_time_s``. A fixed run count is too few
            samples on a noisy shared machine and wastes time on a quiet one.
        max_time_s: the most seconds of timed runs (both models together) that
            ``ratio_precision`` may spend.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    shape: tuple[int, ...] = Field(min_length=1)
    threads: int | None = Field(default=None, ge=1)
    warmup: int = Field(default=5, ge=0)
    runs: int = Field(default=30, ge=1)
    min_time_s: float | None = Field(default=None, gt=0)
    seed: int = 0
    round_runs: int = Field(default=1, ge=1)
    ratio_precision: float | None = Field(default=None, gt=0, lt=1)
    max_time_s: float = Field(default=10.0, gt=0)


class LatencyResult(BaseModel):
    """Latency statistics of one model at one shape, threads, runtime and target (ms)."""

    model_config = ConfigDict(frozen=True)

    model: str
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float  # interquartile range: a robust spread
    n_runs: int
    shape: tuple[int, ...]
    threads: int
    runtime: str
    runtime_version: str
    runtime_options: dict[str, str] = Field(default_factory=dict)
    target: str
    machine: Machine
    samples_ms: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], **fields: Any) -> LatencyResult:
        """Statistics of ``samples_ms``; ``fields`` give the rest (model, shape, ...)."""
        s = np.asarray(samples_ms, dtype=np.float64)
        q25, q50, q75, q90 = np.percentile(s, [25, 50, 75, 90])
        return cls(
            median_ms=float(q50),
            p90_ms=float(q90),
            mean_ms=float(s.mean()),
            std_ms=float(s.std(ddof=1)) if s.size > 1 else 0.0,
            min_ms=float(s.min()),
            max_ms=float(s.max()),
            iqr_ms=float(q75 - q25),
            n_runs=int(s.size),
            samples_ms=tuple(float(v) for v in s),
            **fields,
        )


class Comparison(BaseModel):
    """Two models timed alternately in one run.

    ``ratio`` is ``a.median_ms / b.median_ms`` (below 1: A is faster). Its spread is given two
    ways: the quartiles of the per-round ratios, and a 95% bootstrap interval of the ratio of
    medians, resampling the (A, B) pairs timed in the same round.
    """

    model_config = ConfigDict(frozen=True)

    a: LatencyResult
    b: LatencyResult
    ratio: float
    p90_ratio: float
    rounds: int
    order: str = "ABBA"
    round_ratio_q25: float
    round_ratio_median: float
    round_ratio_q75: float
    ci95_low: float
    ci95_high: float


@dataclass(frozen=True)
class Loaded:
    """A model made ready to time by :meth:`Profiler.load`.

    ``path`` is the local model file as given (a remote profiler keeps its copy's location in
    ``state``); ``state`` is the profiler's own (a session and its input, a remote process...).
    """

    path: Path
    runtime: str
    runtime_version: str
    threads: int
    shape: tuple[int, ...]
    runtime_options: dict[str, str] = field(default_factory=dict)
    state: Any = None


class Profiler(ABC):
    """Times models on one kind of target.

    Subclasses implement :meth:`load`, :meth:`time_round` and :meth:`machine`, register with
    :func:`register_profiler`, and pass the shared contract test
    (``tests/profiler_contract.py``).
    """

    kind: ClassVar[str] = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    # -- what a profiler implements ------------------------------------------------------

    @abstractmethod
    def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
        """Make the model ready to time at ``config.shape`` with ``threads`` threads.

        The path exists and its runtime is one the target has (checked by the caller).
        Raises :class:`~xcompress.errors.ModelError` if the model cannot be loaded or run at
        the shape.
        """

    @abstractmethod
    def time_round(self, loaded: Loaded, n: int) -> list[float]:
        """Run the loaded model ``n`` times back to back; return each run's time in ms."""

    @abstractmethod
    def machine(self) -> Machine:
        """Facts about the device the runs happen on."""

    def close(self, loaded: Loaded) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release what :meth:`load` acquired (remote processes, temp files)."""

    # -- what every profiler gets --------------------------------------------------------

    def profile(self, model_path: str | Path, config: ProfileConfig) -> LatencyResult:
        """Warm up, then time ``config.runs`` runs (more if ``min_time_s`` asks for it).

        Raises:
            ModelError: missing file, a format the target cannot run, or a bad shape.
        """
        loaded = self._open(model_path, config)
        try:
            if config.warmup:
                self.time_round(loaded, config.warmup)
            samples = list(self.time_round(loaded, config.runs))
            while config.min_time_s and sum(samples) < config.min_time_s * 1e3:
                per_run = max(float(np.median(samples)), 1e-3)
                missing = config.min_time_s * 1e3 - sum(samples)
                samples += self.time_round(loaded, max(1, math.ceil(missing / per_run)))
        finally:
            self.close(loaded)
        return self._result(loaded, samples)

    def compare(
        self, model_a: str | Path, model_b: str | Path, config: ProfileConfig
    ) -> Comparison:
        """Time A and B alternately in one run and return their latencies and ratio.

        Both are loaded and warmed up, then timed in rounds whose order alternates
        (A B, B A, A B, ...: ABBA pairs), ``config.round_runs`` runs per turn, until each has
        ``config.runs`` runs (and ``min_time_s`` seconds, if set) and, with
        ``ratio_precision``, until the ratio's 95% interval is that narrow or ``max_time_s``
        is spent. Drift in machine speed then hits both models alike.
        """
        a = self._open(model_a, config)
        try:
            b = self._open(model_b, config)
        except BaseException:
            self.close(a)
            raise
        a_runs: list[list[float]] = []
        b_runs: list[list[float]] = []
        try:
            if config.warmup:
                self.time_round(a, config.warmup)
                self.time_round(b, config.warmup)
            done = 0
            spent_a = spent_b = 0.0  # ms of timed runs so far
            check_at = config.runs
            while True:
                if done >= config.runs and min(spent_a, spent_b) >= (config.min_time_s or 0) * 1e3:
                    if not _more_rounds(a_runs, b_runs, spent_a + spent_b, config,
                                        check_now=done >= check_at):  # fmt: skip
                        break
                    if done >= check_at:
                        check_at = int(done * 1.5) + 1  # re-checked ever less often
                left = config.runs - done
                n = min(config.round_runs, left) if left > 0 else config.round_runs
                first, second = (a, b) if len(a_runs) % 2 == 0 else (b, a)
                t_first = self.time_round(first, n)
                t_second = self.time_round(second, n)
                a_runs.append(t_first if first is a else t_second)
                b_runs.append(t_second if first is a else t_first)
                spent_a += sum(a_runs[-1])
                spent_b += sum(b_runs[-1])
                done += n
        finally:
            self.close(a)
            self.close(b)
        return _comparison(
            self._result(a, _flat(a_runs)),
            self._result(b, _flat(b_runs)),
            a_runs,
            b_runs,
            config.seed,
        )

    def resolve_threads(self, config: ProfileConfig) -> int:
        """Threads to use: the config's, else the target's default, else all device cores."""
        return config.threads or self.target.default_threads or self.machine().cores

    def _open(self, model_path: str | Path, config: ProfileConfig) -> Loaded:
        path = Path(model_path)
        runtime = model_runtime(path).name
        if runtime not in self.target.runtimes:
            raise ModelError(
                f"target {self.target.name} has no {runtime} runtime "
                f"(it has: {', '.join(self.target.runtimes)}); export the model for it first"
            )
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return self.load(path, config, self.resolve_threads(config))

    def _result(self, loaded: Loaded, samples: Sequence[float]) -> LatencyResult:
        return LatencyResult.from_samples(
            samples,
            model=str(loaded.path),
            shape=loaded.shape,
            threads=loaded.threads,
            runtime=loaded.runtime,
            runtime_version=loaded.runtime_version,
            runtime_options=dict(loaded.runtime_options),
            target=self.target.name,
            machine=self.machine(),
        )


def model_runtime(path: Path) -> Runtime:
    """The runtime that runs ``path`` (by its suffix).

    Raises:
        ModelError: a format no runnable runtime reads.
    """
    rt = runtime_for(path)
    if rt is None or not rt.runnable:
        known = ", ".join(sorted(RUNTIME_OF_SUFFIX))
        raise ModelError(f"cannot profile {path.name}: unsupported format (use {known})")
    return rt


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime (``ort`` -> onnxruntime's), or ``unknown``."""
    if runtime in RUNTIME_DIST:
        return get_runtime(runtime).version()
    try:
        return metadata.version(runtime)
    except metadata.PackageNotFoundError:
        return "unknown"


def _flat(rounds: list[list[float]]) -> list[float]:
    return [t for r in rounds for t in r]


def _ratio_interval(sa: np.ndarray, sb: np.ndarray, seed: int,
                    resamples: int = _BOOTSTRAP_SAMPLES) -> tuple[float, float]:  # fmt: skip
    """95% paired bootstrap interval of median(A) / median(B): runs k of A and k of B happened
    in the same round, so resampling k keeps each pair's shared machine state. Resampled in
    chunks, so thousands of runs of a fast model do not need gigabytes."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(sa.size, 1))
    boot = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, sa.size, size=(min(chunk, resamples - start), sa.size))
        boot.append(np.median(sa[idx], axis=1) / np.median(sb[idx], axis=1))
    lo, hi = np.percentile(np.concatenate(boot), [2.5, 97.5])
    return float(lo), float(hi)


def _more_rounds(a_runs: list[list[float]], b_runs: list[list[float]], spent_ms: float,
                 config: ProfileConfig, check_now: bool) -> bool:  # fmt: skip
    """Whether ``config.ratio_precision`` asks for more rounds: time is left and (when checked
    now) the ratio's interval is still wider than asked."""
    if config.ratio_precision is None or spent_ms >= config.max_time_s * 1e3:
        return False
    if not check_now:
        return True
    sa, sb = np.asarray(_flat(a_runs)), np.asarray(_flat(b_runs))
    ratio = float(np.median(sa) / np.median(sb))
    lo, hi = _ratio_interval(sa, sb, config.seed, resamples=200)
    return max(ratio - lo, hi - ratio) > config.ratio_precision * ratio


def _comparison(
    a: LatencyResult,
    b: LatencyResult,
    a_runs: list[list[float]],
    b_runs: list[list[float]],
    seed: int,
) -> Comparison:
    per_round = np.array([np.median(x) / np.median(y) for x, y in zip(a_runs, b_runs, strict=True)])
    q25, q50, q75 = np.percentile(per_round, [25, 50, 75])
    lo, hi = _ratio_interval(np.asarray(a.samples_ms), np.asarray(b.samples_ms), seed)
    return Comparison(
        a=a,
        b=b,
        ratio=a.median_ms / b.median_ms,
        p90_ratio=a.p90_ms / b.p90_ms,
        rounds=len(a_runs),
        round_ratio_q25=float(q25),
        round_ratio_median=float(q50),
        round_ratio_q75=float(q75),
        ci95_low=float(lo),
        ci95_high=float(hi),
    )


# -- registry ------------------------------------------------------------------------------

_PROFILERS: dict[str, type[Profiler]] = {}
# Modules whose import registers the built-in profilers (each imports its backend lazily).
_BUILTIN_MODULES = ("xcompress.profile.host", "xcompress.profile.emu", "xcompress.profile.ssh")


def register_profiler(kind: str) -> Callable[[type[Profiler]], type[Profiler]]:
    """Class decorator: use this profiler for targets of ``kind``.

    Example:
        >>> @register_profiler("arm64-emu")                           # doctest: +SKIP
        ... class QemuProfiler(Profiler): ...
    """

    def deco(cls: type[Profiler]) -> type[Profiler]:
        cls.kind = kind
        _PROFILERS[kind] = cls
        return cls

    return deco


def profiler_kinds() -> list[str]:
    """Target kinds that have a profiler."""
    _load_builtins()
    return sorted(_PROFILERS)


def get_profiler(target: Target | str | Path) -> Profiler:
    """The profiler registered for a :class:`Target`'s kind.

    A name, alias, YAML path or ``ssh://`` address is resolved by
    :func:`xcompress.profile.run.open_profiler`, the resolver every ``--target`` goes through.

    Raises:
        XCompressError: unknown target, or no profiler yet for the target's kind.
    """
    if not isinstance(target, Target):
        from xcompress.profile.run import open_profiler

        return open_profiler(target)
    _load_builtins()
    cls = _PROFILERS.get(target.kind)
    if cls is None:
        raise XCompressError(
            f"target {target.name} is of kind {target.kind!r}, which has no profiler yet "
            f"(available kinds: {', '.join(sorted(_PROFILERS))})"
        )
    return cls(target)


def _load_builtins() -> None:
    for name in _BUILTIN_MODULES:
        importlib.import_module(name)
