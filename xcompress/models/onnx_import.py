"""Load the weights of a PaddleOCR-exported ONNX model into a native module.

Generic ONNX->PyTorch converters get these graphs wrong (see DESIGN.md: onnx2torch is off by
0.7-1.0), so the import is explicit:

1. :func:`onnx_parameters` walks the ONNX nodes in graph order and lists every *learned*
   tensor at its first use, telling weights from the exporter's helper constants (the 3 and
   6 of a decomposed hard-swish, LayerNorm epsilons, the attention scale, reshape targets)
   by where they are used, not by their names.
2. The native module lists its :class:`~xcompress.models.layers.Slot` s in the order its
   forward pass uses them (``model.slots()``), which is the order the Paddle program -- and
   hence the exported graph -- uses them.
3. The two lists are zipped; every pair must agree in shape (after the slot's declared
   transform), and both lists must be used up exactly. Names are never matched against
   module names: only topology (order of use) and shapes decide.

The numeric check against onnxruntime (:func:`compare_with_onnx`) is the final word.

Example:
    >>> model = build_model("ppocrv4-rec")                                   # doctest: +SKIP
    >>> report = load_onnx_weights(model, "ch_PP-OCRv4_rec_infer.onnx")     # doctest: +SKIP
    >>> report.tensors, report.values                                       # doctest: +SKIP
    (234, 4823217)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xcompress.errors import ModelError
from xcompress.models.base import OCRModel
from xcompress.models.layers import Slot


@dataclass(frozen=True)
class OnnxParam:
    name: str
    array: np.ndarray
    op: str  # op type of the first consumer


@dataclass(frozen=True)
class ImportReport:
    """What was loaded: number of tensors and of scalar values."""

    tensors: int
    values: int


#: ops whose constant inputs are all learned tensors (weights, biases, BN statistics)
_WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "BatchNormalization",
               "LayerNormalization"}  # fmt: skip
#: a constant Add/Mul feeding only these is part of a decomposed activation/normalization:
#: hard-swish's "+3" (-> Clip), LayerNorm's "+eps" (-> Sqrt); and a constant *Mul* feeding
#: only a Sigmoid is swish's beta (an Add feeding a Sigmoid is a real bias, as DB's last one)
_STRUCTURAL_CONSUMERS = {"Clip", "Sqrt"}
#: ... or scales/offsets a tensor coming straight out of a shape op: attention's q-scale
#: (after Slice/Squeeze) or an exporter's "+0" copy (after Unsqueeze)
_SHAPE_OPS = {"Squeeze", "Unsqueeze", "Slice", "Gather", "Split", "Cast", "Reshape", "Transpose"}


def onnx_parameters(model: object) -> list[OnnxParam]:
    """Learned tensors of an ONNX model (``onnx.ModelProto``), in order of first use.

    A constant (initializer or ``Constant`` node) is learned when it is an input of a
    weight op (Conv, MatMul, BatchNormalization, ...) or the constant operand of an
    elementwise Add/Mul that is not part of a decomposed activation / normalization /
    attention scale (see :data:`_STRUCTURAL_CONSUMERS`, :data:`_SHAPE_OPS`). The rule reads
    only the graph's topology, so it works whatever names the exporter gave the tensors
    (paddle2onnx 1.x names them after Paddle parameters, 2.x mostly does not).
    """
    from onnx import numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    alias: dict[str, str] = {}  # Identity outputs -> their input
    producer: dict[str, str] = {}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        if node.op_type == "Identity":
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        for out in node.output:
            producer[out] = node.op_type
        for name in node.input:
            consumers.setdefault(alias.get(name, name), []).append(node.op_type)

    def learned(node: object, name: str) -> bool:
        op = node.op_type  # type: ignore[attr-defined]
        if op in _WEIGHT_OPS:
            return True
        if op not in ("Add", "Mul"):
            return False
        users = set(consumers.get(node.output[0], []))  # type: ignore[attr-defined]
        if users and (users <= _STRUCTURAL_CONSUMERS or (op == "Mul" and users == {"Sigmoid"})):
            return False
        others = [alias.get(i, i) for i in node.input if i != name]  # type: ignore[attr-defined]
        return not any(producer.get(o) in _SHAPE_OPS for o in others if o not in consts)

    seen: set[str] = set()
    out: list[OnnxParam] = []
    for node in graph.node:
        if node.op_type in ("Constant", "Identity"):
            continue
        for name in node.input:
            if name in consts and name not in seen and learned(node, name):
                if consts[name].dtype.kind != "f":
                    continue  # integer shapes / axes are never weights
                seen.add(name)
                out.append(OnnxParam(name, consts[name], node.op_type))
    return out


def _convert(param: OnnxParam, slot: Slot) -> torch.Tensor:
    arr = np.asarray(param.array, dtype=np.float32)
    target = tuple(slot.tensor.shape)
    if slot.kind == "transpose":
        arr = arr.T
    elif slot.kind == "squeeze":
        if [d for d in arr.shape if d != 1] != [d for d in target if d != 1]:
            arr = arr[None]  # force the mismatch error below
        else:
            arr = arr.reshape(target)
    if tuple(arr.shape) != target:
        raise ModelError(
            f"weight {param.name} {list(param.array.shape)} does not fit {slot.where} "
            f"{list(target)}: the ONNX model is not this architecture/config"
        )
    return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))


def load_onnx_weights(model: OCRModel, onnx_path: str | Path) -> ImportReport:
    """Copy the learned tensors of ``onnx_path`` into ``model`` (in place).

    Raises:
        ModelError: the graph's tensors do not line up with the module's slots (wrong
            architecture or config), or the file is not a readable ONNX model.
    """
    import onnx

    try:
        proto = onnx.load(str(onnx_path))
    except Exception as e:  # onnx raises DecodeError / OSError variants
        raise ModelError(f"cannot read ONNX model {onnx_path}: {e}") from e
    params = onnx_parameters(proto)
    slots = model.slots()
    if len(params) != len(slots):
        raise ModelError(
            f"{Path(onnx_path).name} has {len(params)} learned tensors but architecture "
            f"{model.arch} with this config has {len(slots)}: not the same model family"
        )
    values = 0
    with torch.no_grad():
        for param, slot in zip(params, slots, strict=True):
            slot.tensor.copy_(_convert(param, slot))
            values += param.array.size
    return ImportReport(tensors=len(params), values=values)


def compare_with_onnx(
    model: OCRModel, onnx_path: str | Path, inputs: list[np.ndarray], threads: int = 1
) -> float:
    """Max abs difference between ``model(x)`` and onnxruntime on ``onnx_path``, over inputs."""
    from xcompress.runtime.ort import ort_session

    sess = ort_session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    worst = 0.0
    model.eval()
    with torch.no_grad():
        for x in inputs:
            ref = sess.run(None, {name: x.astype(np.float32)})[0]
            got = model(torch.from_numpy(x.astype(np.float32))).numpy()
            if ref.shape != got.shape:
                raise ModelError(f"output shape {got.shape} != ONNX output shape {ref.shape}")
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst
