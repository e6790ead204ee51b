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

Each step is a function returning a frozen, typed result, and :func:`quantize` is their
sequence: data (:class:`~xcompress.quantize.inputs.QuantizeData`), opset upgrade, plan timing
(:class:`~xcompress.quantize.stages.PlanTiming`), per plan the calibration choice
(:class:`~xcompress.quantize.stages.CalibrationChoice`) and float fallback
(:class:`~xcompress.quantize.stages.FloatFallback`), the final measurement, and the report
(:func:`xcompress.quantize.report.build_report`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from xcompress.artifact import Artifact, check_contract, resolve_model
from xcompress.card import ModelCard
from xcompress.errors import DataError, ModelError, XCompressError
from xcompress.fsutil import atomic_dir, prepare_output_dir, sha256_file, write_json, write_text
from xcompress.quantize.calibrate import get_calibrator
from xcompress.quantize.config import QuantizeConfig
from xcompress.quantize.graph import opset_of
from xcompress.quantize.inputs import (
    SYNTH_COUNT,
    check_data_sets,
    default_calibration_set,
    prepare_data,
)
from xcompress.quantize.plans import get_plan
from xcompress.quantize.report import build_report, render_markdown
from xcompress.quantize.signals import Signal, get_signal
from xcompress.quantize.stages import (
    MODEL_FILE,
    Int4Choice,
    PlanResult,
    QuantizeContext,
    int4_stage,
    measure_final,
    method_candidates,
    method_spec,
    search_plans,
    time_plans,
    upgrade_checked,
)

__all__ = ["MODEL_FILE", "QuantizeResult", "check_ocr_model", "default_calibration_set",
           "quantize"]


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


def _check_config(cfg: QuantizeConfig) -> None:
    """Unknown calibration methods, damage presets and plans fail before any work."""
    from xcompress.data.synth.augment import augment_preset

    augment_preset(cfg.synth_augment)  # DataError naming the presets
    for spec in [*(c for t in ("rec", "det", "cls") for c in method_candidates(cfg, t)),
                 *(method_spec(m, cfg) for m in cfg.range_search)]:
        try:
            get_calibrator(spec[0])
        except KeyError as e:
            raise DataError(str(e.args[0])) from None
    try:
        for name in cfg.plans:
            get_plan(name)
    except KeyError as e:
        raise ModelError(str(e.args[0])) from None


def _signal(task: str, metric: str | None) -> Signal:
    try:
        return get_signal(task, metric)
    except KeyError as e:
        raise XCompressError(str(e.args[0])) from None


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
        config: :class:`QuantizeConfig`; defaults are the recommended settings. Its
            ``target`` takes every ``--target`` form (name, YAML file, ``ssh://...``; see
            :func:`xcompress.profile.run.open_profiler`).
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
    _check_config(cfg)
    out = prepare_output_dir(out_dir, "quantize", force=force)  # before minutes of work
    art = model if isinstance(model, Artifact) else resolve_model(model)
    task = art.card.task
    orig = check_ocr_model(art)
    signal = _signal(task, cfg.metric)
    loaded = check_data_sets(calib_path, eval_paths, task)
    log(f"model {art.card.name} ({task}, opset {opset_of(orig)}, "
        f"{art.path.stat().st_size / 1e6:.1f} MB)")
    with tempfile.TemporaryDirectory(prefix="xcompress-quantize.") as scratch:
        work = Path(scratch)
        synthetic = calib_path is None
        if synthetic:
            calib_path = default_calibration_set(art.card, cfg.seed, work / "calib",
                                                 cfg.synth_augment)
            log(f"calibration set: built-in synthetic {task} set ({SYNTH_COUNT[task]} samples, "
                f"seed {cfg.seed}, {cfg.synth_augment} damage)")
        mix = None
        if not synthetic and cfg.synth_mix_for(task) > 0.0:  # ~2 s for 300 lines
            mix = default_calibration_set(art.card, cfg.seed, work / "calib-mix",
                                          cfg.synth_augment)
        data = prepare_data(cfg, art.card, calib_path, eval_paths, log, loaded, mix)
        if synthetic:
            data = dataclasses.replace(data, synthetic=True)
        upgraded = upgrade_checked(orig, cfg, data, log)
        ctx = QuantizeContext.create(cfg, art, orig, signal, data, log, work)
        timing = time_plans(ctx, upgraded.model)
        search = search_plans(ctx, timing)
        chosen, int4 = int4_stage(ctx, search.chosen)
        search = dataclasses.replace(search, chosen=chosen)
        final = measure_final(ctx, search.chosen)
        parent_sha = sha256_file(art.path)
        report = build_report(ctx, upgraded, timing, search, final, parent_sha, int4)
        new_card = _derive_card(ctx, search.chosen, parent_sha, final.path, int4)
        report["time_s"] = log.elapsed
        return _publish(out, final.path, new_card, report, log)


def _derive_card(ctx: QuantizeContext, chosen: PlanResult, parent_sha: str, final_path: Path,
                 int4: Int4Choice) -> ModelCard:
    card, cfg = ctx.card, ctx.cfg
    return card.derive(
        name=f"{card.name}-int8", file=MODEL_FILE, parent=parent_sha, step="quantize",
        step_config=cfg.model_dump(mode="json"), sha256=sha256_file(final_path),
        notes={**card.notes, "quantize": {"plan": chosen.plan.name,
                                          "float_layers": chosen.fallback.result.float_layers,
                                          "int4_layers": list(int4.layers)}},
    )


def _publish(out_dir: Path, final: Path, card: ModelCard, report: dict[str, Any],
             log: _Log) -> QuantizeResult:
    """Write model (the file that was timed and hashed), card and reports into ``out_dir``
    in one rename."""
    import shutil

    with atomic_dir(out_dir, command="quantize") as tmp:
        shutil.copy2(final, tmp / MODEL_FILE)
        card.save(tmp)
        write_json(tmp / "report.json", report)
        write_text(tmp / "report.md", render_markdown(report))
    log(f"wrote {out_dir / MODEL_FILE} ({report['size']['ratio'] * 100:.0f}% of fp32)")
    return QuantizeResult(out_dir, out_dir / MODEL_FILE, card, report)
