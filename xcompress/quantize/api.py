"""``quantize``: accuracy-aware int8 post-training quantization of an OCR ONNX model.

Steps (each logged with its time while it runs):

1. resolve the model and check it is an OCR model of a supported shape;
2. read the calibration set (or generate the built-in synthetic one); without
   ``eval_paths``, hold out a seeded half of it for the accuracy budget;
3. upgrade the opset (per-channel QDQ needs >= 13, the fused Gelu 20) and check the float
   outputs are unchanged;
4. for each plan (rewrites + op types, :mod:`xcompress.quantize.plans`): rewrite the graph,
   check the float outputs again, and time a quick int8 build against the original model on
   the target; plans are then tried fastest first;
5. collect activation histograms on the calibration lines/pages at their own sizes; compute
   ranges with each candidate method and keep the one whose int8 model agrees best with the
   float model (``method="auto"``); if the accuracy drop exceeds the budget, rank layers by an
   OCR-aware signal (:mod:`xcompress.quantize.signals`) and keep the most sensitive in float
   until it holds (:mod:`xcompress.quantize.fallback`);
6. drop Q/DQ pairs no int8 kernel uses, re-check accuracy, time int8 against float
   alternately, and write ``model.int8.onnx``, its card, ``report.json`` and ``report.md`` into
   ``out_dir`` in one rename (nothing is written when anything fails or the budget is not met).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from xcompress.artifact import Artifact, check_contract, resolve_model
from xcompress.card import ModelCard
from xcompress.errors import BudgetError, DataError, ModelError, XCompressError
from xcompress.fsutil import atomic_dir, prepare_output_dir, sha256_file, write_json, write_text
from xcompress.quantize.calibrate import compute_ranges, get_calibrator
from xcompress.quantize.config import QuantizeConfig
from xcompress.quantize.fallback import choose_float_layers
from xcompress.quantize.graph import opset_of
from xcompress.quantize.plans import Plan, get_plan
from xcompress.quantize.qdq import (
    ensure_node_names,
    gather_stats,
    keep_float,
    layer_groups,
    quantize_qdq,
    softmax_logits,
)
from xcompress.quantize.report import render_markdown
from xcompress.quantize.rewrites import apply_rewrites, get_rewrite, upgrade_opset
from xcompress.quantize.signals import Signal, get_signal
from xcompress.runtime.ort import OrtRunner

MODEL_FILE = "model.int8.onnx"
#: largest max-abs output change accepted from an opset upgrade or a graph rewrite
FLOAT_TOLERANCE = 1e-3
#: default calibration / probe sample counts per task (a det page costs ~50 text lines)
CALIB_DEFAULT = {"rec": 100, "cls": 100, "det": 12}
#: held-out samples used to choose the calibration method (``method="auto"``)
SELECT_DEFAULT = {"rec": 48, "cls": 48, "det": 4}
PROBE_DEFAULT = {"rec": 16, "cls": 32, "det": 3}


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize` wrote: the folder, the model, its card and the report dict."""

    out_dir: Path
    model_path: Path
    card: ModelCard
    report: dict[str, Any]


class _Log:
    """Progress on stderr: one line per step with the elapsed time."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console

        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.console = Console(stderr=True, highlight=False)

    def __call__(self, msg: str) -> None:
        if self.enabled:
            from rich.markup import escape

            # soft_wrap: a log line stays one line (a CI log must not split numbers)
            self.console.print(f"[dim]{time.perf_counter() - self.t0:7.1f}s[/dim] {escape(msg)}",
                               soft_wrap=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


# --- checks ----------------------------------------------------------------------------------


def check_ocr_model(artifact: Artifact) -> onnx.ModelProto:
    """Load the ONNX model and check it looks like the OCR model its card says.

    Raises:
        ModelError: not ONNX, unreadable, or inputs/outputs that no PP-OCR model has.
    """
    card = artifact.card
    if card.format != "onnx" or artifact.path.suffix.lower() != ".onnx":
        raise ModelError(f"{artifact.path.name}: quantize takes ONNX models (got {card.format})")
    try:
        model = onnx.load(str(artifact.path))
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelError(f"cannot read {artifact.path} as ONNX ({type(e).__name__})") from e
    check_contract(artifact)
    name = artifact.path.name
    if card.task == "rec" and not card.charset:
        raise ModelError(f"{name}: a recognizer needs a charset in its card or ONNX metadata")
    return model


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


# --- data ------------------------------------------------------------------------------------
def _load_samples(path: str | Path, task: str, what: str) -> list:
    from xcompress.data import load_dataset

    ds = load_dataset(path, task=task)  # DataError: missing, empty, malformed
    if ds.task != task:
        raise DataError(f"{what} {path} is a {ds.task} data set but the model is a {task} model")
    return list(ds.samples)


#: size of the built-in calibration set generated when none is given
SYNTH_COUNT = {"rec": 300, "cls": 300, "det": 40}


def default_calibration_set(card: ModelCard, seed: int, folder: Path) -> Path:
    """Generate the built-in calibration set: ``xcompress data synth`` for the model's task
    (mixed Chinese/English text in the model's charset), seeded, so runs are reproducible."""
    from xcompress.data.synth.generator import SynthConfig, generate

    charset = tuple(card.charset) if card.charset else None
    cfg = SynthConfig(task=card.task, count=SYNTH_COUNT[card.task], seed=seed, lang="mix",
                      charset=charset)
    generate(cfg, folder)
    return folder


def _prepare(card: ModelCard, samples: Sequence) -> list[np.ndarray]:
    from xcompress.data import read_image
    from xcompress.ocr.preprocess import preprocess_for

    return [preprocess_for(card, [read_image(s.image)]).batch for s in samples]


def _timing_shape(card: ModelCard, cfg: QuantizeConfig) -> tuple[int, int, int, int]:
    pre = card.resolved_preprocess()
    if card.task == "det":
        return (1, 3, cfg.det_size, cfg.det_size)
    c, h, w = pre.image_shape or (3, 48, 320)
    return (1, c, h, cfg.rec_width if card.task == "rec" else w)


# --- main ------------------------------------------------------------------------------------
def quantize(
    model: str | Path | Artifact,
    calib_path: str | Path | None,
    out_dir: str | Path,
    config: QuantizeConfig | None = None,
    eval_paths: Sequence[str | Path] = (),
    progress: bool = True,
    force: bool = False,
) -> QuantizeResult:
    """Quantize an OCR ONNX model to int8 (QDQ) within an accuracy budget.

    Args:
        model: zoo name, model folder with ``xcompress.json``, model file, or an Artifact.
        calib_path: PaddleOCR-format data set of the model's task (a few hundred lines or
            some pages); also the budget check's data (held-out split) without ``eval_paths``.
            None: a built-in synthetic set (:func:`default_calibration_set`).
        out_dir: folder to write, checked first (:func:`~xcompress.fsutil.prepare_output_dir`:
            a non-empty folder that is not an earlier quantize output is refused unless
            ``force``); untouched on failure, and nothing quantize did not write is removed.
        config: :class:`QuantizeConfig`; defaults are the recommended settings.
        eval_paths: PaddleOCR-format sets the budget is checked on (each must hold).
        progress: log steps on stderr.
        force: write into a non-empty ``out_dir`` that quantize did not make (its other
            files are kept).

    Returns:
        :class:`QuantizeResult` (``report`` is the content of ``report.json``).

    Raises:
        ModelError: not an OCR ONNX model, or a rewrite/upgrade that changes outputs.
        DataError: empty, unreadable or wrong-task calibration / eval data.
        BudgetError: no plan met ``max_drop``; the message gives the best drop reached.

    Example:
        >>> res = quantize("ppocr-v4-rec", "data/calib", "out/v4rec-int8")   # doctest: +SKIP
        >>> res.report["latency"]["ratio"]                                    # doctest: +SKIP
        2.1
    """
    cfg = config or QuantizeConfig()
    log = _Log(progress)
    for spec in _method_candidates(cfg):  # unknown method: fail before any work
        try:
            get_calibrator(spec[0])
        except KeyError as e:
            raise DataError(str(e.args[0])) from None
    try:
        for name in cfg.plans:
            get_plan(name)
    except KeyError as e:
        raise ModelError(str(e.args[0])) from None
    out_dir = prepare_output_dir(out_dir, "quantize", force=force)  # before minutes of work
    art = model if isinstance(model, Artifact) else resolve_model(model)
    card, task = art.card, art.card.task
    orig = check_ocr_model(art)
    try:
        signal = get_signal(task, cfg.metric)
    except KeyError as e:
        raise XCompressError(str(e.args[0])) from None
    for path, what in [*(((calib_path, "calibration set"),) if calib_path else ()),
                       *((p, "eval set") for p in eval_paths)]:
        _load_samples(path, task, what)  # every data set is checked before any work
    log(f"model {card.name} ({task}, opset {opset_of(orig)}, "
        f"{art.path.stat().st_size / 1e6:.1f} MB)")

    # -- data ------------------------------------------------------------------------------
    work = tempfile.TemporaryDirectory(prefix="xcompress-quantize.")
    try:
        if calib_path is None:
            calib_path = default_calibration_set(card, cfg.seed, Path(work.name) / "calib")
            log(f"calibration set: built-in synthetic {task} set ({SYNTH_COUNT[task]} samples, "
                f"seed {cfg.seed})")
        return _prepare_and_run(cfg, art, orig, signal, calib_path, eval_paths, Path(work.name),
                                Path(out_dir), log)
    finally:
        work.cleanup()


def _prepare_and_run(cfg, art, orig, signal, calib_path, eval_paths, work: Path, out_dir: Path,
                     log: _Log) -> QuantizeResult:
    card, task = art.card, art.card.task
    samples = _load_samples(calib_path, task, "calibration set")
    if len(samples) < 4:
        raise DataError(f"calibration set {calib_path} has {len(samples)} samples; give at least 4")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(samples))
    samples = [samples[i] for i in order]
    budget_sets: dict[str, list] = {}
    if eval_paths:
        for p in eval_paths:
            budget_sets[Path(p).name or str(p)] = _load_samples(p, task, "eval set")
        calib = samples
    else:
        n_hold = max(1, int(round(len(samples) * cfg.holdout)))
        budget_sets["calib-holdout"] = samples[:n_hold]
        calib = samples[n_hold:]
    calib = calib[: cfg.calib_limit or CALIB_DEFAULT[task]]
    calib_inputs = _prepare(card, calib)
    widths = sorted({int(x.shape[-1]) for x in calib_inputs})
    log(f"calibration: {len(calib)} samples (widths {widths[0]}..{widths[-1]} px); budget on "
        + ", ".join(f"{k} ({len(v)})" for k, v in budget_sets.items()))
    probe_inputs = calib_inputs[: cfg.sensitivity_samples or PROBE_DEFAULT[task]]
    check_inputs = probe_inputs[:3]
    select_inputs = _prepare(card, next(iter(budget_sets.values()))[: SELECT_DEFAULT[task]])

    # -- opset upgrade ---------------------------------------------------------------------
    upgraded = upgrade_opset(orig, cfg.opset)
    upgrade_diff = _max_diff(orig, upgraded, check_inputs)
    if upgrade_diff > FLOAT_TOLERANCE:
        raise ModelError(f"opset upgrade {opset_of(orig)}->{cfg.opset} changed the outputs "
                         f"(max diff {upgrade_diff:.2e}); quantize the original with --opset")
    log(f"opset {opset_of(orig)} -> {opset_of(upgraded)} (fp32 max diff {upgrade_diff:.1e})")

    return _run(cfg, art, orig, upgraded, upgrade_diff, signal, calib, calib_inputs,
                probe_inputs, check_inputs, select_inputs, budget_sets, widths, work, out_dir,
                log)


