"""Latency of search candidates on a target: measured, and predicted by a per-target model.

**Measured** (:class:`LatencyMeter`, chosen by the target's ``kind`` from :data:`METERS`):

- ``host`` / ``ssh``: onnxruntime on the exported candidate, timed alternately against the
  parent in one run (:meth:`~xcompress.profile.Profiler.compare`), in milliseconds;
- ``arm64-emu``: guest instructions per inference counted on the emulated board (deterministic;
  emulated wall time is not a device latency), in millions of instructions.

Each measurement gives the candidate's value, the parent's from the same run and their
ratio. ``normalized`` = ratio × the parent's reference value (measured once when the meter
opens) is what budgets, the Pareto front and the predictor's error use: a shared machine that
slows down between trials slows both models of a pair alike, so the ratio survives it.

**Predicted** (:class:`LatencyPredictor`): a linear model over kernel-level features of the
candidate's ONNX graph at the input shape -- dense-conv, depthwise-conv and matmul MACs,
elements written by the other kernels, node count, a constant -- with non-negative weights
fitted to relative error (``scipy.optimize.nnls``) on measured random subnets of the space.
That is nn-Meter's idea (kernel-level costs) reduced to what one family of networks on one
runtime needs; a lookup table per block (Once-for-All) would miss the per-node overheads that
dominate small candidates on onnxruntime. ``xcompress board calibrate`` builds one per
(target, architecture, shape, threads, runtime version) and caches it as target data under
``<cache>/targets/<target>/``; its leave-one-out error is stored with it. During a search
each trial's prediction is made before it is measured, by the model refitted on the
calibration points plus the trials measured so far: a search that wanders outside the
calibrated region (measured on ppocr-v4-rec: late trials under-predicted by 10-15% with the
calibration-only model) corrects itself, and the recorded error stays a true prediction error.

Example:
    >>> feats = latency_features("cand.onnx", (1, 3, 48, 320))          # doctest: +SKIP
    >>> predictor.predict(feats)                                           # doctest: +SKIP
    9.87
"""

from __future__ import annotations

import datetime as _dt
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xcompress.errors import XCompressError
from xcompress.profile import ProfileConfig, Profiler

PREDICTOR_SCHEMA = 1
FEATURES = ("dense_conv_mmacs", "dw_conv_mmacs", "matmul_mmacs", "other_melems", "nodes", "one")
_MAC_DENSE = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"}
_MATMUL = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul"}


def latency_features(model: str | Path | Any, shape: tuple[int, ...]) -> dict[str, float]:
    """Kernel-level features of an ONNX model at ``shape`` (see :data:`FEATURES`)."""
    from xcompress.profile.flops import node_costs

    nodes, uncounted, *_ = node_costs(model, shape)
    f = dict.fromkeys(FEATURES, 0.0)
    for n in nodes:
        if n.op in _MAC_DENSE:
            f["dw_conv_mmacs" if n.groups > 1 else "dense_conv_mmacs"] += n.macs / 1e6
        elif n.op in _MATMUL:
            f["matmul_mmacs"] += n.macs / 1e6
        elif n.flops:
            f["other_melems"] += n.out_elems / 1e6
    f["nodes"] = float(len(nodes) + sum(uncounted.values()))
    f["one"] = 1.0
    return f


# ----------------------------------------------------------------------------- measuring


class Measured(BaseModel):
    """One candidate measured against the parent in one run."""

    model_config = ConfigDict(frozen=True)
    value: float  # the candidate, in ``unit``
    parent_value: float  # the parent in the same run
    ratio: float  # value / parent_value (below 1: the candidate is faster)
    normalized: float  # ratio x the meter's parent reference
    unit: str
    seconds: float  # what the measurement cost


