"""MACs, FLOPs and parameter count of an ONNX model at a concrete input shape.

Counting needs the shape of every tensor, and PP-OCR exports leave many of them unknown
until the input is fixed. Shapes are found in three steps, the first that gives every shape
the count needs wins (the report says which, in ``shape_source``):

1. ``onnx``: :func:`onnx.shape_inference.infer_shapes` with the input dims fixed and data
   propagation on. Enough for PP-OCRv4 det.
2. ``symbolic``: onnxruntime's ``SymbolicShapeInference``, which also evaluates the
   Shape -> Gather -> Concat -> Reshape chains of transformer blocks that step 1 leaves
   unknown (PP-OCRv4 rec's SVTR neck: 140 tensors unknown after step 1, 0 after step 2).
3. ``onnxruntime``: run the model once with every intermediate tensor exposed as an output
   and read the real shapes. Exact for that input; used when both inferences give up
   (``SymbolicShapeInference`` asserts on PP-OCR mobile v2 cls's ``Concat`` on axis 1).

Counting conventions:

- **MACs** (multiply-accumulates) for Conv, ConvTranspose, MatMul, Gemm and their int8
  forms (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger). Their FLOPs are
  ``2 * MACs`` plus one add per output element for a bias.
- **Other FLOPs**, per output element: 1 for elementwise ops and activations
  (transcendentals included), 2 for BatchNormalization (inference: scale and shift),
  5 for Softmax (max, subtract, exp, sum, divide) and mean/variance normalizations, 3 for
  LpNormalization; pools cost their kernel size per output element, global pools and
  reductions one per input element.
- Data-movement ops (Reshape, Transpose, Concat, Slice...) cost 0; op types with no formula
  are listed in ``uncounted`` rather than guessed.
- **Parameters**: elements of initializers and ``Constant`` tensors (Paddle2ONNX stores all
  weights as ``Constant`` nodes) that are float or int8, have more than one element (scalars
  such as hard-swish's 3 and 6 are not learned) and feed a node as data, not as a
  quantization scale/zero point, a resize scale or a clip bound.

Example:
    >>> rep = count_onnx("ppocr_rec.onnx", (1, 3, 48, 320))         # doctest: +SKIP
    >>> rep.macs, rep.params, rep.shape_source                      # doctest: +SKIP
    (702469440, 2690109, 'symbolic')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from xcompress.errors import ModelError

ShapeSource = Literal["onnx", "symbolic", "onnxruntime"]
Shape = tuple[int, ...]
InputShapes = Sequence[int] | Mapping[str, Sequence[int]]


class OpCost(BaseModel):
    """Cost of all nodes of one op type."""

    model_config = ConfigDict(frozen=True)

    count: int = 0
    macs: int = 0
    flops: int = 0


class CostReport(BaseModel):
    """What a model costs at one input shape.

    Attributes:
        macs: multiply-accumulates of the MAC ops (Conv, MatMul, Gemm...).
        flops: all floating-point operations: ``2 * macs`` + bias adds + other ops.
        other_flops: the part of ``flops`` from non-MAC ops (elementwise, norms, pools...).
        params: parameter count (see the module docstring for what counts).
        by_op: op type -> node count, MACs and FLOPs.
        uncounted: op types with no formula -> node count (their cost is not in the totals).
        shape_source: which shape inference gave the shapes.
    """

    model_config = ConfigDict(frozen=True)

    shape: dict[str, Shape]
    macs: int
    flops: int
    other_flops: int
    params: int
    by_op: dict[str, OpCost]
    uncounted: dict[str, int]
    shape_source: ShapeSource


# -- per-op formulas -----------------------------------------------------------------------
# Each takes the node, a shape lookup and its attributes and returns (macs, flops).

Shapes = dict[str, Shape]
Formula = Callable[[object, Shapes, dict], tuple[int, int]]


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _in(node, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def _conv_like(x: int, w: int, b: int) -> Formula:
    """Conv with data input ``x``, weight ``w`` (Cout, Cin/groups, *k) and bias ``b``."""

    def formula(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
        out = _numel(shapes[node.output[0]])
        weight = shapes[_in(node, w)]
        macs = out * _numel(weight[1:])  # each output element: Cin/groups * prod(kernel)
        bias = out if _in(node, b) else 0
        return macs, 2 * macs + bias

    return formula


def _conv_transpose(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
    # Each input element is scattered into a kernel window of Cout/groups channels;
    # weight is (Cin, Cout/groups, *k).
    x = shapes[node.input[0]]
    weight = shapes[node.input[1]]
    macs = _numel(x) * _numel(weight[1:])
    bias = _numel(shapes[node.output[0]]) if _in(node, 2) else 0
    return macs, 2 * macs + bias


def _matmul_like(a: int) -> Formula:
    def formula(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
        # Every output element is a dot product over A's last axis (numpy matmul rules,
        # batch broadcasting included).
        k = shapes[_in(node, a)][-1]
        macs = _numel(shapes[node.output[0]]) * k
        return macs, 2 * macs

    return formula


def _gemm(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
    a = shapes[node.input[0]]
    k = a[0] if attrs.get("transA", 0) else a[1]
    out = _numel(shapes[node.output[0]])
    macs = out * k
    return macs, 2 * macs + (out if _in(node, 2) else 0)


def _per_output(cost: int) -> Formula:
    def formula(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
        return 0, cost * sum(_numel(shapes[o]) for o in node.output if o)

    return formula


def _per_input(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
    return 0, _numel(shapes[node.input[0]])


def _pool(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
    return 0, _numel(shapes[node.output[0]]) * _numel(attrs.get("kernel_shape", [1]))


def _free(node, shapes: Shapes, attrs: dict) -> tuple[int, int]:
    return 0, 0


MAC_OPS: dict[str, Formula] = {
    "Conv": _conv_like(0, 1, 2),
    "ConvInteger": _conv_like(0, 1, 99),
    "QLinearConv": _conv_like(0, 3, 8),
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul_like(0),
    "MatMulInteger": _matmul_like(0),
    "QLinearMatMul": _matmul_like(0),
    "Gemm": _gemm,
}

_ELEMENTWISE = (
    "Add Sub Mul Div Pow Mod Max Min Sum Mean Neg Abs Sign Reciprocal Sqrt Exp Log Erf Floor "
    "Ceil Round Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh Softplus "
    "Softsign Gelu Mish Clip Sin Cos Where Equal Greater GreaterOrEqual Less LessOrEqual Not "
    "And Or Xor IsNaN IsInf QuantizeLinear DequantizeLinear DynamicQuantizeLinear Resize "
    "Upsample"
).split()
_FREE = (
    "Constant ConstantOfShape Identity Reshape Transpose Concat Split Slice Gather "
    "GatherElements GatherND Squeeze Unsqueeze Flatten Cast CastLike Shape Size Pad Expand "
    "Tile Range Dropout DepthToSpace SpaceToDepth ScatterND ScatterElements"
).split()

_NORMS = "Softmax LogSoftmax LayerNormalization InstanceNormalization GroupNormalization".split()
_POOLS = "MaxPool AveragePool LpPool".split()
_REDUCTIONS = (
    "GlobalAveragePool GlobalMaxPool ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd "
    "ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSumExp ArgMax ArgMin"
).split()

OTHER_OPS: dict[str, Formula] = {
    **{op: _per_output(1) for op in _ELEMENTWISE},
    "BatchNormalization": _per_output(2),
    "LpNormalization": _per_output(3),
    **{op: _per_output(5) for op in _NORMS},
    **{op: _pool for op in _POOLS},
    **{op: _per_input for op in _REDUCTIONS},
    **{op: _free for op in _FREE},
}

# Inputs that hold quantization scales/zero points, resize factors or clip bounds: constants,
# not learned parameters.
_NON_PARAM_INPUTS: dict[str, set[int]] = {
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "ConvInteger": {2, 3},
    "MatMulInteger": {2, 3},
    "Resize": {1, 2, 3},
    "Upsample": {1},
    "Clip": {1, 2},
    "Pad": {1, 2, 3},
}
_PARAM_DTYPES = ("FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE", "INT8", "UINT8")


# -- shapes --------------------------------------------------------------------------------


def _dims(value_info) -> Shape | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def _constant_tensors(model) -> dict[str, object]:
    """Initializers and Constant-node tensors by name (TensorProto)."""
    from onnx import helper

    tensors: dict[str, object] = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    tensors[node.output[0]] = attr.t
                elif attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    value = helper.get_attribute_value(attr)
                    tensors[node.output[0]] = np.asarray(value)
    return tensors


def _tensor_shape(t) -> Shape:
    if isinstance(t, np.ndarray):
        return tuple(t.shape)
    return tuple(int(d) for d in t.dims)


def _known_shapes(model) -> Shapes:
    shapes: Shapes = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    for name, t in _constant_tensors(model).items():
        shapes[name] = _tensor_shape(t)
    return shapes


def _needed(model) -> set[str]:
    """Tensors whose shapes the count needs: inputs and outputs of counted nodes."""
    needed: set[str] = set()
    for node in model.graph.node:
        formula = MAC_OPS.get(node.op_type) or OTHER_OPS.get(node.op_type)
        if formula is None or formula is _free:
            continue
        needed.update(n for n in [*node.input, *node.output] if n)
    return needed


def _fix_inputs(model, input_shapes: dict[str, Shape]):
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in fixed.graph.input:
        if vi.name in input_shapes:
            shape = vi.type.tensor_type.shape
            shape.ClearField("dim")
            for v in input_shapes[vi.name]:
                shape.dim.add().dim_value = int(v)
    return fixed


def _shapes_by_onnx(model) -> Shapes:
    from onnx import shape_inference

    return _known_shapes(shape_inference.infer_shapes(model, data_prop=True))


def _shapes_by_symbolic(model) -> Shapes:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    return _known_shapes(inferred) if inferred is not None else {}


def _shapes_by_onnxruntime(model) -> Shapes:
    import onnx
    from onnx import helper

    from xcompress.runtime.ort import ort_session

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    names = [o for n in exposed.graph.node if n.op_type != "Constant" for o in n.output if o]
    for name in names:
        if name not in have:
            exposed.graph.output.append(helper.make_empty_tensor_value_info(name))
    # No graph rewrites: fused or removed nodes would hide the tensors being asked for.
    sess = ort_session(exposed, optimize=False)
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        dtype = helper.tensor_dtype_to_np_dtype(
            next(v.type.tensor_type.elem_type for v in model.graph.input if v.name == i.name)
        )
        feeds[i.name] = rng.uniform(-1, 1, size=i.shape).astype(dtype)
    outs = sess.run(None, feeds)
    shapes = _known_shapes(model)
    for o, value in zip(sess.get_outputs(), outs, strict=True):
        shapes[o.name] = tuple(np.shape(value))
    return shapes


_SHAPE_STEPS: dict[ShapeSource, Callable[[object], Shapes]] = {
    "onnx": _shapes_by_onnx,
    "symbolic": _shapes_by_symbolic,
    "onnxruntime": _shapes_by_onnxruntime,
}


def infer_shapes(
    model, method: ShapeSource | Literal["auto"] = "auto"
) -> tuple[Shapes, ShapeSource]:
    """Static shapes of the tensors a count needs, and the step that found them.

    Args:
        model: an ``onnx.ModelProto`` whose inputs have fixed dims.
        method: ``auto`` tries ``onnx``, ``symbolic``, ``onnxruntime`` in turn; a name forces
            one step (tests use this to check the steps agree).

    Raises:
        ModelError: no step could find every needed shape.
    """
    needed = _needed(model)
    steps = list(_SHAPE_STEPS) if method == "auto" else [method]
    last_problem = ""
    for step in steps:
        try:
            shapes = _SHAPE_STEPS[step](model)
        except Exception as e:  # the inference libraries raise assorted errors on odd graphs
            last_problem = f"{step}: {(str(e).strip().splitlines() or [type(e).__name__])[0]}"
            continue
        missing = needed - shapes.keys()
        if not missing:
            return shapes, step
        last_problem = f"{step}: {len(missing)} shapes unknown, e.g. {sorted(missing)[0]}"
    raise ModelError(f"cannot infer tensor shapes to count FLOPs ({last_problem[:200]})")


# -- counting ------------------------------------------------------------------------------


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def count_params(model) -> int:
    """Learned parameters of a model (see the module docstring for what counts)."""
    from onnx import TensorProto

    param_dtypes = {getattr(TensorProto, d) for d in _PARAM_DTYPES}
    data_inputs: set[str] = set()
    for node in model.graph.node:
        skip = _NON_PARAM_INPUTS.get(node.op_type, set())
        data_inputs.update(n for i, n in enumerate(node.input) if n and i not in skip)
    total = 0
    for name, t in _constant_tensors(model).items():
        if isinstance(t, np.ndarray):  # value_floats/value_ints attributes: small constants
            continue
        if t.data_type in param_dtypes and name in data_inputs:
            n = _numel(t.dims)
            total += n if n > 1 else 0
    return total


def _input_shapes(model, shape: InputShapes) -> dict[str, Shape]:
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    if isinstance(shape, Mapping):
        unknown = set(shape) - {vi.name for vi in inputs}
        if unknown:
            raise ModelError(f"model has no input named {sorted(unknown)[0]!r}")
        wanted = {k: tuple(int(v) for v in s) for k, s in shape.items()}
    else:
        if not inputs:
            raise ModelError("model has no inputs")
        wanted = {inputs[0].name: tuple(int(v) for v in shape)}
    for vi in inputs:
        if vi.name not in wanted:
            continue
        dims = vi.type.tensor_type.shape.dim
        got = wanted[vi.name]
        if len(dims) != len(got):
            raise ModelError(
                f"input {vi.name!r} has {len(dims)} dims, shape {'x'.join(map(str, got))} has "
                f"{len(got)}"
            )
        for axis, (d, v) in enumerate(zip(dims, got, strict=True)):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                raise ModelError(
                    f"input {vi.name!r} axis {axis} is fixed to {d.dim_value}, not {v}"
                )
    return wanted


class NodeCost(BaseModel):
    """Cost of one node at a concrete shape (what a latency model reads per kernel)."""

    model_config = ConfigDict(frozen=True)

    op: str
    macs: int
    flops: int
    out_elems: int  # elements the node writes (memory traffic of elementwise kernels)
    groups: int = 1  # Conv groups: depthwise convs are memory-bound, unlike dense ones


def _load(model: str | Path | object):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)  # type: ignore[arg-type]
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{path.name} is not a readable ONNX model: {e}") from e


def node_costs(
    model: str | Path | object,
    shape: InputShapes,
    method: ShapeSource | Literal["auto"] = "auto",
) -> tuple[list[NodeCost], dict[str, int], dict[str, Shape], ShapeSource, object]:
    """Per-node costs at a concrete input shape.

    Returns:
        (costs of the counted nodes in graph order, op type -> count of nodes with no
        formula, the input shapes used, the shape inference used, the shape-fixed model).
    """
    model = _load(model)
    wanted = _input_shapes(model, shape)
    fixed = _fix_inputs(model, wanted)
    shapes, source = infer_shapes(fixed, method)
    costs: list[NodeCost] = []
    uncounted: dict[str, int] = {}
    for node in fixed.graph.node:
        formula = MAC_OPS.get(node.op_type) or OTHER_OPS.get(node.op_type)
        if formula is None:
            uncounted[node.op_type] = uncounted.get(node.op_type, 0) + 1
            continue
        attrs = _attrs(node)
        macs, flops = formula(node, shapes, attrs)
        out = sum(_numel(shapes[o]) for o in node.output if o and o in shapes)
        costs.append(NodeCost(op=node.op_type, macs=macs, flops=flops, out_elems=out,
                              groups=int(attrs.get("group", 1))))  # fmt: skip
    return costs, uncounted, wanted, source, fixed


def count_onnx(
    model: str | Path | object,
    shape: InputShapes,
    method: ShapeSource | Literal["auto"] = "auto",
) -> CostReport:
    """Count MACs, FLOPs and parameters of an ONNX model at a concrete input shape.

    Args:
        model: path to a ``.onnx`` file or an ``onnx.ModelProto``.
        shape: the first input's shape, e.g. ``(1, 3, 48, 320)``, or ``{input name: shape}``.
        method: shape inference step (see :func:`infer_shapes`).

    Returns:
        A :class:`CostReport` with totals and a per-op-type breakdown.

    Raises:
        ModelError: unreadable file, a shape that does not fit the model's input, or shapes
            that cannot be inferred.

    Example:
        >>> rep = count_onnx("conv.onnx", (1, 3, 32, 32))              # doctest: +SKIP
        >>> rep.by_op["Conv"].macs == 16 * 3 * 9 * 32 * 32           # doctest: +SKIP
        True
    """
    nodes, uncounted, wanted, source, fixed = node_costs(model, shape, method)
    by_op: dict[str, list[int]] = {}
    for n in nodes:
        acc = by_op.setdefault(n.op, [0, 0, 0])
        acc[0] += 1
        acc[1] += n.macs
        acc[2] += n.flops
    costs = {op: OpCost(count=c, macs=m, flops=f) for op, (c, m, f) in sorted(by_op.items())}
    macs = sum(c.macs for c in costs.values())
    flops = sum(c.flops for c in costs.values())
    other = sum(c.flops for op, c in costs.items() if op not in MAC_OPS)
    return CostReport(
        shape=wanted,
        macs=macs,
        flops=flops,
        other_flops=other,
        params=count_params(fixed),
        by_op=costs,
        uncounted=uncounted,
        shape_source=source,
    )


# Model file suffix -> cost counter. A format without one (e.g. .tflite for now) has no count.
COUNTERS: dict[str, Callable[[Path, InputShapes], CostReport]] = {".onnx": count_onnx}


def model_cost(path: str | Path, shape: InputShapes) -> CostReport | None:
    """The cost of a model file at a shape, or None if its format has no counter yet."""
    path = Path(path)
    counter = COUNTERS.get(path.suffix.lower())
    return None if counter is None else counter(path, shape)
