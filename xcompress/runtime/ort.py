"""onnxruntime: the project's one place for sessions, its runner and its descriptor.

Every onnxruntime session in xcompress is made by :func:`ort_session`, so all of them share
the same options: a fixed intra-op thread count with one inter-op thread (one model at a time,
no second pool fighting the first for the cores), quiet logging, and for timing sessions
``session.intra_op.allow_spinning = 0`` (:data:`TIMING_SESSION_CONFIG`). With spinning on, the
idle workers of one session keep spinning while the other session runs, and on a shared
machine they also fight other processes for the cores. Measured on PP-OCRv4 rec, 2 threads,
a 2-core machine under load (Nov 2026): spinning on, one model alone 51-78 ms, alternated with
a copy 93-120 ms; spinning off, 27-33 ms alone and 28-36 ms alternated. The option is recorded
in every latency result; the board runner (:mod:`xcompress.boards.runner`) restates it, and a
test keeps the two equal.

Example:
    >>> sess = ort_session("model.onnx", threads=2)                    # doctest: +SKIP
    >>> OrtRunner("model.onnx", threads=2).run(batch).shape            # doctest: +SKIP
    (1, 40, 6625)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xcompress.errors import ModelError
from xcompress.runtime import Runner, Runtime, TimedRun

if TYPE_CHECKING:
    from onnx import ModelProto

#: Session config entries of every timing session (see the module docstring).
TIMING_SESSION_CONFIG: dict[str, str] = {"session.intra_op.allow_spinning": "0"}
LOG_SEVERITY = 3  # errors only: onnxruntime's warnings (unused initializers...) are noise here

#: Ops that onnxruntime's CPU QDQ transformer turns into an int8 kernel (or runs on int8 data
#: directly) when their inputs come from DequantizeLinear and their output goes to
#: QuantizeLinear (onnxruntime 1.2x-1.3x).
INT8_OPS = frozenset({
    "Conv", "MatMul", "Gemm", "Add", "Mul", "Concat", "Sigmoid", "LeakyRelu", "Softmax",
    "AveragePool", "GlobalAveragePool", "MaxPool", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Slice", "Resize", "Gather", "Flatten", "Split", "Where", "Pad",
    "ConvTranspose", "InstanceNormalization",
})  # fmt: skip
INT8_WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: What to quantize for an all-int8 backbone: Relu and Clip have no kernel of their own, the
#: QDQ transformer folds them into the quantized op before them.
INT8_GRAPH_OPS = (
    *INT8_WEIGHT_OPS, "Add", "Mul", "Clip", "Relu", "Concat", "Sigmoid",
    "GlobalAveragePool", "AveragePool", "MaxPool", "Resize", "Transpose", "Reshape",
    "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split",
)  # fmt: skip


#: On an x86 CPU without VNNI (AVX2 / AVX-512F only) onnxruntime's u8 x s8 int8 kernels use
#: VPMADDUBSW, whose 16-bit pair sums saturate: a Conv(8->16, 3x3) QDQ model differed from the
#: same graph run op by op by 0.48 (max abs), and the QAT emulation by 0.064 on a tiny net.
#: This entry makes onnxruntime use its exact (u8 x u8) kernels there; ARM dot-product and
#: VNNI CPUs, which xcompress's int8 targets run on, compute exactly already.
X64_EXACT_INT8_CONFIG: dict[str, str] = {"session.x64quantprecision": "1"}


@lru_cache(maxsize=1)
def host_session_config() -> dict[str, str]:
    """Config entries every onnxruntime session on *this* machine gets (see
    :data:`X64_EXACT_INT8_CONFIG`): only on an x86 host whose CPU has no int8 dot product."""
    from xcompress.profile.machine import host_machine

    m = host_machine()
    x86 = m.isa in ("x86_64", "AMD64", "i686")
    return dict(X64_EXACT_INT8_CONFIG) if x86 and not m.int8_dot else {}


def session_options(threads: int | None = None, *, timing: bool = False, optimize: bool = True):
    """The project's session options.

    Args:
        threads: intra-op threads (with one inter-op thread); None: onnxruntime's default.
        timing: add :data:`TIMING_SESSION_CONFIG` (no spinning), for sessions being timed.
        optimize: False turns graph optimizations off, so every tensor of the graph as written
            exists at run time (fused or removed nodes would hide tensors being asked for).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.log_severity_level = LOG_SEVERITY
    for key, value in host_session_config().items():
        so.add_session_config_entry(key, value)
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if timing:
        for key, value in TIMING_SESSION_CONFIG.items():
            so.add_session_config_entry(key, value)
    return so


def ort_session(
    model: str | Path | bytes | ModelProto,
    threads: int | None = None,
    *,
    timing: bool = False,
    optimize: bool = True,
):
    """An onnxruntime CPU ``InferenceSession`` with :func:`session_options`.

    Args:
        model: a model file path, serialized bytes, or an ``onnx.ModelProto``.
        threads, timing, optimize: see :func:`session_options`.

    onnxruntime's own exceptions pass through (callers that face users wrap them with
    :func:`load_error`).
    """
    import onnxruntime as ort

    if isinstance(model, (str, Path)):
        source: str | bytes = str(model)
    elif isinstance(model, bytes):
        source = model
    else:
        source = model.SerializeToString()
    options = session_options(threads, timing=timing, optimize=optimize)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def load_error(path: Path | str, e: Exception) -> ModelError:
    """The one-line error for a file onnxruntime cannot load."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return ModelError(f"onnxruntime cannot load {path}: {first}")


class OrtRunner(Runner):
    """An onnxruntime CPU session."""

    def __init__(self, path: str | Path | ModelProto, threads: int | None = None) -> None:
        """Open a model file, or an in-memory ``onnx.ModelProto`` (e.g. a candidate being tuned)."""
        self.path = Path(path) if isinstance(path, (str, Path)) else Path("<memory>")
        self.threads = threads
        try:
            self.session = ort_session(path, threads)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise load_error(self.path, e) from e
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name

    @property
    def input_name(self) -> str:
        return self._input

    @property
    def output_name(self) -> str:
        return self._output

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self._input: np.ascontiguousarray(batch, np.float32)}
        try:
            out = self.session.run([self._output], feed)
        except Exception as e:  # onnxruntime's InvalidArgument / Fail for a shape it rejects
            inp = self.session.get_inputs()[0]
            want = "x".join(str(d) if isinstance(d, int) else "?" for d in inp.shape)
            got = "x".join(map(str, batch.shape))
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ModelError(
                f"{self.path} cannot run an input of shape {got} (it declares {want}): "
                f"{first}; a model with a fixed input size needs a card or --shape that says it"
            ) from None
        return np.asarray(out[0], dtype=np.float32)


def open_timed(path: Path, threads: int) -> TimedRun:
    """A timing session's bare ``run``: no copies or dtype checks inside the timed call."""
    try:
        sess = ort_session(path, threads, timing=True)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise load_error(path, e) from e
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return lambda batch: sess.run([out_name], {in_name: batch})


ORT = Runtime(
    name="ort",
    format="onnx",
    suffixes=(".onnx",),
    package="onnxruntime",
    runner=OrtRunner,
    timing_options=TIMING_SESSION_CONFIG,
    timing_opener=open_timed,
    int8_ops=INT8_OPS,
    int8_weight_ops=INT8_WEIGHT_OPS,
    int8_graph_ops=INT8_GRAPH_OPS,
)
