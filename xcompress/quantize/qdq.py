"""Quantization mechanics: activation statistics, onnxruntime's QDQ quantizer, layer groups.

* :func:`float_tensors` / :func:`gather_stats` run the float model with every float tensor
  exposed and feed the values to :mod:`xcompress.quantize.calibrate`.
* :func:`quantize_qdq` hands the computed ranges to ``onnxruntime.quantization.quantize_static``
  through its calibration cache (so onnxruntime's own calibrators, which cannot take
  variable-width inputs, never run) and writes a QDQ model.
* :func:`layer_groups` cuts the graph into *layers* (a Conv/MatMul and the elementwise tail
  that follows it), the unit that the accuracy fallback keeps in float.
* :func:`keep_float` turns chosen layers of a QDQ model back to float by rewiring their
  inputs past Q/DQ; it is used to measure sensitivity quickly (no re-quantization per probe).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from xcompress.quantize.calibrate import TensorStats
from xcompress.quantize.graph import GraphView, attr, prune_unused

#: Ops whose weights make a layer; every other quantized op joins the layer feeding it.
ANCHOR_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")

_FLOAT_TYPES = (onnx.TensorProto.FLOAT,)


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float activations (graph inputs and node outputs, not initializers)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for n in model.graph.node:
        names += [o for o in n.output if o]
    return [n for n in dict.fromkeys(names) if types.get(n) in _FLOAT_TYPES]


def _session(model: onnx.ModelProto | str | Path, threads: int | None):
    from xcompress.runtime.ort import ort_session

    return ort_session(model, threads)


def gather_stats(
    model: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    threads: int | None = None,
    max_bytes: int = 512 << 20,
    on_batch: Callable[[], None] | None = None,
) -> dict[str, TensorStats]:
    """Histogram statistics of every float activation over ``inputs`` (any shapes).

    The model is run with its float tensors exposed as outputs. Exposing every tensor of a
    detector at 960 px at once would hold gigabytes, so tensors are split into chunks whose
    outputs fit in ``max_bytes`` for the largest input, at the cost of one pass per chunk.
    """
    names = float_tensors(model)
    in_name = model.graph.input[0].name
    inputs = _stack_same_shape(inputs)
    # estimate each tensor's size on the largest batch with one run of the plain model
    big = max(inputs, key=lambda a: a.size)
    sizes = _tensor_bytes(model, names, big, threads)
    chunks: list[list[str]] = [[]]
    total = 0
    for n in names:
        if chunks[-1] and total + sizes[n] > max_bytes:
            chunks.append([])
            total = 0
        chunks[-1].append(n)
        total += sizes[n]
    stats = {n: TensorStats() for n in names}
    for chunk in chunks:
        aug = _expose(model, chunk)
        sess = _session(aug, threads)
        for x in inputs:
            outs = sess.run(chunk, {in_name: x})
            for n, v in zip(chunk, outs, strict=True):
                stats[n].update(v)
            if on_batch is not None:
                on_batch()
        del sess
    return stats


def _stack_same_shape(inputs: Sequence[np.ndarray], max_batch: int = 4) -> list[np.ndarray]:
    """Concatenate inputs of equal (C, H, W) into batches: one run per batch is much cheaper
    than one per line when every tensor is exposed (most text lines pad to the same width)."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for x in inputs:
        by_shape.setdefault(tuple(x.shape[1:]), []).append(x)
    out = []
    for group in by_shape.values():
        for i in range(0, len(group), max_batch):
            out.append(np.concatenate(group[i : i + max_batch]))
    return out


