"""Tiny ONNX models and data sets for fast tests: OCR-shaped ones and non-OCR ones.

Each model is a few nodes with random weights, shaped as a PP-OCR model of its task is (or,
for the ``not_ocr_*`` ones, as an OCR model is not), so commands can be run end to end in
milliseconds without a zoo download.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from xcompress.artifact import Artifact
from xcompress.card import ModelCard, default_postprocess, default_preprocess

CHARSET = ["a", "b", "c", " "]


def _save(nodes, name, inputs, outputs, inits, path: Path, opset: int = 17) -> Path:
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def _w(rng, shape, scale=1.0, name="w"):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * scale, name)


def tiny_rec(path: Path, card: bool = True, charset: list[str] | None = None) -> Artifact:
    """(N,3,48,W) -> Conv(k=48x4, s=4) -> HardSwish as exported -> (N,T,C) softmax."""
    charset = CHARSET if charset is None else charset
    rng = np.random.default_rng(0)
    c = len(charset) + 1
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["f"], kernel_shape=[48, 4], strides=[48, 4]),
        helper.make_node("Add", ["f", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
        helper.make_node("Mul", ["f", "cl"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["h"]),
        helper.make_node("Squeeze", ["h"], ["s"], axes=[2]),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "fc"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=2),
    ]
    inits = [
        _w(rng, (16, 3, 48, 4), 0.05), _w(rng, (16,), 0.1, "b"), _w(rng, (16, c), 1.0, "fc"),
        numpy_helper.from_array(np.array(3.0, np.float32), "three"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six"),
    ]
    _save(nodes, "tinyrec",
          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 48, "w"])],
          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", "t", c])],
          inits, path, opset=12)
    model_card = ModelCard(name="tinyrec", task="rec", file=path.name,
                           preprocess=default_preprocess("rec"),
                           postprocess=default_postprocess("rec"), charset=charset)
    if card:
        model_card.save(path.parent)  # xcompress.json beside the model, as in a model folder
    return Artifact(path, model_card)


def tiny_det(path: Path, fixed: int | None = None) -> Path:
    """Conv(3->1, 3x3, pad 1) + Sigmoid: an N x 1 x H x W probability map (dims dynamic, or
    ``fixed`` x ``fixed``)."""
    rng = np.random.default_rng(0)
    hw: list = [fixed, fixed] if fixed else ["h", "w"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["y"])]
    return _save(nodes, "tinydet",
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, *hw])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, *hw])],
                 [_w(rng, (1, 3, 3, 3), 0.1), _w(rng, (1,), 0.1, "b")], path)


def not_ocr_conv(path: Path) -> Path:
    """Conv(3->8) + Relu on dynamic N x 3 x H x W: an image model, but 8 maps, not 1."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return _save(nodes, "notocr",
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, "h", "w"])],
                 [_w(rng, (8, 3, 3, 3)), _w(rng, (8,), 1.0, "b")], path)


def not_ocr_classifier(path: Path) -> Path:
    """A fixed 1 x 3 x 224 x 224 ImageNet-style classifier with 10 classes."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[4, 4], kernel_shape=[4, 4]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    return _save(nodes, "classifier",
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                 [_w(rng, (10, 3, 4, 4))], path)


def rec_set(folder: Path, n: int = 12, text: str = "ab c") -> Path:
    """Random text-line images of different widths, all labelled ``text``."""
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = []
    for i in range(n):
        w = int(rng.integers(60, 300))
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (32, w, 3), dtype=np.uint8))
        lines.append(f"{i}.png\t{text}")
    (folder / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def cls_set(folder: Path, n: int = 6) -> Path:
    """Text-line images labelled 0 / 180 (PaddleOCR's direction classification format)."""
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    lines = []
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (48, 160, 3), dtype=np.uint8))
        lines.append(f"{i}.png\t{'0' if i % 2 else '180'}")
    (folder / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def det_set(folder: Path, n: int = 3) -> Path:
    """Pages with one labelled box each (PaddleOCR's detection format)."""
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    lines = []
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        box = [{"transcription": "ab", "points": [[10, 10], [60, 10], [60, 30], [10, 30]]}]
        lines.append(f"{i}.png\t{json.dumps(box)}")
    (folder / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
