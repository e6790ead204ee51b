"""Bias correction removes the mean shift int8 adds to a conv's output channels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import version_converter

pytest.importorskip("onnxruntime")

from tiny_models import tiny_rec  # noqa: E402

from xcompress.quantize.bias import bias_correct, channel_means  # noqa: E402
from xcompress.quantize.calibrate import compute_ranges  # noqa: E402
from xcompress.quantize.qdq import gather_stats, quantize_qdq  # noqa: E402


def test_bias_correction_cancels_the_int8_mean_shift(tmp_path):
    art = tiny_rec(tmp_path / "tiny.onnx")
    m = version_converter.convert_version(onnx.load(str(art.path)), 20)
    rng = np.random.default_rng(0)
    xs = [rng.random((1, 3, 48, w)).astype(np.float32) for w in (64, 96, 128)]
    # a coarse percentile clips the input: a systematic shift, not only noise
    ranges = compute_ranges(gather_stats(m, xs, 1), "percentile", percentile=99.0)

    def build(fm):
        return quantize_qdq(fm, ranges, ["Conv", "MatMul"], per_channel=True)

    conv = next(n for n in m.graph.node if n.op_type == "Conv").output[0]
    ref = channel_means(m, [conv], xs, 1)[conv]
    before = np.abs(channel_means(build(m), [conv], xs, 1)[conv] - ref).max()
    fixed, n = bias_correct(m, build, xs, 1)
    after = np.abs(channel_means(build(fixed), [conv], xs, 1)[conv] - ref).max()
    assert n == 1 and before > 1e-3 and after < before / 20
    # the float model is changed only in that bias
    assert [x.op_type for x in fixed.graph.node] == [x.op_type for x in m.graph.node]
