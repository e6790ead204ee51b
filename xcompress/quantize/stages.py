"""The stages of :func:`xcompress.quantize.quantize`, each returning a typed, frozen result.

``quantize`` reads as their sequence (data preparation is :mod:`xcompress.quantize.inputs`,
the report :mod:`xcompress.quantize.report`)::

    data     = prepare_data(...)                      # QuantizeData
    upgraded = upgrade_checked(orig, cfg, data, log)  # Upgraded: opset >= 13, outputs unchanged
    ctx      = QuantizeContext.create(...)            # what every later stage reads
    timing   = time_plans(ctx, upgraded.model)        # PlanTiming: rewritten plans, speed, order
    search   = search_plans(ctx, timing)              # PlanSearch: per plan CalibrationChoice
                                                      #   + BiasChoice + FloatFallback; first
                                                      #   within budget
    final    = measure_final(ctx, search.chosen)      # FinalMeasurement: latency, fp32, CI

A stage never writes outside the scratch folder (``ctx.work``); only ``quantize`` publishes
``out_dir``, in one rename, after every stage has succeeded.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from xcompress.artifact import Artifact
from xcompress.card import ModelCard
from xcompress.errors import BudgetError, ModelError
from xcompress.quantize.calibrate import compute_ranges
from xcompress.quantize.config import QuantizeConfig
from xcompress.quantize.fallback import FallbackResult, choose_float_layers
from xcompress.quantize.graph import opset_of
from xcompress.quantize.inputs import QuantizeData
from xcompress.quantize.plans import Plan, get_plan
from xcompress.quantize.qdq import (
    ensure_node_names,
    gather_stats,
    keep_float,
    layer_groups,
    quantize_qdq,
    saturation_bounds,
    softmax_logits,
    stem_layers,
    tighten_ranges,
)
from xcompress.quantize.rewrites import apply_rewrites, get_rewrite, upgrade_opset
from xcompress.quantize.signals import Signal
from xcompress.runtime.ort import OrtRunner

MODEL_FILE = "model.int8.onnx"
#: largest max-abs output change accepted from an opset upgrade or a graph rewrite
FLOAT_TOLERANCE = 1e-3
#: a plan must be this much faster to overtake one listed before it (timing noise must not
#: change the artifact: same inputs and seed give the same model)
PLAN_MARGIN = 1.10

Log = Callable[[str], None]
Metrics = dict[str, dict[str, float]]  # budget set -> metric -> value


# --- float model checks ----------------------------------------------------------------------


def _io_signature(model: onnx.ModelProto) -> list[tuple[str, tuple[str, ...]]]:
    inits = {t.name for t in model.graph.initializer}
    sig = []
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name in inits:
            continue
        dims = tuple(
            d.dim_param if d.dim_param else str(d.dim_value) if d.HasField("dim_value") else "?"
            for d in vi.type.tensor_type.shape.dim
        )
        sig.append((vi.name, dims))
    return sig


def _max_diff(a: onnx.ModelProto, b: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> float:
    ra, rb = OrtRunner(a), OrtRunner(b)
    return max(float(np.abs(ra.run(x) - rb.run(x)).max()) for x in inputs)


def _postprocess(q: onnx.ModelProto, orig: onnx.ModelProto, counts: dict | None = None
                 ) -> onnx.ModelProto:
    """Remove useless Q/DQ pairs, restore metadata, check the I/O contract is unchanged."""
    rw = get_rewrite("remove-useless-qdq")
    q = rw.apply(q)
    if counts is not None:
        counts[rw.name] = rw.count
    have = {p.key for p in q.metadata_props}
    for p in orig.metadata_props:  # the recognizer's charset lives here
        if p.key not in have:
            q.metadata_props.append(p)
    # the quantizer's shape inference may pin symbolic dims (a det map's channel to 1):
    # put the original declarations back, the contract users rely on
    decl = {vi.name: vi for vi in [*orig.graph.input, *orig.graph.output]}
    for vi in [*q.graph.input, *q.graph.output]:
        if vi.name in decl:
            vi.type.CopyFrom(decl[vi.name].type)
    if _io_signature(q) != _io_signature(orig):
        raise ModelError("internal: quantized model's inputs/outputs differ from the original's")
    return q


@dataclass(frozen=True)
class Upgraded:
    """The float model at ``cfg.opset`` and how far its outputs moved (at most
    :data:`FLOAT_TOLERANCE` on the check inputs)."""

    model: onnx.ModelProto
    max_diff: float


def upgrade_checked(orig: onnx.ModelProto, cfg: QuantizeConfig, data: QuantizeData, log: Log
                    ) -> Upgraded:
    """Upgrade the opset (per-channel QDQ needs >= 13, the fused Gelu 20), outputs checked.

    Raises:
        ModelError: the upgrade changed the float outputs.
    """
    upgraded = upgrade_opset(orig, cfg.opset)
    diff = _max_diff(orig, upgraded, data.check_inputs)
    if diff > FLOAT_TOLERANCE:
        raise ModelError(f"opset upgrade {opset_of(orig)}->{cfg.opset} changed the outputs "
                         f"(max diff {diff:.2e}); quantize the original with --opset")
    log(f"opset {opset_of(orig)} -> {opset_of(upgraded)} (fp32 max diff {diff:.1e})")
    return Upgraded(upgraded, diff)


# --- context ---------------------------------------------------------------------------------


def timing_shape(card: ModelCard, cfg: QuantizeConfig) -> tuple[int, int, int, int]:
    """The input shape int8 and float are timed at (a det page, or one text line)."""
    pre = card.resolved_preprocess()
    if card.task == "det":
        return (1, 3, cfg.det_size, cfg.det_size)
    c, h, w = pre.image_shape or (3, 48, 320)
    return (1, c, h, cfg.rec_width if card.task == "rec" else w)


@dataclass(frozen=True)
class QuantizeContext:
    """What every stage after the opset upgrade reads: one object instead of a dozen
    arguments. ``work`` is the scratch folder; ``orig_path`` the float model saved there
    (the profiler times files)."""

    cfg: QuantizeConfig
    art: Artifact
    orig: onnx.ModelProto
    signal: Signal
    data: QuantizeData
    log: Log
    work: Path
    profiler: Any  # xcompress.profile.Profiler (imported lazily: lean imports)
    evaluator: Any  # xcompress.eval.tasks.TaskEvaluator
    shape: tuple[int, int, int, int]
    orig_path: Path

    @classmethod
    def create(cls, cfg: QuantizeConfig, art: Artifact, orig: onnx.ModelProto, signal: Signal,
               data: QuantizeData, log: Log, work: Path) -> QuantizeContext:
        """Open the target's profiler (any ``--target`` form) and save the float model."""
        from xcompress.eval.tasks import evaluator_for
        from xcompress.profile.run import open_profiler

        evaluator = evaluator_for(art.card.task)
        profiler = open_profiler(cfg.target)
        shape = timing_shape(art.card, cfg)
        orig_path = work / "fp32.onnx"
        onnx.save(orig, orig_path)
        return cls(cfg, art, orig, signal, data, log, work, profiler, evaluator, shape, orig_path)

    @property
    def card(self) -> ModelCard:
        return self.art.card

    def results_of(self, model: onnx.ModelProto) -> dict[str, Any]:
        """The evaluation core's result (metrics and per-sample counts) on every budget set."""
        runner = OrtRunner(model, threads=self.cfg.threads)
        return {name: self.evaluator.evaluate(runner, self.card, s, 1, lambda n: None)
                for name, s in self.data.budget_sets.items()}

    def metrics_of(self, model: onnx.ModelProto) -> Metrics:
        """The task's metrics of ``model`` on every budget set."""
        return {k: r.metrics for k, r in self.results_of(model).items()}

    def drop_of(self, model: onnx.ModelProto, fp_metrics: Metrics) -> tuple[float, Metrics]:
        """The largest budget-metric drop of ``model`` over the budget sets, and its metrics."""
        got = self.metrics_of(model)
        return self.largest_drop(got, fp_metrics), got

    def largest_drop(self, got: Metrics, fp_metrics: Metrics) -> float:
        """The largest budget-metric drop of metrics ``got`` against ``fp_metrics``."""
        return max(self.signal.drop(fp_metrics[k], got[k]) for k in got)

    def compare(self, model_path: Path, warmup: int, runs: int) -> Any:
        """Float against ``model_path``, timed alternately on the target."""
        from xcompress.profile import ProfileConfig

        return self.profiler.compare(self.orig_path, model_path, ProfileConfig(
            shape=self.shape, threads=self.cfg.threads, warmup=warmup, runs=runs))


