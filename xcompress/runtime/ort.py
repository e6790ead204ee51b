"""onnxruntime runner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xcompress.errors import ModelError
from xcompress.runtime import Runner, register_runner

if TYPE_CHECKING:
    from onnx import ModelProto


def make_session_options(threads: int | None):
    """Session options with a fixed intra-op thread count (None: onnxruntime's default)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


@register_runner(".onnx")
class OrtRunner(Runner):
    """An onnxruntime CPU session."""

    def __init__(self, path: str | Path | ModelProto, threads: int | None = None) -> None:
        """Open a model file, or an in-memory ``onnx.ModelProto`` (e.g. a candidate being tuned)."""
        import onnxruntime as ort

        if isinstance(path, (str, Path)):
            self.path, source = Path(path), str(path)
        else:
            self.path, source = Path("<memory>"), path.SerializeToString()
        self.threads = threads
        try:
            self.session = ort.InferenceSession(
                source, make_session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelError(f"onnxruntime cannot load {self.path}: {first}") from e
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
