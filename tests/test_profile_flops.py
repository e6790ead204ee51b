"""MACs / FLOPs / parameter counts on graphs built with onnx.helper, checked by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from xcompress.errors import ModelError
from xcompress.profile.flops import count_onnx, model_cost


def _init(name: str, shape: tuple[int, ...], dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype), name)


def _model(nodes, inputs, inits, outputs=("y",), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _conv(cin, cout, k, *, group=1, stride=1, pad=0, bias=True, dims=("N", "C", "H", "W")):
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    inits = [_init("w", (cout, cin // group, k, k))] + ([_init("b", (cout,))] if bias else [])
    node = helper.make_node(
        "Conv",
        inputs,
        ["y"],
        group=group,
        strides=[stride, stride],
        pads=[pad] * 4,
        kernel_shape=[k, k],
    )
    return _model([node], [("x", list(dims))], inits)


def test_conv_3_to_16_k3_with_bias():
    rep = count_onnx(_conv(3, 16, 3, pad=1), (1, 3, 32, 32))
    macs = 16 * 3 * 9 * 32 * 32
    assert rep.macs == rep.by_op["Conv"].macs == macs
    assert rep.flops == 2 * macs + 16 * 32 * 32  # one add per output element for the bias
    assert rep.other_flops == 0
    assert rep.params == 16 * 3 * 9 + 16
    assert rep.by_op["Conv"].count == 1
    assert rep.shape == {"x": (1, 3, 32, 32)}
    assert rep.shape_source == "onnx"


def test_conv_stride_2_no_padding_no_bias():
    rep = count_onnx(_conv(3, 16, 3, stride=2, bias=False), (2, 3, 32, 32))
    out_hw = (32 - 3) // 2 + 1  # 15
    assert rep.macs == 2 * 16 * 3 * 9 * out_hw * out_hw
    assert rep.flops == 2 * rep.macs


def test_depthwise_conv():
    rep = count_onnx(_conv(8, 8, 3, group=8, pad=1), (1, 8, 20, 20))
    assert rep.macs == 8 * 9 * 20 * 20  # one input channel per output channel
    assert rep.params == 8 * 1 * 9 + 8


def test_grouped_conv():
    rep = count_onnx(_conv(8, 16, 3, group=2, pad=1, bias=False), (1, 8, 10, 10))
    assert rep.macs == 16 * (8 // 2) * 9 * 10 * 10


def test_conv_transpose_stride_2():
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], kernel_shape=[2, 2]
    )
    inits = [_init("w", (4, 6, 2, 2)), _init("b", (6,))]
    model = _model([node], [("x", ["N", 4, "H", "W"])], inits)
    rep = count_onnx(model, (1, 4, 5, 5))
    # Every output pixel of a stride-2 2x2 transposed conv gets exactly one tap per input
    # channel: 6 * 10 * 10 outputs x 4 input channels.
    assert rep.macs == 6 * 10 * 10 * 4 == 4 * 5 * 5 * 6 * 2 * 2
    assert rep.flops == 2 * rep.macs + 6 * 10 * 10


def test_batched_matmul_broadcasts():
    node = helper.make_node("MatMul", ["x", "m"], ["y"])
    model = _model([node], [("x", ["B", "T", 7])], [_init("m", (7, 3))])
    rep = count_onnx(model, (2, 5, 7))
    assert rep.macs == 2 * 5 * 3 * 7
    assert rep.params == 21


def test_gemm_trans_b_with_bias():
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)
    model = _model([node], [("x", ["M", 6])], [_init("w", (5, 6)), _init("c", (5,))])
    rep = count_onnx(model, (4, 6))
    assert rep.macs == 4 * 5 * 6
    assert rep.flops == 2 * rep.macs + 4 * 5


def test_elementwise_pool_softmax_norm_are_other_flops():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "s", "bb", "m", "v"], ["n"]),
        helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Softmax", ["f"], ["y"], axis=1),
    ]
    inits = [_init(n, (4,)) for n in ("s", "bb", "m", "v")]
    rep = count_onnx(_model(nodes, [("x", ["N", 4, "H", "W"])], inits), (1, 4, 8, 8))
    n_in, n_pooled = 4 * 8 * 8, 4 * 4 * 4
    assert rep.macs == 0
    assert rep.by_op["Relu"].flops == n_in
    assert rep.by_op["BatchNormalization"].flops == 2 * n_in
    assert rep.by_op["MaxPool"].flops == n_pooled * 4
    assert rep.by_op["GlobalAveragePool"].flops == n_pooled
    assert rep.by_op["Flatten"].flops == 0
    assert rep.by_op["Softmax"].flops == 5 * 4
    assert rep.flops == rep.other_flops == n_in * 3 + n_pooled * 5 + 20
    assert rep.params == 16


def test_params_skip_shape_constants_scalars_and_clip_bounds():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node(
            "Constant", [], ["three"], value=numpy_helper.from_array(np.array(3.0, np.float32))
        ),
        helper.make_node("Add", ["c", "three"], ["a"]),
        helper.make_node("Clip", ["a", "lo", "hi"], ["k"]),
        helper.make_node("Reshape", ["k", "shape"], ["y"]),
    ]
    inits = [
        _init("w", (4, 3, 1, 1)),
        numpy_helper.from_array(np.zeros(1, np.float32), "lo"),
        numpy_helper.from_array(np.full(1, 6.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
    ]
    rep = count_onnx(_model(nodes, [("x", ["N", 3, "H", "W"])], inits), (1, 3, 4, 4))
    assert rep.params == 12  # only the conv weight
    assert rep.by_op["Add"].flops == rep.by_op["Clip"].flops == 4 * 16


def _reshape_after_shape_math(concat_axis: int) -> onnx.ModelProto:
    """Conv, then a Reshape to (N, C, -1) whose target comes from Shape -> Slice -> Div ->
    Concat, then a MatMul: onnx's own shape inference leaves the Reshape output unknown."""
    i64 = np.int64
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "two"], ["nc"]),
        helper.make_node("Div", ["nc", "ones"], ["nc1"]),
        helper.make_node("Concat", ["nc1", "minus1"], ["target"], axis=concat_axis),
        helper.make_node("Reshape", ["c", "target"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["y"]),
    ]
    inits = [
        _init("w", (4, 3, 1, 1)),
        _init("m", (64, 5)),
        numpy_helper.from_array(np.array([0], i64), "zero"),
        numpy_helper.from_array(np.array([2], i64), "two"),
        numpy_helper.from_array(np.array([1, 1], i64), "ones"),
        numpy_helper.from_array(np.array([-1], i64), "minus1"),
    ]
    return _model(nodes, [("x", ["N", 3, "H", "W"])], inits, opset=13)