class LatencyMeter(ABC):
    """Measures candidates against the parent on one target."""

    unit: ClassVar[str]
    method: ClassVar[str]

    #: timing: runs in new sessions per measurement, each until its ratio's 95% interval is
    #: within +-precision or max_time_s of timed runs is spent
    sessions: ClassVar[int] = 3
    precision: ClassVar[float] = 0.02
    max_time_s: float = 3.0

    def __init__(self, profiler: Profiler, shape: tuple[int, ...], threads: int | None,
                 runs: int = 30, timing_s: float | None = None) -> None:  # fmt: skip
        self.profiler = profiler
        self.shape = tuple(shape)
        self.threads = threads
        self.runs = runs
        if timing_s is not None:  # seconds of timed runs per measurement, over its sessions
            self.max_time_s = timing_s / self.sessions
        self.reference: float | None = None

    @abstractmethod
    def pair(self, candidate: Path, parent: Path) -> tuple[float, float]:
        """(candidate value, parent value) measured in one run."""

    def measure(self, candidate: Path, parent: Path) -> Measured:
        t0 = time.monotonic()
        value, parent_value = self.pair(candidate, parent)
        if self.reference is None:
            self.reference = parent_value
        ratio = value / parent_value
        return Measured(value=value, parent_value=parent_value, ratio=ratio,
                        normalized=ratio * self.reference, unit=self.unit,
                        seconds=time.monotonic() - t0)  # fmt: skip

    def calibrate_reference(self, parent: Path) -> float:
        """Measure the parent against itself once; its value becomes the reference."""
        _, value = self.pair(parent, parent)
        self.reference = value
        return value

    def describe(self) -> dict[str, Any]:
        """Target, machine, runtime, shape, threads and method: what every report states."""
        m = self.profiler.machine()
        return {
            "target": self.profiler.target.name, "kind": self.profiler.target.kind,
            "machine": m.describe(), "shape": list(self.shape),
            "threads": self.threads or self.profiler.resolve_threads(self._config()),
            "unit": self.unit, "method": self.method,
        }  # fmt: skip

    def _config(self, seed: int = 0) -> ProfileConfig:
        # timed until the ratio's 95% interval is within +-precision (or max_time_s): 30 runs
        # of a 0.3 ms CRNN are 9 ms of timing, and a shared machine's hiccups then decide
        # the ratio (measured: 88% of predictions within +-10% of such measurements)
        return ProfileConfig(shape=self.shape, threads=self.threads, warmup=3, runs=self.runs,
                             min_time_s=min(0.2, self.max_time_s / 6),
                             ratio_precision=self.precision, max_time_s=self.max_time_s,
                             seed=seed)  # fmt: skip


class TimingMeter(LatencyMeter):
    """Wall time, candidate and parent timed alternately (ABBA) in one run."""

    unit = "ms"
    method = "median of alternating (ABBA) timed runs, candidate vs parent, onnxruntime"

    def pair(self, candidate: Path, parent: Path) -> tuple[float, float]:
        # The median over `sessions` independent runs, each loading both models anew: one
        # onnxruntime session's speed differs from the next one's of the same model (memory
        # placement), more than a run's own interval shows. Measured on ppocr-v4-rec subnets,
        # 8 s of ABBA timing in one session each: the same candidate's ratio 0.369, then 0.389,
        # 0.393, 0.415 (predicted 0.408: a 10.6% "miss" of the predictor that was the meter's).
        ratios, parents = [], []
        for k in range(self.sessions):
            cmp = self.profiler.compare(candidate, parent, self._config(seed=k))
            ratios.append(cmp.a.median_ms / cmp.b.median_ms)
            parents.append(cmp.b.median_ms)
        parent_ms = float(np.median(parents))
        return float(np.median(ratios)) * parent_ms, parent_ms

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["method"] += (f"; the median ratio of {self.sessions} runs, each in new sessions and "
                        f"timed until its ratio's 95% interval is within ±{self.precision:.0%} "
                        f"(at most {self.max_time_s:g} s)")
        return d


class CountMeter(LatencyMeter):
    """Guest instructions per inference on an emulated board (1 thread; deterministic)."""

    unit = "Minsn"
    method = "guest instructions per inference (TCG plugin, 1 thread, median of 3 runs)"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._parent_counts: dict[Path, float] = {}

    def _count(self, path: Path) -> float:
        rep = self.profiler.inspect(path, ProfileConfig(shape=self.shape), count_runs=3,  # type: ignore[attr-defined]
                                    warmup=1)  # fmt: skip
        return rep.instructions_per_inference / 1e6

    def pair(self, candidate: Path, parent: Path) -> tuple[float, float]:
        # counts do not drift: the parent is counted once
        if parent not in self._parent_counts:
            self._parent_counts[parent] = self._count(parent)
        if candidate == parent:
            return self._parent_counts[parent], self._parent_counts[parent]
        return self._count(candidate), self._parent_counts[parent]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads": 1}


