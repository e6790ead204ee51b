"""int4 weight storage of an int8 QDQ graph (xcompress.quantize.int4): GPTQ numerics, the ONNX
graph onnxruntime runs with its int8 kernels, and the quantize stage that picks the layers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

from tiny_models import rec_set, tiny_rec  # noqa: E402

RNG = np.random.default_rng(7)


def _net():
    """3x3 conv -> relu -> depthwise 3x3 -> relu -> 1x1 conv -> (N, W, C) -> MatMul."""
    c, k = 32, 24
    inits = {
        "w1": RNG.standard_normal((c, 8, 3, 3)) * 0.2, "b1": RNG.standard_normal(c) * 0.1,
        "w2": RNG.standard_normal((c, 1, 3, 3)) * 0.4, "b2": RNG.standard_normal(c) * 0.1,
        "w3": RNG.standard_normal((c, c, 1, 1)) * 0.2, "b3": RNG.standard_normal(c) * 0.1,
        "fc": RNG.standard_normal((c, k)) * 0.2,
    }
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv"),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, group=c,
                          name="dw"),
         helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
         helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"),
         helper.make_node("ReduceMean", ["c3"], ["p"], axes=[2], keepdims=0, name="pool"),
         helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 1], name="tr"),
         helper.make_node("MatMul", ["t", "fc"], ["y"], name="fc")],
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "w", k])],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _inputs(n=6):
    return [RNG.standard_normal((1, 8, 6, w)).astype(np.float32) for w in range(20, 20 + n)]


def _qdq(m, inputs):
    from xcompress.quantize.calibrate import compute_ranges
    from xcompress.quantize.qdq import gather_stats, quantize_qdq

    ranges = compute_ranges(gather_stats(m, inputs), "minmax")
    return quantize_qdq(m, ranges, ("Conv", "MatMul", "Relu"))


def _run(m, x, path=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if path is not None:
        so.optimized_model_filepath = str(path)
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_candidates_are_conv_and_matmul_weights_not_depthwise_largest_first():
    from xcompress.quantize.int4 import int4_layers

    q = _qdq(_net(), _inputs())
    layers = int4_layers(q, min_weights=1)
    assert [la.node for la in layers] == ["conv", "pw", "fc"]  # 2304, 1024, 768 weights
    assert [la.op for la in layers] == ["Conv", "Conv", "MatMul"]
    assert layers[0].bias is not None and layers[2].bias is None
    assert [la.node for la in int4_layers(q, min_weights=1000)] == ["conv", "pw"]


def test_pack_int4_round_trips_through_onnx():
    from xcompress.quantize.int4 import pack_int4

    v = RNG.integers(-8, 8, size=(5, 3, 1, 1)).astype(np.int8)  # odd count: padded nibble
    t = pack_int4("w", v)
    assert len(t.raw_data) == 8
    np.testing.assert_array_equal(numpy_helper.to_array(t).astype(np.int8), v)


def test_gptq_keeps_the_layer_output_better_than_rounding():
    from xcompress.quantize.int4 import HI, LO, gptq, mse_scales

    # correlated inputs (near rank 8), as a layer's channels are: errors can be compensated
    x = RNG.standard_normal((4000, 8)) @ RNG.standard_normal((8, 48)) \
        + 0.1 * RNG.standard_normal((4000, 48))
    w = RNG.standard_normal((16, 48))
    s = mse_scales(w)
    rtn = np.clip(np.round(w / s[:, None]), LO, HI)
    q = gptq(w, x.T @ x, s)
    assert q.dtype == np.int8 and q.min() >= LO and q.max() <= HI

    def err(v):
        return float(np.linalg.norm((v * s[:, None] - w) @ x.T))

    assert err(q) < 0.5 * err(rtn)


def test_int4_graph_runs_the_same_int8_kernels_and_stays_close(tmp_path):
    from xcompress.quantize.int4 import INT4_OPSET, int4_layers, to_int4

    m = _net()
    inputs = _inputs()
    q = _qdq(m, inputs)
    layers = int4_layers(q, min_weights=1)
    q4 = to_int4(q, layers, inputs, threads=1)
    onnx.checker.check_model(q4)
    assert max(o.version for o in q4.opset_import if o.domain in ("", "ai.onnx")) == INT4_OPSET
    int4 = [t for t in q4.graph.initializer if t.data_type == TensorProto.INT4]
    assert len(int4) == 3
    assert sum(n.op_type == "Cast" for n in q4.graph.node) == 3
    assert len(q4.SerializeToString()) < len(q.SerializeToString())
    # the Casts fold when the session loads; the fused graph is the int8 one
    x = _inputs(1)[0]
    y8 = _run(q, x, tmp_path / "q8.onnx")
    y4 = _run(q4, x, tmp_path / "q4.onnx")
    ops8 = sorted(n.op_type for n in onnx.load(tmp_path / "q8.onnx").graph.node)
    ops4 = sorted(n.op_type for n in onnx.load(tmp_path / "q4.onnx").graph.node)
    assert ops4 == ops8 and "QLinearConv" in ops8
    yf = _run(m, x)
    rel = float(np.linalg.norm(y4 - yf) / np.linalg.norm(yf))
    assert rel < 0.2, rel
    assert float(np.linalg.norm(y4 - y8) / np.linalg.norm(y8)) < 0.2
    # the int32 biases hold the same float values in the new x_scale * w_scale
    g4 = {t.name: numpy_helper.to_array(t) for t in q4.graph.initializer}
    g8 = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    for la in layers:
        if la.bias is None:
            continue
        b8 = g8[la.bias[0]] * g8[la.bias[1]]
        b4 = g4[la.bias[0]] * g4[la.bias[1]]
        np.testing.assert_allclose(b4, b8, atol=float(g4[la.bias[1]].max()))


def test_quantize_int4_weights_stage_within_budget(tmp_path):
    from xcompress.quantize import QuantizeConfig, quantize

    art = tiny_rec(tmp_path / "tiny.onnx")
    calib = rec_set(tmp_path / "calib")
    cfg = QuantizeConfig(max_drop=1.0, plans=("int8-all",), latency_runs=3, threads=1,
                         allow_slower=True, float_stem=False, synth_mix=0.0,
                         int4_weights=True, int4_min_weights=1, int4_max_error_rise=100.0)
    res = quantize(art, calib, tmp_path / "out", cfg, progress=False)
    w = res.report["int4_weights"]
    assert w["candidates"] >= 1 and w["layers"] and w["drop_after"] <= 1.0
    assert w["error_rise"] <= 100.0 and w["checks"][0][0] == w["candidates"]
    assert w["layers"] == res.card.notes["quantize"]["int4_layers"]
    m = onnx.load(res.model_path)
    n4 = sum(t.data_type == TensorProto.INT4 for t in m.graph.initializer)
    assert n4 == len(w["layers"])
    assert "int4 weights" in (res.out_dir / "report.md").read_text()
    # no room for any extra output error: the int8 model stays, and the report says so
    none = quantize(art, calib, tmp_path / "none",
                    cfg.model_copy(update={"int4_max_error_rise": 0.0}), progress=False)
    assert none.report["int4_weights"]["layers"] == []
    assert not any(t.data_type == TensorProto.INT4
                   for t in onnx.load(none.model_path).graph.initializer)
    assert "none of" in (none.out_dir / "report.md").read_text()
    off = quantize(art, calib, tmp_path / "off", cfg.model_copy(update={"int4_weights": False}),
                   progress=False)
    assert off.report["int4_weights"] is None


def test_1d_convs_are_not_candidates():
    """Only 2-D convs: the input rows (im2col) are built for 4-D weights."""
    from xcompress.quantize.int4 import int4_layers

    w = numpy_helper.from_array((RNG.standard_normal((32, 16, 3)) * 0.2).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1], name="conv1d")], "c1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, "w"])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    inputs = [RNG.standard_normal((1, 16, n)).astype(np.float32) for n in (20, 24)]
    q = _qdq(m, inputs)
    assert any(n.op_type == "DequantizeLinear" for n in q.graph.node)
    assert int4_layers(q, min_weights=1) == []


def test_a_model_the_converter_cannot_take_is_one_clear_error(monkeypatch):
    from onnx import version_converter

    from xcompress.errors import ModelError
    from xcompress.quantize.int4 import at_int4_opset

    def broken(model, version):
        raise RuntimeError("No Adapter For some_op\nmore detail")

    monkeypatch.setattr(version_converter, "convert_version", broken)
    with pytest.raises(ModelError, match="opset 21 for int4 weights .*No Adapter.*drop --int4"):
        at_int4_opset(_net())