_RESHAPE_MACS = 4 * 3 * 8 * 8 + 4 * 5 * 64  # conv + (1, 4, 64) @ (64, 5)


def test_symbolic_inference_fills_what_onnx_cannot():
    model = _reshape_after_shape_math(concat_axis=0)
    with pytest.raises(ModelError, match="onnx: .* unknown"):
        count_onnx(model, (1, 3, 8, 8), method="onnx")
    rep = count_onnx(model, (1, 3, 8, 8))
    assert rep.shape_source == "symbolic"
    assert rep.macs == _RESHAPE_MACS


def test_onnxruntime_is_the_last_resort():
    # ORT's SymbolicShapeInference asserts on a Concat of shape values along axis -1 (the
    # PP-OCR mobile v2 cls export has the same pattern); a real run still gives the shapes.
    model = _reshape_after_shape_math(concat_axis=-1)
    with pytest.raises(ModelError, match="symbolic"):
        count_onnx(model, (1, 3, 8, 8), method="symbolic")
    rep = count_onnx(model, (1, 3, 8, 8))
    assert rep.shape_source == "onnxruntime"
    assert rep.macs == _RESHAPE_MACS


@pytest.mark.parametrize("method", ["onnx", "symbolic", "onnxruntime"])
def test_shape_steps_agree(method):
    rep = count_onnx(_conv(3, 16, 3, stride=2, pad=1), (1, 3, 31, 17), method=method)
    assert rep.shape_source == method
    assert rep.macs == 16 * 3 * 9 * 16 * 9


def test_uncounted_ops_are_listed_not_guessed():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("TopK", ["c", "k"], ["y", "i"], axis=1),
    ]
    inits = [_init("w", (4, 3, 1, 1)), numpy_helper.from_array(np.array([2], np.int64), "k")]
    model = _model(nodes, [("x", ["N", 3, "H", "W"])], inits, outputs=("y",))
    rep = count_onnx(model, (1, 3, 4, 4))
    assert rep.uncounted == {"TopK": 1}
    assert rep.macs == 4 * 3 * 16


def test_shape_must_fit_the_input(tmp_path):
    model = _conv(3, 4, 1, dims=(1, 3, "H", "W"))
    with pytest.raises(ModelError, match="has 4 dims"):
        count_onnx(model, (1, 3, 8))
    with pytest.raises(ModelError, match="axis 1 is fixed to 3, not 4"):
        count_onnx(model, (1, 4, 8, 8))
    with pytest.raises(ModelError, match="no input named 'z'"):
        count_onnx(model, {"z": (1, 3, 8, 8)})


def test_files_missing_corrupt_and_unsupported(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        count_onnx(tmp_path / "missing.onnx", (1, 3, 8, 8))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        count_onnx(bad, (1, 3, 8, 8))
    assert model_cost(tmp_path / "m.tflite", (1, 3, 8, 8)) is None
    path = tmp_path / "conv.onnx"
    onnx.save(_conv(3, 4, 1), path)
    assert model_cost(path, (1, 3, 8, 8)).macs == 4 * 3 * 64


@pytest.mark.heavy
def test_ppocr_v4_rec_macs(zoo_model):
    # Cross-checked: Conv + MatMul MACs equal onnx-tool 1.0.1's count minus its bias adds,
    # and the first convs by hand (stem 16x3x3x3 at stride 2: 16*27*24*160 = 1,658,880).
    rep = count_onnx(zoo_model("ppocr-v4-rec").path, (1, 3, 48, 320))
    assert rep.shape_source == "symbolic"
    assert rep.by_op["Conv"].macs == 660_685_440
    assert rep.by_op["MatMul"].macs == 41_784_000
    assert rep.params == 2_690_109
