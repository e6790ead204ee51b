"""The ``xcompress profile`` job: resolve a model, count its cost, time it on a target.

The CLI, recipes and benchmarks call :func:`profile_model`; it returns one
:class:`ProfileReport` holding everything that is printed or written as JSON.

Targets are given by name (``host``, ``arm64-emu`` = ``arm64-emu-cortex-a76``, any shipped
target or target YAML), with ``cpu`` choosing the emulated CPU model, or as a board address
``ssh://user@host[:port]`` (see :mod:`xcompress.profile.ssh`). Profilers that can tell more
than latency (the emulator: parity with the host, instruction counts) have an ``inspect``
method; its findings land in :attr:`ProfileReport.emulation`.

Example:
    >>> rep = profile_model("ppocr-v4-rec", vs="rec-int8/", runs=50)   # doctest: +SKIP
    >>> rep.comparison.ratio  # A / B median latency, alternately  # doctest: +SKIP
    1.38
    >>> rep = profile_model("ppocr-v4-rec", target="arm64-emu", cpu="cortex-a76")  # doctest: +SKIP
    >>> rep.emulation.instructions_per_inference                   # doctest: +SKIP
    402416997
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from xcompress.card import CARD_NAME, ModelCard
from xcompress.errors import ModelError, XCompressError
from xcompress.profile.base import (
    Comparison,
    LatencyResult,
    ProfileConfig,
    Profiler,
    get_profiler,
)
from xcompress.profile.emu import EmulationReport
from xcompress.profile.flops import CostReport, model_cost
from xcompress.runtime import get_runtime, runtime_for, runtime_names
from xcompress.targets import TARGET_ALIASES, Target, get_target  # noqa: F401 - aliases' old home

_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")
SSH_SCHEME = "ssh://"


class ProfileReport(BaseModel):
    """Result of :func:`profile_model`: cost and latency of a model (and of ``vs``)."""

    model_config = ConfigDict(frozen=True)

    model: str
    path: str
    task: str | None
    shape: tuple[int, ...]
    target: Target
    config: ProfileConfig
    cost: CostReport | None = None
    result: LatencyResult | None = None  # without ``vs``
    vs: str | None = None
    vs_path: str | None = None
    vs_cost: CostReport | None = None
    comparison: Comparison | None = None  # with ``vs``: A = model, B = vs
    emulation: EmulationReport | None = None  # emulated targets: parity, instruction counts
    vs_emulation: EmulationReport | None = None


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``1x3x48x320`` into ``(1, 3, 48, 320)``.

    Raises:
        XCompressError: anything but positive integers joined by ``x``.
    """
    t = text.strip().lower()
    dims = tuple(int(d) for d in t.split("x")) if _SHAPE_RE.match(t) else ()
    if not dims or min(dims) < 1:
        raise XCompressError(
            f"bad shape {text!r}: give positive dims joined by 'x', e.g. 1x3x48x320"
        )
    return dims


def format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def default_shape(card: ModelCard) -> tuple[int, ...]:
    """The shape a model is profiled at by default, from its card.

    Recognizers and classifiers: ``1 x image_shape`` of their preprocessing (PP-OCR's
    1x3x48x320 and 1x3x48x192); detectors: a square of ``limit_side_len`` (1x3x960x960).
    Dims fixed in the card's input spec win.
    """
    pre = card.resolved_preprocess()
    if pre.image_shape is not None:
        c, h, w = pre.image_shape
    elif pre.limit_side_len is not None:
        c, h, w = card.input.channels, pre.limit_side_len, pre.limit_side_len
    else:
        raise ModelError(f"card of {card.name} gives no input size: pass --shape")
    return (1, c, card.input.height or h, card.input.width or w)


def _card_beside(path: Path) -> ModelCard | None:
    card_path = path.parent / CARD_NAME
    if not card_path.is_file():
        return None
    card = ModelCard.load(card_path)
    return card if card.file == path.name else None


def resolve_for_profile(
    spec: str | Path, shape: tuple[int, ...] | None, task: str | None = None,
    charset: str | Path | None = None,
) -> tuple[Path, ModelCard | None]:
    """Model file (and card, if any) for ``spec``; a bare file without a card needs ``shape``
    or ``task`` (and ``charset`` for a recognizer without charset metadata).

    Raises:
        ModelError: no such model, or a bare file and neither shape nor task.
    """
    p = Path(spec)
    if p.is_file() and _card_beside(p) is None and task is None:
        if shape is None:
            raise ModelError(f"{p.name} has no model card beside it: pass --shape, e.g. 1x3x48x320")
        return p, None
    from xcompress.artifact import resolve_model

    art = resolve_model(spec, task, charset)  # type: ignore[arg-type]
    return art.path, art.card