#: a plan must be this much faster to overtake one listed before it (timing noise must not
#: change the artifact: same inputs and seed give the same model)
PLAN_MARGIN = 1.10


def _order_plans(names: list[str], speed: dict[str, float]) -> list[str]:
    """Plans fastest first; one overtakes an earlier-listed plan only by PLAN_MARGIN."""
    order = list(names)
    for i in range(1, len(order)):
        j = i
        while j > 0 and speed[order[j]] > speed[order[j - 1]] * PLAN_MARGIN:
            order[j - 1], order[j] = order[j], order[j - 1]
            j -= 1
    return order


def _method_candidates(cfg: QuantizeConfig) -> list[tuple[str, float]]:
    """``(method, percentile)`` pairs to try: the configured one, or all of ``auto``'s."""
    if cfg.method != "auto":
        return [(cfg.method, cfg.percentile)]
    return [(m, float(p or cfg.percentile)) for m, _, p in
            (c.partition(":") for c in cfg.auto_methods)]


def _ranges(stats, method: str, pct: float, logits: Sequence[str]) -> dict:
    """Ranges by ``method``; a Softmax head's logits always get min-max (see
    :func:`xcompress.quantize.qdq.softmax_logits`)."""
    ranges = compute_ranges(stats, method, percentile=pct)
    if method != "minmax":
        exact = compute_ranges({t: stats[t] for t in logits if t in stats}, "minmax")
        ranges.update(exact)
    return ranges