# --- plan timing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RewrittenPlan:
    """One plan's rewritten float model (outputs checked against the original)."""

    name: str
    plan: Plan
    model: onnx.ModelProto
    counts: dict[str, int]  # rewrite -> times applied
    max_diff: float

    def op_types(self, cfg: QuantizeConfig) -> tuple[str, ...]:
        return cfg.op_types or self.plan.op_types


@dataclass(frozen=True)
class PlanTiming:
    """Every plan rewritten and timed (quick min-max int8 build against float); ``order``
    is the order they are tried in (:func:`order_plans`)."""

    plans: dict[str, RewrittenPlan]
    speed: dict[str, float]  # plan -> fp32/int8 latency ratio
    order: list[str]


def order_plans(names: list[str], speed: dict[str, float]) -> list[str]:
    """Plans fastest first; one overtakes an earlier-listed plan only by PLAN_MARGIN."""
    order = list(names)
    for i in range(1, len(order)):
        j = i
        while j > 0 and speed[order[j]] > speed[order[j - 1]] * PLAN_MARGIN:
            order[j - 1], order[j] = order[j], order[j - 1]
            j -= 1
    return order


def _rewrite(ctx: QuantizeContext, upgraded: onnx.ModelProto, name: str) -> RewrittenPlan:
    plan = get_plan(name)
    counts: dict[str, int] = {}
    m = apply_rewrites(upgraded, plan.rewrites, counts.__setitem__)
    ensure_node_names(m)
    diff = _max_diff(ctx.orig, m, ctx.data.check_inputs)
    if diff > FLOAT_TOLERANCE:
        raise ModelError(f"graph rewrites of plan {name} changed the outputs (max diff "
                         f"{diff:.2e}); report this model, or pass --plan with another plan")
    return RewrittenPlan(name, plan, m, counts, diff)


