"""Graph rewrites applied before (and one after) quantization.

PaddlePaddle's ONNX exporter writes many activations and affine layers as chains of
elementwise ops (``x * clip(x + 3, 0, 6) / 6`` for hard-swish, ``Mul``/``Add`` pairs for
PP-LCNetV3's learnable affine blocks and LayerNorm as nine ops). In PP-OCRv4 rec about 45% of
onnxruntime's fp32 kernel time goes to those chains, and after quantization every one of them
would also get its own Q/DQ pair. Folding and fusing them first is as important for speed as
the int8 kernels themselves.

Each rewrite is a small class registered by name; ``apply`` returns a new model (the input is
not modified) whose outputs equal the original's within float tolerance. Rewrites only
produce standard ONNX ops, so the result runs on any ONNX runtime.

Example:
    >>> model = apply_rewrites(model, default_rewrites(opset_of(model)))   # doctest: +SKIP
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import helper

from xcompress.quantize.graph import (
    GraphView,
    attr,
    opset_of,
    prune_unused,
    remove_nodes,
    rename_input,
    set_attr,
)
from xcompress.runtime import get_runtime


class Rewrite(ABC):
    """One graph rewrite. Subclasses set ``name`` and implement :meth:`rewrite` in place."""

    name: str = ""
    #: lowest default-domain opset the ops this rewrite writes need
    min_opset: int = 1

    def apply(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """Return a rewritten copy of ``model`` (the argument is left untouched)."""
        out = copy.deepcopy(model)
        if opset_of(out) < self.min_opset:
            return out
        self.count = self.rewrite(out)
        prune_unused(out)
        return out

    @abstractmethod
    def rewrite(self, model: onnx.ModelProto) -> int:
        """Rewrite ``model`` in place; return how many patterns were changed."""


_REWRITES: dict[str, type[Rewrite]] = {}


def register_rewrite(cls: type[Rewrite]) -> type[Rewrite]:
    """Class decorator adding a rewrite to the registry under ``cls.name``."""
    _REWRITES[cls.name] = cls
    return cls


def rewrite_names() -> list[str]:
    """Registered rewrite names, in registration order."""
    return list(_REWRITES)


def get_rewrite(name: str) -> Rewrite:
    """A new instance of a registered rewrite."""
    return _REWRITES[name]()


def apply_rewrites(
    model: onnx.ModelProto,
    names: Sequence[str],
    on_step: Callable[[str, int], None] | None = None,
) -> onnx.ModelProto:
    """Apply rewrites in order; ``on_step(name, count)`` is called after each."""
    for name in names:
        rw = get_rewrite(name)
        model = rw.apply(model)
        if on_step is not None:
            on_step(name, getattr(rw, "count", 0))
    return model


# Order matters: constants first (so patterns see initializers), BatchNorm and affine folds
# into the producing Conv, activations fused, then what remains of the affine chains folded
# into the next pointwise Conv.
PRE_QUANT_REWRITES = (
    "constants-to-initializers",
    "remove-identity",
    "fold-batchnorm",
    "fold-conv-affine",
    "fuse-hardswish",
    "fuse-hardsigmoid",
    "fuse-gelu",
    "fold-scalar-chains",
    "fold-affine-into-next-conv",
    "fuse-layernorm",
)


def default_rewrites(opset: int) -> list[str]:
    """The pre-quantization rewrites usable at ``opset``."""
    return [n for n in PRE_QUANT_REWRITES if _REWRITES[n].min_opset <= opset]


# -------------------------------------------------------------------------------------------
@register_rewrite
class ConstantsToInitializers(Rewrite):
    """Turn ``Constant`` nodes into initializers, so patterns see one kind of constant."""

    name = "constants-to-initializers"

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead = []
        for n in model.graph.node:
            if n.op_type == "Constant" and len(n.output) == 1:
                value = g.const(n.output[0])
                if value is None:
                    continue  # sparse or string constants: leave them
                t = onnx.numpy_helper.from_array(value, n.output[0])
                model.graph.initializer.append(t)
                dead.append(n)
        remove_nodes(model, dead)
        return len(dead)


def _conv_weight(g: GraphView, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """A Conv's (weight, bias) if both are constants (bias zeros when absent)."""
    w = g.const(conv.input[1])
    if w is None:
        return None
    if len(conv.input) > 2 and conv.input[2]:
        b = g.const(conv.input[2])
        if b is None:
            return None
    else:
        b = np.zeros(w.shape[0], w.dtype)
    return w, b


