"""Float fallback: the greedy search on synthetic signals, and keep_float on a tiny QDQ model."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from xcompress.quantize.fallback import choose_float_layers

RNG = np.random.default_rng(0)


def test_sensitive_layer_is_kept_float_first():
    # "conv3" alone breaks accuracy; the signal ranks it first, one float layer is enough
    sens = {f"conv{i}": 0.01 * i for i in range(6)}
    sens["conv3"] = 5.0
    checked = []

    def check(float_layers):
        checked.append(list(float_layers))
        return 0.001 if "conv3" in float_layers else 0.03

    res = choose_float_layers(sens, check, max_drop=0.005, max_float=3)
    assert res.met and res.float_layers == ["conv3"]
    assert checked == [[], ["conv3"]]
    assert res.drop == pytest.approx(0.001)


def test_layers_are_added_until_the_budget_holds():
    sens = {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.0}
    # each float layer recovers part of the drop: a 0.02, b 0.02, c 0.005
    gain = {"a": 0.02, "b": 0.02, "c": 0.005, "d": 0.0}

    def check(fl):
        return 0.05 - sum(gain[x] for x in fl)

    res = choose_float_layers(sens, check, max_drop=0.0051, max_float=4)
    assert res.met and res.float_layers == ["a", "b", "c"]
    assert [len(s.float_layers) for s in res.steps] == [0, 1, 2, 3]


def test_no_fallback_when_all_int8_meets_the_budget():
    res = choose_float_layers({"a": 1.0}, lambda fl: 0.0, max_drop=0.005, max_float=1)
    assert res.met and res.float_layers == [] and len(res.steps) == 1


def test_unmeetable_budget_reports_the_best_step():
    drops = {0: 0.05, 1: 0.02, 2: 0.03}

    def check(fl):
        return drops[len(fl)]

    res = choose_float_layers({"a": 2.0, "b": 1.0, "c": 0.5}, check, 0.005, max_float=2)
    assert not res.met and res.float_layers == []
    assert res.best.drop == pytest.approx(0.02) and res.best.float_layers == ("a",)


def _tiny_two_conv():
    import onnx

    w1 = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = RNG.standard_normal((4, 8, 1, 1)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, "w"])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_keep_float_restores_float_numerics():
    pytest.importorskip("onnxruntime")
    from xcompress.quantize.calibrate import compute_ranges
    from xcompress.quantize.qdq import gather_stats, keep_float, layer_groups, quantize_qdq
    from xcompress.runtime.ort import OrtRunner

    m = _tiny_two_conv()
    inputs = [RNG.standard_normal((1, 3, 8, w)).astype(np.float32) for w in (12, 20, 7)]
    ops = ("Conv", "Relu")
    q = quantize_qdq(m, compute_ranges(gather_stats(m, inputs), "minmax"), ops)
    groups = layer_groups(m, ops)
    assert groups == {"conv1": ["conv1", "relu1"], "conv2": ["conv2"]}
    x = inputs[1]
    ref = OrtRunner(m, threads=1).run(x)
    err_q = np.abs(OrtRunner(q, threads=1).run(x) - ref).max()
    # nothing quantized, float weights back: the float model's outputs exactly
    allf = keep_float(q, m, [], float_weights=True)
    assert np.abs(OrtRunner(allf, threads=1).run(x) - ref).max() < 1e-5
    assert "QuantizeLinear" not in {n.op_type for n in allf.graph.node}
    # only conv2 int8: closer to float than all-int8, but not equal
    half = keep_float(q, m, groups["conv2"], float_weights=True)
    err_half = np.abs(OrtRunner(half, threads=1).run(x) - ref).max()
    assert 0 < err_half <= err_q
    # default: float layers keep their int8 weights (file stays small)
    small = keep_float(q, m, [])
    assert any(t.name.endswith("_quantized") for t in small.graph.initializer)


def test_a_layer_that_makes_it_worse_is_dropped_again():
    # b ranks second but floating it hurts (interactions, noise); c then meets the budget
    gain = {"a": 0.02, "b": -0.01, "c": 0.026}

    def check(fl):
        return 0.05 - sum(gain[x] for x in fl)

    res = choose_float_layers({"a": 3.0, "b": 2.0, "c": 1.0}, check, 0.005, max_float=3)
    assert res.met and res.float_layers == ["a", "c"]
    assert [(s.float_layers, s.kept) for s in res.steps] == [
        ((), True), (("a",), True), (("a", "b"), False), (("a", "c"), True)]


def test_max_checks_bounds_the_work():
    calls = []

    def check(fl):
        calls.append(fl)
        return 0.05

    res = choose_float_layers({f"l{i}": -i for i in range(20)}, check, 0.005, max_float=20,
                              max_checks=4)
    assert not res.met and len(calls) == 5  # all-int8 + 4 candidates
