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
    copier: Any = None  # what derive_with_sources recorded: the layers reconstruct() refits


def calibration_batches(
    task: Any, count: int, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """``count`` input batches from the task's training sources (for BatchNorm statistics)."""
    from xcompress.train.loop import _mixed_stream

    stream = _mixed_stream(task.sources(), seed, 0)
    for _ in range(count):
        x, _ = task.batch([next(stream) for _ in range(batch_size)])
        yield x


def derive_point(parent: OCRModel, space: Any, params: dict[str, Any]) -> tuple[OCRModel, Any]:
    """The subnet at a point of ``space``, with inherited weights, and what derived it
    (the layer sources :func:`inherit` refits)."""
    from xcompress.search.derive import derive_with_sources

    return derive_with_sources(parent, space.child_config(parent.config.model_dump(mode="json"),
                                                          params))


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
    from xcompress.search.latency import latency_features

    child, copier = derive_point(parent, space, params)
    path = export_candidate(child, card, folder)
    cost = count_onnx(path, shape)
    return Candidate(params=dict(params), module=child, onnx=path, macs=cost.macs,
                     n_params=cost.params, features=latency_features(path, shape),
                     copier=copier)  # fmt: skip


def inherit(parent: OCRModel, cand: OCRModel, copier: Any, task: Any, batches: int,
            batch_size: int, seed: int) -> dict[str, int]:  # fmt: skip
    """Make the inherited weights work before any training, on ``batches`` training batches:
    narrowed layers are refitted to the parent's outputs (:mod:`xcompress.search.reconstruct`)
    or, when no layer needed that, BatchNorm statistics are re-estimated (Once-for-All).

    After a refit the parent's BatchNorm statistics are the right ones (each refitted layer
    reproduces the parent's output), and re-estimating them then measured worse: on a
    0.75-width ppocr-v4-rec candidate, CER* 0.74 with re-estimation after the refit vs 0.60
    without (synthetic en lines, before fine-tuning).
    """
    from xcompress.search.derive import reestimate_bn
    from xcompress.search.reconstruct import reconstruct

    if batches == 0:
        return {"bn_layers": 0, "refit_layers": 0}
    data = list(calibration_batches(task, batches, batch_size, seed))
    refit = reconstruct(cand, parent, copier.sources, data, seed=seed, ridge=1e-2,
                        stand_ins=copier.stand_ins)  # fmt: skip
    bn = 0 if refit else reestimate_bn(cand, data)
    return {"bn_layers": bn, "refit_layers": refit}