def _set_conv_weight(g: GraphView, conv: onnx.NodeProto, w: np.ndarray, b: np.ndarray) -> None:
    """Point a Conv at new (weight, bias) initializers."""
    wname = g.add_init(conv.input[1] + "_folded", w.astype(np.float32))
    bname = g.add_init((conv.input[2] if len(conv.input) > 2 and conv.input[2]
                        else conv.input[1]) + "_bias_folded", b.astype(np.float32))
    conv.input[1] = wname
    if len(conv.input) > 2:
        conv.input[2] = bname
    else:
        conv.input.append(bname)


def _per_channel(v: np.ndarray, channels: int) -> np.ndarray | None:
    """``v`` as a per-output-channel vector if it broadcasts as (1, C, 1, 1) or scalar."""
    v = np.asarray(v, np.float32)
    if v.size == 1:
        return np.full(channels, float(v.reshape(())), np.float32)
    shape = [d for d in v.shape]
    # accept (C,1,1), (1,C,1,1): C on the channel axis of an NCHW tensor, ones elsewhere
    while len(shape) < 4:
        shape.insert(0, 1)
    if len(shape) == 4 and shape[1] == channels and shape[0] == shape[2] == shape[3] == 1:
        return v.reshape(channels)
    return None


@register_rewrite
class FoldBatchNorm(Rewrite):
    """``Conv -> BatchNormalization`` becomes one Conv with scaled weights and a new bias."""

    name = "fold-batchnorm"

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead, count = [], 0
        for conv in list(model.graph.node):
            if conv.op_type != "Conv":
                continue
            bn = g.sole_consumer(conv.output[0])
            if bn is None or bn.op_type != "BatchNormalization" or len(bn.output) != 1:
                continue
            wb = _conv_weight(g, conv)
            params = [g.const(x) for x in bn.input[1:5]]
            if wb is None or any(p is None for p in params):
                continue
            w, b = wb
            scale, bias, mean, var = (p.astype(np.float64) for p in params)
            k = scale / np.sqrt(var + attr(bn, "epsilon", 1e-5))
            w2 = w.astype(np.float64) * k.reshape(-1, *([1] * (w.ndim - 1)))
            b2 = (b.astype(np.float64) - mean) * k + bias
            _set_conv_weight(g, conv, w2, b2)
            conv.output[0] = bn.output[0]
            dead.append(bn)
            count += 1
        remove_nodes(model, dead)
        return count


@register_rewrite
class FoldConvAffine(Rewrite):
    """``Conv -> Mul(const) -> Add(const)`` (either or both) folds into the Conv.

    The constants must broadcast per output channel (scalar, ``(C,1,1)`` or ``(1,C,1,1)``),
    which is how PP-LCNetV3's learnable affine blocks and scale layers are exported.
    """

    name = "fold-conv-affine"

    def rewrite(self, model: onnx.ModelProto) -> int:
        count = 0
        while True:
            g = GraphView(model)
            changed = 0
            for conv in list(model.graph.node):
                if conv.op_type != "Conv":
                    continue
                nxt = g.sole_consumer(conv.output[0])
                if nxt is None or nxt.op_type not in ("Mul", "Add"):
                    continue
                other = g.other_input(nxt, conv.output[0])
                wb = _conv_weight(g, conv)
                v = g.const(other) if other else None
                if wb is None or v is None:
                    continue
                w, b = wb
                vec = _per_channel(v, w.shape[0])
                if vec is None:
                    continue
                if nxt.op_type == "Mul":
                    w = w * vec.reshape(-1, *([1] * (w.ndim - 1)))
                    b = b * vec
                else:
                    b = b + vec
                _set_conv_weight(g, conv, w, b)
                conv.output[0] = nxt.output[0]
                remove_nodes(model, [nxt])
                changed += 1
                break  # the view is stale after an edit
            if not changed:
                return count
            count += changed


