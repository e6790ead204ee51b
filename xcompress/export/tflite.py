"""``xcompress export MODEL --to tflite``: float or full-integer int8 LiteRT models.

Route: native torch module --litert-torch--> float ``.tflite`` (one fixed-shape signature
per size bucket) --ai-edge-quantizer ``static_wi8_ai8``--> int8 weights *and* activations,
calibrated on PaddleOCR-format data preprocessed exactly as at inference. One Python
environment, no TensorFlow: see the README's "TFLite export" section for why this route and
not onnx2tf.

Buckets: PP-OCR recognizers take any line width, detectors any page size (multiples of 32),
but the converted graphs have fixed shapes (a symbolic width does not convert, and the int8
calibrator cannot allocate unknown sizes). So the file holds one signature per bucket --
``w320``, ``w480``, ... for recognizers, ``s640x640``, ``s960x960`` for detectors -- and
:class:`xcompress.runtime.litert.LiteRTRunner` pads each batch to the smallest bucket that holds
it. The signatures share their weight buffers (litert-torch writes each constant once), so
an extra bucket costs graph size, not another copy of the weights.

Outputs in ``out_dir``: ``model.tflite``, ``xcompress.json`` (``format="tflite"``, same charset
and preprocessing, parent sha256, ``step="export-tflite"``, this config), ``report.json`` and
``report.md`` (parity with the torch module; accuracy of the TFLite model next to the parent's
on the eval data, when there is eval data).

Example:
    >>> from xcompress.export import export_model
    >>> art = export_model("ppocr-v4-rec", "tflite",
    ...                    TFLiteExportConfig(int8=True, calib="data/rec_calib"),
    ...                    "out/v4rec_int8")                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from xcompress.artifact import Artifact
from xcompress.card import InputSpec, ModelCard
from xcompress.errors import DataError, MissingDependencyError, ModelError, XCompressError
from xcompress.eval.metrics import TASK_METRICS
from xcompress.export import ExportConfig, Exporter, ModelSource, register_exporter
from xcompress.fsutil import atomic_dir, sha256_file, write_json, write_text
from xcompress.quiet import Captured, captured_stderr, silence_third_party, stderr_is_tty

log = logging.getLogger("xcompress.export")

INSTALL_HINT = "install the TFLite extra: pip install 'xcompress[tflite]'"
REC_HEIGHT = 48
CLS_SHAPE = (48, 192)
#: per task: the metric the accuracy budget (``max_drop``) is checked on, and whether higher
#: is better (read from the one table, :mod:`xcompress.eval.metrics`)
HEADLINE_METRIC: dict[str, tuple[str, bool]] = {
    t: (m.default_budget, m.higher_is_better) for t, m in TASK_METRICS.items()}
#: fewest calibration samples (lines; det: pages) that give int8 ranges worth trusting: a
#: 16-line calibration of PP-OCRv4 rec lost 3.9 CER points
MIN_CALIB: dict[str, int] = {"rec": 64, "cls": 64, "det": 8}


class TFLiteExportConfig(ExportConfig):
    """How to export to TFLite.

    Args:
        int8: full-integer int8 (weights and activations; needs ``calib``). False: float32.
        io_dtype: the int8 model's input/output type. ``float32`` keeps the parent's
            contract (a QUANTIZE / DEQUANTIZE at the edges); ``int8`` leaves the
            (de)quantization to the caller (the xcompress runner does it from the file).
        calib: PaddleOCR-format data set (folder with ``label.txt``) for int8 calibration.
        calib_limit: calibration samples used (the first ones of the label file).
        eval: data set to measure the artifact's accuracy next to the parent's. None: the
            samples of ``calib`` after the first ``calib_limit`` (when there are any).
        eval_limit: evaluate only this many samples.
        float_ops: int8 only: regexes of op names (torch module paths) to leave in float --
            mixed precision, for accuracy; empty (default) = full-integer int8. Example:
            ``(".*LearnableAffine.*",)`` keeps PP-LCNetV3's remaining affines float.
        exact_ranges: int8 only: regexes of tensor names (torch module paths) whose
            activation ranges are the exact min/max over the calibration data; all others
            use ai-edge-quantizer's smoothed (moving-average) min/max. None: the source
            model's ``exact_range_modules`` (PP-OCRv4 rec: its SVTR neck).
        widths: recognizer width buckets (height 48); lines wider than the largest are
            squeezed into it at run time.
        det_sizes: detector (H, W) buckets, multiples of 32; larger pages are scaled down.
        threads: LiteRT / onnxruntime threads for the checks (None: the runtime's default).
        tolerance: max abs difference allowed between the float TFLite model and torch.
        max_drop: accuracy budget on the task's headline metric (:data:`HEADLINE_METRIC`),
            absolute, as a fraction (0.005 = 0.5 point): a larger drop against the parent
            on the eval data adds a warning to the card's and report's ``warnings``.
    """

    int8: bool = False
    io_dtype: Literal["float32", "int8"] = "float32"
    calib: str | None = None
    calib_limit: int = Field(128, ge=1)
    eval: str | None = None
    eval_limit: int | None = Field(None, ge=1)
    widths: tuple[int, ...] = (320, 480, 640, 960, 1280)
    det_sizes: tuple[tuple[int, int], ...] = ((640, 640), (960, 960))
    float_ops: tuple[str, ...] = ()
    exact_ranges: tuple[str, ...] | None = None
    threads: int | None = Field(None, ge=1)
    tolerance: float = Field(1e-4, gt=0)
    max_drop: float = Field(0.005, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> TFLiteExportConfig:
        if self.float_ops and not self.int8:
            raise ValueError("float_ops needs int8=True (a float model is all float)")
        if self.io_dtype == "int8" and not self.int8:
            raise ValueError("io_dtype int8 needs int8=True (a float model has float I/O)")
        if not self.widths or any(w < 8 for w in self.widths):
            raise ValueError(f"widths must be >= 8, got {self.widths}")
        if not self.det_sizes or any(h % 32 or w % 32 or h <= 0 or w <= 0
                                     for h, w in self.det_sizes):  # fmt: skip
            raise ValueError(f"det_sizes must be positive multiples of 32, got {self.det_sizes}")
        return self


def signature_shapes(card: ModelCard, config: TFLiteExportConfig) -> dict[str, tuple[int, ...]]:
    """The fixed input shape of each signature (bucket) for a model's task.

    Example:
        >>> from xcompress.card import ModelCard
        >>> card = ModelCard(name="r", task="rec", charset=["a"])
        >>> signature_shapes(card, TFLiteExportConfig(widths=(640, 320)))
        {'w320': (1, 3, 48, 320), 'w640': (1, 3, 48, 640)}
    """
    c = card.input.channels
    if card.task == "rec":
        h = card.input.height or REC_HEIGHT
        return {f"w{w}": (1, c, h, w) for w in sorted(set(config.widths))}
    if card.task == "det":
        return {f"s{h}x{w}": (1, c, h, w) for h, w in sorted(set(config.det_sizes))}
    if card.task == "cls":
        _, h, w = card.resolved_preprocess().image_shape or (3, *CLS_SHAPE)
        return {f"s{h}x{w}": (1, c, h, w)}
    raise ModelError(f"cannot export a {card.task} model to TFLite")


# --------------------------------------------------------------------------- conversion


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"TFLite export needs {module}: {INSTALL_HINT}") from e


def _failure(what: str, e: Exception, cap: Captured) -> ModelError:
    """A one-line error: the exception's first line, then what native code printed last."""
    text = str(e).strip()
    first = text.splitlines()[0][:300] if text else type(e).__name__
    native = cap.tail(2)
    return ModelError(f"{what}: {first}" + (f" (native log: {native})" if native else ""))


def convert_float(module: Any, shapes: dict[str, tuple[int, ...]]) -> bytes:
    """Convert ``module`` to a float32 TFLite model with one signature per input shape."""
    import torch

    silence_third_party()
    # TF's C++ code logs while it loads and converts (and on a failure, the reason): captured
    with captured_stderr():
        litert_torch = _require("litert_torch")
    module = module.eval()
    cap = Captured()
    try:
        with captured_stderr() as cap:
            conv = None
            for key, shape in shapes.items():
                example = (torch.zeros(shape),)
                conv = (litert_torch if conv is None else conv).signature(key, module, example)
            edge = conv.convert()  # type: ignore[union-attr]
            content = bytes(edge.model_content())  # the flatbuffer is written here, lazily
    except Exception as e:  # the converter raises many types; keep the first line
        raise _failure(f"litert-torch cannot convert {type(module).__name__}", e, cap) from e
    return content


@contextmanager
def _aeq_progress_bars(enabled: bool) -> Iterator[None]:
    """Turn off ai-edge-quantizer's progress bars for the block unless ``enabled``.

    ``Calibrator.calibrate`` has no switch, and ``Quantizer.quantize`` does not pass its
    ``enable_progress_bar`` on to the graph transformation step (0.10); both pass tqdm's
    ``disable`` themselves, so neither ``TQDM_DISABLE`` nor tqdm's non-TTY default reaches
    them, and in a log file each bar becomes one line of thousands of characters. Their
    ``ProgressBar`` class is replaced for the block by one with ``enable=False``.
    """
    from ai_edge_quantizer.utils import progress_utils

    original = progress_utils.ProgressBar
    if enabled or not isinstance(original, type):
        yield
        return

    class _Off(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args[:3], **{**kwargs, "enable": False})

    progress_utils.ProgressBar = _Off
    try:
        yield
    finally:
        progress_utils.ProgressBar = original


def quantize_int8(
    float_bytes: bytes,
    calib: dict[str, list[np.ndarray]],
    float_ops: Sequence[str] = (),
    exact_ranges: Sequence[str] = (),
) -> bytes:
    """Static int8 (``static_wi8_ai8``: per-channel int8 weights, int8 activations).

    Activation ranges are ai-edge-quantizer's moving average of per-sample min/max (smoothed:
    one odd calibration line does not stretch a range), except for tensors matching
    ``exact_ranges``, which get the exact min/max over all samples. Both come from one
    calibration pass, per signature.

    Args:
        float_bytes: the float model from :func:`convert_float`.
        calib: signature key -> list of float32 inputs of that signature's shape.
        float_ops: regexes of op output-tensor names (the torch module path, e.g.
            ``.*LearnableAffine.*``) left in float; empty = full-integer int8.
        exact_ranges: regexes of tensor names ranged by their exact min/max.

    Returns:
        The int8 model; its inputs / outputs are int8 (see :func:`float_io`).
    """
    silence_third_party()
    cap = Captured()
    bars = stderr_is_tty()  # progress bars on a terminal only
    try:
        with captured_stderr() as cap:
            _require("ai_edge_quantizer")
            from ai_edge_litert.interpreter import Interpreter
            from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe_manager
            from ai_edge_quantizer.algorithm_manager import AlgorithmName

            interp = Interpreter(model_content=float_bytes)
            names = {k: next(iter(interp.get_signature_runner(k).get_input_details()))
                     for k in interp.get_signature_list()}  # fmt: skip
            data = {k: [{names[k]: x} for x in xs] for k, xs in calib.items()}
            rm = recipe_manager.RecipeManager()
            every_op = qtyping.TFLOperationName.ALL_SUPPORTED
            rm.add_static_config(".*", every_op, activation_num_bits=8, weight_num_bits=8)
            for regex in float_ops:  # later entries override earlier ones for the ops they match
                rm.add_quantization_config(regex, every_op,
                                           algorithm_key=AlgorithmName.NO_QUANTIZE)  # fmt: skip
            q = quantizer.Quantizer(bytearray(float_bytes), rm.get_quantization_recipe())
            cal = calibrator.Calibrator(float_bytes, num_threads=max(1, os.cpu_count() or 1),
                                        qsv_update_func=_smoothed_and_exact)  # fmt: skip
            with _aeq_progress_bars(bars):
                cal.calibrate(data, rm)
                exact = [re.compile(r) for r in exact_ranges]
                qsvs = {name: _pick_range(qsv, any(r.search(name) for r in exact))
                        for name, qsv in cal.get_model_qsvs().items()}  # fmt: skip
                result = q.quantize(qsvs, enable_progress_bar=bars, enable_progress_report=False)
    except XCompressError:
        raise
    except Exception as e:  # the quantizer raises many types; keep the first line
        raise _failure("ai-edge-quantizer cannot quantize the model", e, cap) from e
    return fix_quant_dims(bytes(result.quantized_model))


def _smoothed_and_exact(qsv: dict, new: dict) -> dict:
    """ai-edge-quantizer's moving-average update, keeping the exact min/max beside it."""
    from ai_edge_quantizer.utils import qsv_utils

    if not qsv:
        return {**new, "exact_min": new["min"], "exact_max": new["max"]}
    out = qsv_utils.moving_average_update(qsv, new)
    # the calibrator stores a tensor's first sample as is, without calling this function
    out["exact_min"] = np.minimum(qsv.get("exact_min", qsv["min"]), new["min"])
    out["exact_max"] = np.maximum(qsv.get("exact_max", qsv["max"]), new["max"])
    return out


def _pick_range(qsv: dict, exact: bool) -> dict:
    if not qsv or "exact_min" not in qsv:  # one sample only: both ranges are the same
        return qsv
    if exact:
        return {"min": qsv["exact_min"], "max": qsv["exact_max"]}
    return {"min": qsv["min"], "max": qsv["max"]}


def exact_range_patterns(module: Any) -> tuple[str, ...]:
    """Tensor-name regexes of a module's ``exact_range_modules`` (litert-torch names tensors
    by module path: ``pkg.mod.Class_attr/...``)."""
    kinds = getattr(module, "exact_range_modules", ())
    return tuple(re.escape(f"{k.__module__}.{k.__qualname__}_") for k in kinds)


def fix_quant_dims(model_bytes: bytes) -> bytes:
    """Repair per-channel tensors whose quantized dimension does not hold the channels.

    ai-edge-quantizer 0.10 quantizes TRANSPOSE_CONV's 4-D bias ``[1, 1, 1, C]`` per channel
    along dimension 0, which LiteRT rejects ("num_scales must be 1 ..."): PP-OCR's DB head
    has such a layer. The bias is stored as ``[C]``, which the kernel accepts, with the same
    bytes and scales.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(model_bytes))
    fixed = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            n = 0 if q is None or q.scale is None else len(q.scale)
            shape = list(t.shape) if t.shape is not None else []
            if n > 1 and shape and shape[q.quantizedDimension] != n and int(np.prod(shape)) == n:
                t.shape, t.shapeSignature, q.quantizedDimension = [n], None, 0
                fixed += 1
    return bytes(fbu.convert_object_to_bytearray(model)) if fixed else model_bytes


def saturated_biases(model_bytes: bytes) -> int:
    """Number of int32 bias values of a quantized model at the int32 limits (per signature).

    ai-edge-quantizer sets a bias's scale to input scale x weight scale; for a channel whose
    weights are all ~0 that is ~1e-13, so the bias does not fit and is clipped (to about
    -2e-4): the channel's constant output is lost. PP-OCRv4 rec has ~100 such channels after
    BatchNorm folding.
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(model_bytes))
    limit = np.iinfo(np.int32).max
    per_signature = [0]
    for sg in model.subgraphs:  # every signature holds the same layers: count one of them
        n = 0
        for t in sg.tensors:
            data = model.buffers[t.buffer].data if t.buffer else None
            if t.type != fb.TensorType.INT32 or t.quantization is None or data is None:
                continue
            values = np.frombuffer(bytes(data), np.int32).astype(np.int64)
            n += int((np.abs(values) >= limit).sum())
        per_signature.append(n)
    return max(per_signature)


