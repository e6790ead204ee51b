"""Saturation bounds: ranges narrowed to what the next ops do not saturate, outputs unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from xcompress.quantize.qdq import quantize_qdq, saturation_bounds, tighten_ranges


def _conv_hardswish() -> onnx.ModelProto:
    """Conv -> decomposed hard-swish (x * Clip(x + 3, 0, 6) / 6) -> Conv -> HardSigmoid."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.normal(size=(8, 3, 3, 3)) * 2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.normal(size=(4, 8, 1, 1)) * 0.5).astype(np.float32), "w2")
    consts = [numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("three", 3.0), ("zero", 0.0), ("six", 6.0), ("sixth", 1 / 6))]
    nodes = [
        helper.make_node("Conv", ["X", "w1"], ["x"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["x", "three"], ["a3"], name="add3"),
        helper.make_node("Clip", ["a3", "zero", "six"], ["c6"], name="clip"),
        helper.make_node("Mul", ["x", "c6"], ["m"], name="mul"),
        helper.make_node("Mul", ["m", "sixth"], ["h"], name="div6"),
        helper.make_node("Conv", ["h", "w2"], ["p"], name="conv2"),
        helper.make_node("HardSigmoid", ["p"], ["Y"], name="hsig", alpha=0.2, beta=0.5),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                     [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                          [w1, w2, *consts])  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_bounds_of_a_decomposed_hardswish_and_a_hardsigmoid():
    b = saturation_bounds(_conv_hardswish())
    assert b["x"] == (-3.0, np.inf)  # Add's [-3, 3] and Mul's [-3, inf)
    assert b["a3"] == (0.0, 6.0)
    assert b["p"] == pytest.approx((-2.5, 2.5))
    assert "h" not in b and "m" not in b and "Y" not in b


def test_tighten_keeps_zero_inside_and_leaves_other_tensors():
    got = tighten_ranges({"x": (-20.0, 9.0), "a3": (-17.0, 12.0), "q": (-1.0, 1.0),
                          "r": (1.0, 4.0)}, {"x": (-3.0, np.inf), "a3": (0.0, 6.0),
                                             "r": (2.0, 3.0)})  # fmt: skip
    assert got == {"x": (-3.0, 9.0), "a3": (0.0, 6.0), "q": (-1.0, 1.0), "r": (0.0, 3.0)}


def test_tightened_ranges_quantize_more_exactly():
    """Same float outputs when clamped; the int8 model with the narrowed ranges is closer."""
    import onnxruntime as ort

    model = _conv_hardswish()
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    names = ["X", "x", "a3", "c6", "m", "h", "p", "Y"]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in names[1:-1]])  # fmt: skip
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    vals = dict(zip(["Y", *names[1:-1]], sess.run(None, {"X": x}), strict=True))
    vals["X"] = x
    assert vals["x"].min() < -6  # the calibrated range really reaches far below -3
    ranges = {n: (float(min(vals[n].min(), 0)), float(max(vals[n].max(), 0))) for n in names}
    ops = ["Conv", "Add", "Clip", "Mul", "HardSigmoid"]

    def err(r):
        q = quantize_qdq(model, r, ops, per_channel=True)
        s = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
        return float(np.abs(s.run(None, {"X": x})[0] - vals["Y"]).mean())

    tight = tighten_ranges(ranges, saturation_bounds(model))
    assert tight["x"][0] == -3.0
    assert err(tight) < err(ranges)


def test_plan_quantizer_writes_the_tightened_scale():
    from xcompress.quantize.stages import PlanQuantizer

    model = _conv_hardswish()
    ranges = {"X": (-3.0, 3.0), "x": (-20.0, 9.0), "a3": (-17.0, 12.0), "c6": (0.0, 6.0),
              "m": (-1.0, 40.0), "h": (-1.0, 7.0), "p": (-5.0, 5.0), "Y": (0.0, 1.0)}
    ops = ("Conv", "Add", "Clip", "Mul", "HardSigmoid")

    def x_scale(bounds):
        q = PlanQuantizer(model, ops, {}, True, False, bounds).qdq(ranges)
        inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
        node = next(n for n in q.graph.node if n.op_type == "QuantizeLinear"
                    and n.input[0] == "x")  # fmt: skip
        return float(inits[node.input[1]])

    assert x_scale({}) == pytest.approx(29.0 / 255)
    assert x_scale(saturation_bounds(model)) == pytest.approx(12.0 / 255)
