"""int4 weight storage for an int8 QDQ model: half the bytes of the largest layers, int8 speed.

The weights of chosen Conv / MatMul layers are re-quantized to 4 bits per value (symmetric,
one scale per output channel, values in [-8, 7]) and stored as an ONNX ``INT4`` initializer
read through ``Cast(to=INT8)``. onnxruntime folds that Cast when the session loads and then
fuses the layer into the same int8 kernel (QLinearConv, the u8s8 MatMul) as before, so
latency is unchanged; the file holds half a byte per weight. Needs opset 21 (INT4).

Rounding each weight to the nearest of 16 levels is far too coarse for these models: on
PP-OCRv4 rec one 480x120 1x1 conv of the SVTR neck so rounded took CER* on 40 English lines
from 0.62% to 29%, the classifier (120 x 6625) to 2.8%. Each layer is therefore quantized
with GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers"): columns in order of decreasing input energy, each rounding error
spread over the columns not yet rounded through the inverse of the layer's input Hessian
``H = X^T X`` (taken on calibration inputs in the int8 model itself, layer by layer, so each
layer also absorbs the error of the int4 layers before it). With it each of those layers
alone left the 40 lines at 0.62%. Written here because the GPTQ implementations in libraries
(onnxruntime's and neural-compressor's weight-only quantizers, auto-gptq) target MatMul
weights in float or MatMulNBits graphs, not the per-channel int8 Conv weights of a QDQ graph.

Example:
    >>> layers = int4_layers(q, min_weights=4096)                    # doctest: +SKIP
    >>> q4 = to_int4(q, layers[:5], calib_inputs, threads=2)         # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from xcompress.errors import ModelError
from xcompress.quantize.graph import GraphView

#: opset that has the INT4 type (and Cast from it)
INT4_OPSET = 21
LO, HI = -8, 7
#: rows of the layer input (positions x samples) taken per calibration input for ``H``
ROWS_PER_INPUT = 2048
#: layers whose inputs one forward pass collects (the int4 error of earlier groups is seen)
GROUP = 8


@dataclass(frozen=True)
class Int4Layer:
    """One layer whose int8 weights can be stored as int4.

    Attributes:
        node: the Conv / MatMul node's name.
        op: its op type.
        weight: the int8 weight initializer (behind a DequantizeLinear).
        scale: that DequantizeLinear's per-channel scale initializer.
        x: the layer's float input tensor (output of the input's DequantizeLinear).
        x_scale: the scale initializer of that DequantizeLinear.
        bias: int32 bias initializer and its DequantizeLinear scale (Conv only), or None.
        n: number of weights.
    """

    node: str
    op: str
    weight: str
    scale: str
    x: str
    x_scale: str
    bias: tuple[str, str] | None
    n: int


def int4_layers(q: onnx.ModelProto, min_weights: int = 4096) -> list[Int4Layer]:
    """Layers of QDQ model ``q`` that can take int4 weights, largest first.

    A layer qualifies when it is a 2-D Conv with ``group == 1`` or a MatMul, its weight is an
    int8 per-channel initializer (4-D / 2-D) read by one DequantizeLinear, its input comes from a
    DequantizeLinear (an int8 activation: the int8 kernel runs), and it has at least
    ``min_weights`` weights. Depthwise convs stay int8: nine taps per channel leave GPTQ
    nothing to spread an error over, and they are small.
    """
    g = GraphView(q)
    out = []
    for n in q.graph.node:
        if n.op_type not in ("Conv", "MatMul") or len(n.input) < 2 or not n.name:
            continue
        if n.op_type == "Conv" and any(a.name == "group" and a.i != 1 for a in n.attribute):
            continue
        wdq, xdq = g.producer.get(n.input[1]), g.producer.get(n.input[0])
        if wdq is None or wdq.op_type != "DequantizeLinear" or xdq is None \
                or xdq.op_type != "DequantizeLinear":
            continue
        w = g.const(wdq.input[0])
        s = g.const(wdq.input[1])
        if w is None or w.dtype != np.int8 or s is None or s.ndim != 1 or w.size < min_weights:
            continue
        if wdq.input[0] not in g.inits or len(g.consumers[wdq.input[0]]) != 1 \
                or len(g.consumers[wdq.input[1]]) != 1 or len(g.consumers[wdq.output[0]]) != 1:
            continue
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
        if axis != (0 if n.op_type == "Conv" else 1) or w.ndim != (4 if n.op_type == "Conv" else 2):
            continue  # 2-D convs (im2col in _rows) and 2-D MatMul weights only
        bias = None
        if n.op_type == "Conv" and len(n.input) > 2 and n.input[2]:
            bdq = g.producer.get(n.input[2])
            if bdq is None or bdq.op_type != "DequantizeLinear" or bdq.input[0] not in g.inits \
                    or len(g.consumers[bdq.input[1]]) != 1:
                continue
            bias = (bdq.input[0], bdq.input[1])
        out.append(Int4Layer(n.name, n.op_type, wdq.input[0], wdq.input[1], n.input[0],
                             xdq.input[1], bias, int(w.size)))
    return sorted(out, key=lambda la: -la.n)


# --- the numerics ----------------------------------------------------------------------------


def mse_scales(w: np.ndarray, steps: int = 26) -> np.ndarray:
    """Per-row scale of ``w`` [rows, cols] for int4 minimizing the rounding error: the row's
    largest magnitude times a clipping ratio in [0.5, 1] over ``HI``."""
    amax = np.abs(w).max(axis=1) + 1e-12
    best_err = np.full(w.shape[0], np.inf)
    best = amax / HI
    for a in np.linspace(0.5, 1.0, steps):
        s = a * amax / HI
        err = ((np.clip(np.round(w / s[:, None]), LO, HI) * s[:, None] - w) ** 2).sum(axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, s, best)
    return best


def gptq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """int4 values of ``w`` [rows, cols] (one ``scale`` per row) that keep ``w @ x`` for
    inputs ``x`` with second moment ``h`` [cols, cols] (GPTQ with act-order)."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    dead = np.diag(h) == 0  # inputs that never fire: their weights do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * float(np.mean(np.diag(h))) * np.eye(len(h))
    perm = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, perm], h[perm][:, perm]
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1
    s = scale.astype(np.float64)
    q = np.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = np.clip(np.round(w[:, i] / s), LO, HI)
        err = (w[:, i] - q[:, i] * s) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return q[:, np.argsort(perm)].astype(np.int8)