def _expose(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    have = {o.name for o in aug.graph.output}
    for n in names:
        if n not in have:
            aug.graph.output.append(onnx.ValueInfoProto(name=n))
    return aug


def _tensor_bytes(
    model: onnx.ModelProto, names: list[str], x: np.ndarray, threads: int | None
) -> dict[str, int]:
    """Bytes of each tensor on input ``x``, measured in chunks of 64 tensors."""
    in_name = model.graph.input[0].name
    sizes: dict[str, int] = {}
    for i in range(0, len(names), 64):
        part = names[i : i + 64]
        sess = _session(_expose(model, part), threads)
        for n, v in zip(part, sess.run(part, {in_name: x}), strict=True):
            sizes[n] = int(np.asarray(v).nbytes)
        del sess
    return sizes


def quantize_qdq(
    model: onnx.ModelProto,
    ranges: dict[str, tuple[float, float]],
    op_types: Sequence[str],
    exclude: Sequence[str] = (),
    per_channel: bool = True,
) -> onnx.ModelProto:
    """QDQ-quantize ``model`` with precomputed activation ranges (u8 activations, s8 weights).

    Uses ``onnxruntime.quantization.quantize_static`` with a calibration cache holding
    ``ranges``; weights are symmetric int8 (per output channel when ``per_channel``),
    activations asymmetric uint8 (AVX-512 VNNI and ARM dot-product kernels are u8s8).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {
        n: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
        for n, (lo, hi) in ranges.items()
    }
    with tempfile.TemporaryDirectory(prefix="xq.") as tmp:
        src, dst, cache = (Path(tmp) / n for n in ("in.onnx", "out.onnx", "calib.json"))
        onnx.save(model, src)
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        # quantize_static logs a "consider pre-processing" warning on the root logger on
        # every call; the graph here is already pre-processed (rewrites + shape inference)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(src),
                str(dst),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types),
                nodes_to_exclude=list(exclude),
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(cache),
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        finally:
            root.setLevel(level)
        return onnx.load(str(dst))


def layer_groups(model: onnx.ModelProto, op_types: Sequence[str]) -> dict[str, list[str]]:
    """Layers of a float model: ``{anchor node name: [node names]}``.

    Each Conv/MatMul/Gemm starts a layer; any other node whose op may be quantized joins the
    layer of the node producing its first activation input (a node fed only by the graph
    input joins no layer). Nodes without names are named first (``node_<i>``).
    """
    ensure_node_names(model)
    g = GraphView(model)
    group_of: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    allowed = set(op_types)
    for n in model.graph.node:
        if n.op_type in ANCHOR_OPS and n.op_type in allowed:
            group_of[n.name] = n.name
            groups[n.name] = [n.name]
            continue
        src = next((g.producer[i] for i in n.input if i in g.producer), None)
        owner = group_of.get(src.name) if src is not None else None
        if owner is not None:
            group_of[n.name] = owner
            if n.op_type in allowed:
                groups[owner].append(n.name)
    return groups


def stem_layers(model: onnx.ModelProto, groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The layers of ``groups`` whose anchor reads a graph input (the stem conv on the image),
    and the depthwise convs reading the stem's output (:func:`_depthwise_readers`).

    Its output carries the image's contrast. One per-tensor int8 range, set by the
    high-contrast lines of the calibration set, leaves faint or low-contrast text a few
    steps of it: on PP-OCRv4 rec that single tensor was the largest share of the int8
    model's disagreement with float on degraded document lines (see
    ``QuantizeConfig.float_stem``).
    """
    inputs = {i.name for i in model.graph.input}
    by_name = {n.name: n for n in model.graph.node}
    stem = [g for g in groups if g in by_name and inputs & set(by_name[g].input)]
    return stem + [r for r in _depthwise_readers(model, stem) if r in groups and r not in stem]


def _depthwise_readers(model: onnx.ModelProto, anchors: Sequence[str]) -> list[str]:
    """Depthwise convs reading the output of ``anchors`` (through non-anchor ops such as an
    activation), in graph order.

    Keeping the stem float is not enough when its reader is int8: the reader's input Q/DQ
    quantizes the stem's output all the same, with one per-tensor range. Measured on
    PP-OCRv4 rec (int8-all at percentile 99.999, biases corrected, stem float; the stem's
    depthwise reader's input rewired past its Q/DQ, nothing else changed), space-insensitive
    CER change vs fp32 on held-out lines (benchmarks/heldout.py, 200 each): en -0.37 ->
    -0.40, zh -0.10 -> -0.26, doc-en +0.40 -> -0.85, doc-zh +1.38 -> -0.10, codes +0.99 ->
    +0.05; latency +4% (a 3x3 depthwise conv on 16 channels). Only depthwise readers: they
    are a few percent of a mobile backbone's MACs, where a dense reader (a pointwise conv,
    a classifier) would be a large share.
    """
    g = GraphView(model)
    by_name = {n.name: n for n in model.graph.node}
    todo = [o for a in anchors if a in by_name for o in by_name[a].output]
    seen: set[str] = set()
    found: set[str] = set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        for n in g.consumers.get(t, []):
            if n.op_type not in ANCHOR_OPS:
                todo.extend(n.output)
            elif n.op_type == "Conv" and _is_depthwise(g, n):
                found.add(n.name)
    return [n.name for n in model.graph.node if n.name in found]


def _is_depthwise(g: GraphView, conv: onnx.NodeProto) -> bool:
    """``group`` equals the input channels (the weight has one input channel per group)."""
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    w = g.inits.get(conv.input[1]) if len(conv.input) > 1 else None
    return group > 1 and w is not None and len(w.dims) == 4 and w.dims[1] == 1


#: ops that only move or reshape values (and a bias Add), walked through from a Softmax back
#: to the layer computing its logits
_PASS_THROUGH = ("Add", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity")


def softmax_logits(model: onnx.ModelProto) -> list[str]:
    """Tensors holding the logits of a Softmax head, from the Softmax back to its Conv/MatMul.

    Their ranges must keep the maximum: the largest logit is the winning class, so clipping
    it at a percentile flattens the top of the distribution and greedy CTC decoding flips
    characters. Measured on PP-OCRv4 rec: percentile 99.98 ranges cost 7.2 CER points, all
    of it from the head's logits; with those at min-max the same ranges cost 0.0.
    """
    g = GraphView(model)
    out: list[str] = []
    for sm in (n for n in model.graph.node if n.op_type == "Softmax"):
        t = sm.input[0]
        while True:
            out.append(t)
            p = g.producer.get(t)
            if p is None or p.op_type not in _PASS_THROUGH:
                break
            # a bias Add: follow its activation input, not the constant
            acts = [i for i in p.input if i and g.const(i) is None]
            if len(acts) != 1:
                break
            t = acts[0]
    return list(dict.fromkeys(out))


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (needed for ``nodes_to_exclude``)."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"node_{i}_{n.op_type}"
            while name in seen:
                name += "_"
            n.name = name
            seen.add(name)


def keep_float(
    qdq: onnx.ModelProto,
    fp32: onnx.ModelProto,
    quantized: Iterable[str],
    float_weights: bool = False,
) -> onnx.ModelProto:
    """A copy of QDQ model ``qdq`` where only the nodes named in ``quantized`` stay int8.

    Every other node computes in float again: its weights come back from ``fp32`` (by
    original name) and an activation input ``DQ(Q(x))`` is rewired to ``x`` when the producer
    of ``x`` is float too (an int8 producer emits int8 values, so its readers keep the DQ).
    onnxruntime's quantizer deletes a Clip/Relu whose range the following Q already enforces;
    where such a producer turns float, the activation is put back. Q/DQ pairs left without
    readers are pruned.

    With ``float_weights`` False (the default) float nodes keep their int8 weights behind a
    DequantizeLinear: the file stays int8-sized, and in OCR models the damage comes from
    activation ranges, seldom from per-channel weights.
    """
    out = onnx.ModelProto()
    out.CopyFrom(qdq)
    g = GraphView(out)
    fp32_inits = {t.name: t for t in fp32.graph.initializer}
    keep = set(quantized)
    added: set[str] = set()

    def float_init(orig: str) -> str:
        # onnxruntime may name the DequantizeLinear output after the float weight itself
        fname = orig if orig not in g.producer and orig not in g.inits else orig + "_fp32"
        if fname not in added:
            t = onnx.TensorProto()
            t.CopyFrom(fp32_inits[orig])
            t.name = fname
            out.graph.initializer.append(t)
            added.add(fname)
        return fname

    for n in out.graph.node:
        if n.name in keep or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, t in enumerate(n.input):
            dq = g.producer.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = dq.input[0]
            q = g.producer.get(src)
            if q is not None and q.op_type == "QuantizeLinear":
                p = g.producer.get(q.input[0])
                if p is None or p.name not in keep:
                    n.input[k] = q.input[0]
                continue
            orig = src[: -len("_quantized")] if src.endswith("_quantized") else None
            if float_weights and orig is not None and orig in fp32_inits:
                n.input[k] = float_init(orig)
    _float_graph_outputs(out, keep)
    _restore_removed_activations(out, fp32, keep, fp32_inits)
    prune_unused(out)
    return out


def _float_graph_outputs(out: onnx.ModelProto, keep: set[str]) -> None:
    """A graph output written by ``DQ(Q(t))`` of a float producer becomes ``t`` itself."""
    from xcompress.quantize.graph import remove_nodes, rename_input

    g = GraphView(out)
    for o in out.graph.output:
        dq = g.producer.get(o.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = g.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        t = q.input[0]
        p = g.producer.get(t)
        if p is None or p.name in keep or p.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        # edit before removing: remove_nodes rebuilds the node list from copies
        rename_input(out, t, o.name)
        p.output[list(p.output).index(t)] = o.name
        remove_nodes(out, [dq] + ([q] if len(g.consumers.get(q.output[0], [])) == 1 else []))
        g.refresh()


def _restore_removed_activations(
    out: onnx.ModelProto, fp32: onnx.ModelProto, keep: set[str], fp32_inits: dict
) -> None:
    names = {n.name for n in out.graph.node}
    g = GraphView(out)
    for a in fp32.graph.node:
        if a.op_type not in ("Clip", "Relu") or a.name in names:
            continue
        t = a.output[0]
        p = g.producer.get(t)
        if p is None or p.name in keep or p.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        pre = t + "_preact"
        p.output[list(p.output).index(t)] = pre
        node = onnx.NodeProto()
        node.CopyFrom(a)
        node.input[0] = pre
        out.graph.node.append(node)
        for c in list(node.input)[1:]:
            if c and c not in g.inits and c in fp32_inits:
                out.graph.initializer.append(fp32_inits[c])
                g.inits[c] = fp32_inits[c]
    from xcompress.quantize.rewrites import _toposort

    _toposort(out)


def _invariant_interval(g: GraphView, x: str, n: onnx.NodeProto) -> tuple[float, float]:
    """An interval ``[a, b]`` such that clamping ``x`` to it leaves ``n``'s output unchanged
    (``(-inf, inf)`` when none is known)."""
    if n.op_type == "Clip" and n.input[0] == x:
        return g.clip_bounds(n)
    if n.op_type == "Relu":
        return (0.0, np.inf)
    if n.op_type == "HardSwish":
        return (-3.0, np.inf)
    if n.op_type == "HardSigmoid":
        alpha, beta = float(attr(n, "alpha", 0.2)), float(attr(n, "beta", 0.5))
        if alpha > 0:
            return (-beta / alpha, (1.0 - beta) / alpha)
    if n.op_type == "Add":  # x + c read only by Clip(lo, hi): clamp x to [lo - c, hi - c]
        c = g.scalar(g.other_input(n, x) or "")
        clip = g.sole_consumer(n.output[0])
        if c is not None and clip is not None and clip.op_type == "Clip" \
                and clip.input[0] == n.output[0]:
            lo, hi = g.clip_bounds(clip)
            return (lo - c, hi - c)
    if n.op_type == "Mul":  # decomposed hard-swish x * Clip(x + c, 0, hi): 0 for x <= -c
        z = g.other_input(n, x)
        clip = g.producer.get(z or "")
        if clip is not None and clip.op_type == "Clip" and g.clip_bounds(clip)[0] == 0.0:
            add = g.producer.get(clip.input[0])
            if add is not None and add.op_type == "Add" and x in add.input:
                c = g.scalar(g.other_input(add, x) or "")
                if c is not None:
                    return (-c, np.inf)
    return (-np.inf, np.inf)


def saturation_bounds(model: onnx.ModelProto) -> dict[str, tuple[float, float]]:
    """``{tensor: (a, b)}``: activations whose every reader ignores values outside ``[a, b]``.

    A calibrated range wider than that spends int8 steps on values the next ops saturate
    anyway: the pre-activation output of a Conv before a decomposed hard-swish
    (``x * Clip(x + 3, 0, 6) / 6`` is 0 for every ``x <= -3``) or a HardSigmoid, ``x + 3``
    before its ``Clip(0, 6)``, the input of a Relu. Clamping such a tensor to its bounds
    changes no output of the float model, so intersecting its range with them only makes the
    int8 steps finer (:func:`tighten_ranges`).

    Example (``y = x * Clip(x + 3, 0, 6)``): ``x`` may be clamped to ``[-3, inf)``, ``x + 3``
    to ``[0, 6]``.
    """
    g = GraphView(model)
    out: dict[str, tuple[float, float]] = {}
    for t, readers in g.consumers.items():
        if not readers or t in g.graph_outputs or t in g.inits:
            continue
        spans = [_invariant_interval(g, t, n) for n in readers]
        lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
        if np.isfinite(lo) or np.isfinite(hi):
            out[t] = (lo, hi)
    return out


def tighten_ranges(ranges: dict[str, tuple[float, float]],
                   bounds: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """``ranges`` intersected with :func:`saturation_bounds` (each still containing 0)."""
    out = dict(ranges)
    for t, (a, b) in bounds.items():
        if t in out:
            lo, hi = out[t]
            lo, hi = max(lo, a), min(hi, b)
            out[t] = (min(lo, 0.0), max(hi, 0.0)) if lo < hi else out[t]
    return out


__all__ = [
    "ANCHOR_OPS",
    "ensure_node_names",
    "float_tensors",
    "gather_stats",
    "keep_float",
    "layer_groups",
    "quantize_qdq",
    "saturation_bounds",
    "stem_layers",
    "softmax_logits",
    "tighten_ranges",
]