def _match_hardsigmoid_core(g: GraphView, x: str, add: onnx.NodeProto):
    """Match ``Clip(Add(x, 3), 0, 6)``; return the Clip node or None."""
    if add.op_type != "Add" or g.scalar(g.other_input(add, x) or "") != 3.0:
        return None
    clip = g.sole_consumer(add.output[0])
    if clip is None or clip.op_type != "Clip":
        return None
    if g.clip_bounds(clip) != (0.0, 6.0):
        return None
    return clip


def _is_div_by_6(g: GraphView, node: onnx.NodeProto | None, t: str) -> bool:
    if node is None or len(node.input) != 2 or node.input[0] != t:
        return False
    v = g.scalar(node.input[1])
    if v is None:
        return False
    return (node.op_type == "Div" and v == 6.0) or (
        node.op_type == "Mul" and abs(v - 1.0 / 6.0) < 1e-6
    )


@register_rewrite
class FoldScalarChains(Rewrite):
    """Simplify constant elementwise chains.

    ``Div(x, k)`` becomes ``Mul(x, 1/k)`` (Mul is quantizable, Div is not),
    ``Mul(Mul(x, k1), k2)`` becomes ``Mul(x, k1*k2)`` and ``Mul(x, 1)`` / ``Add(x, 0)``
    disappear. In hard-swish blocks this merges the ``/6`` into the affine scale after it.
    """

    name = "fold-scalar-chains"

    def rewrite(self, model: onnx.ModelProto) -> int:
        count = 0
        g = GraphView(model)
        for n in model.graph.node:
            if n.op_type == "Div" and len(n.input) == 2:
                k = g.const(n.input[1])
                if k is not None and k.dtype == np.float32 and np.all(k != 0):
                    n.op_type = "Mul"
                    n.input[1] = g.add_init(n.input[1] + "_recip", (1.0 / k).astype(np.float32))
                    count += 1
        while True:
            g = GraphView(model)
            done = False
            for n in model.graph.node:
                if n.op_type not in ("Mul", "Add") or len(n.input) != 2:
                    continue
                x = next((i for i in n.input if g.const(i) is None), None)
                k = g.const(g.other_input(n, x) or "") if x is not None else None
                if k is None or k.dtype != np.float32:
                    continue
                neutral = 1.0 if n.op_type == "Mul" else 0.0
                # only a one-element constant of rank <= 1 is neutral without changing the shape
                if k.size == 1 and k.ndim <= 1 and float(k.reshape(())) == neutral:
                    if n.output[0] in g.graph_outputs:
                        continue
                    rename_input(model, n.output[0], x)
                    remove_nodes(model, [n])
                    done = True
                    break
                nxt = g.sole_consumer(n.output[0])
                if nxt is None or nxt.op_type != n.op_type or len(nxt.input) != 2:
                    continue
                k2 = g.const(g.other_input(nxt, n.output[0]) or "")
                if k2 is None or k2.dtype != np.float32:
                    continue
                merged = k * k2 if n.op_type == "Mul" else k + k2
                nxt.input[:] = [x, g.add_init(n.output[0] + "_merged", merged.astype(np.float32))]
                remove_nodes(model, [n])
                done = True
                break
            if not done:
                return count
            count += 1


class PatternFusion(Rewrite):
    """A rewrite that replaces matched node chains by one new node each.

    Subclasses implement :meth:`fuse`: for a candidate node, the new node and the nodes it
    replaces, or None when the pattern does not start there.
    """

    @abstractmethod
    def fuse(
        self, g: GraphView, node: onnx.NodeProto
    ) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
        """The fused node and the nodes it replaces, or None."""

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead, count = [], 0
        for node in list(model.graph.node):
            m = self.fuse(g, node)
            if m is None:
                continue
            fused, nodes = m
            model.graph.node.append(fused)
            dead += nodes
            count += 1
        remove_nodes(model, dead)
        _toposort(model)
        return count


