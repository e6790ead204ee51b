"""One search candidate: derived from the parent, BatchNorm re-estimated, exported, counted.

Example:
    >>> cand = make_candidate(parent, card, space, params, workdir)       # doctest: +SKIP
    >>> cand.macs, cand.params, cand.onnx.name                           # doctest: +SKIP
    (88_113_920, 2_011_481, 'model.onnx')
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xcompress.card import ModelCard
from xcompress.models.base import OCRModel


def export_candidate(model: OCRModel, card: ModelCard, folder: Path) -> Path:
    """Export to ``folder/model.onnx`` (with its card) and return the model path.

    The parity check against the torch module is skipped: candidates are timed and counted
    here, never shipped; the final candidate is exported with the check (``best/``).
    """
    from xcompress.models.export import export_onnx

    export_onnx(model, card, folder, check=False)
    return folder / "model.onnx"


@dataclass
class Candidate:
    params: dict[str, Any]
    module: OCRModel
    onnx: Path
    macs: int
    n_params: int
    features: dict[str, float]


def calibration_batches(
    task: Any, count: int, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """``count`` input batches from the task's training sources (for BatchNorm statistics)."""
    from xcompress.train.loop import _mixed_stream

    stream = _mixed_stream(task.sources(), seed, 0)
    for _ in range(count):
        x, _ = task.batch([next(stream) for _ in range(batch_size)])
        yield x


def make_candidate(
    parent: OCRModel,
    card: ModelCard,
    space: Any,
    params: dict[str, Any],
    folder: Path,
    shape: tuple[int, ...],
) -> Candidate:
    """Derive the candidate of ``params`` from ``parent``, export and count it (no training,
    no BatchNorm pass yet: a candidate that breaks a hard budget is rejected first)."""
    from xcompress.profile.flops import count_onnx
    from xcompress.search.derive import derive_subnet
    from xcompress.search.latency import latency_features

    child = derive_subnet(parent, space.child_config(parent.config.model_dump(mode="json"), params))
    path = export_candidate(child, card, folder)
    cost = count_onnx(path, shape)
    return Candidate(params=dict(params), module=child, onnx=path, macs=cost.macs,
                     n_params=cost.params, features=latency_features(path, shape))  # fmt: skip
