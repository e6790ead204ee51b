"""Every graph rewrite on a tiny model: it fires, and outputs stay equal within 1e-5."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from xcompress.quantize.rewrites import (
    PRE_QUANT_REWRITES,
    get_rewrite,
    rewrite_names,
    upgrade_opset,
)

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(0)


def _init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(nodes, inits, in_shape=(1, 4, 6, 10), out_name="y", opset=17) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", in_shape[1], "h", "w"])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["n", "c", "h", "w"])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.5


def _hardswish_nodes(x: str, y: str, p: str):
    return [
        helper.make_node("Add", [x, f"{p}three"], [f"{p}a"]),
        helper.make_node("Clip", [f"{p}a", f"{p}zero", f"{p}six"], [f"{p}c"]),
        helper.make_node("Mul", [x, f"{p}c"], [f"{p}m"]),
        helper.make_node("Div", [f"{p}m", f"{p}six"], [y]),
    ], [_init(f"{p}three", 3.0), _init(f"{p}zero", 0.0), _init(f"{p}six", 6.0)]


def case_constants():
    nodes = [helper.make_node("Constant", [], ["k"], value=_init("kv", [2.0])),
             helper.make_node("Mul", ["x", "k"], ["y"])]
    return _model(nodes, [])


def case_batchnorm():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mu", "var"], ["y"])]
    inits = [_init("w", _w(5, 4, 3, 3)), _init("s", RNG.uniform(0.5, 2, 5)),
             _init("b", _w(5)), _init("mu", _w(5)), _init("var", RNG.uniform(0.5, 2, 5))]
    return _model(nodes, inits)


def case_conv_affine():
    nodes = [helper.make_node("Conv", ["x", "w", "cb"], ["c"]),
             helper.make_node("Mul", ["sc", "c"], ["m"]),  # constant first, as Paddle writes it
             helper.make_node("Add", ["m", "bi"], ["y"])]
    inits = [_init("w", _w(5, 4, 1, 1)), _init("cb", _w(5)), _init("sc", [1.7]),
             _init("bi", _w(1, 5, 1, 1))]
    return _model(nodes, inits)


def case_hardswish():
    nodes, inits = _hardswish_nodes("x", "y", "")
    return _model(nodes, inits)


def case_hardsigmoid():
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Div", ["c", "six"], ["y"])]
    return _model(nodes, [_init("three", 3.0), _init("zero", 0.0), _init("six", 6.0)])


def case_scalar_chains():
    nodes = [helper.make_node("Div", ["x", "k6"], ["d"]),
             helper.make_node("Mul", ["d", "k2"], ["m"]),
             helper.make_node("Mul", ["m", "one"], ["y"])]
    return _model(nodes, [_init("k6", 6.0), _init("k2", [2.5]), _init("one", [1.0])])


def case_affine_next_conv():
    nodes = [helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["t"]),
             helper.make_node("Conv", ["t", "w", "cb"], ["y"], group=2)]
    inits = [_init("a", RNG.uniform(0.5, 2, (1, 4, 1, 1))), _init("b", _w(1, 4, 1, 1)),
             _init("w", _w(6, 2, 1, 1)), _init("cb", _w(6))]
    return _model(nodes, inits)


def case_layernorm():
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
        helper.make_node("Sub", ["x", "mu"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[-1]),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["nrm"]),
        helper.make_node("Mul", ["nrm", "g"], ["gm"]),
        helper.make_node("Add", ["gm", "b"], ["y"]),
    ]
    inits = [_init("two", 2.0), _init("eps", 1e-5), _init("g", _w(10)), _init("b", _w(10))]
    return _model(nodes, inits)


def case_gelu():
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    inits = [_init("sqrt2", np.sqrt(2.0)), _init("one", 1.0), _init("half", 0.5)]
    return _model(nodes, inits, opset=20)


def case_identity():
    nodes = [helper.make_node("Mul", ["x", "k"], ["m"]),
             helper.make_node("Identity", ["m"], ["i"]),
             helper.make_node("Add", ["i", "k"], ["y"])]
    return _model(nodes, [_init("k", [2.0])])


def case_unfuse_hardswish():
    return _model([helper.make_node("HardSwish", ["x"], ["y"])], [], opset=17)


CASES = {
    "constants-to-initializers": (case_constants, "Constant"),
    "fold-batchnorm": (case_batchnorm, "BatchNormalization"),
    "fold-conv-affine": (case_conv_affine, "Mul"),
    "fuse-hardswish": (case_hardswish, "Clip"),
    "fuse-hardsigmoid": (case_hardsigmoid, "Clip"),
    "fold-scalar-chains": (case_scalar_chains, "Div"),
    "fold-affine-into-next-conv": (case_affine_next_conv, "Add"),
    "fuse-layernorm": (case_layernorm, "ReduceMean"),
    "fuse-gelu": (case_gelu, "Erf"),
    "remove-identity": (case_identity, "Identity"),
    "unfuse-hardswish": (case_unfuse_hardswish, "HardSwish"),
}


def test_every_pre_quant_rewrite_has_a_case():
    assert set(PRE_QUANT_REWRITES) <= set(CASES)
    assert set(CASES) | {"remove-useless-qdq"} == set(rewrite_names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_rewrite_keeps_outputs(name):
    make, gone_op = CASES[name]
    model = make()
    x = RNG.standard_normal((2, 4, 6, 10)).astype(np.float32) * 4
    rw = get_rewrite(name)
    out = rw.apply(model)
    onnx.checker.check_model(out)
    assert rw.count >= 1
    assert gone_op not in {n.op_type for n in out.graph.node}
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=1e-5, atol=1e-5)
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]


def test_fold_affine_leaves_padded_conv_alone():
    # zero padding would be mixed with the folded bias: not an exact fold
    model = case_affine_next_conv()
    for n in model.graph.node:
        if n.op_type == "Conv":
            n.attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
    rw = get_rewrite("fold-affine-into-next-conv")
    out = rw.apply(model)
    assert rw.count == 0
    assert "Mul" in {n.op_type for n in out.graph.node}


def test_gelu_needs_opset_20_and_the_exact_constants():
    m17 = case_gelu()
    m17.opset_import[0].version = 17
    assert "Erf" in {n.op_type for n in get_rewrite("fuse-gelu").apply(m17).graph.node}
    m = case_gelu()
    for t in m.graph.initializer:  # 0.7 instead of 0.5: not GELU, must stay as it is
        if t.name == "half":
            t.CopyFrom(_init("half", 0.7))
    assert "Erf" in {n.op_type for n in get_rewrite("fuse-gelu").apply(m).graph.node}


def test_hardswish_needs_opset_14():
    nodes, inits = _hardswish_nodes("x", "y", "")
    m = _model(nodes, inits, opset=13)
    out = get_rewrite("fuse-hardswish").apply(m)
    assert "HardSwish" not in {n.op_type for n in out.graph.node}


def test_opset_upgrade_keeps_outputs():
    nodes, inits = _hardswish_nodes("x", "h", "")
    nodes += [helper.make_node("Conv", ["h", "w"], ["y"], pads=[1, 1, 1, 1])]
    m = _model(nodes, [*inits, _init("w", _w(3, 4, 3, 3))], opset=12)
    up = upgrade_opset(m, 17)
    assert up.opset_import[0].version == 17
    x = RNG.standard_normal((1, 4, 6, 13)).astype(np.float32)
    np.testing.assert_allclose(_run(up, x), _run(m, x), rtol=1e-6, atol=1e-6)


def test_remove_useless_qdq_drops_pair_between_float_ops():
    # Relu -> Q -> DQ -> Sigmoid: neither end is an int8 kernel here, so the pair goes.
    nodes = [
        helper.make_node("Abs", ["x"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["rd"]),
        helper.make_node("Neg", ["rd"], ["y"]),
    ]
    inits = [_init("s", 0.05), numpy_helper.from_array(np.array(0, np.uint8), "z")]
    m = _model(nodes, inits)
    rw = get_rewrite("remove-useless-qdq")
    out = rw.apply(m)
    assert rw.count == 1
    assert {n.op_type for n in out.graph.node} == {"Abs", "Neg"}
    x = RNG.standard_normal((1, 4, 6, 10)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), -np.abs(x), atol=1e-6)
    # the quantized model differed by the rounding the pair added
    assert np.abs(_run(m, x) - _run(out, x)).max() > 1e-4


def test_compact_names_keeps_the_computation_and_the_interface(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from tiny_models import tiny_rec

    from xcompress.quantize.compact import compact_names

    (tmp_path / "m").mkdir()
    src = tiny_rec(tmp_path / "m" / "model.onnx").path
    model = onnx.load(src)
    for t in model.graph.initializer:  # names as long as a QDQ rewrite chain makes them
        old = t.name
        t.name = f"{old}_folded_folded_quantized_scale_zero_point"
        for n in model.graph.node:
            n.input[:] = [t.name if x == old else x for x in n.input]
    small = compact_names(model)
    assert len(small.SerializeToString()) < len(model.SerializeToString())
    assert [i.name for i in small.graph.input] == [i.name for i in model.graph.input]
    assert [o.name for o in small.graph.output] == [o.name for o in model.graph.output]
    onnx.checker.check_model(small)
    x = np.random.default_rng(0).random((1, 3, 48, 64), np.float32)
    a, b = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            for m in (model, small))
    name = model.graph.input[0].name
    np.testing.assert_array_equal(a.run(None, {name: x})[0], b.run(None, {name: x})[0])