def float_io(model_bytes: bytes) -> bytes:
    """Give an int8-I/O model float32 inputs and outputs (QUANTIZE in, DEQUANTIZE out).

    ai-edge-quantizer makes graph inputs and outputs int8; the parent ONNX model takes and
    returns float32, so by default the export restores that contract inside the graph.
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(model_bytes))

    def opcode(builtin: int) -> int:
        for i, oc in enumerate(model.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
                return i
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 2
        model.operatorCodes.append(oc)
        return len(model.operatorCodes) - 1

    q_op, dq_op = opcode(fb.BuiltinOperator.QUANTIZE), opcode(fb.BuiltinOperator.DEQUANTIZE)
    empty = len(model.buffers)
    model.buffers.append(fb.BufferT())

    def float_twin(sg: Any, idx: int) -> int:
        t = sg.tensors[idx]
        f = fb.TensorT()
        f.shape, f.shapeSignature = list(t.shape), t.shapeSignature
        f.type, f.buffer, f.name = fb.TensorType.FLOAT32, empty, t.name
        t.name = (t.name.decode() if isinstance(t.name, bytes) else t.name) + "_int8"
        sg.tensors.append(f)
        return len(sg.tensors) - 1

    new_index: dict[tuple[int, int], int] = {}
    for si, sg in enumerate(model.subgraphs):
        ops_in, ops_out = [], []
        for pos, idx in enumerate(sg.inputs):
            if sg.tensors[idx].type == fb.TensorType.FLOAT32:
                continue
            f = float_twin(sg, idx)
            op = fb.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = q_op, [f], [idx]
            ops_in.append(op)
            sg.inputs[pos] = new_index[(si, idx)] = f
        for pos, idx in enumerate(sg.outputs):
            if sg.tensors[idx].type == fb.TensorType.FLOAT32:
                continue
            f = float_twin(sg, idx)
            op = fb.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = dq_op, [idx], [f]
            ops_out.append(op)
            sg.outputs[pos] = new_index[(si, idx)] = f
        sg.operators = ops_in + list(sg.operators) + ops_out
    for sd in model.signatureDefs or []:
        for tm in [*(sd.inputs or []), *(sd.outputs or [])]:
            tm.tensorIndex = new_index.get((sd.subgraphIndex, tm.tensorIndex), tm.tensorIndex)
    return bytes(fbu.convert_object_to_bytearray(model))


# --------------------------------------------------------------------------- data


def _fit_sample(img: np.ndarray, card: ModelCard, shape: tuple[int, ...]) -> np.ndarray:
    """One image preprocessed as at inference and placed in a signature's input shape."""
    from xcompress.ocr.preprocess import det_resize_norm, rec_resize_norm
    from xcompress.runtime.litert import fit_to_bucket

    pre = card.resolved_preprocess()
    _, c, h, w = shape
    if card.task == "det":
        x, _ = det_resize_norm(img, pre)
    else:  # rec / cls: height h, the line's own width capped at the bucket, padded right
        x = rec_resize_norm(img, (c, h, w), None, pre)
    return fit_to_bucket(x[None], (h, w)).batch