def resolve_target(target: str | Path | Target = "host", *, cpu: str | None = None) -> Target:
    """The :class:`Target` for a name, alias, target YAML or Target, on emulated CPU ``cpu``.

    Board addresses (``ssh://``) need a connection as well: use :func:`open_profiler`.

    Raises:
        XCompressError: unknown target or CPU model, or ``cpu`` for a target not emulated.

    Example:
        >>> t = resolve_target("arm64-emu", cpu="cortex-a72")
        >>> (t.name, t.emu_cpu, t.int8_dot)
        ('arm64-emu-cortex-a72', 'cortex-a72', None)
    """
    tgt = target if isinstance(target, Target) else get_target(target)
    if cpu is None or cpu == tgt.emu_cpu:
        return tgt
    if tgt.kind != "arm64-emu":
        raise XCompressError(f"--cpu applies to emulated targets; {tgt.name} is {tgt.kind}")
    from xcompress.boards.qemu import cpu_facts

    return tgt.model_copy(
        update={
            "name": f"arm64-emu-{cpu}",
            "description": f"{cpu}, emulated by qemu-aarch64.",
            "emu_cpu": cpu,
            "int8_dot": cpu_facts(cpu).int8_dot,
        }
    )


def open_profiler(
    target: str | Path | Target | Profiler = "host",
    *,
    cpu: str | None = None,
    remote_python: str | None = None,
    ssh_key: Path | None = None,
    known_hosts: Path | None = None,
) -> Profiler:
    """The profiler for any ``--target``: the one resolver every command uses.

    Args:
        target: ``host``, ``arm64-emu`` (or another alias), a shipped target name, a target
            ``.yaml``, ``ssh://user@host[:port]``, a :class:`Target`, or a ready
            :class:`Profiler` (returned as it is).
        cpu: emulated CPU model (``cortex-a76``, ``neoverse-n1``...), emulated targets only.
        remote_python, ssh_key, known_hosts: for ``ssh://`` targets, see
            :class:`~xcompress.profile.ssh.SshConnection`.

    Raises:
        XCompressError: unknown target, an option that does not apply to it, a bad address.

    Example:
        >>> open_profiler("arm64-emu", cpu="neoverse-n1").target.name
        'arm64-emu-neoverse-n1'
    """
    ssh_opts = {
        k: v
        for k, v in (
            ("remote_python", remote_python),
            ("identity_file", ssh_key),
            ("known_hosts_file", known_hosts),
        )
        if v is not None
    }
    if isinstance(target, Profiler) and cpu is None and not ssh_opts:
        return target
    if isinstance(target, str) and target.startswith(SSH_SCHEME):
        if cpu is not None:
            raise XCompressError("--cpu applies to emulated targets, not to a real board")
        from xcompress.profile.ssh import SshConnection, SshProfiler, ssh_target

        conn = SshConnection.parse(target, **ssh_opts)
        return SshProfiler(ssh_target(conn), conn)
    if ssh_opts:
        raise XCompressError(
            "--remote-python, --ssh-key and --known-hosts need --target ssh://user@host"
        )
    if isinstance(target, Profiler):
        target = target.target
    return get_profiler(resolve_target(target, cpu=cpu))


def select_runtime(path: Path, runtime: str | None) -> Path:
    """``path``, or the artifact beside it for ``runtime`` (``ort`` -> ``.onnx``,
    ``litert`` -> ``.tflite``).

    Raises:
        ModelError: no single artifact of that format beside ``path``.
    """
    found_rt = runtime_for(path)
    if runtime is None or (found_rt is not None and found_rt.name == runtime):
        return path
    if runtime not in runtime_names():
        known = ", ".join(sorted(runtime_names()))
        raise XCompressError(f"unknown runtime {runtime!r}: use one of {known}")
    suffixes = get_runtime(runtime).suffixes
    found = sorted(p for p in path.parent.iterdir() if p.suffix.lower() in suffixes)
    if len(found) != 1:
        raise ModelError(
            f"--runtime {runtime} needs one {'/'.join(suffixes)} file beside {path.name} "
            f"(found {len(found)}): export the model for {runtime} first, or give that file"
        )
    return found[0]


def profile_model(
    model: str | Path,
    *,
    vs: str | Path | None = None,
    target: str | Path | Target | Profiler = "host",
    shape: tuple[int, ...] | None = None,
    threads: int | None = None,
    runs: int = 30,
    warmup: int = 5,
    min_time_s: float | None = None,
    seed: int = 0,
    cpu: str | None = None,
    runtime: str | None = None,
    remote_python: str | None = None,
    ssh_key: Path | None = None,
    known_hosts: Path | None = None,
    inspect: bool = True,
    count_runs: int = 3,
    task: str | None = None,
    charset: str | Path | None = None,
) -> ProfileReport:
    """Count the cost of ``model`` and time it on ``target`` (alternately with ``vs``).

    Args:
        model: zoo name, folder with a card, or model file.
        vs: a second model to time alternately with the first in the same run.
        target: see :func:`open_profiler` (or a ready :class:`Profiler`).
        shape: input shape; default from the model's card (see :func:`default_shape`).
        threads, runs, warmup, min_time_s, seed: see :class:`ProfileConfig`.
        cpu, remote_python, ssh_key, known_hosts: see :func:`open_profiler`.
        runtime: ``ort`` or ``litert``: profile the artifact of that format (see
            :func:`select_runtime`).
        inspect: on targets that can (emulated ones), also measure parity with the host
            and instructions per inference (``count_runs`` inferences counted).
        task, charset: for a bare model file without a card (see
            :func:`~xcompress.artifact.resolve_model`); they apply to ``model`` only.

    Returns:
        A :class:`ProfileReport`; ``result`` is set without ``vs``, ``comparison`` with it.
    """
    # Fail on an unsupported target before any work.
    profiler = open_profiler(
        target, cpu=cpu, remote_python=remote_python, ssh_key=ssh_key, known_hosts=known_hosts
    )
    pair = _resolve_pair(model, vs, shape, runtime, task, charset)
    config = _profile_config(
        shape=pair.shape, threads=threads, runs=runs, warmup=warmup, min_time_s=min_time_s,
        seed=seed,
    )  # fmt: skip
    return _measure(profiler, pair, config, inspect=inspect, count_runs=count_runs)


@dataclass(frozen=True)
class _Pair:
    """The model (and ``vs``) resolved to files, with the shape both are timed at."""

    model: str
    path: Path
    card: ModelCard | None
    shape: tuple[int, ...]
    vs: str | None = None
    vs_path: Path | None = None


def _resolve_pair(
    model: str | Path,
    vs: str | Path | None,
    shape: tuple[int, ...] | None,
    runtime: str | None,
    task: str | None,
    charset: str | Path | None,
) -> _Pair:
    path, card = resolve_for_profile(model, shape, task, charset)
    path = select_runtime(path, runtime)
    if shape is None:
        if card is None:  # unreachable: resolve_for_profile demands a shape without a card
            raise ModelError(f"{model}: pass --shape")
        shape = default_shape(card)
    vs_path, vs_card = resolve_for_profile(vs, shape) if vs is not None else (None, None)
    if card is not None and vs_card is not None and card.task != vs_card.task:
        raise XCompressError(
            f"--vs {vs} is a {vs_card.task} model and {model} a {card.task} model: --vs times "
            "two versions of one model (e.g. fp32 and int8) at the same input"
        )
    if vs_path is not None:
        vs_path = select_runtime(vs_path, runtime)
    return _Pair(
        model=str(model), path=path, card=card, shape=shape,
        vs=str(vs) if vs is not None else None, vs_path=vs_path,
    )  # fmt: skip


def _profile_config(**fields: object) -> ProfileConfig:
    try:
        return ProfileConfig(**fields)  # type: ignore[arg-type]
    except ValidationError as e:
        err = e.errors()[0]
        raise XCompressError(f"bad profile setting {err['loc'][0]}: {err['msg']}") from e


def _measure(
    profiler: Profiler, pair: _Pair, config: ProfileConfig, *, inspect: bool, count_runs: int
) -> ProfileReport:
    """Count, inspect (where the profiler can) and time the pair: the report."""
    inspector = getattr(profiler, "inspect", None) if inspect else None

    def inspected(path: Path | None) -> EmulationReport | None:
        return inspector(path, config, count_runs=count_runs) if inspector and path else None

    emulation, vs_emulation = inspected(pair.path), inspected(pair.vs_path)
    fields = dict(
        model=pair.model,
        path=str(pair.path),
        task=pair.card.task if pair.card else None,
        shape=pair.shape,
        target=profiler.target,
        config=config,
        cost=model_cost(pair.path, pair.shape),
    )
    if pair.vs_path is None:
        result = profiler.profile(pair.path, config)
        return ProfileReport(**fields, result=result, emulation=_with_wall(emulation, result))
    comparison = profiler.compare(pair.path, pair.vs_path, config)
    return ProfileReport(
        **fields,
        vs=pair.vs,
        vs_path=str(pair.vs_path),
        vs_cost=model_cost(pair.vs_path, pair.shape),
        comparison=comparison,
        emulation=_with_wall(emulation, comparison.a),
        vs_emulation=_with_wall(vs_emulation, comparison.b),
    )


def _with_wall(rep: EmulationReport | None, result: LatencyResult) -> EmulationReport | None:
    if rep is None:
        return None
    return rep.model_copy(update={"emulated_wall_ms": result.median_ms})
