"""Empirical bias correction: remove the systematic shift int8 adds to each conv's outputs.

Quantizing a conv's weights and its clipped input changes the mean of every output channel,
not only its noise (Nagel et al., "Data-Free Quantization", 2019; the empirical variant on
calibration data): a depthwise conv with few taps, reading a clipped hard-swish, is shifted
most. Per output channel, the mean difference between the int8 and the float conv output over
calibration inputs is subtracted from the float bias, and the model is quantized again at the
same activation ranges. onnxruntime has no such pass; it is a few lines over its QDQ graph.

Example:
    >>> fixed, n = bias_correct(float_model, build_qdq, inputs)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from xcompress.quantize.qdq import _expose, _session


def _corrigible(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Convs with initializer weights and a bias initializer used by them alone (or none)."""
    inits = {t.name for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    return [n for n in model.graph.node
            if n.op_type == "Conv" and len(n.input) >= 2 and n.input[1] in inits
            and (len(n.input) < 3 or not n.input[2] or
                 (n.input[2] in inits and uses.get(n.input[2], 0) == 1))]


def channel_means(model: onnx.ModelProto, names: Sequence[str], inputs: Sequence[np.ndarray],
                  threads: int | None) -> dict[str, np.ndarray]:
    """Per output channel (axis 1), the mean of each tensor in ``names`` over ``inputs``."""
    sess = _session(_expose(model, names), threads)
    in_name = model.graph.input[0].name
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for x in inputs:
        for n, v in zip(names, sess.run(list(names), {in_name: x}), strict=True):
            v = np.asarray(v, np.float64)
            axes = tuple(i for i in range(v.ndim) if i != 1)
            sums[n] = sums.get(n, 0.0) + v.sum(axis=axes)
            counts[n] = counts.get(n, 0) + int(v.size // v.shape[1])
    return {n: sums[n] / counts[n] for n in names}


def bias_correct(model: onnx.ModelProto, build: Callable[[onnx.ModelProto], onnx.ModelProto],
                 inputs: Sequence[np.ndarray], threads: int | None = None, rounds: int = 2
                 ) -> tuple[onnx.ModelProto, int]:
    """``model`` with conv biases corrected for the int8 model ``build(model)`` makes.

    Args:
        build: float model -> its int8 QDQ model (same ranges every time).
        inputs: calibration inputs (a few dozen suffice: only channel means are estimated).
        rounds: correct, rebuild, correct the residual (later layers see earlier fixes).

    Returns:
        The corrected float model and how many convs it changed.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    convs = _corrigible(out)
    if not convs:
        return out, 0
    names = [n.output[0] for n in convs]
    ref = channel_means(out, names, inputs, threads)
    inits = {t.name: t for t in out.graph.initializer}
    for _ in range(rounds):
        got = channel_means(build(out), names, inputs, threads)
        for n in convs:
            shift = (got[n.output[0]] - ref[n.output[0]]).astype(np.float32)
            if len(n.input) >= 3 and n.input[2]:
                t = inits[n.input[2]]
                new = numpy_helper.from_array(numpy_helper.to_array(t) - shift, t.name)
                t.CopyFrom(new)
            else:
                name = f"{n.name or n.output[0]}_bias_corrected"
                t = numpy_helper.from_array(-shift, name)
                out.graph.initializer.append(t)
                inits[name] = out.graph.initializer[-1]
                while len(n.input) < 3:
                    n.input.append("")
                n.input[2] = name
    return out, len(convs)