#: target kind -> how latency is measured there
METERS: dict[str, type[LatencyMeter]] = {
    "host": TimingMeter, "ssh": TimingMeter, "arm64-emu": CountMeter,
}  # fmt: skip


def open_meter(target: str | Path | Profiler, shape: tuple[int, ...], threads: int | None = None,
               runs: int = 30, timing_s: float | None = None) -> LatencyMeter:  # fmt: skip
    """The meter for any ``--target`` (resolved by :func:`~xcompress.profile.run.open_profiler`);
    ``timing_s``: seconds of timed runs one measurement may spend (default 9, timed meters)."""
    from xcompress.profile.run import open_profiler

    profiler = open_profiler(target)
    kind = profiler.target.kind
    if kind not in METERS:
        raise XCompressError(f"no latency meter for targets of kind {kind!r}")
    return METERS[kind](profiler, shape, threads, runs, timing_s)


# ----------------------------------------------------------------------------- predicting


class CalibrationPoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    features: dict[str, float]
    measured: float  # normalized (ratio x parent reference)
    params: dict[str, Any] = Field(default_factory=dict)


class LatencyPredictor(BaseModel):
    """A fitted per-target latency model (see the module docstring)."""

    model_config = ConfigDict(frozen=True)
    schema_version: int = PREDICTOR_SCHEMA
    target: str
    arch: str
    shape: tuple[int, ...]
    threads: int
    unit: str
    runtime: str
    machine: str
    features: tuple[str, ...] = FEATURES
    coef: tuple[float, ...]
    reference: float  # the parent's value when it was calibrated
    cv_abs_pct_errors: tuple[float, ...] = ()  # leave-one-out, one per calibration point
    created: str = ""
    points: tuple[CalibrationPoint, ...] = ()

    def predict(self, features: dict[str, float]) -> float:
        return float(sum(c * features[f] for c, f in zip(self.coef, self.features, strict=True)))

    @property
    def cv_mape(self) -> float:
        return float(np.mean(self.cv_abs_pct_errors)) if self.cv_abs_pct_errors else float("nan")

    @property
    def cv_within10(self) -> float:
        e = np.asarray(self.cv_abs_pct_errors)
        return float((e <= 10.0).mean()) if e.size else float("nan")


def fit_coefficients(points: list[CalibrationPoint]) -> tuple[float, ...]:
    """Non-negative weights minimizing the *relative* squared error (rows scaled by 1/y)."""
    from scipy.optimize import nnls

    x = np.array([[p.features[f] for f in FEATURES] for p in points], dtype=np.float64)
    y = np.array([p.measured for p in points], dtype=np.float64)
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls((x / scale) / y[:, None], np.ones_like(y))
    return tuple(float(c) for c in coef / scale)


def loo_abs_pct_errors(points: list[CalibrationPoint]) -> list[float]:
    """Leave-one-out |predicted - measured| / measured in %, one per point."""
    out = []
    for i, p in enumerate(points):
        coef = fit_coefficients(points[:i] + points[i + 1 :])
        pred = sum(c * p.features[f] for c, f in zip(coef, FEATURES, strict=True))
        out.append(abs(pred - p.measured) / p.measured * 100.0)
    return out


def fit_predictor(points: list[CalibrationPoint], meter: LatencyMeter, arch: str,
                  runtime: str) -> LatencyPredictor:  # fmt: skip
    if len(points) < len(FEATURES) + 2:
        raise XCompressError(
            f"{len(points)} calibration points cannot fit a latency model of {len(FEATURES)} "
            f"features: calibrate with --samples {len(FEATURES) * 3} or more"
        )
    d = meter.describe()
    return LatencyPredictor(
        target=d["target"], arch=arch, shape=meter.shape, threads=int(d["threads"]),
        unit=meter.unit, runtime=runtime, machine=d["machine"],
        coef=fit_coefficients(points), reference=float(meter.reference or 0.0),
        cv_abs_pct_errors=tuple(loo_abs_pct_errors(points)),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        points=tuple(points),
    )  # fmt: skip


