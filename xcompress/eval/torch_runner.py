"""A torch module behind the runner interface, so the evaluators score it like an ONNX model.

Training scores its held-out sets with the same :mod:`xcompress.eval.tasks` evaluators (and so
the same PP-OCR pre- and post-processing) that ``xcompress eval`` runs on the exported model:
the two numbers agree, and there is one decoding and one metric implementation to trust.

Example:
    >>> from xcompress.eval import evaluate_samples                        # doctest: +SKIP
    >>> runner = TorchRunner(model, card)                                 # doctest: +SKIP
    >>> evaluate_samples(runner, card, samples).metrics["cer_nospace"]    # doctest: +SKIP
    0.0123
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xcompress.card import ModelCard
from xcompress.runtime import Runner


class TorchRunner(Runner):
    """Runs ``module(x)`` (the deployed outputs of an :class:`~xcompress.models.base.OCRModel`)
    under ``torch.no_grad`` on float32 NCHW batches.

    The module's train/eval mode is the caller's: put it in eval mode first (training does, and
    restores its mode afterwards).

    Args:
        module: a torch module whose ``forward`` returns the model's first output.
        card: its card, for the input/output names (optional).
        path: where the module came from (a checkpoint), for messages.
    """

    def __init__(self, module: Any, card: ModelCard | None = None, path: str | Path = "") -> None:
        self.module = module
        self.card = card
        self.path = Path(path or "<torch module>")

    @property
    def input_name(self) -> str:
        return self.card.input.name if self.card is not None else "x"

    @property
    def output_name(self) -> str:
        return (self.card.output_name if self.card is not None else None) or "output"

    @property
    def runtime_info(self) -> tuple[str, str]:
        """(runtime, version) for an evaluation report."""
        import torch

        return "torch", torch.__version__

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return out.detach().cpu().numpy().astype(np.float32, copy=False)