def calibration_inputs(
    card: ModelCard, data: str | Path, shapes: dict[str, tuple[int, ...]], limit: int
) -> tuple[dict[str, list[np.ndarray]], list[Any]]:
    """Calibration inputs per signature from a PaddleOCR-format set, and the unused samples.

    Every bucket sees every calibration image (rec: resized to height 48, width capped at the
    bucket, zero-padded; det: PP-OCR's resize, then padded or scaled into the bucket), so
    each signature's activation ranges include real content and padding.
    """
    from xcompress.data import load_dataset, read_image

    ds = load_dataset(data, task=card.task)
    samples = list(ds.samples)
    if not samples:
        raise DataError(f"{data} has no samples to calibrate with")
    used, rest = samples[:limit], samples[limit:]
    images = [read_image(s.image) for s in used]
    return {k: [_fit_sample(im, card, shp) for im in images] for k, shp in shapes.items()}, rest


# --------------------------------------------------------------------------- checks


class _TorchRunner:
    """The source module behind the runner interface (reference when no ONNX parent)."""

    runtime_info = ("torch", "")

    def __init__(self, module: Any) -> None:
        import torch

        self.module = module.eval()
        self.runtime_info = ("torch", torch.__version__)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return out.numpy().astype(np.float32)


def parity(runner: Any, module: Any, shapes: Sequence[tuple[int, ...]], seed: int = 0) -> float:
    """Max abs difference between ``runner`` and ``module`` on random inputs of ``shapes``."""
    ref = _TorchRunner(module)
    rng = np.random.default_rng(seed)
    diff = 0.0
    for shape in shapes:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        diff = max(diff, float(np.abs(runner.run(x) - ref.run(x)).max()))
    return diff