def pack_int4(name: str, values: np.ndarray) -> onnx.TensorProto:
    """An ONNX INT4 initializer of ``values`` (two per byte, the first in the low nibble)."""
    flat = (values.reshape(-1).astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    t = onnx.TensorProto()
    t.name = name
    t.data_type = TensorProto.INT4
    t.dims.extend(values.shape)
    t.raw_data = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    return t


def _rows(x: np.ndarray, layer: onnx.NodeProto, kshape: Sequence[int], rng: np.random.Generator
          ) -> np.ndarray:
    """The layer's input as rows of its weight's column layout: [positions, C*kh*kw] for a
    Conv (im2col), [tokens, K] for a MatMul; at most ``ROWS_PER_INPUT`` rows, sampled."""
    if layer.op_type == "MatMul":
        r = x.reshape(-1, x.shape[-1])
    else:
        att = {a.name: list(a.ints) for a in layer.attribute}
        kh, kw = kshape
        sh, sw = (att.get("strides") or [1, 1])[:2]
        dh, dw = (att.get("dilations") or [1, 1])[:2]
        pads = att.get("pads") or [0, 0, 0, 0]
        if (kh, kw) == (1, 1) and (sh, sw) == (1, 1) and not any(pads):
            r = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
        else:
            xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
            win = np.lib.stride_tricks.sliding_window_view(
                xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
            win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, OH, OW, kh, kw]
            r = win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * kh * kw)
    if len(r) > ROWS_PER_INPUT:
        r = r[rng.choice(len(r), ROWS_PER_INPUT, replace=False)]
    return np.asarray(r, np.float64)