def _quick_speed(ctx: QuantizeContext, rp: RewrittenPlan) -> float:
    """fp32/int8 ratio of a min-max int8 build on two calibration inputs (speed only)."""
    cfg = ctx.cfg
    quick = compute_ranges(gather_stats(rp.model, ctx.data.calib_inputs[:2], cfg.threads),
                           "minmax")
    q = _postprocess(quantize_qdq(rp.model, quick, rp.op_types(cfg), per_channel=cfg.per_channel),
                     ctx.orig)
    qpath = ctx.work / f"plan-{rp.name}.onnx"
    onnx.save(q, qpath)
    return ctx.compare(qpath, warmup=2, runs=max(5, cfg.latency_runs // 2)).ratio


def time_plans(ctx: QuantizeContext, upgraded: onnx.ModelProto) -> PlanTiming:
    """Rewrite, verify and time each of ``cfg.plans`` on the target."""
    plans: dict[str, RewrittenPlan] = {}
    speed: dict[str, float] = {}
    for name in ctx.cfg.plans:
        rp = _rewrite(ctx, upgraded, name)
        speed[name] = _quick_speed(ctx, rp)
        plans[name] = rp
        ctx.log(f"plan {name}: rewrites " + ", ".join(f"{k} {v}" for k, v in rp.counts.items() if v)
                + f"; fp32 max diff {rp.max_diff:.1e}; int8 speed-up {speed[name]:.2f}x at "
                + "x".join(map(str, ctx.shape)) + f", {ctx.cfg.threads} threads")
    return PlanTiming(plans, speed, order_plans(list(plans), speed))


# --- int8 builds of one plan -----------------------------------------------------------------


@dataclass(frozen=True)
class PlanQuantizer:
    """Builds int8 variants of one rewritten model; ``groups`` are its quantizable layers
    (``{layer: node names}``). Layers kept float are rewired past their Q/DQ
    (:func:`xcompress.quantize.qdq.keep_float`); ``stem`` layers are not in ``groups`` and
    compute in float in every variant (``QuantizeConfig.float_stem``)."""

    model: onnx.ModelProto
    op_types: tuple[str, ...]
    groups: dict[str, list[str]]
    per_channel: bool
    float_weights: bool
    #: :func:`~xcompress.quantize.qdq.saturation_bounds` every range is intersected with
    bounds: dict = field(default_factory=dict)
    stem: dict[str, list[str]] = field(default_factory=dict)
    _outputs: dict = field(default_factory=dict, compare=False, repr=False)

    def float_outputs(self, inputs: Sequence[np.ndarray], threads: int) -> list:
        """The float model's outputs on ``inputs`` (one list object, e.g. the selection
        hold-out), run once and kept: the calibration choice, each bias correction and the
        range repair compare their int8 variants against the same reference."""
        key = (id(inputs), threads)
        if key not in self._outputs:
            runner = OrtRunner(self.model, threads=threads)
            self._outputs[key] = [runner.run(x) for x in inputs]
        return self._outputs[key]

    def qdq(self, ranges: dict) -> onnx.ModelProto:
        """Every quantizable op with Q/DQ at ``ranges`` (not yet rewired)."""
        return quantize_qdq(self.model, tighten_ranges(ranges, self.bounds), self.op_types,
                            per_channel=self.per_channel)

    def all_int8(self, ranges: dict) -> onnx.ModelProto:
        """Every layer int8 at ``ranges``."""
        return keep_float(self.qdq(ranges), self.model,
                          [n for ns in self.groups.values() for n in ns], self.float_weights)

    def with_float(self, q_full: onnx.ModelProto, float_layers: Sequence[str]
                   ) -> onnx.ModelProto:
        """``q_full`` (see :meth:`qdq`) with ``float_layers`` computing in float."""
        skip = set(float_layers)
        return keep_float(q_full, self.model, [n for g, ns in self.groups.items()
                                               if g not in skip for n in ns], self.float_weights)


# --- calibration choice ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration method kept for one plan and why.

    Attributes:
        ranges: ``{tensor: (low, high)}`` of the chosen method.
        method, percentile: the chosen method (``percentile`` is used by that method only).
        candidates: ``{label: {"drop", "disagreement"}}`` of every candidate tried; empty
            when one method was configured.
        rule: the rule that chose it, as written in the report's ``chosen_by``.
        groups: ``{tensor group: method}`` the range search changed (:func:`range_search`).
        disagreement: the all-int8 model's disagreement with float at ``ranges`` on the
            selection hold-out (None when one method was configured and none was measured).
        finalists: ``{label: drop}`` of the candidates carried through bias correction
            (:func:`finalist_stage`), the budget-metric drop of each corrected all-int8
            model; empty when there was one.
    """

    ranges: dict
    method: str
    percentile: float
    candidates: dict[str, dict[str, float]]
    rule: str
    groups: dict[str, str] = field(default_factory=dict)
    disagreement: float | None = None
    finalists: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return method_label(self.method, self.percentile)


def method_spec(spec: str, cfg: QuantizeConfig) -> tuple[str, float]:
    """``name`` or ``percentile:<p>`` as ``(method, percentile)`` (default: cfg's)."""
    m, _, p = spec.partition(":")
    return m, float(p or cfg.percentile)


def method_candidates(cfg: QuantizeConfig, task: str) -> list[tuple[str, float]]:
    """``(method, percentile)`` pairs to try for a model of ``task``: the configured one,
    or all of ``auto``'s (:meth:`QuantizeConfig.auto_methods_for`)."""
    if cfg.method != "auto":
        return [(cfg.method, cfg.percentile)]
    return [method_spec(c, cfg) for c in cfg.auto_methods_for(task)]


def method_label(method: str, pct: float) -> str:
    """How a candidate is named in logs and reports: ``minmax``, ``percentile 99.995``."""
    return method if method != "percentile" else f"percentile {pct:g}"


def ranges_for(stats, method: str, pct: float, logits: Sequence[str]) -> dict:
    """Ranges by ``method``; a Softmax head's logits always get min-max (see
    :func:`xcompress.quantize.qdq.softmax_logits`)."""
    ranges = compute_ranges(stats, method, percentile=pct)
    if method != "minmax":
        exact = compute_ranges({t: stats[t] for t in logits if t in stats}, "minmax")
        ranges.update(exact)
    return ranges


def choice_rule(cfg: QuantizeConfig, signal: Signal, n_select: int) -> str:
    """The rule :func:`choose_calibration` applies, in the words the code uses."""
    return (f"least {signal.task} disagreement with the float model on {n_select} held-out "
            f"samples (the {signal.metric} drop is reported, and the budget checked after the "
            "float fallback)")


def _clip_rank(method: str, pct: float) -> float | None:
    """How little a method clips (higher = wider ranges); None where it is not ordered."""
    return 100.0 if method == "minmax" else pct if method == "percentile" else None


def widest_within_noise(tried: dict[str, tuple[Any, dict, tuple[str, float], np.ndarray]],
                        least: str, seed: int = 0) -> str:
    """Among the candidates whose disagreement with float is not measurably above the
    least one's (a paired bootstrap of the per-sample difference: its 95% interval reaches
    0), the one that clips least.

    The hold-out is synthetic by default, and text the generator never renders (degraded
    scans, document fonts) drives activations further into the tails that a lower
    percentile clips. On PP-OCRv4 rec (int8-conv, stem float, bias correction) the least
    disagreement on 150 synthetic lines picked percentile 99.98 (0.0208) over 99.995
    (0.0232); on held-out document lines 99.98 lost +2.28 / +1.58 CER* points (English /
    Chinese) where a 99.995 model (its biases corrected with the stem int8) lost -0.34 /
    -0.05. Taking 99.995 by this rule did not reproduce that gain (the steps after it chose
    differently; ``QuantizeConfig.prefer_wider_ranges``), so it is off by default.
    """
    base = tried[least][3]
    rng = np.random.default_rng(seed)
    best, best_rank = least, _clip_rank(*tried[least][2])
    if best_rank is None:
        return least
    for label, (_, _, spec, per) in tried.items():
        rank = _clip_rank(*spec)
        if rank is None or rank <= best_rank or len(per) != len(base) or not len(per):
            continue
        diff = per - base
        idx = rng.integers(0, len(diff), size=(2000, len(diff)))
        if float(np.percentile(diff[idx].mean(1), 2.5)) <= 0.0:
            best, best_rank = label, rank
    return best


def choose_calibration(ctx: QuantizeContext, name: str, pq: PlanQuantizer, stats,
                       fp_metrics: Metrics) -> CalibrationChoice:
    """The candidate method whose all-int8 model agrees best with the float model on the
    whole hold-out.

    Not the lowest label-based drop: on a few hundred lines that moves by a character or
    two per candidate (the same candidate measured -0.93 and +2.45 points on two splits,
    issue 13), so best-of-N on it picked noise. The disagreement is paired against the
    float model's own output on every held-out sample, so label noise cancels. Measured on
    PP-OCRv4 rec (int8-all plan, photo-damaged synthetic calibration), the disagreement's
    order of the six candidates matched their CER order on degraded real-document lines
    (license texts, message catalogs, codes) with percentile 99.98 best on both; the lowest
    hold-out drop would have picked 99.995 (+2.5 points worse on Chinese documents). On an
    AVX2 host (2026-12-07, stem float) the order did not hold for int8-conv: 99.98 had the
    least disagreement (0.0208 vs 0.0232) and lost +2.28 / +1.58 CER* points on document
    English / Chinese where 99.995 (stem float, from an earlier run) lost -0.34 / -0.05. The
    signal separates candidates that differ by more than its noise, not those within it
    (see ``QuantizeConfig.prefer_wider_ranges``).
    """
    cfg, select = ctx.cfg, ctx.data.select_inputs
    cands = method_candidates(cfg, ctx.card.task)
    logits = softmax_logits(pq.model)
    if len(cands) == 1:
        meth, pct = cands[0]
        return CalibrationChoice(ranges_for(stats, meth, pct, logits), meth, pct, {},
                                 f"--method {cfg.method}")
    ref = pq.float_outputs(select, cfg.threads)
    scores: dict[str, dict[str, float]] = {}
    tried: dict[str, tuple[tuple[float, float], dict, tuple[str, float], np.ndarray]] = {}
    for meth, pct in cands:
        ranges = ranges_for(stats, meth, pct, logits)
        q = pq.all_int8(ranges)
        runner = OrtRunner(q, threads=cfg.threads)
        outs = [runner.run(x) for x in select]
        dis = ctx.signal.disagreement(ref, outs, ctx.card)
        per_sample = np.array([ctx.signal.disagreement([r], [o], ctx.card)
                               for r, o in zip(ref, outs, strict=True)])
        drop = ctx.drop_of(q, fp_metrics)[0]
        label = method_label(meth, pct)
        scores[label] = {"drop": drop, "disagreement": dis}
        ctx.log(f"{name}: {label}: {ctx.signal.metric} drop {drop * 100:.2f} pt, disagreement "
                f"with float {dis:.4f}")
        tried[label] = ((dis, drop), ranges, (meth, pct), per_sample)
    least = min(tried, key=lambda k: tried[k][0])
    label = widest_within_noise(tried, least) if cfg.prefer_wider_ranges else least
    rule = choice_rule(cfg, ctx.signal, len(select))
    if label != least:
        rule += (f"; then the widest range not measurably worse than {least} (paired "
                 "bootstrap of the per-sample disagreement, 95%)")
        ctx.log(f"{name}: {label} instead of {least}: its disagreement is within the noise "
                "of the least, and it clips less")
    (meth, pct), ranges = tried[label][2], tried[label][1]
    return CalibrationChoice(ranges, meth, pct, scores, rule, {}, tried[label][0][0])


def tensor_groups(model: onnx.ModelProto, tensors: Sequence[str]) -> dict[str, list[str]]:
    """``{op type: tensors}``: calibrated tensors grouped by the op type that produces them
    (graph inputs under ``input``), in first-appearance order."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    groups: dict[str, list[str]] = {}
    for t in tensors:
        groups.setdefault(producer.get(t, "input"), []).append(t)
    return groups


def _close(a: tuple[float, float], b: tuple[float, float], tol: float = 0.05) -> bool:
    width = max(b[1] - b[0], 1e-12)
    return abs(a[0] - b[0]) <= tol * width and abs(a[1] - b[1]) <= tol * width


def range_search(ctx: QuantizeContext, name: str, pq: PlanQuantizer, stats, ranges: dict,
                 logits: Sequence[str], ref: Sequence[np.ndarray], dis0: float
                 ) -> tuple[dict, dict[str, str], float]:
    """Per group of tensors (by producing op type), try each of ``cfg.range_search``'s
    methods for that group alone; keep a change when the all-int8 model's disagreement with
    float on the hold-out falls. One greedy pass, groups in graph order.

    Why groups and not one global method: on PP-OCRv4 rec (int8-all plan) percentile 99.98
    was best globally, but min-max on every tensor a Mul reads or writes (the hard-swish
    products) cut the CER rise on degraded document lines from 3.18 to 1.05 points (English)
    and 3.60 to 2.47 (Chinese), and lowered the disagreement too. Grouped by producer, as
    here, the search put ppocr-v5-rec's 28 hard-swish outputs at min-max and changed nothing
    in the plan ppocr-v4-rec ships. Groups by op type keep the search to a dozen
    evaluations; per tensor it would be hundreds.
    """
    cfg, select, signal = ctx.cfg, ctx.data.select_inputs, ctx.signal
    alt = {m: ranges_for(stats, *method_spec(m, cfg), logits) for m in cfg.range_search}
    best, best_dis, chosen = dict(ranges), dis0, {}
    for group, tensors in tensor_groups(pq.model, [t for t in ranges if t not in logits]).items():
        for method, rng in alt.items():
            trial = {**best, **{t: rng[t] for t in tensors if t in rng}}
            if all(_close(trial[t], best[t]) for t in tensors):
                continue  # within 5% of the ranges it has: not worth an evaluation
            runner = OrtRunner(pq.all_int8(trial), threads=cfg.threads)
            dis = signal.disagreement(ref, [runner.run(x) for x in select], ctx.card)
            if dis < best_dis:
                best, best_dis, chosen[group] = trial, dis, method
                ctx.log(f"{name}: {group} outputs ({len(tensors)}) at {method}: disagreement "
                        f"{dis:.4f}")
    return best, chosen, best_dis


def range_repair(ctx: QuantizeContext, name: str, pq: PlanQuantizer, stats,
                 calibration: CalibrationChoice, q_full: onnx.ModelProto, bias: BiasChoice,
                 fp_metrics: Metrics, drop: float | None
                 ) -> tuple[CalibrationChoice, onnx.ModelProto, BiasChoice, float | None]:
    """Only where the chosen all-int8 model misses the budget: :func:`range_search` from its
    ranges, then bias correction again; the searched model replaces it when its budget-metric
    drop is smaller. Returns the calibration, Q/DQ model, bias record and all-int8 drop kept
    (``drop`` as given, possibly None, when nothing was searched).

    Why not always: the search lowers the disagreement on the synthetic hold-out, not the
    loss on other text. On PP-OCRv4 rec (defaults, stem and its reader float, AVX2 host,
    2026-12-07) seed 1's search put the 55 Mul outputs at min-max and shipped percentile
    99.99 uncorrected: on held-out sets of 600 lines (benchmarks/heldout.py --seed 11) it
    lost en +0.28, zh +0.07, doc-en +1.67, doc-zh +1.92, codes +1.05 CER* points; without
    the search the same seed shipped 99.995, bias corrected: +0.05, -0.07, -0.30, +0.13,
    -0.03. Both met the budget on the synthetic check (0.07 points). Where percentiles alone
    miss (ppocr-v5-rec: one hard-swish output feeding a depthwise conv turned +0.8 into +44
    points), the search is the repair.
    """
    cfg = ctx.cfg
    if not cfg.range_search or calibration.disagreement is None:
        return calibration, q_full, bias, drop
    if drop is None:
        drop = ctx.drop_of(pq.with_float(q_full, []), fp_metrics)[0]
    if drop <= cfg.max_drop:
        return calibration, q_full, bias, drop
    ctx.log(f"{name}: {calibration.label} all-int8 misses the budget ({drop * 100:.2f} pt): "
            "range search per tensor group")
    logits = softmax_logits(pq.model)
    ref = pq.float_outputs(ctx.data.select_inputs, cfg.threads)
    ranges, searched, dis = range_search(ctx, name, pq, stats, calibration.ranges, logits, ref,
                                         calibration.disagreement)
    if not searched:
        return calibration, q_full, bias, drop
    cal = dataclasses.replace(
        calibration, ranges=ranges, groups=searched, disagreement=dis,
        rule=calibration.rule + "; all-int8 missed the budget, so then per tensor group: "
        + ", ".join(f"{g} at {m}" for g, m in searched.items()))
    q2, bias2 = bias_stage(ctx, name, pq, pq.qdq(ranges), cal)
    drop2 = ctx.drop_of(pq.with_float(q2, []), fp_metrics)[0]
    better = drop2 < drop
    ctx.log(f"{name}: range search: {ctx.signal.metric} drop {drop * 100:.2f} -> "
            f"{drop2 * 100:.2f} pt" + ("" if better else " (not lower: not kept)"))
    return (cal, q2, bias2, drop2) if better else (calibration, q_full, bias, drop)


# --- bias correction -------------------------------------------------------------------------


@dataclass(frozen=True)
class BiasChoice:
    """Whether the plan's int8 model got its biases corrected
    (:mod:`xcompress.quantize.bias`), and the check that decided it.

    Attributes:
        applied: the correction lowered the disagreement with float and is in the model.
        layers: layers it corrected (0: off, or nothing to correct).
        disagreement: ``(without, with)`` on the hold-out that chose the calibration.
        seconds: time the correction took.
    """

    applied: bool
    layers: int = 0
    disagreement: tuple[float, float] | None = None
    seconds: float = 0.0


def bias_stage(ctx: QuantizeContext, name: str, pq: PlanQuantizer, q_full: onnx.ModelProto,
               calibration: CalibrationChoice) -> tuple[onnx.ModelProto, BiasChoice]:
    """Correct the int32 biases of ``q_full`` in the all-int8 context; kept only if the
    all-int8 model then agrees better with float on the selection hold-out (the signal that
    chose the ranges). Layers the float fallback later keeps float keep the corrected bias
    (their int8 weights stay, and with them most of the shift it undoes).

    All layers or none: on PP-OCRv4 rec the correction of the last six layers (the last
    backbone conv and the SVTR neck's convs) raised the disagreement that the earlier ones
    had lowered (defaults, 99.999: none 0.0298, first 32 of 38 layers 0.0102, all 0.0146),
    but keeping the best prefix by that signal made held-out document lines worse (600 per
    set, CER* vs fp32: doc-en -0.79 -> +0.45, doc-zh +0.06 -> +0.47; AVX2 host,
    2026-12-07), so the correction is not cut short."""
    from xcompress.quantize.bias import correct_biases

    cfg = ctx.cfg
    if not cfg.bias_correction:
        return q_full, BiasChoice(False)
    base = pq.with_float(q_full, [])  # every layer int8
    inputs = ctx.data.calib_inputs[: cfg.bias_samples] if cfg.bias_samples else \
        ctx.data.calib_inputs
    bc = correct_biases(base, pq.model, inputs, cfg.threads, log=ctx.log)
    if not bc.biases:
        return q_full, BiasChoice(False)
    select, signal = ctx.data.select_inputs, ctx.signal

    def disagreement(m: onnx.ModelProto) -> float:
        runner = OrtRunner(m, threads=cfg.threads)
        return signal.disagreement(ref, [runner.run(x) for x in select], ctx.card)

    ref = pq.float_outputs(select, cfg.threads)
    before = calibration.disagreement
    if before is None:
        before = disagreement(base)
    after = disagreement(bc.apply(base))
    applied = after < before
    ctx.log(f"{name}: bias correction of {len(bc.biases)} layers on {bc.samples} inputs "
            f"({bc.seconds:.0f}s): disagreement with float {before:.4f} -> {after:.4f}"
            + ("" if applied else " (not lower: not applied)"))
    choice = BiasChoice(applied, len(bc.biases), (before, after), bc.seconds)
    return (bc.apply(q_full) if applied else q_full), choice


# --- finalists -------------------------------------------------------------------------------


def finalist_stage(ctx: QuantizeContext, name: str, pq: PlanQuantizer, stats,
                   calibration: CalibrationChoice, fp_metrics: Metrics
                   ) -> tuple[CalibrationChoice, onnx.ModelProto, BiasChoice]:
    """Bias-correct the ``QuantizeConfig.finalists`` candidates that agree best with float
    and keep the one whose corrected all-int8 model loses least on the budget metric, if
    that smaller loss is resolved (its paired 95% interval against the best-agreeing
    finalist excludes zero on a budget set); otherwise the one agreeing best after the
    correction. Returns its calibration, its Q/DQ model (biases corrected where that
    helped, see :func:`bias_stage`) and the bias record.

    Why not the least drop alone: on a few hundred lines two finalists' drops differ by
    noise. Checked on 257 detector crops at 0.1 points, 99.995 won by -0.13 against -0.09
    points where 99.999 agreed better after correction (0.0229 vs 0.0183); the 99.995
    model lost 2.89 points of e2e Hmean* on 60 pages, the 99.999 one the defaults wrote
    (chosen on synthetic lines) 0.52 (``benchmarks/results/rec_in_system.md``). Min-max won
    a 250-line check of the user's own lines by 0.26 points and lost 2.2 on documents.

    Why not the least disagreement alone: the correction changes which range is best, and
    the disagreement counts every change of a decoding, also on lines the float model reads
    wrongly. Measured on PP-OCRv4 rec (int8-conv, stem float, 150 synthetic hold-out lines,
    AVX2 host, 2026-12-07): percentile 99.98 agreed best before (0.0208 vs 0.0232 for
    99.995) and after correction (0.0179 vs 0.0220), but lost 0.47 pt where 99.995 lost
    -0.07; on held-out lines in other fonts and document text (200 each) 99.98 lost en
    -0.20, zh +0.21, doc-en +2.28, doc-zh +1.58, codes +0.61 CER* points, 99.995 (range
    search off; it changed nothing there) -0.37, -0.05, +0.16, +0.54, +0.42. The
    candidates are pre-filtered by the disagreement so that a small hold-out's label noise
    picks between two, not best of five. Only recognizers by default
    (``QuantizeConfig.finalists``).
    """
    cfg = ctx.cfg
    q_full, bias = bias_stage(ctx, name, pq, pq.qdq(calibration.ranges), calibration)
    n = cfg.finalists_for(ctx.card.task)
    if n <= 1 or not cfg.bias_correction or len(calibration.candidates) < 2:
        return calibration, q_full, bias
    specs = {method_label(m, p): (m, p) for m, p in method_candidates(cfg, ctx.card.task)}
    ranked = sorted(calibration.candidates,
                    key=lambda k: calibration.candidates[k]["disagreement"])
    others = [k for k in ranked if k != calibration.label][: n - 1]
    logits = softmax_logits(pq.model)
    finals = [(calibration, q_full, bias)]
    for label in others:
        meth, pct = specs[label]
        cal = dataclasses.replace(calibration, ranges=ranges_for(stats, meth, pct, logits),
                                  method=meth, percentile=pct, groups={},
                                  disagreement=calibration.candidates[label]["disagreement"])
        finals.append((cal, *bias_stage(ctx, name, pq, pq.qdq(cal.ranges), cal)))
    drops, agree, models = {}, {}, {}
    for cal, q, bc in finals:
        models[cal.label] = pq.with_float(q, [])
        drops[cal.label] = ctx.drop_of(models[cal.label], fp_metrics)[0]
        agree[cal.label] = bc.disagreement[1] if bc.applied and bc.disagreement else \
            cal.disagreement
        ctx.log(f"{name}: finalist {cal.label}: {ctx.signal.metric} drop "
                f"{drops[cal.label] * 100:.2f} pt after bias correction")
    labels = [cal.label for cal, _, _ in finals]
    by_drop = min(labels, key=lambda k: drops[k])  # ties: first
    by_agree = min(labels, key=lambda k: (agree[k] is None, agree[k] or 0.0))
    best, how = by_drop, f"the least {ctx.signal.metric} drop after bias correction"
    if by_agree != by_drop and agree[by_agree] is not None and not _resolved_better(
            ctx, ctx.results_of(models[by_drop]), ctx.results_of(models[by_agree])):
        best = by_agree
        how = (f"the least disagreement after bias correction ({by_drop}'s smaller "
               f"{ctx.signal.metric} drop was within the check's noise)")
        ctx.log(f"{name}: {by_drop}'s smaller drop is within the check's noise: "
                f"{by_agree} (disagreement {agree[by_agree]:.4f}) kept")
    cal, q, bc = finals[labels.index(best)]
    rule = f"{calibration.rule}; then of the {len(finals)} agreeing best, {how}"
    return dataclasses.replace(cal, rule=rule, finalists=drops), q, bc


def _resolved_better(ctx: QuantizeContext, better: dict[str, Any], other: dict[str, Any]
                     ) -> bool:
    """Whether ``better`` beats ``other`` on the budget metric beyond the noise of some budget
    set: the 95% paired bootstrap interval of the metric's difference excludes zero."""
    from xcompress.eval.bootstrap import paired_interval

    task, metric = ctx.card.task, ctx.signal.metric
    for k, r in better.items():
        lo, hi = paired_interval(task, other[k].counts, r.counts, metric)  # better - other
        if (lo > 0.0) if ctx.signal.higher_is_better else (hi < 0.0):
            return True
    return False


# --- float fallback --------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatFallback:
    """Which layers stay float for one plan, and the checks that decided it.

    Attributes:
        drop_all_int8: the budget-metric drop with every layer int8.
        result: the greedy search's outcome
            (:func:`~xcompress.quantize.fallback.choose_float_layers`).
        sensitivity: ``{layer: score}``; empty when all-int8 already met the budget.
        groups: the plan's quantizable layers, ``{layer: node names}``.
        stem: layers float in every variant, not in ``groups`` (``QuantizeConfig.float_stem``).
    """

    drop_all_int8: float
    result: FallbackResult
    sensitivity: dict[str, float]
    groups: dict[str, list[str]]
    stem: dict[str, list[str]] = field(default_factory=dict)


def _sensitivity(q_full, m, groups, ctx: QuantizeContext) -> dict[str, float]:
    """Per layer: how much of the all-int8 model's disagreement with float goes away when
    only that layer computes in float (leave one out).

    Measured in the all-int8 context, not with the layer alone int8: layers interact (a
    layer's int8 input comes from its int8 neighbours), and the alone-int8 signal of PP-OCRv4
    rec sat at one floor for most layers (its per-channel int8 weights, which every probe
    shared), so it could not rank them.
    """
    cfg, probes, signal, card = ctx.cfg, ctx.data.probe_inputs, ctx.signal, ctx.card
    ref_runner = OrtRunner(m, threads=cfg.threads)
    ref = [ref_runner.run(x) for x in probes]
    every = [n for ns in groups.values() for n in ns]
    base_runner = OrtRunner(keep_float(q_full, m, every, cfg.float_weights), threads=cfg.threads)
    base = signal.disagreement(ref, [base_runner.run(x) for x in probes], card)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for i, g in enumerate(groups):
        model = keep_float(q_full, m, [n for h, ns in groups.items() if h != g for n in ns],
                           cfg.float_weights)
        runner = OrtRunner(model, threads=cfg.threads)
        out[g] = base - signal.disagreement(ref, [runner.run(x) for x in probes], card)
        if (i + 1) % 10 == 0 or i + 1 == len(groups):
            ctx.log(f"  sensitivity {i + 1}/{len(groups)} layers "
                    f"({time.perf_counter() - t0:.0f}s)")
    return out


def float_fallback(ctx: QuantizeContext, name: str, pq: PlanQuantizer, q_full: onnx.ModelProto,
                   fp_metrics: Metrics, drop_all_int8: float | None = None) -> FloatFallback:
    """All layers int8 if that meets the budget; else the most sensitive kept float, greedily
    (:mod:`xcompress.quantize.fallback`). ``drop_all_int8``: the all-int8 model's drop when
    an earlier stage measured it (:func:`finalist_stage`), not evaluated again."""
    cfg = ctx.cfg

    def check(float_layers: list[str]) -> float:
        return ctx.drop_of(pq.with_float(q_full, float_layers), fp_metrics)[0]

    sensitivity: dict[str, float] = {}
    d0 = check([]) if drop_all_int8 is None else drop_all_int8
    ctx.log(f"{name}: all {len(pq.groups)} layers int8: {ctx.signal.metric} drop "
            f"{d0 * 100:.2f} pt (budget {cfg.max_drop * 100:.2f} pt)")
    if d0 > cfg.max_drop:
        sensitivity = _sensitivity(q_full, pq.model, pq.groups, ctx)
        max_float = max(1, int(len(pq.groups) * cfg.max_float_fraction))
        res = choose_float_layers(
            sensitivity, check, cfg.max_drop, max_float,
            on_step=lambda s: ctx.log(
                f"{name}: float {s.float_layers[-1] if s.float_layers else '-'}: drop "
                f"{s.drop * 100:.2f} pt" + ("" if s.kept else " (worse: dropped again)")),
            max_checks=cfg.fallback_checks,
        )
    else:
        res = choose_float_layers({}, lambda f: d0, cfg.max_drop, 0)
    return FloatFallback(d0, res, sensitivity, pq.groups, pq.stem)


# --- plan search -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    """The plan that met the budget: its final int8 model and how it was made."""

    plan: RewrittenPlan
    model: onnx.ModelProto
    counts: dict[str, int]  # the plan's rewrites and the post-processing's
    fp_metrics: Metrics  # the rewritten float model on the budget sets
    metrics: Metrics  # the final int8 model on the budget sets
    calibration: CalibrationChoice
    bias: BiasChoice
    fallback: FloatFallback
    #: the final int8 model's evaluation results (with per-sample counts) per budget set
    results: dict[str, Any]


@dataclass(frozen=True)
class PlanSearch:
    """The chosen plan and one record per plan tried (the report's ``plan.attempts``)."""

    chosen: PlanResult
    attempts: list[dict[str, Any]]


def _try_plan(ctx: QuantizeContext, rp: RewrittenPlan, attempts: list[dict[str, Any]]
              ) -> PlanResult | None:
    """Calibrate, fall back and verify one plan; None (and a record) when it misses."""
    cfg, name = ctx.cfg, rp.name
    op_types = rp.op_types(cfg)
    t_cal = time.perf_counter()
    stats = gather_stats(rp.model, ctx.data.calib_inputs, cfg.threads)
    ctx.log(f"{name}: activation statistics of {len(stats)} tensors in "
            f"{time.perf_counter() - t_cal:.1f}s")
    groups = layer_groups(rp.model, op_types)
    stem = {g: groups.pop(g) for g in stem_layers(rp.model, groups)} \
        if cfg.stem_in_float(ctx.card.task) else {}
    pq = PlanQuantizer(rp.model, op_types, groups, cfg.per_channel, cfg.float_weights,
                       saturation_bounds(rp.model) if cfg.saturation_ranges else {}, stem)
    fp_metrics = ctx.metrics_of(rp.model)
    calibration = choose_calibration(ctx, name, pq, stats, fp_metrics)
    calibration, q_full, bias = finalist_stage(ctx, name, pq, stats, calibration, fp_metrics)
    calibration, q_full, bias, drop = range_repair(
        ctx, name, pq, stats, calibration, q_full, bias, fp_metrics,
        calibration.finalists.get(calibration.label))
    fb = float_fallback(ctx, name, pq, q_full, fp_metrics, drop)
    res = fb.result
    attempts.append({"plan": name, "drop_all_int8": fb.drop_all_int8, "best_drop": res.best.drop,
                     "best_float_layers": len(res.best.float_layers), "met": res.met})
    if not res.met:
        ctx.log(f"{name}: budget not met (best {res.best.drop * 100:.2f} pt with "
                f"{len(res.best.float_layers)} float layers)")
        return None
    # The shipped model is the one measured: layers kept float by rewiring their inputs
    # past Q/DQ. onnxruntime's `nodes_to_exclude` is not enough here: an excluded node
    # still reads the DequantizeLinear of a neighbour's quantized tensor, so its
    # activations stay int8 (measured: same drop as all-int8 on PP-OCRv4 rec).
    post_counts: dict[str, int] = {}
    final = _postprocess(pq.with_float(q_full, res.float_layers), ctx.orig, post_counts)
    final_results = ctx.results_of(final)  # kept: measure_final's interval reuses the counts
    final_metrics = {k: r.metrics for k, r in final_results.items()}
    drop = ctx.largest_drop(final_metrics, fp_metrics)
    ctx.log(f"{name}: final model {len(res.float_layers)} float layers, drop "
            f"{drop * 100:.2f} pt")
    if drop > cfg.max_drop:
        attempts[-1]["met"] = False
        return None
    return PlanResult(rp, final, {**rp.counts, **post_counts}, fp_metrics, final_metrics,
                      calibration, bias, fb, final_results)


def search_plans(ctx: QuantizeContext, timing: PlanTiming) -> PlanSearch:
    """Plans in ``timing.order``; the first whose final model meets the budget wins.

    Raises:
        BudgetError: no plan met ``max_drop``; the message gives the best drop reached.
    """
    attempts: list[dict[str, Any]] = []
    for name in timing.order:
        chosen = _try_plan(ctx, timing.plans[name], attempts)
        if chosen is not None:
            return PlanSearch(chosen, attempts)
    best = min(attempts, key=lambda a: a["best_drop"])
    raise BudgetError(
        f"no int8 model within --max-drop {ctx.cfg.max_drop * 100:.2f} pt of "
        f"{ctx.signal.metric}: best {best['best_drop'] * 100:.2f} pt (plan {best['plan']}, "
        f"{best['best_float_layers']} layers float); raise --max-drop, add calibration "
        "data, or try --method"
    )


# --- int4 weight storage ----------------------------------------------------------------------


@dataclass(frozen=True)
class Int4Choice:
    """Which layers of the chosen int8 model store int4 weights, and what it cost.

    Attributes:
        layers: node names of the int4 layers (empty: off, or none fitted).
        candidates: layers that qualified (:func:`xcompress.quantize.int4.int4_layers`).
        bytes_saved: weight bytes saved (half a byte per int4 weight).
        sensitivity: per candidate, the mean squared change of the model's outputs when
            that layer alone is int4, relative to the int8 model's own mean squared
            difference from float (the order they were tried in: least per weight first).
        error_rise: the chosen model's mean squared output difference from float over the
            int8 model's, minus 1 (bounded by ``QuantizeConfig.int4_max_error_rise``).
        drop: the budget metric's largest drop before and after (None when off).
        checks: ``(layers int4, error rise or None, largest drop or None)`` per check.
        seconds: time the stage took.
    """

    layers: tuple[str, ...] = ()
    candidates: int = 0
    bytes_saved: int = 0
    sensitivity: dict[str, float] = field(default_factory=dict)
    error_rise: float = 0.0
    drop: tuple[float, float] | None = None
    checks: tuple[tuple[int, float | None, float | None], ...] = ()
    seconds: float = 0.0


def _mean_sq(a: Sequence[Any], b: Sequence[Any]) -> float:
    return float(np.mean([np.mean((np.asarray(x[0], np.float64) - y[0]) ** 2)
                          for x, y in zip(a, b, strict=True)]))


def int4_stage(ctx: QuantizeContext, chosen: PlanResult) -> tuple[PlanResult, Int4Choice]:
    """With ``QuantizeConfig.int4_weights``: store as int4 the weights of the longest prefix
    of the candidate layers, least output change per weight first, whose model's outputs
    (on the selection hold-out) move from float by at most ``1 + int4_max_error_rise`` times
    the int8 model's, and which still meets the budget; the chosen model unchanged when
    none fits. Bisection: each check is one GPTQ pass (:func:`xcompress.quantize.int4.to_int4`)
    and one run of the hold-out.

    Why the output change and not the budget metric alone: on PP-OCRv4 rec (defaults, AVX2
    host, 2026-12-07) the budget check on 150 synthetic lines, with layers ranked by CTC
    disagreement, let int4 spend the whole budget (drop -0.20 -> +0.33 pt, 0.43 MB saved)
    and held-out lines lost much more (600 per set, CER* vs fp32 en / zh / doc-en / doc-zh /
    codes: +0.47, +0.34, +1.10, +1.30, +0.49; int8 alone -0.21, -0.11, -0.79, +0.06, +0.26).
    Ranked by output change instead, the first 5 layers (output error x1.19, 0.54 MB; a
    scratch run) changed it by -0.04, -0.02, -0.59, +0.55, +0.27; the first 10 (x1.33, 0.72 MB)
    by +0.35, +0.13, +1.09, +1.04, +0.63; this stage on defaults took 6 (x1.15, 0.55 MB):
    +0.13, +0.14, +0.02, +0.83, +0.53 (``benchmarks/results/int4.md``). Every layer of 4096+
    weights (x2.83) lost +2.1..+9.2 on 200-line sets; rounded to nearest without GPTQ they
    read nothing (CER* 99%). A second bias correction after the int4 step made it worse
    (doc-en +6.2 -> +11.4 with every layer).
    """
    from xcompress.quantize.int4 import (
        apply_int4,
        int4_bytes_saved,
        int4_layers,
        layer_hessians,
        quantize_layer,
        to_int4,
    )

    cfg = ctx.cfg
    if not cfg.int4_weights:
        return chosen, Int4Choice()
    t0 = time.perf_counter()
    base = onnx.ModelProto()
    base.CopyFrom(chosen.model)
    ensure_node_names(base)
    fp_metrics = chosen.fp_metrics
    drop0 = ctx.largest_drop(chosen.metrics, fp_metrics)
    layers = int4_layers(base, cfg.int4_min_weights)
    if not layers:
        ctx.log("int4 weights: no Conv / MatMul layer qualifies; the int8 model stays")
        return chosen, Int4Choice(drop=(drop0, drop0), seconds=time.perf_counter() - t0)
    inputs, select = ctx.data.calib_inputs, ctx.data.select_inputs

    def outputs(m: onnx.ModelProto) -> list:
        runner = OrtRunner(m, threads=cfg.threads)
        return [runner.run(x) for x in select]

    y_fp, y8 = outputs(chosen.plan.model), outputs(base)
    e8 = max(_mean_sq(y8, y_fp), 1e-30)
    hs = layer_hessians(base, layers, inputs, cfg.threads, cfg.seed)
    sens = {}
    for i, la in enumerate(layers):
        one = apply_int4(base, {la.node: quantize_layer(base, la, hs[la.node])}, [la])
        sens[la.node] = _mean_sq(outputs(one), y8) / e8
        if (i + 1) % 10 == 0 or i + 1 == len(layers):
            ctx.log(f"int4 weights: sensitivity of {i + 1}/{len(layers)} layers "
                    f"({time.perf_counter() - t0:.0f}s)")
    order = sorted(layers, key=lambda la: (sens[la.node] / la.n, -la.n))
    checks: list[tuple[int, float | None, float | None]] = []
    kept: dict[int, tuple[onnx.ModelProto, float, dict[str, Any] | None]] = {}

    def fits(k: int) -> bool:
        q4 = to_int4(base, order[:k], inputs, cfg.threads, cfg.seed)
        rise = _mean_sq(outputs(q4), y_fp) / e8 - 1.0
        saved = int4_bytes_saved(order[:k]) / 1e6
        if rise > cfg.int4_max_error_rise:
            checks.append((k, rise, None))
            ctx.log(f"int4 weights: {k} of {len(order)} layers ({saved:.2f} MB saved): "
                    f"output error x{1 + rise:.2f} of int8's (limit "
                    f"x{1 + cfg.int4_max_error_rise:.2f})")
            return False
        res = ctx.results_of(q4)
        drop = ctx.largest_drop({n: r.metrics for n, r in res.items()}, fp_metrics)
        checks.append((k, rise, drop))
        ctx.log(f"int4 weights: {k} of {len(order)} layers ({saved:.2f} MB saved): output "
                f"error x{1 + rise:.2f} of int8's, drop {drop * 100:.2f} pt")
        if drop > cfg.max_drop:
            return False
        kept[k] = (q4, rise, res)
        return True

    lo, hi = 0, len(order)
    if fits(hi):
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    choice = Int4Choice(tuple(la.node for la in order[:lo]), len(layers),
                        int4_bytes_saved(order[:lo]), {la.node: sens[la.node] for la in order},
                        0.0, None, tuple(checks))
    if lo == 0:
        ctx.log("int4 weights: no layer fits; the int8 model stays")
        return chosen, dataclasses.replace(choice, drop=(drop0, drop0),
                                           seconds=time.perf_counter() - t0)
    q4, rise, res = kept[lo]
    metrics = {k: r.metrics for k, r in res.items()}
    drop = ctx.largest_drop(metrics, fp_metrics)
    ctx.log(f"int4 weights: {lo} layers, {choice.bytes_saved / 1e6:.2f} MB saved, output "
            f"error x{1 + rise:.2f} of int8's, drop {drop0 * 100:.2f} -> {drop * 100:.2f} pt "
            f"({time.perf_counter() - t0:.0f}s)")
    return (dataclasses.replace(chosen, model=q4, metrics=metrics, results=res),
            dataclasses.replace(choice, error_rise=rise, drop=(drop0, drop),
                                seconds=time.perf_counter() - t0))


# --- final measurement -----------------------------------------------------------------------


@dataclass(frozen=True)
class FinalMeasurement:
    """The shipped model timed against float, and the original float model's metrics."""

    path: Path  # the final model, saved in the scratch folder
    comparison: Any  # xcompress.profile.Comparison: a = fp32, b = int8
    fp32_metrics: Metrics  # the original (not rewritten) float model on the budget sets
    warnings: list[str]
    #: per budget set: 95% interval of the drop (positive = worse), paired bootstrap
    drop_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)


def measure_final(ctx: QuantizeContext, chosen: PlanResult) -> FinalMeasurement:
    """Time the chosen int8 model against float alternately (``latency_runs``); evaluate the
    original and bound the drop (the int8 model's results come from the plan search).

    Raises:
        BudgetError: int8 is not faster than float on the target (unless ``allow_slower``).
    """
    from xcompress.quantize.compact import compact_names

    cfg = ctx.cfg
    final_path = ctx.work / MODEL_FILE
    # the file timed here is the file published: short names, the same computation
    onnx.save(compact_names(chosen.model), final_path)
    cmp = ctx.compare(final_path, warmup=3, runs=cfg.latency_runs)
    ctx.log(f"latency fp32 {cmp.a.median_ms:.1f} ms, int8 {cmp.b.median_ms:.1f} ms: "
            f"{cmp.ratio:.2f}x (median of {cmp.rounds} alternating rounds)")
    warnings = []
    if cmp.ratio <= 1.0:
        shape = "x".join(map(str, ctx.shape))
        if not cfg.allow_slower:
            # a smaller file that runs slower is not what quantize promises: write nothing
            raise BudgetError(
                f"no faster int8 plan on {cfg.target}: the best plan within budget runs at "
                f"{cmp.ratio:.2f}x of fp32 at {shape}, {cfg.threads} threads (too small a model "
                "for int8 kernels to pay off); keep the fp32 model, or pass --allow-slower "
                "to write the int8 one for its size")  # fmt: skip
        warnings.append(f"int8 is not faster than fp32 on {cfg.target} at {shape} "
                        f"({cmp.ratio:.2f}x); written because of --allow-slower")
        ctx.log(f"warning: {warnings[-1]}")
    fp32_res = ctx.results_of(ctx.orig)
    intervals = budget_intervals(ctx, fp32_res, chosen.results)
    if all(ctx.data.is_synthetic(k) for k in ctx.data.budget_sets):
        warnings.append(
            "the budget was checked on the built-in synthetic set only ("
            + ", ".join(f"{k}: {len(ctx.data.budget_sets[k])} samples, drop 95% CI "
                        f"{lo * 100:+.2f}..{hi * 100:+.2f} pt" for k, (lo, hi) in
                        intervals.items())
            + "); other text can lose more (ppocr-v5-rec's defaults lost 1.5-2 points on "
            "degraded document lines): check your own data with --eval (or calibrate on it "
            "with --calib)")
        ctx.log(f"warning: {warnings[-1]}")
    coarse = coarse_budget_warning(cfg.max_drop, intervals, ctx.data)
    if coarse:
        warnings.append(coarse)
        ctx.log(f"warning: {coarse}")
    return FinalMeasurement(final_path, cmp, {k: r.metrics for k, r in fp32_res.items()},
                            warnings, intervals)


def coarse_budget_warning(max_drop: float, intervals: dict[str, tuple[float, float]],
                          data: QuantizeData) -> str | None:
    """A warning when ``max_drop`` is finer than one of the user's budget sets can resolve:
    half its drop's 95% interval is wider than the budget, so the choices made to meet it
    follow the set's noise (the built-in synthetic hold-out has its own warning, with its
    interval). Measured on PP-OCRv4 rec checked at 0.1 points on 257 detector crops (drop
    interval -0.36..+0.52), three recognizers (calibrated on the crops or on synthetic lines,
    with and without bias correction; finalists then picked by the least drop) each lost
    2.9-4.4 points of e2e Hmean* on one of three
    page sets; the defaults (0.5 points on 150 synthetic lines) lost 0.52 at most
    (``benchmarks/results/rec_in_system.md``)."""
    wide = {k: (lo, hi) for k, (lo, hi) in intervals.items()
            if (hi - lo) / 2 > max_drop and not data.is_synthetic(k)}
    if not wide:
        return None
    sets = ", ".join(f"{k} ({len(data.budget_sets[k])} samples, drop 95% CI {lo * 100:+.2f}.."
                     f"{hi * 100:+.2f} pt)" for k, (lo, hi) in wide.items())
    return (f"the budget ({max_drop * 100:.2f} pt) is finer than the check can resolve on {sets}: "
            "layers kept float to meet it may follow noise; give more --eval samples or a "
            "wider --max-drop")


def budget_intervals(ctx: QuantizeContext, fp32_res: dict, int8_res: dict
                     ) -> dict[str, tuple[float, float]]:
    """Per budget set: the 95% paired bootstrap interval of the budget metric's drop
    (:mod:`xcompress.eval.bootstrap`), positive = worse."""
    from xcompress.eval.bootstrap import paired_interval

    out = {}
    for k, r in fp32_res.items():
        lo, hi = paired_interval(ctx.card.task, r.counts, int8_res[k].counts, ctx.signal.metric)
        out[k] = (lo, hi) if not ctx.signal.higher_is_better else (-hi, -lo)
    return out
