"""Empirical bias correction (xcompress.quantize.bias) on small QDQ graphs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(3)


def _dw_net():
    """conv (bias) -> relu -> depthwise 3x3 (bias) -> relu -> 1x1 conv (bias): the shape of
    PP-LCNet's blocks, where rounding a 9-tap depthwise kernel shifts channel means."""
    import onnx

    c = 8
    inits = {
        "w1": RNG.standard_normal((c, 3, 3, 3)) * 0.4, "b1": RNG.standard_normal(c) * 0.1,
        "w2": RNG.standard_normal((c, 1, 3, 3)) * 0.5, "b2": RNG.standard_normal(c) * 0.1,
        "w3": RNG.standard_normal((4, c, 1, 1)) * 0.3, "b3": RNG.standard_normal(4) * 0.1,
    }
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1"),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, group=c,
                          name="dw"),
         helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
         helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="pw")],
        "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, "w"])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _quantized(m, inputs, pct=90.0):
    from xcompress.quantize.calibrate import compute_ranges
    from xcompress.quantize.qdq import gather_stats, quantize_qdq

    # clipped ranges: a one-sided loss of mass, i.e. a mean shift to correct
    ranges = compute_ranges(gather_stats(m, inputs), "percentile", percentile=pct)
    return quantize_qdq(m, ranges, ("Conv", "Relu"))


def _shift(q, m, inputs, names):
    """Per corrected layer (q's output name): mean |channel mean int8 - fp32|, the fp32 side
    found by node name (onnxruntime renames a Conv's output when it drops the Relu after it,
    and a graph output's producer)."""
    from xcompress.quantize.bias import _channel_means, bias_targets

    fp_out = {n.name: n.output[0] for n in m.graph.node}
    fp = [fp_out[t.node] for t in bias_targets(q) if t.output in names]
    a, b = _channel_means(q, names, inputs, 1), _channel_means(m, fp, inputs, 1)
    return {n: float(np.abs(a[n] - b[f]).mean()) for n, f in zip(names, fp, strict=True)}


def test_correction_removes_the_mean_shift_and_changes_only_int32_biases():
    from xcompress.quantize.bias import bias_targets, correct_biases

    m = _dw_net()
    inputs = [RNG.standard_normal((1, 3, 8, w)).astype(np.float32) for w in (16, 24, 9, 31)]
    q = _quantized(m, inputs)
    targets = bias_targets(q)
    assert [t.node for t in targets] == ["conv1", "dw", "pw"]
    # the quantizer dropped relu1 (its Q clips at 0): conv1 now writes relu1's output name,
    # and its fp32 counterpart is c1, the tensor before the activation
    assert targets[0].output == "r1"
    names = [t.output for t in targets]
    before = _shift(q, m, inputs, names)
    bc = correct_biases(q, m, inputs, threads=1)
    fixed = bc.apply(q)
    after = _shift(fixed, m, inputs, names)
    # each layer's mean output now matches float up to one bias step (s_x * s_w)
    assert all(after[n] < 0.5 * before[n] for n in names)
    # the graph is the same graph: only the int32 bias initializers changed
    assert [n.SerializeToString() for n in fixed.graph.node] == \
        [n.SerializeToString() for n in q.graph.node]
    old = {t.name: t for t in q.graph.initializer}
    changed = [t.name for t in fixed.graph.initializer
               if t.SerializeToString() != old[t.name].SerializeToString()]
    assert changed and set(changed) <= set(bc.biases)
    assert all(old[n].data_type == TensorProto.INT32 for n in changed)
    assert bc.samples == len(inputs) and set(bc.mean_abs_shift) == {"conv1", "dw", "pw"}


def test_correction_holds_on_inputs_it_never_saw():
    """Each layer is measured after its producers were corrected, so the last layer's
    correction undoes its own shift, which inputs outside the calibration set share."""
    from xcompress.quantize.bias import bias_targets, correct_biases

    m = _dw_net()
    calib = [RNG.standard_normal((1, 3, 8, 20)).astype(np.float32) for _ in range(6)]
    unseen = [RNG.standard_normal((1, 3, 8, 20)).astype(np.float32) for _ in range(6)]
    q = _quantized(m, calib)
    names = [t.output for t in bias_targets(q)]
    fixed = correct_biases(q, m, calib, threads=1).apply(q)
    pw = names[-1]
    assert _shift(fixed, m, unseen, names)[pw] < _shift(q, m, unseen, names)[pw]


def test_a_graph_without_int32_biases_is_left_alone():
    import onnx

    from xcompress.quantize.bias import correct_biases

    w = RNG.standard_normal((4, 3, 1, 1)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="nobias")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    inputs = [RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)]
    q = _quantized(m, inputs)
    bc = correct_biases(q, m, inputs, threads=1)
    assert bc.biases == {}
    assert bc.apply(q).SerializeToString() == q.SerializeToString()