def at_int4_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` at opset ``INT4_OPSET`` or later (onnx's version converter: from
    opset 18 on, ReduceMean and friends take their axes as an input)."""
    from onnx import version_converter

    from xcompress.quantize.graph import opset_of

    if opset_of(model) >= INT4_OPSET:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    try:
        return version_converter.convert_version(model, INT4_OPSET)
    except Exception as e:  # the converter raises its own C++ error types
        raise ModelError(f"cannot convert the int8 model to opset {INT4_OPSET} for int4 weights "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                         "drop --int4-weights") from e


@dataclass(frozen=True)
class Int4Weights:
    """One layer's int4 weights, their per-channel scale and its re-expressed int32 bias."""

    values: np.ndarray  # int8 array holding values in [LO, HI], the weight's shape
    scale: np.ndarray
    bias: np.ndarray | None = None
    bias_scale: np.ndarray | None = None


def layer_hessians(q: onnx.ModelProto, layers: Sequence[Int4Layer],
                   inputs: Sequence[np.ndarray], threads: int = 2, seed: int = 0
                   ) -> dict[str, np.ndarray]:
    """``X^T X`` of each layer's input rows (:func:`_rows`) over ``inputs``, in ``q``
    (``GROUP`` layers per forward pass)."""
    from xcompress.quantize.qdq import _expose
    from xcompress.runtime.ort import ort_session

    g = GraphView(q)
    nodes = {n.name: n for n in q.graph.node}
    rng = np.random.default_rng(seed)
    hs: dict[str, np.ndarray] = {}
    for start in range(0, len(layers), GROUP):
        part = layers[start:start + GROUP]
        kshape = {la.node: tuple(g.const(la.weight).shape[2:4]) if la.op == "Conv" else ()
                  for la in part}
        sess = ort_session(_expose(q, [la.x for la in part]), threads)
        feed = sess.get_inputs()[0].name
        for x in inputs:
            for la, a in zip(part, sess.run([la.x for la in part], {feed: x}), strict=True):
                r = _rows(a, nodes[la.node], kshape[la.node], rng)
                hs[la.node] = hs[la.node] + r.T @ r if la.node in hs else r.T @ r
        del sess
    return hs


def quantize_layer(q: onnx.ModelProto, la: Int4Layer, h: np.ndarray) -> Int4Weights:
    """GPTQ int4 weights of ``la`` from its int8 weights in ``q`` and input moment ``h``;
    the int32 bias re-expressed in the new ``x_scale * w_scale`` (same float values)."""
    g = GraphView(q)
    w = g.const(la.weight)
    s8 = g.const(la.scale).astype(np.float64)
    wf = (w.reshape(len(w), -1) * s8[:, None]) if la.op == "Conv" else (w * s8).T
    scale = mse_scales(wf)
    b = xs = None
    if la.bias is not None:  # the int32 bias must still hold b / (s_x * s_w)
        b = g.const(la.bias[0]).astype(np.float64) * g.const(la.bias[1]).astype(np.float64)
        xs = float(g.const(la.x_scale))
        scale = np.maximum(scale, np.abs(b) / (xs * 2.0 ** 30))
    qv = gptq(wf, h, scale)
    qv = qv.reshape(w.shape) if la.op == "Conv" else qv.T
    if b is None:
        return Int4Weights(qv, scale.astype(np.float32))
    bs = (xs * scale).astype(np.float32)
    return Int4Weights(qv, scale.astype(np.float32), np.round(b / bs).astype(np.int32), bs)


def apply_int4(q: onnx.ModelProto, weights: dict[str, Int4Weights],
               layers: Sequence[Int4Layer]) -> onnx.ModelProto:
    """A copy of ``q`` (opset 21) with each layer in ``weights`` (by node name) stored as
    int4 behind ``Cast(to=INT8)``."""
    out = at_int4_opset(q)
    inits = {t.name: t for t in out.graph.initializer}
    for la in layers:
        if la.node not in weights:
            continue
        wt = weights[la.node]
        out.graph.initializer.remove(inits[la.weight])
        out.graph.initializer.append(pack_int4(la.weight + "_int4", wt.values))
        out.graph.node.insert(0, helper.make_node(
            "Cast", [la.weight + "_int4"], [la.weight], to=TensorProto.INT8))
        inits[la.scale].CopyFrom(numpy_helper.from_array(wt.scale, la.scale))
        if la.bias is not None and wt.bias is not None:
            inits[la.bias[0]].CopyFrom(numpy_helper.from_array(wt.bias, la.bias[0]))
            inits[la.bias[1]].CopyFrom(numpy_helper.from_array(wt.bias_scale, la.bias[1]))
    return out


def to_int4(q: onnx.ModelProto, layers: Sequence[Int4Layer], inputs: Sequence[np.ndarray],
            threads: int = 2, seed: int = 0, log: Callable[[str], None] | None = None
            ) -> onnx.ModelProto:
    """A copy of QDQ model ``q`` with the weights of ``layers`` stored as int4: GPTQ on
    ``inputs``, layers in graph order, ``GROUP`` at a time, each group's inputs taken with
    the groups before it already int4 (so it absorbs their error)."""
    t0 = time.perf_counter()
    order = {n.name: i for i, n in enumerate(q.graph.node)}
    todo = sorted(layers, key=lambda la: order[la.node])
    out = q
    for start in range(0, len(todo), GROUP):
        part = todo[start:start + GROUP]
        hs = layer_hessians(out, part, inputs, threads, seed)
        out = apply_int4(out, {la.node: quantize_layer(out, la, hs[la.node]) for la in part},
                         part)
        if log is not None:
            log(f"  int4 weights {start + len(part)}/{len(todo)} layers "
                f"({time.perf_counter() - t0:.0f}s)")
    if out is q:  # nothing to do: still a copy
        out = onnx.ModelProto()
        out.CopyFrom(q)
    return out


def int4_bytes_saved(layers: Sequence[Int4Layer]) -> int:
    """Bytes the int4 storage of ``layers`` saves (half a byte per weight)."""
    return sum(la.n - (la.n + 1) // 2 for la in layers)