@register_rewrite
class RemoveIdentity(Rewrite):
    """Drop ``Identity`` nodes (Paddle 3 exports one after most ops); readers read the source.

    They cost nothing in float, but a quantizer treats each as an op between two tensors, so
    patterns stop matching across them and each can get a Q/DQ pair of its own.
    """

    name = "remove-identity"

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead = []
        for n in model.graph.node:
            if n.op_type != "Identity" or n.output[0] in g.graph_outputs:
                continue
            rename_input(model, n.output[0], n.input[0])
            dead.append(n)
        remove_nodes(model, dead)
        return len(dead)


@register_rewrite
class UnfuseHardSwish(Rewrite):
    """``HardSwish(x)`` becomes ``x * Clip(x + 3, 0, 6) * (1/6)``: the form PP-OCRv4 is exported
    in, and the one the ``int8-all`` plan wants (onnxruntime has int8 Add/Clip/Mul kernels but
    no int8 HardSwish, so a fused one sits in float between DQ and Q)."""

    name = "unfuse-hardswish"

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead, count = [], 0
        three = g.add_init("hardswish_three", np.array(3.0, np.float32))
        zero = g.add_init("hardswish_zero", np.array(0.0, np.float32))
        six = g.add_init("hardswish_six", np.array(6.0, np.float32))
        sixth = g.add_init("hardswish_sixth", np.array(1.0 / 6.0, np.float32))
        for n in list(model.graph.node):
            if n.op_type != "HardSwish":
                continue
            x, y = n.input[0], n.output[0]
            model.graph.node.extend([
                helper.make_node("Add", [x, three], [y + "_a3"], name=y + "_add3"),
                helper.make_node("Clip", [y + "_a3", zero, six], [y + "_c6"], name=y + "_clip"),
                helper.make_node("Mul", [x, y + "_c6"], [y + "_m"], name=y + "_mul"),
                helper.make_node("Mul", [y + "_m", sixth], [y], name=y + "_div6"),
            ])
            dead.append(n)
            count += 1
        remove_nodes(model, dead)
        _toposort(model)
        return count


@register_rewrite
class FuseHardSwish(Rewrite):
    """``x * Clip(x + 3, 0, 6) / 6`` becomes ``HardSwish(x)`` (opset 14)."""

    name = "fuse-hardswish"
    min_opset = 14

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead, count = [], 0
        for add in list(model.graph.node):
            if add.op_type != "Add":
                continue
            for x in add.input:
                clip = _match_hardsigmoid_core(g, x, add)
                if clip is None:
                    continue
                mul = g.sole_consumer(clip.output[0])
                if mul is None or mul.op_type != "Mul" or g.other_input(mul, clip.output[0]) != x:
                    continue
                div = g.sole_consumer(mul.output[0])
                if not _is_div_by_6(g, div, mul.output[0]):
                    continue
                model.graph.node.append(
                    helper.make_node("HardSwish", [x], [div.output[0]], name=div.output[0] + "_hs")
                )
                dead += [add, clip, mul, div]
                count += 1
                break
        remove_nodes(model, dead)
        _toposort(model)
        return count