def _choose_ranges(stats, m, q_of, drop_of, select_inputs, signal: Signal, card, cfg, log,
                   name):
    """Ranges of the candidate method whose all-int8 model is within the budget and closest
    to float (none within: the one losing least).

    Score: the budget metric's drop (what the budget is checked on), and among candidates
    within the budget the task's OCR-aware disagreement with the float model on held-out
    inputs. Measured on PP-OCRv4 rec (all layers int8, logits at min-max): the CER change
    on three held-out sets was min-max +1.6 / -0.3 / +0.8 pt, percentile 99.999 +3.6 / +4.4
    / +2.1, 99.99 0.0 / -0.4 / +0.1, 99.9 +0.6 / +2.3 / +2.1: not monotonic in the
    percentile, and different per data set, so it is chosen per run rather than fixed.
    """
    cands = _method_candidates(cfg)
    logits = softmax_logits(m)
    if len(cands) == 1:
        meth, pct = cands[0]
        return _ranges(stats, meth, pct, logits), cands[0], {}
    ref_runner = OrtRunner(m, threads=cfg.threads)
    ref = [ref_runner.run(x) for x in select_inputs]
    scores: dict[str, float] = {}
    best = None
    for meth, pct in cands:
        ranges = _ranges(stats, meth, pct, logits)
        q = q_of(ranges)
        runner = OrtRunner(q, threads=cfg.threads)
        dis = signal.disagreement(ref, [runner.run(x) for x in select_inputs], card)
        drop = drop_of(q)[0]
        label = meth if meth != "percentile" else f"percentile {pct:g}"
        scores[label] = {"drop": drop, "disagreement": dis}
        log(f"{name}: {label}: {signal.metric} drop {drop * 100:.2f} pt, disagreement with "
            f"float {dis:.4f}")
        # the budget first, then agreement with float: on a few hundred lines, drops below
        # the budget differ by a few characters (noise), the disagreement is measured per
        # character against the float model's own output
        key = (max(round(drop, 6), cfg.max_drop), dis)
        if best is None or key < best[0]:
            best = (key, ranges, (meth, pct))
    assert best is not None
    return best[1], best[2], scores


def _choice_rule(cfg: QuantizeConfig, signal: Signal, n_select: int) -> str:
    """The rule :func:`_choose_ranges` applies, in the words the code uses."""
    return (f"lowest {signal.metric} drop on the budget sets, drops within --max-drop "
            f"{cfg.max_drop * 100:.2f} pt counting as equal; among equals, the least "
            f"{signal.task} disagreement with the float model on {n_select} held-out samples")


