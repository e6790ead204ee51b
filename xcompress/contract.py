"""The input/output contract of each OCR task, checked when a model is loaded.

A model that is not what its task says (an ImageNet classifier given ``--task det``, a
recognizer with the wrong dict) must be refused when it is resolved, not scored: otherwise
``eval`` reports Hmean 0 without a word and ``quantize`` writes an "int8" model of something
that was never an OCR model. Each task declares its contract once, as data; one checker reads
the ONNX graph's declared shapes (no session, no weights loaded) and compares.

Example:
    >>> CONTRACTS["det"].output_rank, CONTRACTS["det"].channels
    (4, 1)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from xcompress.errors import ModelError

#: elem_type of ONNX float tensors (FLOAT, FLOAT16, DOUBLE, BFLOAT16)
_FLOAT_TYPES = {1, 10, 11, 16}


@dataclass(frozen=True)
class TaskContract:
    """What a PP-OCR model of one task takes and returns.

    Attributes:
        output_rank: rank of the first output (rec ``N x T x C``, det ``N x 1 x H x W``,
            cls ``N x C``).
        channel_axis: axis of the first output that holds classes / maps.
        channels: its size when fixed by the task (det: one probability map; cls: one per
            direction label); None when it comes from the card (rec: charset + blank).
        what: words for messages.
    """

    output_rank: int
    channel_axis: int
    channels: int | None
    what: str


CONTRACTS: dict[str, TaskContract] = {
    "rec": TaskContract(3, -1, None, "N x T x classes CTC probabilities"),
    "det": TaskContract(4, 1, 1, "an N x 1 x H x W text probability map"),
    "cls": TaskContract(2, 1, 2, "N x 2 direction scores (0 / 180)"),
}


@dataclass(frozen=True)
class OnnxIO:
    """Declared inputs and outputs of an ONNX graph; a dim is an int, or None if symbolic."""

    inputs: tuple[tuple[str, tuple[int | None, ...]], ...]
    outputs: tuple[tuple[str, tuple[int | None, ...], int], ...]  # name, dims, elem_type


def read_onnx_io(path: str | Path) -> OnnxIO:
    """The graph's declared I/O, without its external weights.

    Cached per file version (path, size, mtime): resolving a model checks it on every load,
    and one command resolves and checks the same file several times (a bare file's card,
    the contract, quantize's own check), each a parse of a 10-20 MB protobuf otherwise.

    Raises:
        ModelError: the file is not a readable ONNX model.
    """
    p = Path(path).absolute()
    try:
        st = p.stat()
    except OSError:
        raise ModelError(f"cannot read {path}: no such file") from None
    return _read_onnx_io(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _read_onnx_io(path: str, size: int, mtime_ns: int) -> OnnxIO:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends for a corrupt file
        raise ModelError(
            f"cannot read {path} as ONNX ({type(e).__name__}): pass a valid .onnx model"
        ) from None

    def dims(vi) -> tuple[int | None, ...]:
        return tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in vi.type.tensor_type.shape.dim
        )

    inits = {t.name for t in model.graph.initializer}
    ins = tuple((vi.name, dims(vi)) for vi in model.graph.input if vi.name not in inits)
    outs = tuple(
        (vi.name, dims(vi), vi.type.tensor_type.elem_type) for vi in model.graph.output
    )
    return OnnxIO(ins, outs)


def check_onnx_contract(
    path: str | Path,
    task: str,
    num_classes: int | None = None,
    labels: int | None = None,
) -> OnnxIO:
    """Check an ONNX model against its task's contract; return its declared I/O.

    Args:
        path: the model file.
        task: ``rec``, ``det`` or ``cls``.
        num_classes: rec: classes the card's charset gives (charset + blank).
        labels: cls: number of direction labels on the card (default 2).

    Raises:
        ModelError: one line naming what differs and what to do.
    """
    io = read_onnx_io(path)
    name = Path(path).name
    c = CONTRACTS[task]
    hint = f"not a PP-OCR {task} model (or --task is wrong)"
    if len(io.inputs) != 1:
        raise ModelError(f"{name} has {len(io.inputs)} image inputs, a PP-OCR model has 1: {hint}")
    in_name, in_dims = io.inputs[0]
    if in_dims and (len(in_dims) != 4 or in_dims[1] not in (None, 3)):
        shape = "x".join("?" if d is None else str(d) for d in in_dims)
        raise ModelError(
            f"{name}: input {in_name!r} is {shape}, not an N x 3 x H x W image: {hint}"
        )
    if not io.outputs:
        raise ModelError(f"{name} has no outputs: {hint}")
    out_name, out_dims, elem = io.outputs[0]
    if elem not in _FLOAT_TYPES:
        raise ModelError(f"{name}: output {out_name!r} is not a float tensor: {hint}")
    if not out_dims:
        return io  # shapes not declared: checked by the runner when it first runs
    shape = "x".join("?" if d is None else str(d) for d in out_dims)
    if len(out_dims) != c.output_rank:
        raise ModelError(
            f"{name}: output {out_name!r} is {shape}; a {task} model returns {c.what}: {hint}"
        )
    want = c.channels if task != "cls" or labels is None else labels
    if task == "rec":
        want = num_classes
    got = out_dims[c.channel_axis]
    if want is not None and got is not None and got != want:
        if task == "rec":
            raise ModelError(
                f"{name} outputs {got} classes but its charset gives {want} (charset + CTC "
                f"blank): pass the model's own dict file with --charset"
            )
        raise ModelError(
            f"{name}: output {out_name!r} is {shape}; a {task} model returns {c.what}: {hint}"
        )
    return io