def predictor_path(target: str, arch: str, shape: tuple[int, ...], threads: int,
                   runtime: str) -> Path:  # fmt: skip
    from xcompress.zoo.fetch import cache_root

    key = f"latency-{arch}-{'x'.join(map(str, shape))}-t{threads}-{runtime}.json"
    return cache_root() / "targets" / target / key


def save_predictor(pred: LatencyPredictor) -> Path:
    from xcompress.fsutil import write_json

    path = predictor_path(pred.target, pred.arch, pred.shape, pred.threads, pred.runtime)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, pred.model_dump(mode="json"))
    return path


def load_predictor(target: str, arch: str, shape: tuple[int, ...], threads: int,
                   runtime: str) -> LatencyPredictor | None:  # fmt: skip
    """The cached predictor, or None (not calibrated, other schema, unreadable)."""
    import json

    path = predictor_path(target, arch, shape, threads, runtime)
    if not path.is_file():
        return None
    try:
        pred = LatencyPredictor.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return pred if pred.schema_version == PREDICTOR_SCHEMA else None


def runtime_key(meter: LatencyMeter) -> str:
    """The runtime a meter's numbers belong to, with its version (a new onnxruntime can
    change every kernel's speed, so it gets its own predictor)."""
    from xcompress.profile.base import runtime_version

    version = runtime_version("ort") if meter.profiler.target.kind == "host" else "board"
    return f"ort{version}"


def calibration_points(space: Any, samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """The space's smallest and largest points, then points spread over its whole size range.

    Drawing every knob uniformly at random puts almost every point near the middle of the
    latency range (a sum of many independent knobs), so a model fitted on them extrapolates
    to the small and large candidates a search does visit. Here point ``i`` draws a level
    ``u`` evenly spaced in [0, 1] and each knob takes a choice around that quantile.
    """
    rng = np.random.default_rng(seed)
    points = [space.extreme(min), space.extreme(max)]
    n = max(samples - 2, 0)
    for i in range(n):
        u = (i + 0.5) / n
        point = {}
        for k, v in space.knobs.items():
            ordered = sorted(v)
            j = round(u * (len(ordered) - 1) + rng.normal(0.0, 0.3 * len(ordered)))
            point[k] = ordered[int(min(max(j, 0), len(ordered) - 1))]
        points.append(point)
    order = rng.permutation(len(points) - 2) + 2  # measured in random order: no drift trend
    return points[:2] + [points[i] for i in order]


def calibrate(
    parent: Any,
    card: Any,
    space: Any,
    meter: LatencyMeter,
    samples: int = 24,
    seed: int = 0,
    workdir: Path | None = None,
    on_point: Callable[[int, int, CalibrationPoint, Any], None] | None = None,
) -> LatencyPredictor:
    """Measure ``samples`` subnets of ``space`` (its smallest and largest points, the rest
    random) against ``parent`` on the meter's target and fit a :class:`LatencyPredictor`."""
    import tempfile

    from xcompress.search.candidates import derive_point, export_candidate

    points_params = calibration_points(space, samples, seed)
    with tempfile.TemporaryDirectory(prefix="xcompress-calib-", dir=workdir) as tmp:
        parent_onnx = export_candidate(parent, card, Path(tmp) / "parent")
        meter.calibrate_reference(parent_onnx)
        points: list[CalibrationPoint] = []
        for i, params in enumerate(points_params[:samples]):
            child, _ = derive_point(parent, space, params)
            path = export_candidate(child, card, Path(tmp) / f"c{i}")
            m = meter.measure(path, parent_onnx)
            point = CalibrationPoint(features=latency_features(path, meter.shape),
                                     measured=m.normalized, params=params)  # fmt: skip
            points.append(point)
            if on_point is not None:
                on_point(i, samples, point, m)
    return fit_predictor(points, meter, parent.arch, runtime_key(meter))