def score(runner: Any, card: ModelCard, samples: Sequence[Any]) -> dict[str, float]:
    """Accuracy metrics of ``runner`` on ``samples`` (batch 1, as ``xcompress eval``)."""
    from xcompress.eval.tasks import evaluator_for

    t0 = time.perf_counter()
    metrics = evaluator_for(card.task).evaluate(runner, card, samples, 1, lambda n: None).metrics
    return {**{k: float(v) for k, v in metrics.items()}, "seconds": time.perf_counter() - t0}


_HEADLINE = {t: m.summary for t, m in TASK_METRICS.items()}  # what report.md lists


def accuracy_check(
    task: str, parent: dict[str, float], child: dict[str, float], max_drop: float
) -> dict[str, Any] | None:
    """The exported model's accuracy against its parent's on the task's headline metric.

    Returns:
        ``{"metric", "higher_is_better", "parent", "tflite", "drop", "max_drop",
        "over_budget"}``, ``drop`` positive when the export is worse; None when the metric
        is missing.

    Example:
        >>> c = accuracy_check("rec", {"cer_nospace": 0.010}, {"cer_nospace": 0.049}, 0.005)
        >>> round(c["drop"], 3), c["over_budget"]
        (0.039, True)
    """
    metric, higher = HEADLINE_METRIC[task]
    if metric not in parent or metric not in child:
        return None
    p, c = float(parent[metric]), float(child[metric])
    drop = p - c if higher else c - p
    return {"metric": metric, "higher_is_better": higher, "parent": p, "tflite": c,
            "drop": drop, "max_drop": max_drop, "over_budget": drop > max_drop + 1e-12}  # fmt: skip


