"""Quantization-aware training (QAT) on the deployed int8 QDQ ONNX graph itself.

Post-training quantization (:func:`xcompress.quantize.qdq.quantize_qdq`) writes a QDQ graph:
``QuantizeLinear -> DequantizeLinear`` pairs on activations (u8, asymmetric), int8 weights
behind a ``DequantizeLinear`` (s8, symmetric, per channel) and int32 biases. QAT does not
re-implement that quantization in native torch modules: :class:`QDQGraph` interprets the very
QDQ graph in torch, makes its quantized values trainable and :meth:`QDQGraph.to_onnx` writes
them back into the same graph. Hence:

* the exported model has PTQ's graph plan by construction (same Q/DQ placement, same float
  fallbacks, same rewrites) and is exactly as fast as the PTQ model;
* the torch fake-quant model equals the exported model up to float rounding
  (:meth:`QDQGraph.parity` measures it against onnxruntime);
* rounding is ONNX's: ``QuantizeLinear`` rounds half to even, and so does ``torch.round``;
* symmetric int8 weights stay in [-127, 127] after training, never -128 (the TFLite /
  ai-edge-quantizer convention, which PTQ's symmetric weights already satisfy).

What is trained:

* weights ``DQ(W_q, s, z)``: a float parameter ``W = (W_q - z) * s`` fake-quantized with the
  *fixed* ``s, z`` (re-quantized with the same scales on export, so they stay valid);
* activation scales of ``Q(x, s, z) -> DQ``: ``s = s0 * exp(t)`` with ``t = 0`` at start (LSQ,
  Esser et al. 2020, in log form: positive by construction, the initial value is exact, and
  a step of Adam changes a scale by a relative amount, so one learning rate fits scales that
  differ by orders of magnitude; the LSQ gradient itself comes from the straight-through
  estimator, see :func:`fake_quant`). Zero points stay fixed;
* int32 biases of Conv/ConvTranspose/Gemm: onnxruntime quantizes them with scale
  ``s_x * s_w``; here the bias is fake-quantized with the *current* input scale, and export
  recomputes both the int32 values and the bias scale.

The interpreter is written by hand, one small function per op in a registry, because
onnx2torch converts PP-OCR graphs wrongly; tests compare it with onnxruntime op by op and on
the zoo models. It runs on the actual tensors, so no shape inference is needed.

Example::

    g = QDQGraph(onnx.load("model.int8.onnx"))
    opt = torch.optim.Adam(g.parameters(), lr=1e-5)
    loss = torch.nn.functional.mse_loss(g(x)[0], teacher(x))
    loss.backward(); opt.step()
    onnx.save(g.to_onnx(), "model.qat.onnx")
    g.parity("model.qat.onnx", [x.numpy()])    # {"max_abs_diff": ..., ...}
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper
from torch import Tensor, nn

from xcompress.errors import ModelError

_TORCH_DTYPE: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.BOOL: torch.bool,
}

#: integer range of each quantized type (by numpy dtype)
_QRANGE: dict[np.dtype, tuple[int, int]] = {
    np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max))
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32)
}
_INT32 = _QRANGE[np.dtype(np.int32)]


# --- fake quantization -------------------------------------------------------------------------


def round_ste(x: Tensor) -> Tensor:
    """Round half to even (ONNX ``QuantizeLinear``) with an identity gradient.

    ``x + (round(x) - x)`` is exactly ``round(x)`` in float: ``round(x) - x`` is exact
    (Sterbenz) and the sum is representable, so the forward value is bit-exact.
    """
    return x + (torch.round(x) - x).detach()


def _per_axis(v: Tensor | float, x: Tensor, axis: int | None) -> Tensor | float:
    if not isinstance(v, Tensor) or axis is None or v.dim() != 1 or x.dim() <= 1:
        return v
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return v.reshape(shape)


def quantize(
    x: Tensor, scale: Tensor, zero_point: Tensor | float, qmin: float, qmax: float,
    axis: int | None = None,
) -> Tensor:
    """ONNX ``QuantizeLinear`` kept in float: ``clamp(round(x / scale) + zero_point)``.

    Straight-through: the gradient passes round unchanged and is zero outside
    ``[qmin, qmax]``. ``axis`` selects the channel axis of a 1-D ``scale``/``zero_point``.
    """
    s, z = _per_axis(scale, x, axis), _per_axis(zero_point, x, axis)
    return torch.clamp(round_ste(x / s) + z, qmin, qmax)


def dequantize(
    q: Tensor, scale: Tensor, zero_point: Tensor | float, axis: int | None = None
) -> Tensor:
    """ONNX ``DequantizeLinear``: ``(q - zero_point) * scale``."""
    return (q - _per_axis(zero_point, q, axis)) * _per_axis(scale, q, axis)


def fake_quant(
    x: Tensor, scale: Tensor, zero_point: Tensor | float, qmin: float, qmax: float,
    axis: int | None = None,
) -> Tensor:
    """``DequantizeLinear(QuantizeLinear(x))`` with ONNX numerics and STE gradients.

    Gradients: ``dx`` is 1 inside the range and 0 where the value saturates; ``dscale`` is
    LSQ's ``round(x/s) - x/s`` inside the range and ``qmin - z`` / ``qmax - z`` outside.

    Example (``x / scale`` = 0.5, 1.5, 2.5 rounds half to even to 0, 2, 2; 198 saturates):
        >>> fake_quant(torch.tensor([0.25, 0.75, 1.25, 99.0]), torch.tensor(0.5), 0.0, -127, 127)
        tensor([ 0.0000,  1.0000,  1.0000, 63.5000])
    """
    return dequantize(quantize(x, scale, zero_point, qmin, qmax, axis), scale, zero_point, axis)


def learned_scale(s0: Tensor, log_gain: Tensor) -> Tensor:
    """An LSQ activation scale in log form: ``s0 * exp(log_gain)`` (exactly ``s0`` at 0)."""
    return s0 * torch.exp(log_gain)


# --- the interpreter -----------------------------------------------------------------------------


class _Unsupported(Exception):
    """An attribute or input value an op implementation does not handle."""


@dataclass
class _Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    fn: Callable[[_Node, list[Tensor | None]], Tensor | Sequence[Tensor]]
    #: names read by the op: ``inputs`` and, for a linked bias, the input and weight scales
    reads: list[str] = field(default_factory=list)
    #: DequantizeLinear only: "act" (of an activation), "weight" (of a trainable
    #: initializer: fake-quantized) or "bias" (scale = input scale * weight scale)
    kind: str = "act"
    qmin: float = 0.0
    qmax: float = 0.0

    def a(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


_Op = Callable[[_Node, list["Tensor | None"]], "Tensor | Sequence[Tensor]"]
_OPS: dict[str, _Op] = {}


def _op(*names: str) -> Callable[[_Op], _Op]:
    def register(fn: _Op) -> _Op:
        for n in names:
            _OPS[n] = fn
        return fn

    return register


def supported_ops() -> list[str]:
    """Op types :class:`QDQGraph` can interpret (``Constant`` is folded at construction)."""
    return sorted([*_OPS, "Constant"])


def _attr_value(a: onnx.AttributeProto) -> Any:
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode() for s in v]
    return v


def _tensor(a: np.ndarray) -> Tensor:
    a = np.asarray(a)
    if a.dtype.kind == "U" or a.dtype == object:
        raise _Unsupported("string tensors")
    return torch.from_numpy(np.array(a, copy=True))


def _ints(t: Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _axes(n: _Node, xs: list[Tensor | None], k: int = 1) -> list[int] | None:
    """Axes from input ``k`` (newer opsets) or the ``axes`` attribute (older ones)."""
    if len(xs) > k and xs[k] is not None:
        return _ints(xs[k])
    return n.a("axes")


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# elementwise ----------------------------------------------------------------------------------

_BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt,
    "GreaterOrEqual": torch.ge, "LessOrEqual": torch.le,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
}  # fmt: skip

_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf,
    "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Exp": torch.exp, "Log": torch.log,
    "Floor": torch.floor, "Ceil": torch.ceil, "Not": torch.logical_not,
    "Reciprocal": torch.reciprocal, "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos,
    "Softplus": F.softplus, "Round": torch.round,
}  # fmt: skip


def _binary(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return _BINARY[n.op](xs[0], xs[1])


def _unary(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return _UNARY[n.op](xs[0])


for _name in _BINARY:
    _OPS[_name] = _binary
for _name in _UNARY:
    _OPS[_name] = _unary


@_op("Div")
def _div(n: _Node, xs: list[Tensor | None]) -> Tensor:
    a, b = xs[0], xs[1]
    if not a.is_floating_point():  # integer Div truncates (C semantics)
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


@_op("Pow")
def _pow(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return torch.pow(xs[0], xs[1]).to(xs[0].dtype)


@_op("Min", "Max", "Sum", "Mean")
def _variadic(n: _Node, xs: list[Tensor | None]) -> Tensor:
    fn = {"Min": torch.minimum, "Max": torch.maximum}.get(n.op, torch.add)
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out / len(xs) if n.op == "Mean" else out


@_op("Identity", "Dropout")
def _identity(n: _Node, xs: list[Tensor | None]) -> Tensor:
    if len([o for o in n.outputs if o]) > 1:
        raise _Unsupported("the mask output of Dropout")
    return xs[0]


@_op("HardSigmoid")
def _hard_sigmoid(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return torch.clamp(xs[0] * n.a("alpha", 0.2) + n.a("beta", 0.5), 0.0, 1.0)


@_op("HardSwish")
def _hard_swish(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]  # the ONNX definition, alpha = 1/6 and beta = 0.5 (torch's hardswish divides by 6)
    return x * torch.clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


@_op("LeakyRelu")
def _leaky_relu(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return F.leaky_relu(xs[0], n.a("alpha", 0.01))


@_op("PRelu")
def _prelu(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x, slope = xs[0], xs[1]
    return torch.where(x < 0, x * slope, x)


@_op("Gelu")
def _gelu(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return F.gelu(xs[0], approximate=n.a("approximate", "none"))


@_op("Clip")
def _clip(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    lo = xs[1] if len(xs) > 1 else None
    hi = xs[2] if len(xs) > 2 else None
    if n.opset < 11:
        lo, hi = n.a("min"), n.a("max")
    if lo is None and hi is None:
        return x
    return torch.clamp(x, min=lo, max=hi)


@_op("Softmax", "LogSoftmax")
def _softmax(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    fn = torch.softmax if n.op == "Softmax" else torch.log_softmax
    if n.opset >= 13:
        return fn(x, dim=n.a("axis", -1))
    # before opset 13: the input is coerced to 2-D at ``axis`` and normalized over dim 1
    axis = _norm(n.a("axis", 1), x.dim())
    lead = math.prod(x.shape[:axis])
    return fn(x.reshape(lead, -1), dim=1).reshape(x.shape)


@_op("Where")
def _where(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return torch.where(xs[0], xs[1], xs[2])


@_op("Cast")
def _cast(n: _Node, xs: list[Tensor | None]) -> Tensor:
    to = n.a("to")
    if to not in _TORCH_DTYPE:
        raise _Unsupported(f"cast to type {onnx.TensorProto.DataType.Name(to)}")
    return xs[0].to(_TORCH_DTYPE[to])


@_op("CastLike")
def _cast_like(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return xs[0].to(xs[1].dtype)


# linear algebra and convolutions -----------------------------------------------------------


@_op("MatMul")
def _matmul(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return torch.matmul(xs[0], xs[1])


@_op("Gemm")
def _gemm(n: _Node, xs: list[Tensor | None]) -> Tensor:
    a, b = xs[0], xs[1]
    c = xs[2] if len(xs) > 2 else None
    a = a.transpose(0, 1) if n.a("transA", 0) else a
    b = b.transpose(0, 1) if n.a("transB", 0) else b
    y = a @ b
    alpha, beta = n.a("alpha", 1.0), n.a("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c if beta == 1.0 else c * beta)
    return y


def _pads(n: _Node, spatial: int) -> tuple[list[int], list[int]]:
    auto = n.a("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        raise _Unsupported(f"auto_pad {auto}")
    pads = n.a("pads") if auto == "NOTSET" else None
    pads = list(pads) if pads else [0] * (2 * spatial)
    return pads[:spatial], pads[spatial:]


def _torch_pad(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX ``[b1, b2, .., e1, e2, ..]`` (first axis first) as F.pad's (last axis first)."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        out += [b, e]
    return out


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@_op("Conv")
def _conv(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x, w = xs[0], xs[1]
    b = xs[2] if len(xs) > 2 else None
    k = w.dim() - 2
    begin, end = _pads(n, k)
    if begin != end:
        x = F.pad(x, _torch_pad(begin, end))
        begin = [0] * k
    return _CONV[k](x, w, b, stride=n.a("strides", [1] * k), padding=begin,
                    dilation=n.a("dilations", [1] * k), groups=n.a("group", 1))


@_op("ConvTranspose")
def _conv_transpose(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x, w = xs[0], xs[1]
    b = xs[2] if len(xs) > 2 else None
    k = w.dim() - 2
    if n.a("output_shape"):
        raise _Unsupported("the output_shape attribute")
    begin, end = _pads(n, k)
    sym = begin == end
    y = _CONV_T[k](x, w, b, stride=n.a("strides", [1] * k), padding=begin if sym else 0,
                   output_padding=n.a("output_padding", [0] * k), groups=n.a("group", 1),
                   dilation=n.a("dilations", [1] * k))
    if not sym:  # crop the asymmetric pads from the full output
        idx = [slice(None), slice(None)] + [
            slice(bb, y.shape[2 + i] - e) for i, (bb, e) in enumerate(zip(begin, end, strict=True))
        ]
        y = y[tuple(idx)]
    return y


@_op("BatchNormalization")
def _batch_norm(n: _Node, xs: list[Tensor | None]) -> Tensor:
    if len([o for o in n.outputs if o]) > 1 or n.a("training_mode", 0):
        raise _Unsupported("training-mode BatchNormalization")
    x, scale, bias, mean, var = xs[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=n.a("epsilon", 1e-5))


@_op("InstanceNormalization")
def _instance_norm(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return F.instance_norm(xs[0], weight=xs[1], bias=xs[2], eps=n.a("epsilon", 1e-5))


@_op("LayerNormalization")
def _layer_norm(n: _Node, xs: list[Tensor | None]) -> Tensor:
    if len([o for o in n.outputs if o]) > 1:
        raise _Unsupported("the Mean / InvStdDev outputs")
    x, scale = xs[0], xs[1]
    bias = xs[2] if len(xs) > 2 else None
    axis = _norm(n.a("axis", -1), x.dim())
    eps = n.a("epsilon", 1e-5)
    shape = tuple(x.shape[axis:])
    if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
        return F.layer_norm(x, shape, scale, bias, eps)
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * scale
    return y if bias is None else y + bias


# pooling and reductions --------------------------------------------------------------------


@_op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    dims = tuple(range(2, x.dim()))
    if n.op == "GlobalMaxPool":
        return x.amax(dims, keepdim=True)
    return x.mean(dims, keepdim=True)


_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@_op("AveragePool")
def _avg_pool(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    kernel = list(n.a("kernel_shape"))
    k = len(kernel)
    if any(d != 1 for d in n.a("dilations", [1] * k)):
        raise _Unsupported("dilated AveragePool")
    begin, end = _pads(n, k)
    strides = n.a("strides", [1] * k)
    ceil, include = bool(n.a("ceil_mode", 0)), bool(n.a("count_include_pad", 0))
    if begin == end:
        return _AVG[k](x, kernel, strides, begin, ceil_mode=ceil, count_include_pad=include)
    if ceil:
        raise _Unsupported("asymmetric pads with ceil_mode")
    p = _torch_pad(begin, end)
    y = _AVG[k](F.pad(x, p), kernel, strides, 0)
    if include:
        return y
    count = _AVG[k](F.pad(torch.ones_like(x[:1, :1]), p), kernel, strides, 0)
    return y / count


@_op("MaxPool")
def _max_pool(n: _Node, xs: list[Tensor | None]) -> Tensor:
    if len([o for o in n.outputs if o]) > 1:
        raise _Unsupported("the Indices output")
    x = xs[0]
    kernel = list(n.a("kernel_shape"))
    k = len(kernel)
    begin, end = _pads(n, k)
    kw = dict(stride=n.a("strides", [1] * k), dilation=n.a("dilations", [1] * k),
              ceil_mode=bool(n.a("ceil_mode", 0)))
    if begin != end:
        x = F.pad(x, _torch_pad(begin, end), value=-math.inf)
        begin = [0] * k
    return _MAX[k](x, kernel, padding=begin, **kw)


_REDUCE: dict[str, Callable[..., Tensor]] = {
    "ReduceMean": torch.mean, "ReduceSum": torch.sum,
    "ReduceMax": torch.amax, "ReduceMin": torch.amin,
}  # fmt: skip


@_op(*_REDUCE)
def _reduce(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    axes = _axes(n, xs)
    keep = bool(n.a("keepdims", 1))
    if not axes:
        if n.a("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    return _REDUCE[n.op](x, dim=tuple(_norm(a, x.dim()) for a in axes), keepdim=keep)


# shapes and indexing -----------------------------------------------------------------------


@_op("Shape")
def _shape(n: _Node, xs: list[Tensor | None]) -> Tensor:
    dims = list(xs[0].shape)
    start, end = n.a("start", 0), n.a("end")
    return torch.tensor(dims[start:end] if end is not None else dims[start:], dtype=torch.int64)


@_op("Size")
def _size(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return torch.tensor(xs[0].numel(), dtype=torch.int64)


@_op("Reshape")
def _reshape(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x, shape = xs[0], _ints(xs[1])
    if not n.a("allowzero", 0):  # 0 copies the input's dimension
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@_op("Flatten")
def _flatten(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    axis = _norm(n.a("axis", 1), x.dim())
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@_op("Transpose")
def _transpose(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    perm = n.a("perm") or list(reversed(range(x.dim())))
    return x.permute(*perm)


@_op("Squeeze")
def _squeeze(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    axes = _axes(n, xs)
    if not axes:
        return x.squeeze()
    return x.squeeze(tuple(_norm(a, x.dim()) for a in axes))


@_op("Unsqueeze")
def _unsqueeze(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    axes = _axes(n, xs)
    rank = x.dim() + len(axes)
    for a in sorted(_norm(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return x


@_op("Concat")
def _concat(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return torch.cat([x for x in xs if x is not None], dim=n.a("axis"))


@_op("Split")
def _split(n: _Node, xs: list[Tensor | None]) -> Sequence[Tensor]:
    x = xs[0]
    axis = _norm(n.a("axis", 0), x.dim())
    sizes = _ints(xs[1]) if len(xs) > 1 and xs[1] is not None else n.a("split")
    if not sizes:
        parts = n.a("num_outputs") or len(n.outputs)
        step = -(-x.shape[axis] // parts)  # ceil: the last part may be smaller
        sizes = [min(step, x.shape[axis] - i * step) for i in range(parts)]
    return torch.split(x, list(sizes), dim=axis)


@_op("Slice")
def _slice(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    if n.opset < 10:
        starts, ends, axes, steps = n.a("starts"), n.a("ends"), n.a("axes"), None
    else:
        starts, ends = _ints(xs[1]), _ints(xs[2])
        axes = _ints(xs[3]) if len(xs) > 3 else None
        steps = _ints(xs[4]) if len(xs) > 4 else None
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = _norm(axis, x.dim())
        dim = x.shape[axis]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            idx = [slice(None)] * axis + [slice(start, end, step)]
            x = x[tuple(idx)]
        else:  # torch has no negative steps: gather the indices
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            x = x.index_select(axis, torch.arange(start, end, step, device=x.device))
    return x


@_op("Gather")
def _gather(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x, idx = xs[0], xs[1].long()
    axis = _norm(n.a("axis", 0), x.dim())
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = x.index_select(axis, idx.reshape(-1))
    return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])


@_op("GatherElements")
def _gather_elements(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x, idx = xs[0], xs[1].long()
    axis = _norm(n.a("axis", 0), x.dim())
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    return torch.gather(x, axis, idx)


@_op("Expand")
def _expand(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    shape = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(xs[1])))
    return x.expand(shape)


@_op("Tile")
def _tile(n: _Node, xs: list[Tensor | None]) -> Tensor:
    return xs[0].repeat(*_ints(xs[1]))


@_op("ConstantOfShape")
def _constant_of_shape(n: _Node, xs: list[Tensor | None]) -> Tensor:
    value = n.a("value")
    v = _tensor(value).reshape(()) if value is not None else torch.tensor(0.0)
    return torch.full(_ints(xs[0]), v.item(), dtype=v.dtype)


@_op("Range")
def _range(n: _Node, xs: list[Tensor | None]) -> Tensor:
    start, limit, delta = (x.reshape(()) for x in xs[:3])
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@_op("Pad")
def _pad(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    mode = n.a("mode", "constant")
    if n.opset < 11:
        pads, value, axes = list(n.a("pads")), n.a("value", 0.0), None
    else:
        pads = _ints(xs[1])
        value = xs[2].item() if len(xs) > 2 and xs[2] is not None and xs[2].numel() else 0.0
        axes = _ints(xs[3]) if len(xs) > 3 and xs[3] is not None else None
    axes = [_norm(a, x.dim()) for a in axes] if axes else list(range(x.dim()))
    begin, end = [0] * x.dim(), [0] * x.dim()
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[len(axes) + i]
    if mode == "constant":
        return F.pad(x, _torch_pad(begin, end), value=value)
    tmode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if tmode is None:
        raise _Unsupported(f"mode {mode}")
    lead = next((i for i in range(x.dim()) if begin[i] or end[i]), x.dim())
    if x.dim() - lead > 3 or lead < 1:
        raise _Unsupported(f"{mode} padding of {x.dim() - lead} leading axes")
    # torch pads the trailing axes of a (batch, channel, ...) view
    keep = max(lead, x.dim() - 3)
    v = x.reshape(1, math.prod(x.shape[:keep]), *x.shape[keep:])
    y = F.pad(v, _torch_pad(begin[keep:], end[keep:]), mode=tmode)
    return y.reshape(*x.shape[:keep], *y.shape[2:])


# resize -----------------------------------------------------------------------------------------


def _source_coords(ctm: str, out: int, size: int, scale: float) -> Tensor:
    """Input coordinates of ``out`` output positions along one axis (ONNX Resize)."""
    xr = torch.arange(out, dtype=torch.float32)
    if ctm == "half_pixel":
        return (xr + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (xr + 0.5) / scale - 0.5 if out > 1 else torch.zeros(out)
    if ctm == "align_corners":
        return xr * (size - 1) / (out - 1) if out > 1 else torch.zeros(out)
    if ctm == "asymmetric":
        return xr / scale
    if ctm == "tf_half_pixel_for_nn":
        return (xr + 0.5) / scale
    if ctm == "half_pixel_symmetric":
        adjustment = out / (scale * size)
        offset = size / 2 * (1 - adjustment)
        return offset + (xr + 0.5) / scale - 0.5
    raise _Unsupported(f"coordinate_transformation_mode {ctm}")


def _nearest(c: Tensor, mode: str) -> Tensor:
    half = (c - torch.floor(c)) == 0.5
    if mode == "round_prefer_floor":
        return torch.where(half, torch.floor(c), torch.round(c))
    if mode == "round_prefer_ceil":
        return torch.where(half, torch.ceil(c), torch.round(c))
    if mode == "floor":
        return torch.floor(c)
    if mode == "ceil":
        return torch.ceil(c)
    raise _Unsupported(f"nearest_mode {mode}")


@_op("Resize", "Upsample")
def _resize(n: _Node, xs: list[Tensor | None]) -> Tensor:
    x = xs[0]
    nonempty = [v if v is not None and v.numel() else None for v in xs]
    if n.op == "Upsample" or n.opset < 11:
        sizes = None
        scales = nonempty[1] if len(xs) > 1 else torch.tensor(n.a("scales"))
        ctm = "asymmetric"
    else:
        scales = nonempty[2] if len(xs) > 2 else None
        sizes = nonempty[3] if len(xs) > 3 else None
        ctm = n.a("coordinate_transformation_mode", "half_pixel")
    if n.a("antialias", 0) or n.a("exclude_outside", 0) or n.a("axes") is not None:
        raise _Unsupported("antialias / exclude_outside / axes")
    if n.a("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise _Unsupported("keep_aspect_ratio_policy")
    mode = n.a("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        raise _Unsupported(f"mode {mode}")
    for d in range(x.dim()):
        size = x.shape[d]
        if sizes is not None:
            out = int(sizes[d])
            scale = float(np.float32(out) / np.float32(size))
        else:
            scale = float(np.float32(scales[d].item()))
            out = math.floor(float(np.float32(size) * np.float32(scale)))
        if out == size and scale == 1.0:
            continue
        c = _source_coords(ctm, out, size, scale).to(x.device)
        if mode == "nearest":
            idx = _nearest(c, n.a("nearest_mode", "round_prefer_floor")).clamp(0, size - 1)
            x = x.index_select(d, idx.long())
            continue
        c = c.clamp(0, size - 1)
        lo = c.long()
        hi = (lo + 1).clamp(max=size - 1)
        shape = [1] * x.dim()
        shape[d] = -1
        w = (c - lo.to(c.dtype)).reshape(shape).to(x.dtype)
        a, b = x.index_select(d, lo), x.index_select(d, hi)
        x = a * (1 - w) + b * w
    return x


# LSTM -------------------------------------------------------------------------------------------


@_op("LSTM")
def _lstm(n: _Node, xs: list[Tensor | None]) -> Sequence[Tensor]:
    """ONNX LSTM (float): gates in the order i, o, f, c; f(x)=Sigmoid, g=h=Tanh."""
    xs = list(xs) + [None] * (8 - len(xs))
    x, w, r, b, seq_lens, h0, c0, peep = xs[:8]
    if peep is not None:
        raise _Unsupported("peepholes (input P)")
    if n.a("input_forget", 0):
        raise _Unsupported("input_forget")
    direction = n.a("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    acts = n.a("activations")
    if acts and [a.lower() for a in acts] != ["sigmoid", "tanh", "tanh"] * dirs:
        raise _Unsupported(f"activations {acts}")
    layout = n.a("layout", 0)
    if layout:  # batch-first: [B, T, I] and [B, D, H]
        x = x.transpose(0, 1)
        h0 = h0.transpose(0, 1) if h0 is not None else None
        c0 = c0.transpose(0, 1) if c0 is not None else None
    steps, batch = x.shape[0], x.shape[1]
    hidden = n.a("hidden_size") or r.shape[-1]
    if seq_lens is not None and bool((seq_lens != steps).any()):
        raise _Unsupported("sequence_lens shorter than the sequence")
    clip = n.a("clip")
    ys, hs, cs = [], [], []
    for d in range(dirs):
        wx = x @ w[d].transpose(0, 1)
        if b is not None:
            wx = wx + (b[d, : 4 * hidden] + b[d, 4 * hidden:])
        h = h0[d] if h0 is not None else x.new_zeros(batch, hidden)
        c = c0[d] if c0 is not None else x.new_zeros(batch, hidden)
        rt = r[d].transpose(0, 1)
        out: list[Tensor] = [x] * steps
        order = range(steps - 1, -1, -1) if direction == "reverse" or d == 1 else range(steps)
        for t in order:
            gates = wx[t] + h @ rt
            if clip is not None:
                gates = gates.clamp(-clip, clip)
            i, o, f, g = gates.split(hidden, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        ys.append(torch.stack(out))
        hs.append(h)
        cs.append(c)
    y, yh, yc = torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)  # [T, D, B, H], [D, B, H]
    if layout:
        y, yh, yc = y.permute(2, 0, 1, 3), yh.transpose(0, 1), yc.transpose(0, 1)
    return y, yh, yc


# quantization -----------------------------------------------------------------------------------


def _qrange(dtype: torch.dtype) -> tuple[int, int]:
    info = torch.iinfo(dtype)
    return info.min, info.max


@_op("QuantizeLinear")
def _quantize_linear(n: _Node, xs: list[Tensor | None]) -> Tensor:
    if n.a("block_size", 0):
        raise _Unsupported("blocked quantization")
    zp = xs[2] if len(xs) > 2 else None
    if zp is not None:
        qmin, qmax = _qrange(zp.dtype)
    elif n.a("output_dtype") not in (None, 0):
        qmin, qmax = _qrange(_TORCH_DTYPE[n.a("output_dtype")])
    else:
        qmin, qmax = 0, 255
    z = zp.to(torch.float32) if zp is not None else 0.0
    return quantize(xs[0].to(torch.float32), xs[1], z, qmin, qmax, n.a("axis", 1))


@_op("DequantizeLinear")
def _dequantize_linear(n: _Node, xs: list[Tensor | None]) -> Tensor:
    if n.a("block_size", 0):
        raise _Unsupported("blocked quantization")
    x, scale = xs[0], xs[1]
    zp = xs[2] if len(xs) > 2 and xs[2] is not None else None
    z = zp.to(torch.float32) if zp is not None else 0.0
    axis = n.a("axis", 1)
    if n.kind == "weight":
        return fake_quant(x, scale, z, n.qmin, n.qmax, axis)
    if n.kind == "bias":
        # scale = input scale * weight scale, both as they are now. No gradient flows to the
        # scale here: int32 rounding noise is negligible, and with the tiny scale of a dead
        # (all-zero) weight channel, d(B/s)/ds = -B/s**2 underflows to inf * 0 = NaN
        return fake_quant(x, (xs[-2] * xs[-1]).detach(), 0.0, n.qmin, n.qmax, None)
    return dequantize(x.to(torch.float32), scale, z, axis)


# --- the module -------------------------------------------------------------------------------


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    a = {x.name: _attr_value(x) for x in node.attribute}
    if "value" in a:
        return np.asarray(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype)
    raise _Unsupported(f"attribute {', '.join(a)}")


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


@dataclass
class _Weight:
    """A trainable quantized initializer: ``DQ(init, scale, zp)`` (or a linked int32 bias)."""

    init: str
    scale: str
    zero_point: str
    axis: int | None
    qmin: float
    qmax: float
    dtype: np.dtype
    #: a bias: the input-activation and weight scale names (its scale is their product)
    bias_of: tuple[str, str] | None = None


class QDQGraph(nn.Module):
    """An ONNX graph (float or int8 QDQ) interpreted in torch, with QAT parameters.

    Args:
        model: the graph; int8 QDQ as :func:`xcompress.quantize.qdq.quantize_qdq` writes it,
            or a float model (interpreted as is: no parameters).

    Parameters (all ``nn.ParameterDict``, keyed by sanitized initializer names):
        ``weights``: float weights of every ``DequantizeLinear`` of an integer initializer;
        ``biases``: float int32-quantized biases whose scale follows the input scale;
        ``act_scales``: log-gains ``t`` of the activation scales, ``s = s0 * exp(t)``.

    Weights are in absolute units and Adam moves each by about ``lr`` per step: give each
    weight tensor an lr well below its quantization step (one Adam step at lr 1e-3 took the
    PP-OCRv4 det/cls fake-quant MSE from 5e-4 to 0.3). ``act_scales`` are log-gains: an lr
    of 1e-3 changes a scale by about 0.1% per step.

    ``forward(*inputs)`` takes the graph inputs in order (or one dict by name), as tensors
    or arrays, and returns the graph outputs in order. An op it cannot interpret raises
    :class:`~xcompress.errors.ModelError` naming the op and the node.

    Example:
        >>> g = QDQGraph(qdq_model)                                   # doctest: +SKIP
        >>> probs = g(torch.randn(1, 3, 48, 320))[0]                  # doctest: +SKIP
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        self._source = copy.deepcopy(model)
        graph = model.graph
        opset = _opset(model)
        consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t)
                                         for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in consts]
        self.output_names = [o.name for o in graph.output]
        self._nodes: list[_Node] = []
        self._keys: dict[str, str] = {}
        for i, node in enumerate(graph.node):
            name = node.name or f"node_{i}_{node.op_type}"
            default = node.domain in ("", "ai.onnx")
            key = node.op_type if default else f"{node.domain}.{node.op_type}"
            try:
                if key == "Constant":
                    consts[node.output[0]] = _constant_value(node)
                    continue
                if key not in _OPS:
                    raise _Unsupported("no torch implementation")
                attrs = {a.name: _attr_value(a) for a in node.attribute}
            except _Unsupported as e:
                raise ModelError(f"QAT cannot interpret op {key} (node {name}): {e}") from None
            self._nodes.append(_Node(key, name, list(node.input), list(node.output), attrs,
                                     opset, _OPS[key], reads=list(node.input)))
        self._weights = self._find_weights(consts)
        self._scales = self._find_act_scales(consts)

        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self.act_scales = nn.ParameterDict()
        self._int32_start: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for w in self._weights.values():
            q = torch.from_numpy(consts[w.init].astype(np.float32))
            s = torch.from_numpy(consts[w.scale].astype(np.float32))
            z = torch.from_numpy(consts[w.zero_point].astype(np.float32)) if w.zero_point else 0.0
            axis = None if w.bias_of else w.axis
            target = self.biases if w.bias_of else self.weights
            target[self._key(w.init)] = nn.Parameter(dequantize(q, s, z, axis))
            if w.dtype == np.int32:  # see quantized_initializers
                self._int32_start[w.init] = (consts[w.init], target[self._key(w.init)].detach()
                                             .numpy().copy(), consts[w.scale].astype(np.float32))
        for s in self._scales:
            self.act_scales[self._key(s)] = nn.Parameter(torch.zeros_like(_tensor(consts[s])))
        self._const_names: list[str] = []
        for cname, arr in consts.items():
            if cname in self._weights:
                continue
            try:
                t = _tensor(arr)
            except _Unsupported:
                continue  # a string initializer: any op reading it is unsupported anyway
            self.register_buffer(self._key(cname), t, persistent=False)
            self._const_names.append(cname)
        self._free = self._last_uses()

    # -- construction helpers -------------------------------------------------------------------

    def _key(self, name: str) -> str:
        """A unique attribute-safe key for an ONNX tensor name."""
        if name not in self._keys:
            base = "t_" + re.sub(r"\W", "_", name)
            key, i = base, 0
            while key in self._keys.values():
                i += 1
                key = f"{base}_{i}"
            self._keys[name] = key
        return self._keys[name]

    def _find_weights(self, consts: dict[str, np.ndarray]) -> dict[str, _Weight]:
        producer = {o: n for n in self._nodes for o in n.outputs if o}
        consumers: dict[str, list[_Node]] = {}
        for n in self._nodes:
            for t in n.inputs:
                consumers.setdefault(t, []).append(n)
        found: dict[str, _Weight] = {}
        for n in self._nodes:
            if n.op != "DequantizeLinear" or len(n.inputs) < 2:
                continue
            src, scale = n.inputs[0], n.inputs[1]
            zp = n.inputs[2] if len(n.inputs) > 2 else ""
            arr = consts.get(src)
            if arr is None or arr.dtype not in _QRANGE or scale not in consts:
                continue
            if zp and zp not in consts:
                continue
            qmin, qmax = _QRANGE[arr.dtype]
            zero = consts[zp] if zp else np.zeros((), arr.dtype)
            if arr.dtype == np.int8 and not zero.any() and arr.size and arr.min() >= -127:
                qmin = -127  # symmetric weights: training must not reach -128
            axis = n.a("axis", 1) if consts[scale].ndim == 1 else None
            w = _Weight(src, scale, zp, axis, qmin, qmax, arr.dtype)
            if arr.dtype == np.int32:
                w.bias_of = self._bias_link(n, consts, producer, consumers)
            old = found.get(src)
            if old is not None and (old.scale, old.zero_point, old.axis) != (scale, zp, axis):
                raise ModelError(f"QAT cannot interpret op DequantizeLinear (node {n.name}): "
                                 f"initializer {src} is dequantized with two different scales")
            found[src] = w
            n.kind, n.qmin, n.qmax = ("bias" if w.bias_of else "weight"), qmin, qmax
            if w.bias_of:
                n.reads = [*n.inputs, *w.bias_of]
        return found

    @staticmethod
    def _bias_link(n: _Node, consts: dict[str, np.ndarray], producer: dict[str, _Node],
                   consumers: dict[str, list[_Node]]) -> tuple[str, str] | None:
        """``(input scale, weight scale)`` of the Conv/Gemm reading int32 bias DQ ``n``,
        when the bias scale is exactly their product (onnxruntime's rule); else None."""
        users = consumers.get(n.outputs[0], [])
        if len(users) != 1 or users[0].op not in ("Conv", "ConvTranspose", "Gemm"):
            return None
        op = users[0]
        if len(op.inputs) < 3 or op.inputs[2] != n.outputs[0]:
            return None
        px, pw = producer.get(op.inputs[0]), producer.get(op.inputs[1])
        if px is None or pw is None or px.op != pw.op or px.op != "DequantizeLinear":
            return None
        sx, sw = px.inputs[1], pw.inputs[1]
        if sx not in consts or sw not in consts or pw.inputs[0] not in consts:
            return None
        zp = n.inputs[2] if len(n.inputs) > 2 else ""
        if zp and consts[zp].any():
            return None
        prod = (consts[sx].astype(np.float32) * consts[sw].astype(np.float32)).reshape(-1)
        if not np.array_equal(prod, consts[n.inputs[1]].astype(np.float32).reshape(-1)):
            return None
        return sx, sw

    def _find_act_scales(self, consts: dict[str, np.ndarray]) -> list[str]:
        """Scale initializers of QuantizeLinear nodes on activations (learnable)."""
        out: list[str] = []
        for n in self._nodes:
            if n.op != "QuantizeLinear" or n.inputs[0] in consts or len(n.inputs) < 2:
                continue
            s = n.inputs[1]
            if s in consts and consts[s].dtype == np.float32 and s not in out:
                out.append(s)
        return out

    def _last_uses(self) -> list[list[str]]:
        """Per node, the tensors no later node reads (freed during forward)."""
        keep = set(self.output_names) | set(self._const_names) | set(self._weights)
        last: dict[str, int] = {}
        for i, n in enumerate(self._nodes):
            for t in [*n.reads, *n.outputs]:
                if t:
                    last[t] = i
        free: list[list[str]] = [[] for _ in self._nodes]
        for t, i in last.items():
            if t not in keep:
                free[i].append(t)
        return free

    # -- running ----------------------------------------------------------------------------------

    def _env(self) -> dict[str, Tensor]:
        """Constants, trainable weights and the current activation scales, by ONNX name."""
        env: dict[str, Tensor] = {c: self._buffers[self._keys[c]] for c in self._const_names}
        for w in self._weights.values():
            env[w.init] = (self.biases if w.bias_of else self.weights)[self._keys[w.init]]
        for s in self._scales:
            env[s] = learned_scale(env[s], self.act_scales[self._keys[s]])
        return env

    def _device(self) -> torch.device:
        t = next(iter([*self.parameters(), *self.buffers()]), None)
        return t.device if t is not None else torch.device("cpu")

    def forward(self, *inputs: Tensor | np.ndarray | Mapping[str, Any]) -> list[Tensor]:
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            feeds = dict(inputs[0])
        else:
            if len(inputs) != len(self.input_names):
                raise ValueError(f"expected {len(self.input_names)} inputs "
                                 f"({', '.join(self.input_names)}), got {len(inputs)}")
            feeds = dict(zip(self.input_names, inputs, strict=True))
        env = self._env()
        device = self._device()
        for name, v in feeds.items():
            env[name] = torch.as_tensor(v).to(device)
        for i, n in enumerate(self._nodes):
            xs = [env[t] if t else None for t in n.reads]
            try:
                out = n.fn(n, xs)
            except _Unsupported as e:
                raise ModelError(f"QAT cannot interpret op {n.op} (node {n.name}): {e}") from None
            for name, v in zip(n.outputs, (out,) if isinstance(out, Tensor) else out,
                               strict=False):
                if name:
                    env[name] = v
            for t in self._free[i]:
                env.pop(t, None)
        return [env[o] for o in self.output_names]

    # -- export -----------------------------------------------------------------------------------

    @torch.no_grad()
    def quantized_initializers(self) -> dict[str, np.ndarray]:
        """The initializers training changes, as :meth:`to_onnx` writes them (by name)."""
        env = self._env()
        out: dict[str, np.ndarray] = {}
        for s in self._scales:
            out[s] = env[s].cpu().numpy().astype(np.float32)
        for w in self._weights.values():
            x = env[w.init]
            z = env[w.zero_point].to(torch.float32) if w.zero_point else 0.0
            if w.bias_of:
                scale = env[w.bias_of[0]] * env[w.bias_of[1]]
                out[w.scale] = scale.cpu().numpy().astype(np.float32)
                q = quantize(x, scale, 0.0, w.qmin, w.qmax)
            else:
                scale = env[w.scale]
                q = quantize(x, scale, z, w.qmin, w.qmax, w.axis)
            # clip in float64: int32's max is not a float32
            q64 = q.cpu().numpy().astype(np.float64)
            out[w.init] = np.clip(q64, w.qmin, w.qmax).astype(w.dtype)
            if w.init in self._int32_start:
                # an int32 above 2**24 does not survive float32: where the value and its
                # scale are unchanged, keep the original integer
                q0, x0, s0 = self._int32_start[w.init]
                same = (x.cpu().numpy() == x0) & (scale.cpu().numpy() == s0)
                out[w.init] = np.where(same, q0, out[w.init])
        return out

    def to_onnx(self) -> onnx.ModelProto:
        """The source graph with the trained values written back (same nodes, same names).

        Weights are re-quantized with their original scales, activation scales are the
        learned ones, int32 biases and their scales are recomputed from the learned input
        scales. Every other initializer and node is unchanged.
        """
        out = copy.deepcopy(self._source)
        values = self.quantized_initializers()
        for t in out.graph.initializer:
            if t.name not in values:
                continue
            v = values[t.name].reshape(tuple(t.dims))
            if not np.array_equal(v, numpy_helper.to_array(t)):  # unchanged: byte-identical
                t.CopyFrom(numpy_helper.from_array(v, t.name))
        return out

    @torch.no_grad()
    def parity(
        self,
        model_path_or_proto: str | Path | onnx.ModelProto,
        inputs: Sequence[np.ndarray],
        *,
        optimize: bool = True,
        threads: int | None = 1,
    ) -> dict[str, float | int]:
        """Compare this module with onnxruntime (CPU) running ``model_path_or_proto``.

        Args:
            model_path_or_proto: usually ``self.to_onnx()`` or a file of it.
            inputs: one array per graph input (in order), run once.
            optimize: onnxruntime's graph optimizations on (the deployed int8 kernels, which
                requantize in their own order) or off (every Q/DQ node run as written).

        Returns:
            ``{"max_abs_diff", "mean_abs_diff", "outputs"}`` over all graph outputs.
        """
        from xcompress.runtime.ort import ort_session

        src = str(model_path_or_proto) if isinstance(model_path_or_proto, (str, Path)) \
            else model_path_or_proto
        sess = ort_session(src, threads, optimize=optimize)
        names = [i.name for i in sess.get_inputs()]
        feed = dict(zip(names, inputs, strict=True))
        ref = sess.run(None, feed)
        got = self(feed)
        diffs = [np.abs(np.asarray(r, np.float64) - g.detach().cpu().double().numpy())
                 for r, g in zip(ref, got, strict=True)]
        total = sum(d.size for d in diffs)
        return {
            "max_abs_diff": float(max((d.max() for d in diffs if d.size), default=0.0)),
            "mean_abs_diff": float(sum(d.sum() for d in diffs) / max(total, 1)),
            "outputs": len(diffs),
        }


__all__ = [
    "QDQGraph",
    "dequantize",
    "fake_quant",
    "learned_scale",
    "quantize",
    "round_ste",
    "supported_ops",
]
