"""Profiling on an emulated ARM64 board (qemu-aarch64 user mode, TCG).

The board (:mod:`xcompress.boards.emu`) is a Debian arm64 Python with onnxruntime and LiteRT,
set up once. Each loaded model runs in its own guest process, the board runner
(:mod:`xcompress.boards.runner`), which answers "time N runs" requests, so the inherited
:meth:`~xcompress.profile.base.Profiler.compare` alternates two guests exactly as the host
profiler alternates two sessions.

Emulated time is **not a device latency**: TCG translates every guest instruction into host
code, so times measure this machine emulating the board. They are recorded with
``runtime_options["timing"] = "emulated"`` and only ratios between models timed alike mean
anything. What emulation measures exactly is :meth:`QemuProfiler.inspect`'s job:

- ``max_abs_diff_vs_host``: the guest's output against the host runtime's on the same input;
- ``instructions_per_inference``: guest instructions executed per inference, counted by a
  TCG plugin, split into int8 dot-product (SDOT/UDOT/USDOT/SUDOT), int8 matrix
  multiply-accumulate (SMMLA/UMMLA/USMMLA) and other instructions.

Counting method (deterministic): one guest process, one intra-op thread (with more, idle
workers' spin/wait loops would make the count depend on scheduling), fixed input, Python hash
seed 0. It runs ``warmup`` inferences (the first run allocates and plans), then counts
``count_runs`` inferences one by one: a marker syscall before and after each makes the plugin
write its counters, and the difference is that run's count. The report gives the median run
(and every run's count). Measured here (Nov 2026, QEMU 7.2, onnxruntime 1.32): the tiny fp32
test model gives the same counts, run by run, in every process; PP-OCRv4 rec int8 gives the
same int8 dot-product count in every process and totals that agree to 1e-5 (2,046 of 249.7 M
instructions), with runs in one process differing by up to 0.2%. The remaining wobble is in
the guest's own execution, not in counting (a per-instruction counter gives the same numbers):
most likely address-dependent paths (memcpy heads and tails) over buffers whose placement
varies; it is not from ASLR or guest randomness (``setarch -R`` and ``qemu -seed`` keep it).

Example:
    >>> prof = get_profiler("arm64-emu-cortex-a76")                      # doctest: +SKIP
    >>> rep = prof.inspect("rec.onnx", ProfileConfig(shape=(1, 3, 48, 320)))  # doctest: +SKIP
    >>> rep.instructions_per_inference, rep.int8_dot_share              # doctest: +SKIP
    (402416997, 0.0)
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from xcompress.boards.emu import Arm64EmuBoard, ensure_arm64_emu
from xcompress.boards.qemu import cpu_facts
from xcompress.boards.session import RunnerSession, runner_source
from xcompress.errors import ModelError, XCompressError
from xcompress.profile.base import (
    Loaded,
    ProfileConfig,
    Profiler,
    model_runtime,
    register_profiler,
    runtime_version,
)
from xcompress.profile.host import random_input
from xcompress.profile.machine import Machine, host_machine, machine_from_cpuinfo
from xcompress.targets import Target

DEFAULT_CPU = "cortex-a76"
READY_TIMEOUT_S = 900.0  # importing onnxruntime under TCG takes seconds; loading a big model more
REQUEST_TIMEOUT_S = 3600.0
EMULATED_NOTE = (
    "wall time of qemu-aarch64 (TCG) emulating the board on the host: not a device latency; "
    "compare only with models timed the same way"
)
COUNT_METHOD = (
    "TCG plugin, 1 thread, fixed input, after warm-up runs: each of N runs counted between "
    "markers; the median run is reported"
)
MARKER_BEGIN, MARKER_RUN = 1, 3  # as in xcompress.boards.runner


class EmulationReport(BaseModel):
    """What emulation measures exactly: parity with the host and instruction counts.

    ``emulated_wall_ms`` is filled in by :func:`xcompress.profile.run.profile_model` from the
    timed runs; it is emulation time on the host (see ``emulated_wall_note``).
    """

    model_config = ConfigDict(frozen=True)

    model: str
    cpu: str
    runtime: str
    runtime_version: str
    shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff_vs_host: float | None
    host_runtime_version: str | None
    instructions_per_inference: int
    int8_dot_instructions_per_inference: int  # SDOT/UDOT/USDOT/SUDOT
    int8_mmla_instructions_per_inference: int  # SMMLA/UMMLA/USMMLA
    other_instructions_per_inference: int
    int8_dot_share: float  # (dot + mmla) / all
    counted_runs: int
    per_run_instructions: tuple[int, ...] = ()  # each counted run, for the record
    count_threads: int = 1
    count_method: str = COUNT_METHOD
    emulated_wall_ms: float | None = None
    emulated_wall_note: str = EMULATED_NOTE


@dataclass
class _EmuState:
    session: RunnerSession
    workdir: Path


Snapshot = tuple[int, int, int, int]  # marker code, total, dot, mmla


def read_counts(path: Path) -> list[Snapshot]:
    """Parse the plugin's output: its counters at each marker, in order."""
    out: list[Snapshot] = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "marker":
            code, total, dot, mmla = (int(p) for p in parts[1:])
            out.append((code, total, dot, mmla))
    return out