def _run(cfg, art, orig, upgraded, upgrade_diff, signal: Signal, calib, calib_inputs,
         probe_inputs, check_inputs, select_inputs, budget_sets, widths, work: Path,
         out_dir: Path,
         log: _Log) -> QuantizeResult:
    from xcompress.eval.tasks import evaluator_for
    from xcompress.profile import ProfileConfig, get_profiler

    card, task = art.card, art.card.task
    evaluator = evaluator_for(task)
    profiler = get_profiler(cfg.target)
    shape = _timing_shape(card, cfg)
    orig_path = work / "fp32.onnx"
    onnx.save(orig, orig_path)

    def metrics_of(model: onnx.ModelProto) -> dict[str, dict[str, float]]:
        runner = OrtRunner(model, threads=cfg.threads)
        return {name: evaluator.evaluate(runner, card, s, 1, lambda n: None).metrics
                for name, s in budget_sets.items()}

    # -- plans: rewrite, verify, time --------------------------------------------------------
    rewritten: dict[str, tuple[Plan, onnx.ModelProto, dict[str, int], float]] = {}
    speed: dict[str, float] = {}
    for name in cfg.plans:
        plan = get_plan(name)
        counts: dict[str, int] = {}
        m = apply_rewrites(upgraded, plan.rewrites, counts.__setitem__)
        ensure_node_names(m)
        diff = _max_diff(orig, m, check_inputs)
        if diff > FLOAT_TOLERANCE:
            raise ModelError(f"graph rewrites of plan {name} changed the outputs (max diff "
                             f"{diff:.2e}); report this model, or pass --plan with another plan")
        op_types = cfg.op_types or plan.op_types
        quick = compute_ranges(gather_stats(m, calib_inputs[:2], cfg.threads), "minmax")
        q = _postprocess(quantize_qdq(m, quick, op_types, per_channel=cfg.per_channel), orig)
        qpath = work / f"plan-{name}.onnx"
        onnx.save(q, qpath)
        cmp = profiler.compare(orig_path, qpath, ProfileConfig(
            shape=shape, threads=cfg.threads, warmup=2, runs=max(5, cfg.latency_runs // 2)))
        speed[name] = cmp.ratio
        rewritten[name] = (plan, m, counts, diff)
        log(f"plan {name}: rewrites " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            + f"; fp32 max diff {diff:.1e}; int8 speed-up {cmp.ratio:.2f}x at "
            + "x".join(map(str, shape)) + f", {cfg.threads} threads")
    ordered = _order_plans(list(rewritten), speed)

    # -- per plan: calibrate, tune, verify ---------------------------------------------------
    attempts = []
    chosen = None
    for name in ordered:
        plan, m, counts, rw_diff = rewritten[name]
        op_types = cfg.op_types or plan.op_types
        t_cal = time.perf_counter()
        stats = gather_stats(m, calib_inputs, cfg.threads)
        log(f"{name}: activation statistics of {len(stats)} tensors in "
            f"{time.perf_counter() - t_cal:.1f}s")
        groups = layer_groups(m, op_types)

        def q_of(ranges, m=m, op_types=op_types, groups=groups):
            q = quantize_qdq(m, ranges, op_types, per_channel=cfg.per_channel)
            return keep_float(q, m, [n for ns in groups.values() for n in ns],
                              cfg.float_weights)

        fp_metrics = metrics_of(m)

        def drop_of(model: onnx.ModelProto, fp_metrics=fp_metrics) -> tuple[float, dict]:
            got = metrics_of(model)
            drops = {k: signal.drop(fp_metrics[k], got[k]) for k in got}
            return max(drops.values()), got

        ranges, (method, pct), method_scores = _choose_ranges(
            stats, m, q_of, drop_of, select_inputs, signal, card, cfg, log, name)
        q_full = quantize_qdq(m, ranges, op_types, per_channel=cfg.per_channel)

        def int8_model(float_layers: Sequence[str], q_full=q_full, m=m, groups=groups):
            skip = set(float_layers)
            return keep_float(q_full, m, [n for g, ns in groups.items() if g not in skip
                                          for n in ns], cfg.float_weights)

        def check(float_layers: list[str], int8_model=int8_model) -> float:
            return drop_of(int8_model(float_layers))[0]

        sensitivity: dict[str, float] = {}
        d0, _ = drop_of(int8_model([]))
        log(f"{name}: all {len(groups)} layers int8: {signal.metric} drop {d0 * 100:.2f} pt "
            f"(budget {cfg.max_drop * 100:.2f} pt)")
        if d0 > cfg.max_drop:
            sensitivity = _sensitivity(q_full, m, groups, probe_inputs, signal, card, cfg, log)
            max_float = max(1, int(len(groups) * cfg.max_float_fraction))
            res = choose_float_layers(
                sensitivity, check, cfg.max_drop, max_float,
                on_step=lambda s, name=name: log(
                    f"{name}: float {s.float_layers[-1] if s.float_layers else '-'}: drop "
                    f"{s.drop * 100:.2f} pt" + ("" if s.kept else " (worse: dropped again)")),
                max_checks=cfg.fallback_checks,
            )
        else:
            res = choose_float_layers({}, lambda f, d0=d0: d0, cfg.max_drop, 0)
        attempts.append({"plan": name, "drop_all_int8": d0, "best_drop": res.best.drop,
                         "best_float_layers": len(res.best.float_layers), "met": res.met})
        if not res.met:
            log(f"{name}: budget not met (best {res.best.drop * 100:.2f} pt with "
                f"{len(res.best.float_layers)} float layers)")
            continue
        # The shipped model is the one measured: layers kept float by rewiring their inputs
        # past Q/DQ. onnxruntime's `nodes_to_exclude` is not enough here: an excluded node
        # still reads the DequantizeLinear of a neighbour's quantized tensor, so its
        # activations stay int8 (measured: same drop as all-int8 on PP-OCRv4 rec).
        post_counts: dict[str, int] = {}
        final = _postprocess(int8_model(res.float_layers), orig, post_counts)
        drop, final_metrics = drop_of(final)
        log(f"{name}: final model {len(res.float_layers)} float layers, drop "
            f"{drop * 100:.2f} pt")
        if drop <= cfg.max_drop:
            chosen = (name, plan, m, {**counts, **post_counts}, rw_diff, final, fp_metrics,
                      final_metrics, res,
                      sensitivity, groups, (method, pct, method_scores))
            break
        attempts[-1]["met"] = False
    if chosen is None:
        best = min(attempts, key=lambda a: a["best_drop"])
        raise BudgetError(
            f"no int8 model within --max-drop {cfg.max_drop * 100:.2f} pt of {signal.metric}: "
            f"best {best['best_drop'] * 100:.2f} pt (plan {best['plan']}, "
            f"{best['best_float_layers']} layers float); raise --max-drop, add calibration "
            "data, or try --method"
        )
    (name, plan, m, counts, rw_diff, final, fp_metrics, final_metrics, res, sensitivity,
     groups, (method, pct, method_scores)) = chosen

    # -- latency, report, write ----------------------------------------------------------------
    final_path = work / MODEL_FILE
    onnx.save(final, final_path)
    cmp = profiler.compare(orig_path, final_path, ProfileConfig(
        shape=shape, threads=cfg.threads, warmup=3, runs=cfg.latency_runs))
    log(f"latency fp32 {cmp.a.median_ms:.1f} ms, int8 {cmp.b.median_ms:.1f} ms: "
        f"{cmp.ratio:.2f}x (median of {cmp.rounds} alternating rounds)")
    fp_orig_metrics = {k: v for k, v in metrics_of(orig).items()}
    warnings = []
    if cmp.ratio < 1.0:
        warnings.append(f"int8 is slower than fp32 on {cfg.target} at this shape "
                        f"({cmp.ratio:.2f}x): the model is too small for int8 kernels to pay off")
        log(f"warning: {warnings[-1]}")

    parent_sha = sha256_file(art.path)
    report: dict[str, Any] = {
        "model": {"name": card.name, "task": task, "source": str(art.path),
                  "sha256": parent_sha, "opset": opset_of(orig),
                  "upgraded_opset": opset_of(upgraded)},
        "config": cfg.model_dump(mode="json"),
        "plan": {"name": name, "description": plan.description,
                 "speed_up_by_plan": speed, "attempts": attempts},
        "rewrites": counts,
        "float_check": {"upgrade_max_diff": upgrade_diff, "rewrite_max_diff": rw_diff},
        "calibration": {"method": method, "percentile": pct if method == "percentile" else None,
                        "candidates": method_scores, "samples": len(calib),
                        "widths": [widths[0], widths[-1]],
                        "chosen_by": _choice_rule(cfg, signal, len(select_inputs))
                        if method_scores else f"--method {cfg.method}"},
        "size": {"fp32_bytes": art.path.stat().st_size,
                 "int8_bytes": final_path.stat().st_size,
                 "ratio": final_path.stat().st_size / art.path.stat().st_size},
        "accuracy": {k: {"metric": signal.metric, "fp32": fp_orig_metrics[k],
                         "int8": final_metrics[k],
                         "drop": signal.drop(fp_orig_metrics[k], final_metrics[k])}
                     for k in final_metrics},
        "latency": {"shape": list(shape), "threads": cmp.a.threads, "target": cfg.target,
                    "runtime": f"{cmp.a.runtime} {cmp.a.runtime_version}",
                    "fp32_median_ms": cmp.a.median_ms, "fp32_p90_ms": cmp.a.p90_ms,
                    "int8_median_ms": cmp.b.median_ms, "int8_p90_ms": cmp.b.p90_ms,
                    "ratio": cmp.ratio, "ratio_ci95": [cmp.ci95_low, cmp.ci95_high],
                    "rounds": cmp.rounds, "cpu": cmp.a.machine.model_dump(mode="json")},
        "layers": {
            "total": len(groups),
            "kept_float": [
                {"layer": g, "nodes": groups[g], "sensitivity": sensitivity.get(g),
                 "reason": f"rank {i + 1} by {task} sensitivity; needed to meet the budget"}
                for i, g in enumerate(res.float_layers)],
            "sensitivity": dict(sorted(sensitivity.items(), key=lambda kv: -kv[1])),
            "fallback_steps": [{"float_layers": list(s.float_layers), "drop": s.drop,
                                "kept": s.kept} for s in res.steps],
        },
    }
    new_card = card.derive(
        name=f"{card.name}-int8", file=MODEL_FILE, parent=parent_sha, step="quantize",
        step_config=cfg.model_dump(mode="json"), sha256=sha256_file(final_path),
        notes={**card.notes, "quantize": {"plan": name, "float_layers": res.float_layers}},
    )
    report["warnings"] = warnings
    report["time_s"] = log.elapsed
    with atomic_dir(out_dir, command="quantize") as tmp:
        onnx.save(final, tmp / MODEL_FILE)
        new_card.save(tmp)
        write_json(tmp / "report.json", report)
        write_text(tmp / "report.md", render_markdown(report))
    log(f"wrote {out_dir / MODEL_FILE} ({report['size']['ratio'] * 100:.0f}% of fp32)")
    return QuantizeResult(out_dir, out_dir / MODEL_FILE, new_card, report)


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


def _sensitivity(q_full, m, groups, probe_inputs, signal: Signal, card, cfg, log: _Log
                 ) -> dict[str, float]:
    """Per layer: how much of the all-int8 model's disagreement with float goes away when
    only that layer computes in float (leave one out).

    Measured in the all-int8 context, not with the layer alone int8: layers interact (a
    layer's int8 input comes from its int8 neighbours), and the alone-int8 signal of PP-OCRv4
    rec sat at one floor for most layers (its per-channel int8 weights, which every probe
    shared), so it could not rank them.
    """
    ref_runner = OrtRunner(m, threads=cfg.threads)
    ref = [ref_runner.run(x) for x in probe_inputs]
    every = [n for ns in groups.values() for n in ns]
    base_runner = OrtRunner(keep_float(q_full, m, every, cfg.float_weights), threads=cfg.threads)
    base = signal.disagreement(ref, [base_runner.run(x) for x in probe_inputs], card)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for i, g in enumerate(groups):
        model = keep_float(q_full, m, [n for h, ns in groups.items() if h != g for n in ns],
                           cfg.float_weights)
        runner = OrtRunner(model, threads=cfg.threads)
        out[g] = base - signal.disagreement(ref, [runner.run(x) for x in probe_inputs], card)
        if (i + 1) % 10 == 0 or i + 1 == len(groups):
            log(f"  sensitivity {i + 1}/{len(groups)} layers "
                f"({time.perf_counter() - t0:.0f}s)")
    return out


OnStep = Callable[[str], None]
