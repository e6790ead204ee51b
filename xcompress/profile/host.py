"""Profiling on this machine, in-process.

Each runtime has an opener in :data:`TIMING_OPENERS`; a runtime without one (LiteRT for
``.tflite``, once :mod:`xcompress.runtime` registers a runner for it) is opened with the runner
registered for its file suffix, so adding a runner is enough to profile a new format here.
Each run is timed with :func:`time.perf_counter_ns` around one inference on a fixed random
input.

onnxruntime is opened with :func:`xcompress.runtime.ort.make_session_options` plus
``session.intra_op.allow_spinning = 0``. With spinning on, the idle workers of one session
keep spinning while the other session runs, and on a shared machine they also fight other
processes for the cores. Measured on PP-OCRv4 rec, 2 threads, this 2-core machine under load
(Nov 2026): spinning on, one model alone 51-78 ms, alternated with a copy 93-120 ms;
spinning off, 27-33 ms alone and 28-36 ms alternated. The option is recorded in every result.

Example:
    >>> from xcompress.profile import ProfileConfig, get_profiler
    >>> prof = get_profiler("host")
    >>> res = prof.profile("model.onnx", ProfileConfig(shape=(1, 3, 48, 320)))  # doctest: +SKIP
    >>> res.runtime, res.machine.int8_dot                                      # doctest: +SKIP
    ('ort', ('amx_int8', 'avx512_vnni', 'avx_vnni'))
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xcompress.errors import ModelError
from xcompress.profile.base import (
    RUNTIME_OF_SUFFIX,
    Loaded,
    ProfileConfig,
    Profiler,
    register_profiler,
    runtime_version,
)
from xcompress.profile.machine import Machine, host_machine
from xcompress.runtime import open_runner

# Session config entries for onnxruntime timing sessions (see the module docstring).
ORT_TIMING_OPTIONS: dict[str, str] = {"session.intra_op.allow_spinning": "0"}

RunFn = Callable[[np.ndarray], object]


@dataclass(frozen=True)
class _HostState:
    run: RunFn
    batch: np.ndarray


def _open_ort(path: Path, threads: int) -> tuple[RunFn, dict[str, str]]:
    import onnxruntime as ort

    from xcompress.runtime.ort import make_session_options

    so = make_session_options(threads)
    for key, value in ORT_TIMING_OPTIONS.items():
        so.add_session_config_entry(key, value)
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"onnxruntime cannot load {path}: {first}") from e
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return (lambda batch: sess.run([out_name], {in_name: batch})), dict(ORT_TIMING_OPTIONS)


def _open_with_runner(path: Path, threads: int) -> tuple[RunFn, dict[str, str]]:
    return open_runner(path, threads=threads).run, {}


# runtime name -> opener returning (run one batch, runtime options recorded in results).
TIMING_OPENERS: dict[str, Callable[[Path, int], tuple[RunFn, dict[str, str]]]] = {
    "ort": _open_ort,
}


def random_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float32 input in [-1, 1] (the range of PP-OCR's normalized images), fixed by seed."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype(np.float32)


@register_profiler("host")
class HostProfiler(Profiler):
    """Times models on this machine with the runtime registered for their format."""

    def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
        runtime = RUNTIME_OF_SUFFIX[model_path.suffix.lower()]
        run, options = TIMING_OPENERS.get(runtime, _open_with_runner)(model_path, threads)
        batch = random_input(config.shape, config.seed)
        try:
            # One untimed run: a wrong shape fails here, with a message, not mid-timing.
            run(batch)
        except Exception as e:  # runtimes raise their own exception types
            dims = "x".join(map(str, config.shape))
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ModelError(f"{model_path} cannot run at shape {dims}: {first}") from None
        return Loaded(
            path=model_path,
            runtime=runtime,
            runtime_version=runtime_version(runtime),
            threads=threads,
            shape=tuple(config.shape),
            runtime_options=options,
            state=_HostState(run, batch),
        )

    def time_round(self, loaded: Loaded, n: int) -> list[float]:
        state: _HostState = loaded.state
        run, batch = state.run, state.batch
        times: list[float] = []
        # Like timeit: a garbage collection inside a timed run would be charged to the model.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(n):
                t0 = time.perf_counter_ns()
                run(batch)
                times.append((time.perf_counter_ns() - t0) / 1e6)
        finally:
            if gc_was_enabled:
                gc.enable()
        return times

    def machine(self) -> Machine:
        return host_machine()
