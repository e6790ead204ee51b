"""Calibration on variable-width inputs: histograms, every registered method, stats gathering."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from xcompress.quantize.calibrate import (
    TensorStats,
    calibrator_names,
    compute_ranges,
    get_calibrator,
)

RNG = np.random.default_rng(0)
WIDTHS = (320, 417, 960, 100)


def _lines():
    # activations of text lines of different widths: (1, C, H, W) with W varying
    return [RNG.standard_normal((1, 8, 6, w)).astype(np.float32) * (1 + w / 320) for w in WIDTHS]


def test_histogram_equals_one_pass_over_the_final_range():
    st = TensorStats(bins=256, max_samples=10**9)  # no subsampling: compare exactly
    parts = _lines()
    for p in parts:  # ranges grow: forces several doublings
        st.update(p)
    allv = np.concatenate([p.ravel() for p in parts])
    want, _ = np.histogram(allv, bins=256, range=(-st.range, st.range))
    # binning by hand vs numpy can differ on values that fall exactly on an edge
    assert np.abs(st.hist - want).sum() <= 2
    assert st.count == allv.size
    assert st.min == pytest.approx(allv.min()) and st.max == pytest.approx(allv.max())


@pytest.mark.parametrize("method", calibrator_names())
def test_every_method_works_on_variable_widths(method):
    st = TensorStats()
    for p in _lines():
        st.update(p)
    lo, hi = get_calibrator(method)(st)
    assert st.min <= lo < 0 < hi <= st.max
    # a sane range holds the bulk of the values
    allv = np.concatenate([p.ravel() for p in _lines()])
    inside = np.mean((allv >= lo) & (allv <= hi))
    assert inside > 0.99


def test_percentile_clips_outliers_minmax_does_not():
    st = TensorStats()
    v = RNG.standard_normal(200_000).astype(np.float32)
    v[:3] = 80.0  # three outliers, like the spikes that collapse a CTC recognizer
    st.update(v)
    assert get_calibrator("minmax")(st)[1] == pytest.approx(80.0)
    assert get_calibrator("percentile")(st, percentile=99.99)[1] < 6.0


def test_ranges_always_contain_zero():
    st = TensorStats()
    st.update(np.linspace(2.0, 5.0, 100, dtype=np.float32))  # all positive
    lo, hi = compute_ranges({"t": st}, "minmax")["t"]
    assert lo == 0.0 and hi == pytest.approx(5.0)


def test_gather_stats_on_lines_of_different_widths():
    ort = pytest.importorskip("onnxruntime")  # noqa: F841
    import onnx

    from xcompress.quantize.qdq import gather_stats

    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, "w"])],
        [numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    inputs = [RNG.standard_normal((1, 3, 8, wd)).astype(np.float32) for wd in (16, 40, 16, 33)]
    # max_bytes tiny: one tensor per chunk, exercising the chunked passes
    stats = gather_stats(m, inputs, max_bytes=1)
    assert set(stats) == {"x", "c", "y"}
    assert stats["x"].count == sum(x.size for x in inputs)
    assert stats["y"].min == 0.0
    assert stats["x"].max == pytest.approx(max(x.max() for x in inputs))


def _softmax_head():
    """x -> MatMul(w) -> Add(bias) -> Flatten -> Softmax, plus an unrelated Relu branch."""
    import onnx

    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "bias"], ["logits"], name="add"),
        helper.make_node("Flatten", ["logits"], ["flat"], name="flat"),
        helper.make_node("Softmax", ["flat"], ["probs"], name="sm"),
        helper.make_node("Relu", ["x"], ["side"], name="relu"),
    ]
    g = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [4, 5]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, [4, 8])],
        [numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "bias")],
    )
    return helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_softmax_logits_walks_back_to_the_weight_layer():
    from xcompress.quantize.qdq import softmax_logits

    assert softmax_logits(_softmax_head()) == ["flat", "logits", "mm"]


def test_logits_keep_their_maximum_under_percentile_ranges():
    from xcompress.quantize.stages import ranges_for

    stats = {}
    for name in ("mm", "side"):
        st = TensorStats()
        v = RNG.standard_normal(200_000).astype(np.float32)
        v[:3] = 40.0  # the winning logits: rare, but the ones that decide the output
        st.update(v)
        stats[name] = st
    ranges = ranges_for(stats, "percentile", 99.99, ["flat", "logits", "mm"])
    assert ranges["mm"][1] == pytest.approx(40.0)  # logits: min-max
    assert ranges["side"][1] < 6.0  # everything else: clipped as asked


def _expected_sq_error(v: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of uint8 fake quantization of ``v`` at ``[lo, hi]``."""
    s = (hi - lo) / 255
    q = np.clip(np.round((v - lo) / s), 0, 255) * s + lo
    return float(np.mean((q - v) ** 2))


def test_mse_range_beats_minmax_and_percentile_on_its_own_objective():
    v = np.concatenate([RNG.standard_normal(200_000), RNG.standard_normal(40) * 25]).astype(
        np.float32)
    st = TensorStats()
    st.update(v)
    lo, hi = get_calibrator("mse")(st)
    assert st.min <= lo < 0 < hi <= st.max
    err = _expected_sq_error(v, lo, hi)
    assert err < _expected_sq_error(v, *get_calibrator("minmax")(st))
    assert err <= 1.05 * _expected_sq_error(v, *get_calibrator("percentile")(st, percentile=99.9))


def test_mse_range_keeps_a_compact_tensor_whole():
    st = TensorStats()
    st.update(RNG.uniform(-1, 1, 50_000).astype(np.float32))
    lo, hi = get_calibrator("mse")(st)
    assert lo == pytest.approx(-1, abs=0.03) and hi == pytest.approx(1, abs=0.03)