@register_rewrite
class FuseGelu(PatternFusion):
    """``x * (Erf(x / sqrt 2) + 1) * 0.5`` becomes ``Gelu(x)`` (opset 20).

    Paddle exports GELU as five ops. onnxruntime fuses them back in fp32, but a quantizer sees
    the pieces: on PP-OCRv6 rec the int8 plan turned them into an Erf computed in float
    between quantized Mul/Add ops, each with its own Q/DQ, and int8 ended up no faster than
    fp32. As one op it stays float inside one DQ -> Gelu -> Q.
    """

    name = "fuse-gelu"
    min_opset = 20

    def fuse(self, g: GraphView, node: onnx.NodeProto):
        m = self._match(g, node)
        if m is None:
            return None
        x, nodes, out = m
        return helper.make_node("Gelu", [x], [out], name=out + "_gelu"), nodes

    @staticmethod
    def _scalar(g: GraphView, node: onnx.NodeProto, x: str) -> float | None:
        k = g.const(g.other_input(node, x) or "")
        return float(k.reshape(())) if k is not None and k.size == 1 else None

    def _match(self, g: GraphView, erf: onnx.NodeProto):
        if erf.op_type != "Erf":
            return None
        scale = g.producer.get(erf.input[0])  # x / sqrt(2) or x * (1 / sqrt(2))
        if scale is None or scale.op_type not in ("Div", "Mul") or len(scale.input) != 2:
            return None
        x = scale.input[0]
        k = self._scalar(g, scale, x)
        if k is None or g.const(x) is not None:
            return None
        if not np.isclose(k if scale.op_type == "Div" else 1.0 / k, np.sqrt(2.0), rtol=1e-4):
            return None
        add = g.sole_consumer(erf.output[0])
        if add is None or add.op_type != "Add" or self._scalar(g, add, erf.output[0]) != 1.0:
            return None
        mul = g.sole_consumer(add.output[0])
        if mul is None or mul.op_type != "Mul" or set(mul.input) != {x, add.output[0]}:
            return None
        half = g.sole_consumer(mul.output[0])
        if half is None or half.op_type != "Mul" or self._scalar(g, half, mul.output[0]) != 0.5:
            return None
        inner = [scale, erf, add, mul]
        if any(len(g.consumers.get(n.output[0], [])) != 1 for n in inner):
            return None
        return x, [*inner, half], half.output[0]


@register_rewrite
class FuseHardSigmoid(Rewrite):
    """``Clip(x + 3, 0, 6) / 6`` becomes ``HardSigmoid(x, alpha=1/6, beta=0.5)``."""

    name = "fuse-hardsigmoid"

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)
        dead, count = [], 0
        for add in list(model.graph.node):
            if add.op_type != "Add":
                continue
            for x in add.input:
                clip = _match_hardsigmoid_core(g, x, add)
                if clip is None:
                    continue
                div = g.sole_consumer(clip.output[0])
                if not _is_div_by_6(g, div, clip.output[0]):
                    continue
                model.graph.node.append(helper.make_node(
                    "HardSigmoid", [x], [div.output[0]], name=div.output[0] + "_hsig",
                    alpha=1.0 / 6.0, beta=0.5,
                ))
                dead += [add, clip, div]
                count += 1
                break
        remove_nodes(model, dead)
        _toposort(model)
        return count


