"""Profiling on this machine, in-process.

Each model is opened for timing by its runtime's descriptor
(:meth:`xcompress.runtime.Runtime.open_timed`): onnxruntime as a bare session made by
:func:`xcompress.runtime.ort.ort_session` with the timing options (no spinning: see
:mod:`xcompress.runtime.ort` for why and what it measured), LiteRT through its runner, which
picks the input's size bucket. So a new runtime is profiled here once it is registered. Each
run is timed with :func:`time.perf_counter_ns` around one inference on a fixed random input,
and the runtime's timing options are recorded in every result.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xcompress.errors import ModelError
from xcompress.profile.base import (
    Loaded,
    ProfileConfig,
    Profiler,
    model_runtime,
    register_profiler,
)
from xcompress.profile.machine import Machine, host_machine
from xcompress.runtime import TimedRun


@dataclass(frozen=True)
class _HostState:
    run: TimedRun
    batch: np.ndarray


def random_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float32 input in [-1, 1] (the range of PP-OCR's normalized images), fixed by seed."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype(np.float32)


def _host_options(runtime: str) -> dict[str, str]:
    """Session entries this machine adds to the runtime's own (recorded with each latency)."""
    if runtime != "ort":
        return {}
    from xcompress.runtime.ort import host_session_config

    return host_session_config()


@register_profiler("host")
class HostProfiler(Profiler):
    """Times models on this machine with the runtime registered for their format."""

    def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
        rt = model_runtime(model_path)
        run = rt.open_timed(model_path, threads)
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
            runtime=rt.name,
            runtime_version=rt.version(),
            threads=threads,
            shape=tuple(config.shape),
            runtime_options={**rt.timing_options, **_host_options(rt.name)},
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