def export_warnings(
    task: str, variant: str, check: dict[str, Any] | None, n_eval: int,
    n_calib: int | None = None,
) -> list[str]:  # fmt: skip
    """One-line warnings about an export: accuracy over budget, small or missing checks.

    Args:
        task: the model's task.
        variant: ``int8`` or ``float32``.
        check: :func:`accuracy_check`'s result, None when there was no accuracy check.
        n_eval: samples the accuracy was measured on.
        n_calib: calibration samples used (int8), None when not calibrated.

    Example:
        >>> export_warnings("det", "int8", None, 0, n_calib=4)[0][:40]
        'int8 calibrated on 4 pages only (at lea'
    """
    unit = "pages" if task == "det" else "lines" if task == "rec" else "images"
    out = []
    if check is not None and check["over_budget"]:
        m = check["metric"]
        hint = (" (more --calib data, or --keep-float for sensitive layers)"
                if variant == "int8" else "")  # fmt: skip
        out.append(f"{variant} {m} {check['tflite']:.4f} vs parent {check['parent']:.4f} on "
                   f"{n_eval} samples: {check['drop'] * 100:.2f} points worse, over the "
                   f"{check['max_drop'] * 100:.2f}-point budget{hint}")  # fmt: skip
    if n_calib is not None and n_calib < MIN_CALIB[task]:
        out.append(f"int8 calibrated on {n_calib} {unit} only (at least {MIN_CALIB[task]} "
                   "recommended): activation ranges from few samples cost accuracy")  # fmt: skip
    if variant == "int8" and check is None:
        out.append("int8 accuracy not checked: pass --eval DIR, or a --calib set larger than "
                   "--calib-limit (the rest is the check set)")  # fmt: skip
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """A short human-readable version of ``report.json``."""
    lines = [
        f"# TFLite export: {report['model']}",
        "",
        f"- variant: {report['variant']}, io: {report['io_dtype']}, "
        f"size: {report['size_bytes'] / 1e6:.2f} MB ({len(report['signatures'])} "
        f"signatures: {', '.join(report['signatures'])})",
        f"- float TFLite vs torch max abs diff: {report['float_max_abs_diff']:.2e}",
    ]
    if report.get("int8_max_abs_diff") is not None:
        lines.append(f"- int8 vs torch max abs diff (random inputs): "
                     f"{report['int8_max_abs_diff']:.3f}")  # fmt: skip
    if report.get("int32_bias_saturated"):
        lines.append(f"- int32 bias values clipped by the quantizer (channels with ~0 weights): "
                     f"{report['int32_bias_saturated']}")  # fmt: skip
    acc = report.get("accuracy")
    if acc:
        keys = [k for k in _HEADLINE[report["task"]] if k in acc["parent"]]
        lines += ["", f"Accuracy on {acc['data']} ({acc['n']} samples):", "",
                  "| model | runtime | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]  # fmt: skip
        for name in ("parent", "tflite"):
            m = acc[name]
            lines.append(f"| {name} | {m['runtime']} | "
                         + " | ".join(f"{m[k]:.4f}" for k in keys) + " |")  # fmt: skip
        if acc.get("drop") is not None:
            lines += ["", f"{acc['metric']} drop vs parent: {acc['drop'] * 100:.2f} points "
                      f"(budget {acc['max_drop'] * 100:.2f})"]  # fmt: skip
    if report.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- exporter


@register_exporter
class TFLiteExporter(Exporter):
    """Float or full-integer int8 TFLite via litert-torch + ai-edge-quantizer."""

    name = "tflite"
    suffix = ".tflite"
    config_cls = TFLiteExportConfig

    def export(self, source: ModelSource, config: Any, out_dir: str | Path) -> Artifact:
        from xcompress.runtime.litert import LiteRTRunner

        config = self.make_config(config)
        card = source.card
        if card.task not in ("rec", "det", "cls"):
            raise ModelError(f"cannot export a {card.task} model to TFLite")
        if config.int8 and not config.calib:
            raise DataError("--int8 needs calibration data: pass --calib DIR (a PaddleOCR "
                            "label folder of the model's task)")  # fmt: skip
        shapes = signature_shapes(card, config)
        calib, rest = ({}, [])
        if config.calib:  # read the data first: a bad folder fails before the slow conversion
            calib, rest = calibration_inputs(card, config.calib, shapes, config.calib_limit)
        eval_samples, eval_name = self._eval_samples(card, config, rest)
        conv = _convert(source, config, shapes, calib)

        out_dir = Path(out_dir)
        with atomic_dir(out_dir, command="export") as tmp, tempfile.TemporaryDirectory() as scratch:
            path = tmp / "model.tflite"
            path.write_bytes(conv.model_bytes)
            runner = LiteRTRunner(path, threads=config.threads)
            fdiff, qdiff = _parity_checks(source, config, shapes, conv, runner, Path(scratch))
            new_card = _tflite_card(source, config, shapes, path)
            accuracy = (self._accuracy(source, new_card, runner, config, eval_samples, eval_name)
                        if eval_samples else None)  # fmt: skip
            check = accuracy.pop("check") if accuracy else None
            variant = "int8" if config.int8 else "float32"
            n_calib = len(next(iter(calib.values()))) if config.int8 and calib else None
            warnings = export_warnings(card.task, variant, check, len(eval_samples), n_calib)
            new_card = new_card.derive(notes=_card_notes(
                card, shapes, fdiff, warnings, n_calib, check, len(eval_samples), eval_name))
            new_card.save(tmp)
            report = _export_report(source, config, shapes, conv, path, fdiff, qdiff, n_calib)
            if accuracy:
                report["accuracy"] = accuracy
                if check is not None:
                    keys = ("metric", "higher_is_better", "drop", "max_drop")
                    accuracy.update({k: check[k] for k in keys})
            report["warnings"] = warnings
            write_json(tmp / "report.json", report)
            write_text(tmp / "report.md", render_markdown(report))
        return Artifact(out_dir / "model.tflite", new_card)

    @staticmethod
    def _eval_samples(card: ModelCard, config: Any, rest: list[Any]) -> tuple[list[Any], str]:
        from xcompress.data import load_dataset

        if config.eval:
            samples = list(load_dataset(config.eval, task=card.task).samples)
            if not samples:
                raise DataError(f"{config.eval} has no samples to evaluate")
            name = str(config.eval)
        else:
            samples, name = rest, f"{config.calib} (held out: after the first {config.calib_limit})"
        return samples[: config.eval_limit] if config.eval_limit else samples, name

    @staticmethod
    def _accuracy(source: ModelSource, card: ModelCard, runner: Any, config: Any,
                  samples: list[Any], name: str) -> dict[str, Any]:  # fmt: skip
        from xcompress.runtime import open_runner

        if source.parent is not None:
            ref = open_runner(source.parent.path, threads=config.threads)
            ref_rt = "onnxruntime"
        else:
            ref, ref_rt = _TorchRunner(source.module), "torch"
        parent = {**score(ref, source.parent.card if source.parent else source.card, samples),
                  "runtime": ref_rt}  # fmt: skip
        child = {**score(runner, card, samples), "runtime": "ai-edge-litert"}
        check = accuracy_check(card.task, parent, child, config.max_drop)
        return {"data": name, "n": len(samples), "parent": parent, "tflite": child,
                "check": check}  # fmt: skip


# --------------------------------------------------------------------------- export steps


@dataclass(frozen=True)
class _Converted:
    """The converted model: the float graph, the shipped bytes (int8 when asked), the
    exact-range patterns used, and the conversion time."""

    float_bytes: bytes
    model_bytes: bytes
    exact: tuple[str, ...]
    seconds: float


def _convert(source: ModelSource, config: TFLiteExportConfig,
             shapes: dict[str, tuple[int, ...]], calib: dict[str, list[np.ndarray]]
             ) -> _Converted:
    """litert-torch float conversion, then ai-edge-quantizer int8 when ``config.int8``."""
    from xcompress.models.fuse import fold_for_inference

    t0 = time.perf_counter()
    # BatchNorms and PP-LCNetV3's affines folded first: each separate elementwise op
    # would be one more int8 requantization point (see xcompress.models.fuse)
    float_bytes = convert_float(fold_for_inference(source.module), shapes)
    model_bytes = float_bytes
    exact: tuple[str, ...] = ()
    if config.int8:
        exact = (config.exact_ranges if config.exact_ranges is not None
                 else exact_range_patterns(source.module))
        model_bytes = quantize_int8(float_bytes, calib, config.float_ops, exact)
        if config.io_dtype == "float32":
            model_bytes = float_io(model_bytes)
    return _Converted(float_bytes, model_bytes, exact, time.perf_counter() - t0)


def _parity_checks(source: ModelSource, config: TFLiteExportConfig,
                   shapes: dict[str, tuple[int, ...]], conv: _Converted, runner: Any,
                   scratch: Path) -> tuple[float, float | None]:
    """(float TFLite vs torch, int8 vs torch or None); the float one must be exact.

    Raises:
        ModelError: the float conversion differs from the module by more than ``tolerance``.
    """
    from xcompress.runtime.litert import LiteRTRunner

    if config.int8:
        fpath = scratch / "float.tflite"
        fpath.write_bytes(conv.float_bytes)
        float_runner = LiteRTRunner(fpath, threads=config.threads)
    else:
        float_runner = runner
    checks = list(shapes.values())
    fdiff = parity(float_runner, source.module, checks)
    if fdiff > config.tolerance:
        raise ModelError(
            f"float TFLite differs from the torch module by {fdiff:.2e} "
            f"(> {config.tolerance:g}): this model does not convert exactly"
        )
    qdiff = parity(runner, source.module, checks) if config.int8 else None
    return fdiff, qdiff


def _tflite_card(source: ModelSource, config: TFLiteExportConfig,
                 shapes: dict[str, tuple[int, ...]], path: Path) -> ModelCard:
    """The artifact's card: the parent's, as a TFLite file of this step (notes added later)."""
    card = source.card
    return card.derive(
        file="model.tflite", format="tflite", sha256=sha256_file(path),
        parent=source.parent_sha256 or card.parent,
        input=InputSpec(name=card.input.name, channels=card.input.channels,
                        height=shapes[next(iter(shapes))][2] if card.task != "det"
                        else None),
        step="export-tflite", step_config=config.model_dump(mode="json"),
    )  # fmt: skip


def _card_notes(card: ModelCard, shapes: dict[str, tuple[int, ...]], fdiff: float,
                warnings: list[str], n_calib: int | None, check: dict[str, Any] | None,
                n_eval: int, eval_name: str) -> dict[str, Any]:
    notes = {
        **card.notes,
        "tflite_signatures": {k: list(v) for k, v in shapes.items()},
        "tflite_float_max_abs_diff": fdiff,
        "warnings": warnings,  # this step's own: a parent's are not inherited
    }
    if n_calib is not None:
        notes["tflite_calib_samples"] = n_calib
    if check is not None:
        notes["tflite_accuracy"] = {
            **{k: check[k] for k in ("metric", "higher_is_better", "parent", "tflite",
                                     "drop", "max_drop")},
            "n": n_eval, "data": eval_name}  # fmt: skip
    return notes


def _export_report(source: ModelSource, config: TFLiteExportConfig,
                   shapes: dict[str, tuple[int, ...]], conv: _Converted, path: Path,
                   fdiff: float, qdiff: float | None, n_calib: int | None) -> dict[str, Any]:
    """``report.json`` without accuracy and warnings (added by the caller)."""
    card = source.card
    return {
        "model": source.spec or card.name, "task": card.task, "format": "tflite",
        "variant": "int8" if config.int8 else "float32", "io_dtype": config.io_dtype,
        "size_bytes": path.stat().st_size,
        "parent_size_bytes": source.parent.path.stat().st_size if source.parent else None,
        "signatures": {k: list(v) for k, v in shapes.items()},
        "float_max_abs_diff": fdiff, "int8_max_abs_diff": qdiff,
        "exact_ranges": list(conv.exact) if config.int8 else None,
        "int32_bias_saturated": saturated_biases(conv.model_bytes) if config.int8 else None,
        "calib_samples": n_calib,
        "convert_seconds": round(conv.seconds, 1), "config": config.model_dump(mode="json"),
    }  # fmt: skip