@register_rewrite
class FoldAffineIntoNextConv(Rewrite):
    """``Mul(const) -> Add(const) -> Conv`` folds into that Conv when it does not pad.

    ``conv(a*x + b) = conv'(x)`` with ``W'[o,i] = W[o,i]*a[i]`` and
    ``bias'[o] = bias[o] + sum_{i,k} W[o,i,k]*b[i]`` holds only where no zero padding is
    mixed into the window (padding zeros would become ``b`` before, but stay 0 after), so
    padded Convs are left alone.
    """

    name = "fold-affine-into-next-conv"

    def rewrite(self, model: onnx.ModelProto) -> int:
        count = 0
        while True:
            g = GraphView(model)
            done = False
            for first in list(model.graph.node):
                if first.op_type != "Mul" or done:
                    continue
                chain = self._chain(g, first)
                if chain is None:
                    continue
                x, nodes, a, b, conv = chain
                wb = _conv_weight(g, conv)
                if wb is None:
                    continue
                w, bias = wb
                group = int(attr(conv, "group", 1))
                cin = w.shape[1] * group
                av, bv = _per_channel(a, cin), _per_channel(b, cin)
                if av is None or bv is None:
                    continue
                # input channel of W[o, j]: (o // (O/group)) * (I/group) + j
                per_group_out = w.shape[0] // group
                idx = (np.arange(w.shape[0])[:, None] // per_group_out) * w.shape[1] + np.arange(
                    w.shape[1]
                )[None, :]
                shape = (w.shape[0], w.shape[1]) + (1,) * (w.ndim - 2)
                w2 = w * av[idx].reshape(shape)
                bias2 = bias + (w * bv[idx].reshape(shape)).reshape(w.shape[0], -1).sum(1)
                _set_conv_weight(g, conv, w2, bias2)
                conv.input[0] = x
                remove_nodes(model, nodes)
                count += 1
                done = True
            if not done:
                return count

    @staticmethod
    def _chain(g: GraphView, mul: onnx.NodeProto):
        x = next((i for i in mul.input if g.const(i) is None), None)
        if x is None:
            return None
        a = g.const(g.other_input(mul, x) or "")
        if a is None:
            return None
        add = g.sole_consumer(mul.output[0])
        if add is None or add.op_type != "Add":
            return None
        b = g.const(g.other_input(add, mul.output[0]) or "")
        conv = g.sole_consumer(add.output[0])
        if b is None or conv is None or conv.op_type != "Conv" or conv.input[0] != add.output[0]:
            return None
        pads = attr(conv, "pads", None)
        auto_pad = attr(conv, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID") or (pads and any(int(p) != 0 for p in pads)):
            return None
        return x, [mul, add], a, b, conv


@register_rewrite
class FuseLayerNorm(PatternFusion):
    """The nine-op LayerNorm export becomes ``LayerNormalization`` (opset 17).

    Pattern: ``m = ReduceMean(x, -1); d = x - m; v = ReduceMean(d**2, -1);
    y = d / Sqrt(v + eps) * gamma + beta``.
    """

    name = "fuse-layernorm"
    min_opset = 17

    def fuse(self, g: GraphView, node: onnx.NodeProto):
        m = self._match(g, node)
        if m is None:
            return None
        x, nodes, eps, gamma, beta, out = m
        fused = helper.make_node("LayerNormalization", [x, gamma, beta], [out],
                                 name=out + "_ln", axis=-1, epsilon=eps)
        return fused, nodes

    @staticmethod
    def _axes_last(g: GraphView, node: onnx.NodeProto) -> bool:
        axes = attr(node, "axes", None)
        if axes is None and len(node.input) > 1:
            v = g.const(node.input[1])
            axes = None if v is None else v.tolist()
        return axes is not None and list(axes) == [-1] and attr(node, "keepdims", 1) == 1

    def _match(self, g: GraphView, rm: onnx.NodeProto):
        if rm.op_type != "ReduceMean" or not self._axes_last(g, rm):
            return None
        x = rm.input[0]
        users = g.consumers.get(rm.output[0], [])
        if len(users) != 1 or users[0].op_type != "Sub":
            return None
        sub = users[0]
        if list(sub.input) != [x, rm.output[0]]:
            return None
        d_users = g.consumers.get(sub.output[0], [])
        pw = next((n for n in d_users if n.op_type == "Pow"), None)
        div = next((n for n in d_users if n.op_type == "Div"), None)
        if pw is None or div is None or len(d_users) != 2 or g.scalar(pw.input[1]) != 2.0:
            return None
        rm2 = g.sole_consumer(pw.output[0])
        if rm2 is None or rm2.op_type != "ReduceMean" or not self._axes_last(g, rm2):
            return None
        add = g.sole_consumer(rm2.output[0])
        eps = g.scalar(g.other_input(add, rm2.output[0]) or "") if add is not None else None
        if add is None or add.op_type != "Add" or eps is None:
            return None
        sq = g.sole_consumer(add.output[0])
        if sq is None or sq.op_type != "Sqrt" or list(div.input) != [sub.output[0], sq.output[0]]:
            return None
        mul = g.sole_consumer(div.output[0])
        if mul is None or mul.op_type != "Mul":
            return None
        gamma = g.other_input(mul, div.output[0])
        addb = g.sole_consumer(mul.output[0])
        if addb is None or addb.op_type != "Add" or gamma is None or g.const(gamma) is None:
            return None
        beta = g.other_input(addb, mul.output[0])
        if beta is None or g.const(beta) is None:
            return None
        if g.const(gamma).ndim != 1 or g.const(beta).ndim != 1:
            return None
        nodes = [rm, sub, pw, rm2, add, sq, div, mul, addb]
        return x, nodes, float(eps), gamma, beta, addb.output[0]


# -------------------------------------------------------------------------------------------
# Post-quantization rewrite.

#: Ops that onnxruntime's CPU QDQ transformer turns into an int8 kernel (or runs on int8
#: data directly) when their inputs come from DequantizeLinear and their output goes to
#: QuantizeLinear. Anything else runs in float, so a Q->DQ pair between two such float ops
#: only adds rounding noise and two memory passes. The runtime's data
#: (:attr:`xcompress.runtime.Runtime.int8_ops`), named here for the rewrite that reads it.
ORT_INT8_OPS: frozenset[str] = get_runtime("ort").int8_ops


@register_rewrite
class RemoveUselessQDQ(Rewrite):
    """Drop ``QuantizeLinear -> DequantizeLinear`` pairs that no int8 kernel can use.

    A pair is kept when the tensor's producer or one of its consumers is in
    :data:`ORT_INT8_OPS` *and* is itself quantized (it reads a DequantizeLinear output or
    writes a QuantizeLinear input); otherwise both ends run in float and the pair only costs
    time. Weight DequantizeLinear nodes (on initializers) are never touched.
    """

    name = "remove-useless-qdq"

    def rewrite(self, model: onnx.ModelProto) -> int:
        g = GraphView(model)

        def quantized(node: onnx.NodeProto | None) -> bool:
            if node is None or node.op_type not in ORT_INT8_OPS:
                return False
            ins = [g.producer.get(i) for i in node.input if i and i not in g.inits]
            outs = [c for o in node.output for c in g.consumers.get(o, [])]
            return any(p is not None and p.op_type == "DequantizeLinear" for p in ins) and any(
                c.op_type == "QuantizeLinear" for c in outs
            )

        dead, count = [], 0
        for q in list(model.graph.node):
            if q.op_type != "QuantizeLinear" or q.input[0] in g.inits:
                continue
            dqs = g.consumers.get(q.output[0], [])
            if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
                continue
            if q.output[0] in g.graph_outputs:
                continue
            src = q.input[0]
            if quantized(g.producer.get(src)):
                continue
            users = [u for d in dqs for u in g.consumers.get(d.output[0], [])]
            if any(quantized(u) for u in users):
                continue
            if any(d.output[0] in g.graph_outputs for d in dqs):
                continue
            for d in dqs:
                rename_input(model, d.output[0], src)
            dead += [q, *dqs]
            count += 1
        remove_nodes(model, dead)
        return count


def _toposort(model: onnx.ModelProto) -> None:
    """Re-order nodes topologically (fused nodes are appended at the end)."""
    g = model.graph
    avail = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                ordered.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or dangling input: keep the given order
            ordered += rest
            break
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def upgrade_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Convert to ``target`` default-domain opset (no-op when already there or above).

    Per-channel DequantizeLinear needs opset >= 13 and HardSwish >= 14; PP-OCRv4 ships
    opset 12. The caller checks the converted model's fp32 outputs against the original.
    """
    if opset_of(model) >= target:
        return model
    from onnx import version_converter

    out = version_converter.convert_version(model, target)
    # the converter keeps the ir_version of the input; newer opsets need a matching one
    out.ir_version = max(out.ir_version, 8)
    return out


__all__ = [
    "PRE_QUANT_REWRITES",
    "ORT_INT8_OPS",
    "Rewrite",
    "apply_rewrites",
    "default_rewrites",
    "get_rewrite",
    "register_rewrite",
    "rewrite_names",
    "set_attr",
    "upgrade_opset",
]
