"""QAT on the deployed QDQ graph: fake-quant numerics, the torch interpreter vs onnxruntime,
export round trip, training, the [-127, 127] weight rule and unsupported ops."""

from __future__ import annotations

import math
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from xcompress.errors import ModelError
from xcompress.quantize import qat
from xcompress.quantize.qat import QDQGraph, fake_quant, quantize, supported_ops
from xcompress.quantize.qdq import _expose, float_tensors, quantize_qdq
from xcompress.runtime.ort import ort_session

torch.set_num_threads(1)

#: op types of PP-OCRv4 det / rec / cls (ch_ppocr_mobile_v2.0) as shipped and after both
#: plans' rewrites (int8-all, int8-conv), listed from the graphs
PPOCR_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv",
    "ConvTranspose", "Div", "Flatten", "GlobalAveragePool", "HardSigmoid", "HardSwish",
    "Identity", "LayerNormalization", "MatMul", "MaxPool", "Mul", "Pow", "ReduceMean", "Relu",
    "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub",
    "Transpose", "QuantizeLinear", "DequantizeLinear",
)  # fmt: skip


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool = True):
    return ort_session(model, 1, optimize=optimize).run(None, feeds)


def _f32(a, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


# --- fake quantization -------------------------------------------------------------------------


@pytest.mark.parametrize("zp_dtype", [np.uint8, np.int8])
def test_quantize_rounds_half_to_even_and_saturates_like_onnx(zp_dtype):
    from onnx.reference import ReferenceEvaluator

    scale = np.float32(0.5)  # exact in binary: x / scale is exactly k + 0.5
    x = np.array([0.25, 0.75, 1.25, -0.25, -0.75, 1.75, 0.3, 1000.0, -1000.0], np.float32)
    zp = np.array(3, zp_dtype)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    graph = helper.make_graph(
        [node],
        "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(x)])],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(zp.dtype), [len(x)])],
        [_f32(scale, "s"), numpy_helper.from_array(zp, "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    lo, hi = np.iinfo(zp_dtype).min, np.iinfo(zp_dtype).max
    got = quantize(torch.from_numpy(x), torch.tensor(scale), float(zp), lo, hi)
    np.testing.assert_array_equal(got.numpy(), ref.astype(np.float32))
    np.testing.assert_array_equal(got.numpy(), _ort(model, {"x": x})[0].astype(np.float32))
    # x/s = 0.5, 1.5, 2.5, -0.5 round to even: 0, 2, 2, -0 (plus zero point 3)
    assert got[:4].tolist() == [3.0, 5.0, 5.0, 3.0]
    assert got[-2:].tolist() == [hi, lo]


def test_fake_quant_ste_gradients():
    s = torch.tensor(0.1, requires_grad=True)
    x = torch.tensor([0.04, 0.26, -0.13, 5.0, -5.0], requires_grad=True)
    y = fake_quant(x, s, 0.0, -10, 10)
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # pass-through inside the range only
    # LSQ: round(x/s) - x/s inside, qmax - z / qmin - z outside
    lsq = (0 - 0.4) + (3 - 2.6) + (-1 + 1.3) + 10 - 10
    assert s.grad.item() == pytest.approx(lsq, abs=1e-5)


def test_fake_quant_per_axis():
    w = torch.tensor([[1.0, -2.0], [0.3, 0.31]])
    s = torch.tensor([1.0, 0.1])
    y = fake_quant(w, s, torch.zeros(2), -127, 127, axis=0)
    np.testing.assert_allclose(y.detach().numpy(), [[1.0, -2.0], [0.3, 0.3]], rtol=1e-6)


# --- a tiny PP-OCR-like model ------------------------------------------------------------------


def _tiny_float(opset: int = 17, classes: int = 5) -> onnx.ModelProto:
    """Conv s2 -> depthwise Conv -> 1x1 Conv -> hard-swish as exported (Add/Clip/Mul/Div)
    -> ReduceMean over H -> Reshape/Transpose -> MatMul -> Softmax: a recognizer's shape."""
    rng = np.random.default_rng(0)
    c = 8
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w0", "b0"],
            ["c0"],
            name="conv0",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node(
            "Conv",
            ["c0", "wd", "bd"],
            ["c1"],
            name="dw",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            group=c,
        ),
        helper.make_node("Conv", ["c1", "wp", "bp"], ["c2"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "three"], ["a"], name="hs_add"),
        helper.make_node("Clip", ["a", "zero", "six"], ["cl"], name="hs_clip"),
        helper.make_node("Mul", ["c2", "cl"], ["m"], name="hs_mul"),
        helper.make_node("Div", ["m", "six"], ["h"], name="hs_div"),
        helper.make_node("ReduceMean", ["h"], ["r"], name="pool", axes=[2], keepdims=1),
        helper.make_node("Reshape", ["r", "shape"], ["rs"], name="reshape"),
        helper.make_node("Transpose", ["rs"], ["t"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "fc"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=2),
    ]
    inits = [
        _f32(rng.standard_normal((c, 3, 3, 3)) * 0.3, "w0"), _f32(rng.standard_normal(c) * .1, "b0"),  # noqa: E501
        _f32(rng.standard_normal((c, 1, 3, 3)) * 0.3, "wd"), _f32(rng.standard_normal(c) * .1, "bd"),  # noqa: E501
        _f32(rng.standard_normal((c, c, 1, 1)) * 0.3, "wp"), _f32(rng.standard_normal(c) * .1, "bp"),  # noqa: E501
        _f32(3.0, "three"), _f32(0.0, "zero"), _f32(6.0, "six"),
        numpy_helper.from_array(np.array([0, c, -1], np.int64), "shape"),
        _f32(rng.standard_normal((c, classes)), "fc"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, "w"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", "t", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _inputs(n: int = 3, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 3, 8, 16)).astype(np.float32) for _ in range(n)]


def _ranges(model: onnx.ModelProto, xs: list[np.ndarray], widen: float = 0.0) -> dict:
    names = float_tensors(model)
    sess = ort_session(_expose(model, names), 1)
    outs = [dict(zip(names, sess.run(names, {"x": x}), strict=True)) for x in xs]
    ranges = {}
    for n in names:
        lo, hi = min(float(o[n].min()) for o in outs), max(float(o[n].max()) for o in outs)
        ranges[n] = (lo - widen * (hi - lo), hi + widen * (hi - lo))
    return ranges


OP_TYPES = ["Conv", "MatMul", "Add", "Mul"]


@pytest.fixture(scope="module")
def tiny() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    fp32 = _tiny_float()
    return fp32, quantize_qdq(fp32, _ranges(fp32, _inputs()), op_types=OP_TYPES)


def test_float_graph_matches_onnxruntime(tiny):
    fp32, _ = tiny
    g = QDQGraph(fp32)
    assert len(list(g.parameters())) == 0
    for x in _inputs(2, seed=7):
        np.testing.assert_allclose(
            g(x)[0].detach().numpy(), _ort(fp32, {"x": x})[0], atol=1e-5, rtol=0
        )


def test_qdq_graph_matches_onnxruntime(tiny):
    _, q = tiny
    g = QDQGraph(q)
    assert (len(g.weights), len(g.biases)) == (5, 3)  # 3 conv + fc + the Add constant; 3 biases
    assert len(g.act_scales) == 9
    x = _inputs(1, seed=7)[0]
    for optimize in (True, False):  # fused int8 kernels, and every Q/DQ run as written
        p = g.parity(q, [x], optimize=optimize)
        assert p["outputs"] == 1 and p["max_abs_diff"] < 1e-3, p  # measured: 1.2e-7
    ours = g(x)[0].detach().numpy()
    np.testing.assert_array_equal(ours.argmax(-1), _ort(q, {"x": x})[0].argmax(-1))


def test_to_onnx_before_training_is_the_source(tiny):
    _, q = tiny
    out = QDQGraph(q).to_onnx()
    assert out.graph.SerializeToString() == q.graph.SerializeToString()


def _train(g: QDQGraph, fp32: onnx.ModelProto, xs: list[np.ndarray], steps: int, lr: float):
    targets = [torch.from_numpy(_ort(fp32, {"x": x})[0]) for x in xs]
    batch = [torch.from_numpy(x) for x in xs]

    def loss_now() -> float:
        with torch.no_grad():
            return sum(float(torch.mean((g(x)[0] - t) ** 2)) for x, t in zip(batch, targets, strict=True))  # noqa: E501

    before = loss_now()
    opt = torch.optim.Adam(g.parameters(), lr=lr)
    for i in range(steps):
        x, t = batch[i % len(batch)], targets[i % len(batch)]
        loss = torch.mean((g(x)[0] - t) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, loss_now()


def test_training_reduces_loss_and_exports_the_same_graph(tiny):
    fp32, q = tiny
    g = QDQGraph(q)
    xs = _inputs(3, seed=11)
    before, after = _train(g, fp32, xs, steps=30, lr=1e-3)
    assert after < 0.8 * before, (before, after)
    assert any(float(p.detach().abs().max()) > 0 for p in g.act_scales.values())  # moved
    out = g.to_onnx()
    assert [(n.op_type, n.name, list(n.input), list(n.output)) for n in out.graph.node] == [
        (n.op_type, n.name, list(n.input), list(n.output)) for n in q.graph.node
    ]
    assert [t.name for t in out.graph.initializer] == [t.name for t in q.graph.initializer]
    onnx.checker.check_model(out)
    p = QDQGraph(out).parity(out, [xs[0]])
    assert p["max_abs_diff"] < 1e-3, p
    assert g.parity(out, [xs[0]])["max_abs_diff"] < 1e-3  # the trained module is the export


def test_export_recomputes_biases_from_the_learned_input_scale(tiny):
    _, q = tiny
    g = QDQGraph(q)
    with torch.no_grad():
        g.act_scales[g._keys["x_scale"]].fill_(math.log(1.25))
    init = {t.name: numpy_helper.to_array(t) for t in g.to_onnx().graph.initializer}
    src = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    s_x = np.float32(src["x_scale"]) * np.float32(1.25)
    assert init["x_scale"] == pytest.approx(s_x, rel=1e-6)
    np.testing.assert_array_equal(init["b0_quantized_scale"], init["x_scale"] * init["w0_scale"])
    bias = src["b0_quantized"].astype(np.float32) * src["b0_quantized_scale"]
    np.testing.assert_array_equal(
        init["b0_quantized"], np.round(bias / init["b0_quantized_scale"]).astype(np.int32)
    )
    np.testing.assert_array_equal(init["w0_quantized"], src["w0_quantized"])  # weights untouched


def test_symmetric_weights_never_reach_minus_128(tiny):
    fp32, q = tiny
    g = QDQGraph(q)
    _train(g, fp32, _inputs(2, seed=3), steps=5, lr=0.5)
    with torch.no_grad():  # and one weight pushed far below the range
        g.weights[g._keys["w0_quantized"]].sub_(100.0)
    out = {t.name: numpy_helper.to_array(t) for t in g.to_onnx().graph.initializer}
    for name in ("w0_quantized", "wd_quantized", "wp_quantized", "fc_quantized"):
        assert out[name].dtype == np.int8 and out[name].min() >= -127, name
    assert out["w0_quantized"].min() == -127 and out["w0_quantized"].max() == -127


def test_gradients_equal_the_float_graphs_without_rounding(monkeypatch):
    """With round switched off and ranges wide enough that nothing saturates, fake quant is
    the identity: the interpreter's STE gradients must be the float graph's."""
    fp32 = _tiny_float()
    q = quantize_qdq(fp32, _ranges(fp32, _inputs(), widen=1.0), op_types=OP_TYPES)
    monkeypatch.setattr(qat, "round_ste", lambda x: x)
    gf, gq = QDQGraph(fp32), QDQGraph(q)
    for b in gf.buffers():
        if b.is_floating_point():
            b.requires_grad_(True)
    x = torch.from_numpy(_inputs(1, seed=5)[0])
    w = torch.randn(gf(x)[0].shape, generator=torch.Generator().manual_seed(0))
    (gf(x)[0] * w).sum().backward()
    (gq(x)[0] * w).sum().backward()
    for name in ("w0", "wd", "wp", "fc", "b0", "bd", "bp"):
        key = gq._keys[name + "_quantized"]
        p = gq.weights[key] if key in gq.weights else gq.biases[key]
        ref = gf._buffers[gf._keys[name]].grad
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), ref.flatten(), dim=0)
        assert cos > 0.99, (name, float(cos))  # measured: >= 0.995 (w0 sees the input Q)


# --- errors ----------------------------------------------------------------------------------


def _single(
    op: str,
    inputs: dict[str, np.ndarray],
    consts: dict[str, np.ndarray] | None = None,
    outputs: int = 1,
    opset: int = 17,
    domain: str = "",
    **attrs,
) -> onnx.ModelProto:
    consts = consts or {}
    names = [*inputs, *consts]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, name="n0", domain=domain, **attrs)
    vi = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in inputs.items()
    ]
    graph = helper.make_graph(
        [node],
        "one",
        vi,
        [onnx.ValueInfoProto(name=o) for o in outs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    imports = [helper.make_opsetid("", opset)] + (
        [helper.make_opsetid(domain, 1)] if domain else []
    )
    return helper.make_model(graph, opset_imports=imports)


def test_unsupported_op_is_a_one_line_model_error():
    m = _single("Foo", {"x": np.zeros((1, 2), np.float32)}, domain="example.custom")
    with pytest.raises(ModelError) as e:
        QDQGraph(m)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(
        "QAT cannot interpret op example.custom.Foo (node n0)"
    )
    bad = _single(
        "Conv",
        {"x": np.zeros((1, 1, 4, 4), np.float32)},
        {"w": np.ones((1, 1, 3, 3), np.float32)},
        auto_pad="SAME_UPPER",
    )
    with pytest.raises(ModelError, match=r"^QAT cannot interpret op Conv \(node n0\): auto_pad"):
        QDQGraph(bad)(np.zeros((1, 1, 4, 4), np.float32))


def test_every_ppocr_op_is_supported():
    assert set(PPOCR_OPS) <= set(supported_ops())


# --- ops against onnxruntime -------------------------------------------------------------------

_R = np.random.default_rng(42)


def _x(*shape: int) -> np.ndarray:
    return _R.standard_normal(shape).astype(np.float32)


def _i64(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


def _lstm_case(direction: str, layout: int = 0) -> tuple:
    d, h, i, t, b = (2 if direction == "bidirectional" else 1), 4, 3, 5, 2
    x = _x(b, t, i) if layout else _x(t, b, i)
    h0 = _x(b, d, h) if layout else _x(d, b, h)
    consts = {
        "W": _x(d, 4 * h, i) * 0.5,
        "R": _x(d, 4 * h, h) * 0.5,
        "B": _x(d, 8 * h) * 0.1,
        "L": np.full(b, t, np.int32),
        "H0": h0,
    }
    return ("LSTM", {"x": x}, consts, dict(hidden_size=h, direction=direction, layout=layout), 3)


# (op, graph inputs, initializers, attrs, outputs[, opset])
OP_CASES = {
    "conv_asym_pads_dilated": ("Conv", {"x": _x(1, 4, 9, 8)}, {"w": _x(6, 2, 3, 2), "b": _x(6)},
                               dict(pads=[1, 0, 2, 1], dilations=[2, 1], group=2, strides=[1, 2])),
    "conv1d": ("Conv", {"x": _x(2, 3, 10)}, {"w": _x(4, 3, 3)}, dict(pads=[1, 1])),
    "conv_transpose": ("ConvTranspose", {"x": _x(1, 4, 5, 6)}, {"w": _x(4, 2, 2, 2), "b": _x(2)},
                       dict(strides=[2, 2])),
    "conv_transpose_pads": ("ConvTranspose", {"x": _x(1, 2, 5, 5)}, {"w": _x(2, 3, 3, 3)},
                            dict(strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1])),
    "gemm": ("Gemm", {"a": _x(3, 4)}, {"b": _x(5, 4), "c": _x(5)},
             dict(transB=1, alpha=0.5, beta=2.0)),
    "matmul_batched": ("MatMul", {"a": _x(2, 3, 4)}, {"b": _x(4, 5)}, {}),
    "batchnorm": ("BatchNormalization", {"x": _x(2, 3, 4, 4)},
                  {"s": _x(3), "b": _x(3), "m": _x(3), "v": np.abs(_x(3)) + 0.1}, {}),
    "layernorm": ("LayerNormalization", {"x": _x(2, 5, 8)}, {"s": _x(8), "b": _x(8)},
                  dict(axis=-1, epsilon=1e-6)),
    "instancenorm": ("InstanceNormalization", {"x": _x(2, 3, 5)}, {"s": _x(3), "b": _x(3)}, {}),
    "hardsigmoid": ("HardSigmoid", {"x": _x(3, 7) * 4}, {}, dict(alpha=0.1666667, beta=0.5)),
    "hardswish": ("HardSwish", {"x": _x(3, 7) * 4}, {}, {}),
    "gelu": ("Gelu", {"x": _x(3, 7)}, {}, {}, 1, 20),
    "gelu_tanh": ("Gelu", {"x": _x(3, 7)}, {}, dict(approximate="tanh"), 1, 20),
    "erf": ("Erf", {"x": _x(3, 7)}, {}, {}),
    "tanh": ("Tanh", {"x": _x(3, 7)}, {}, {}),
    "sigmoid": ("Sigmoid", {"x": _x(3, 7)}, {}, {}),
    "relu": ("Relu", {"x": _x(3, 7)}, {}, {}),
    "leakyrelu": ("LeakyRelu", {"x": _x(3, 7)}, {}, dict(alpha=0.2)),
    "prelu": ("PRelu", {"x": _x(2, 3, 4)}, {"s": _x(3, 1)}, {}),
    "clip_inputs": ("Clip", {"x": _x(3, 7) * 5}, {"lo": np.float32(-1), "hi": np.float32(2)}, {}),
    "clip_attrs": ("Clip", {"x": _x(3, 7) * 5}, {}, dict(min=-1.0, max=2.0), 1, 6),
    "softmax_13": ("Softmax", {"x": _x(2, 3, 4)}, {}, dict(axis=1)),
    "softmax_11_coerced": ("Softmax", {"x": _x(2, 3, 4)}, {}, dict(axis=1), 1, 11),
    "div_int": ("Div", {"a": _i64(7, -7, 9)}, {"b": _i64(2, 2, -4)}, {}),
    "div": ("Div", {"a": _x(3, 4)}, {"b": np.abs(_x(4)) + 0.5}, {}),
    "sub_pow_sqrt": ("Pow", {"a": np.abs(_x(3, 4))}, {"b": np.float32(2.0)}, {}),
    "sqrt": ("Sqrt", {"x": np.abs(_x(3, 4))}, {}, {}),
    "log": ("Log", {"x": np.abs(_x(3, 4)) + 0.1}, {}, {}),
    "exp": ("Exp", {"x": _x(3, 4)}, {}, {}),
    "neg_abs": ("Abs", {"x": _x(3, 4)}, {}, {}),
    "neg": ("Neg", {"x": _x(3, 4)}, {}, {}),
    "floor": ("Floor", {"x": _x(3, 4) * 3}, {}, {}),
    "ceil": ("Ceil", {"x": _x(3, 4) * 3}, {}, {}),
    "reciprocal": ("Reciprocal", {"x": np.abs(_x(3, 4)) + 0.5}, {}, {}),
    "sub": ("Sub", {"a": _x(3, 4)}, {"b": _x(4)}, {}),
    "max_variadic": ("Max", {"a": _x(3, 4)}, {"b": _x(4), "c": _x(3, 1)}, {}),
    "mean_variadic": ("Mean", {"a": _x(3, 4)}, {"b": _x(4)}, {}),
    "reducemean_attr": ("ReduceMean", {"x": _x(2, 3, 4)}, {}, dict(axes=[-1], keepdims=1)),
    "reducemean_input": ("ReduceMean", {"x": _x(2, 3, 4)}, {"a": _i64(1)}, dict(keepdims=0),
                         1, 18),
    "reducesum_input": ("ReduceSum", {"x": _x(2, 3, 4)}, {"a": _i64(0, 2)}, {}),
    "reducemax_all": ("ReduceMax", {"x": _x(2, 3, 4)}, {}, dict(keepdims=0)),
    "globalavgpool": ("GlobalAveragePool", {"x": _x(2, 3, 5, 7)}, {}, {}),
    "avgpool_pads_exclude": ("AveragePool", {"x": _x(1, 2, 7, 6)}, {},
                             dict(kernel_shape=[3, 2], strides=[3, 2], pads=[1, 1, 1, 1])),
    "avgpool_asym_pads": ("AveragePool", {"x": _x(1, 2, 7, 6)}, {},
                          dict(kernel_shape=[3, 3], pads=[0, 1, 2, 0])),
    "avgpool_ceil": ("AveragePool", {"x": _x(1, 2, 7, 6)}, {},
                     dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    "maxpool": ("MaxPool", {"x": _x(1, 2, 7, 6)}, {},
                dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1])),
    "maxpool_asym_ceil": ("MaxPool", {"x": _x(1, 2, 7, 6)}, {},
                          dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])),
    "reshape_0_-1": ("Reshape", {"x": _x(2, 3, 4)}, {"s": _i64(0, -1, 2)}, {}),
    "flatten": ("Flatten", {"x": _x(2, 3, 4, 5)}, {}, dict(axis=2)),
    "transpose": ("Transpose", {"x": _x(2, 3, 4)}, {}, dict(perm=[2, 0, 1])),
    "transpose_default": ("Transpose", {"x": _x(2, 3, 4)}, {}, {}),
    "squeeze_input": ("Squeeze", {"x": _x(2, 1, 4, 1)}, {"a": _i64(-1)}, {}),
    "squeeze_attr": ("Squeeze", {"x": _x(2, 1, 4, 1)}, {}, dict(axes=[1]), 1, 11),
    "squeeze_all": ("Squeeze", {"x": _x(2, 1, 4, 1)}, {}, {}),
    "unsqueeze": ("Unsqueeze", {"x": _x(2, 3)}, {"a": _i64(-1, 0)}, {}),
    "unsqueeze_attr": ("Unsqueeze", {"x": _x(2, 3)}, {}, dict(axes=[1, 3]), 1, 11),
    "concat": ("Concat", {"a": _x(2, 3)}, {"b": _x(2, 2)}, dict(axis=-1)),
    "split_sizes": ("Split", {"x": _x(2, 7)}, {"s": _i64(3, 4)}, dict(axis=1), 2),
    "split_equal": ("Split", {"x": _x(6, 2)}, {}, {}, 3, 11),
    "split_num_outputs": ("Split", {"x": _x(2, 7)}, {}, dict(axis=1, num_outputs=3), 3, 18),
    "slice": ("Slice", {"x": _x(5, 6)}, {"s": _i64(1, -4), "e": _i64(2**62, 100),
                                         "a": _i64(0, 1), "t": _i64(2, 1)}, {}),
    "slice_negative_step": ("Slice", {"x": _x(5, 6)}, {"s": _i64(-1), "e": _i64(-2**62),
                                                       "a": _i64(1), "t": _i64(-2)}, {}),
    "gather_scalar": ("Gather", {"x": _x(4, 5)}, {"i": np.array(-1, np.int64)}, dict(axis=1)),
    "gather_2d": ("Gather", {"x": _x(4, 5)}, {"i": _i64(0, 3, 2, 0).reshape(2, 2)}, {}),
    "shape_start_end": ("Shape", {"x": _x(2, 3, 4, 5)}, {}, dict(start=1, end=-1), 1, 15),
    "cast_trunc": ("Cast", {"x": np.array([-1.7, 2.5, 0.4], np.float32)}, {},
                   dict(to=TensorProto.INT64)),
    "cast_int32_float": ("Cast", {"x": np.array([3, -4], np.int32)}, {}, dict(to=1)),
    "constantofshape": ("ConstantOfShape", {"s": _i64(2, 3)}, {},
                        dict(value=numpy_helper.from_array(np.array([1.5], np.float32)))),
    "expand": ("Expand", {"x": _x(3, 1)}, {"s": _i64(2, 1, 4)}, {}),
    "tile": ("Tile", {"x": _x(2, 3)}, {"r": _i64(2, 1)}, {}),
    "where": ("Where", {"c": _x(3, 4) > 0}, {"a": _x(3, 4), "b": _x(4)}, {}),
    "equal": ("Equal", {"a": _i64(1, 2, 3)}, {"b": _i64(1, 0, 3)}, {}),
    "greater": ("Greater", {"a": _x(3, 4)}, {"b": _x(4)}, {}),
    "less": ("Less", {"a": _x(3, 4)}, {"b": _x(4)}, {}),
    "not": ("Not", {"a": _x(3, 4) > 0}, {}, {}),
    "and": ("And", {"a": _x(3, 4) > 0}, {"b": _x(3, 4) > 0}, {}),
    "range": ("Range", {"a": np.array(1, np.int64)}, {"l": np.array(10, np.int64),
                                                      "d": np.array(3, np.int64)}, {}),
    "identity": ("Identity", {"x": _x(2, 3)}, {}, {}),
    "pad_constant": ("Pad", {"x": _x(1, 2, 3, 4)}, {"p": _i64(0, 0, 1, 2, 0, 0, 2, 0),
                                                   "v": np.float32(0.5)}, {}),
    "pad_reflect": ("Pad", {"x": _x(1, 2, 4, 5)}, {"p": _i64(0, 0, 1, 2, 0, 0, 2, 1)},
                    dict(mode="reflect")),
    "pad_edge": ("Pad", {"x": _x(1, 2, 4, 5)}, {"p": _i64(0, 0, 1, 2, 0, 0, 2, 1)},
                 dict(mode="edge")),
    "resize_nearest_det": ("Resize", {"x": _x(1, 2, 5, 7)},
                           {"roi": np.zeros(0, np.float32), "s": np.float32([1, 1, 2, 2])},
                           dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                nearest_mode="floor")),
    "resize_nearest_default": ("Resize", {"x": _x(1, 2, 5, 7)},
                               {"roi": np.zeros(0, np.float32),
                                "s": np.float32([1, 1, 1.5, 0.6])}, {}),
    "resize_linear_half_pixel": ("Resize", {"x": _x(1, 2, 5, 7)},
                                 {"roi": np.zeros(0, np.float32), "s": np.float32([1, 1, 2, 3])},
                                 dict(mode="linear")),
    "resize_linear_align_sizes": ("Resize", {"x": _x(1, 2, 5, 7)},
                                  {"roi": np.zeros(0, np.float32), "s": np.zeros(0, np.float32),
                                   "z": _i64(1, 2, 9, 4)},
                                  dict(mode="linear", coordinate_transformation_mode="align_corners")),  # noqa: E501
    "resize_linear_pytorch_down": ("Resize", {"x": _x(1, 2, 8, 6)},
                                   {"roi": np.zeros(0, np.float32),
                                    "s": np.float32([1, 1, 0.5, 0.5])},
                                   dict(mode="linear",
                                        coordinate_transformation_mode="pytorch_half_pixel")),
    "lstm_forward": _lstm_case("forward"),
    "lstm_reverse": _lstm_case("reverse"),
    "lstm_bidirectional": _lstm_case("bidirectional"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(OP_CASES))
def test_op_matches_onnxruntime(case):
    op, inputs, consts, attrs, *rest = OP_CASES[case]
    outputs = rest[0] if rest else 1
    opset = rest[1] if len(rest) > 1 else 17
    m = _single(op, inputs, consts, outputs, opset, **attrs)
    ref = _ort(m, inputs, optimize=False)
    got = QDQGraph(m)(*inputs.values())
    assert len(got) == len(ref)
    for r, t in zip(ref, got, strict=True):
        t = t.detach().numpy()
        assert t.shape == r.shape, (t.shape, r.shape)
        if np.issubdtype(r.dtype, np.floating):
            np.testing.assert_allclose(t, r, atol=1e-5, rtol=1e-5)
        else:
            np.testing.assert_array_equal(t, r)


def test_lstm_batch_first_equals_sequence_first():
    """onnxruntime has no layout=1 LSTM: check it against the interpreter's layout 0."""
    op, inputs, consts, attrs, outputs = _lstm_case("bidirectional")
    y0 = QDQGraph(_single(op, inputs, consts, outputs, **attrs))(inputs["x"])
    bf = dict(consts, H0=consts["H0"].transpose(1, 0, 2))
    m1 = _single(op, {"x": inputs["x"].transpose(1, 0, 2)}, bf, outputs,
                 **dict(attrs, layout=1))
    y1 = QDQGraph(m1)(inputs["x"].transpose(1, 0, 2))
    torch.testing.assert_close(y1[0], y0[0].permute(2, 0, 1, 3))
    torch.testing.assert_close(y1[1], y0[1].transpose(0, 1))
    torch.testing.assert_close(y1[2], y0[2].transpose(0, 1))


def test_constant_nodes_are_folded():
    c = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(_x(3), "v"))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    graph = helper.make_graph(
        [c, add],
        "g",
        [helper.make_tensor_value_info("x", 1, [2, 3])],
        [helper.make_tensor_value_info("y", 1, [2, 3])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = _x(2, 3)
    np.testing.assert_allclose(QDQGraph(m)({"x": x})[0].numpy(), _ort(m, {"x": x})[0], atol=1e-6)


# --- a zoo model -------------------------------------------------------------------------------

_ZOO = {
    "ppocr-v4-rec": (1, 3, 48, 320),
    "ppocr-v4-det": (1, 3, 160, 224),
    "ppocr-v4-cls": (1, 3, 48, 192),
}


@pytest.mark.parametrize("name", list(_ZOO))
def test_zoo_float_graph_matches_onnxruntime(name):
    from xcompress.zoo.local import local_dir

    path = local_dir(name) / "model.onnx"
    if not path.is_file():
        pytest.skip(f"{name} is not in the local cache")
    model = onnx.load(path)
    x = np.random.default_rng(0).standard_normal(_ZOO[name]).astype(np.float32)
    start = time.perf_counter()
    p = QDQGraph(model).parity(model, [x])
    # measured (1 thread): rec 3.0e-6 in 0.2 s; det 1.0e-6, cls 6e-8
    assert p["max_abs_diff"] < 1e-4, p
    assert time.perf_counter() - start < 5


def test_selection_exports_the_best_scored_state_and_keeps_ptq_when_nothing_beats_it(
    tmp_path, monkeypatch
):
    from xcompress.quantize.qat_run import _Selection

    graph = torch.nn.Linear(2, 2)
    scores = iter([0.020, 0.015, 0.030])  # PTQ (step 0), step 100 better, step 200 worse
    monkeypatch.setattr(_Selection, "score", lambda self: next(scores))
    sel = _Selection(graph, None, {"v": []}, 10, tmp_path / "best.pt")
    sel.offer(0)
    with torch.no_grad():
        graph.weight.fill_(1.0)
    sel.offer(100)
    with torch.no_grad():
        graph.weight.fill_(2.0)
    sel.offer(200)
    assert sel.offer(200) == 0.030  # the same step is not scored twice
    assert sel.restore() == 100 and torch.all(graph.weight == 1.0)
    # a resumed run reads the history and the best state back
    again = _Selection(torch.nn.Linear(2, 2), None, {"v": []}, 10, tmp_path / "best.pt")
    assert again.history == [(0, 0.020), (100, 0.015), (200, 0.030)]
    assert again.restore() == 100 and torch.all(again.graph.weight == 1.0)

    # nothing beats PTQ: step 0's state is what gets exported
    scores = iter([0.010, 0.012])
    monkeypatch.setattr(_Selection, "score", lambda self: next(scores))
    graph = torch.nn.Linear(2, 2)
    start = graph.weight.detach().clone()
    sel = _Selection(graph, None, {"v": []}, 10, tmp_path / "best2.pt")
    sel.offer(0)
    with torch.no_grad():
        graph.weight.add_(1.0)
    sel.offer(50)
    assert sel.restore() == 0 and torch.equal(graph.weight, start)