def per_run_counts(snapshots: list[Snapshot]) -> list[tuple[int, int, int]]:
    """(total, dot, mmla) executed by each counted run: differences of consecutive snapshots
    from the last ``begin`` marker on."""
    begins = [i for i, s in enumerate(snapshots) if s[0] == MARKER_BEGIN]
    if not begins:
        return []
    snaps = snapshots[begins[-1] :]
    return [
        (b[1] - a[1], b[2] - a[2], b[3] - a[3])
        for a, b in zip(snaps, snaps[1:], strict=False)
        if b[0] == MARKER_RUN
    ]


@register_profiler("arm64-emu")
class QemuProfiler(Profiler):
    """Times and inspects models on an emulated ARM64 board (``kind: arm64-emu`` targets).

    The CPU model is the target's ``emu_cpu`` (default cortex-a76), whose facts are data
    (``xcompress/boards/emu_cpus.yaml``). The target's ``int8_dot`` is read against them: left
    out, it is filled in from the CPU model; stated otherwise, the target is refused, since it
    would label every result with a capability the emulated CPU does not have.

    Raises:
        XCompressError: an unknown CPU model, or a target whose ``int8_dot`` contradicts it.
    """

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        have = cpu_facts(self.cpu).int8_dot
        if target.int8_dot is None and have is not None:
            self.target = target.model_copy(update={"int8_dot": have})
        elif target.int8_dot != have:
            raise XCompressError(
                f"target {target.name} says int8_dot: {target.int8_dot}, but the emulated "
                f"{self.cpu} has {have or 'none'}: fix the target file"
            )

    @property
    def cpu(self) -> str:
        return self.target.emu_cpu or DEFAULT_CPU

    @property
    def cores(self) -> int:
        return self.target.cores or 4

    def board(self, need_plugin: bool = False) -> Arm64EmuBoard:
        """The set-up board (set up now if needed: a one-time download of ~25 s)."""
        return ensure_arm64_emu(need_plugin=need_plugin)

    # -- the Profiler contract ------------------------------------------------------------

    def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
        rt = model_runtime(model_path)
        runtime = rt.name
        self._check_cpu(runtime)
        board = self.board()
        workdir = Path(tempfile.mkdtemp(prefix="xcompress-emu-"))
        try:
            np.save(workdir / "input.npy", random_input(config.shape, config.seed))
            session = self._start(board, model_path, workdir, runtime, threads)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return Loaded(
            path=model_path,
            runtime=runtime,
            runtime_version=str(session.ready.get("runtime_version", "unknown")),
            threads=threads,
            shape=tuple(config.shape),
            runtime_options={
                "timing": "emulated",
                "qemu_cpu": self.cpu,
                "qemu": board.qemu.version,
                **rt.timing_options,  # the board runner opens sessions with them too
            },
            state=_EmuState(session, workdir),
        )

    def time_round(self, loaded: Loaded, n: int) -> list[float]:
        return loaded.state.session.time(n)

    def close(self, loaded: Loaded) -> None:
        state: _EmuState = loaded.state
        state.session.close()
        shutil.rmtree(state.workdir, ignore_errors=True)

    def machine(self) -> Machine:
        facts = cpu_facts(self.cpu)
        host = host_machine()
        m = machine_from_cpuinfo(
            facts.cpuinfo(1),
            isa="aarch64",
            cores=self.cores,
            os_name=f"qemu-aarch64 -cpu {self.cpu} (emulated on {host.cpu})",
            load_avg_1m=host.load_avg_1m,  # the host's load is what slows emulation
        )
        return m.model_copy(update={"cpu": f"emulated {self.cpu}"})

    # -- what only emulation can tell -------------------------------------------------------

    def inspect(
        self, model_path: str | Path, config: ProfileConfig, count_runs: int = 3, warmup: int = 2
    ) -> EmulationReport:
        """Parity with the host and guest instructions per inference (see the module doc).

        Args:
            model_path: an ``.onnx`` or ``.tflite`` file.
            config: its shape and seed pick the input (threads are ignored: counting uses 1).
            count_runs: inferences counted between the two snapshots.
            warmup: inferences run before the first snapshot.

        Raises:
            ModelError: the model cannot be loaded or run on the board.
        """
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file not found or not .onnx/.tflite: {path}")
        runtime = model_runtime(path).name
        self._check_cpu(runtime)
        board = self.board(need_plugin=True)
        batch = random_input(config.shape, config.seed)
        with tempfile.TemporaryDirectory(prefix="xcompress-emu-") as tmp:
            work = Path(tmp)
            np.save(work / "input.npy", batch)
            counts_file = work / "counts.txt"
            session = self._start(
                board, path, work, runtime, 1, output=work / "output.npy", count_to=counts_file
            )
            try:
                session.request({"op": "count", "n": count_runs, "warmup": warmup})
            finally:
                session.close()
            counts = read_counts(counts_file)
            guest_out = np.load(work / "output.npy")
        runs = per_run_counts(counts)
        if len(runs) != count_runs:
            raise XCompressError(
                "the instruction counter wrote no markers: rebuild it with "
                "`xcompress board setup arm64-emu --force`"
            )
        # The median run: robust to a first counted run that still does lazy set-up work.
        total, dot, mmla = sorted(runs)[len(runs) // 2]
        diff, host_version = _host_diff(path, runtime, batch, guest_out)
        return EmulationReport(
            model=str(path),
            cpu=self.cpu,
            runtime=runtime,
            runtime_version=str(session.ready.get("runtime_version", "unknown")),
            shape=tuple(config.shape),
            output_shape=tuple(int(d) for d in guest_out.shape),
            max_abs_diff_vs_host=diff,
            host_runtime_version=host_version,
            instructions_per_inference=total,
            int8_dot_instructions_per_inference=dot,
            int8_mmla_instructions_per_inference=mmla,
            other_instructions_per_inference=total - dot - mmla,
            per_run_instructions=tuple(r[0] for r in runs),
            int8_dot_share=(dot + mmla) / total if total else 0.0,
            counted_runs=count_runs,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _check_cpu(self, runtime: str) -> None:
        broken = dict(cpu_facts(self.cpu).broken_runtimes)
        if runtime in broken:
            raise XCompressError(
                f"cannot trust {runtime} on emulated {self.cpu}: {broken[runtime]}"
            )

    def _start(
        self,
        board: Arm64EmuBoard,
        model: Path,
        work: Path,
        runtime: str,
        threads: int,
        output: Path | None = None,
        count_to: Path | None = None,
    ) -> RunnerSession:
        # Host paths work in the guest: qemu -L looks in the sysroot first, then falls back.
        runner = work / "runner.py"
        shutil.copyfile(runner_source(), runner)
        program = [
            *board.python_argv(), str(runner),
            "--model", str(model.resolve()), "--input", str(work / "input.npy"),
            "--runtime", runtime, "--threads", str(threads),
        ]  # fmt: skip
        if output is not None:
            program += ["--output", str(output)]
        if count_to is not None:
            program.append("--deterministic")
        board.write_cpuinfo(self.cpu)
        return RunnerSession.start(
            board.argv(self.cpu, program, count_to=count_to),
            what=f"the emulated {self.cpu} board",
            env=board.env(),
            ready_timeout_s=READY_TIMEOUT_S,
            request_timeout_s=REQUEST_TIMEOUT_S,
        )


def _host_diff(
    path: Path, runtime: str, batch: np.ndarray, guest_out: np.ndarray
) -> tuple[float | None, str | None]:
    """Max abs difference between the guest's output and the host runtime's (None: no host
    runtime for this format)."""
    from xcompress.runtime import open_runner

    try:
        host_out = open_runner(path, threads=1).run(batch)
    except (XCompressError, ImportError):
        return None, None
    host_out = np.asarray(host_out, dtype=np.float64)
    if host_out.shape != guest_out.shape:
        raise ModelError(
            f"{path.name}: the board's output shape {guest_out.shape} differs from the host's "
            f"{host_out.shape}"
        )
    return float(np.max(np.abs(host_out - guest_out.astype(np.float64)))), runtime_version(runtime)
