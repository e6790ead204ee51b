"""``xcompress import``: trained ONNX model -> native module with the exact weights.

Each importer knows one model family; :func:`import_onnx` tries the importers registered for
the model's task and keeps the first whose architecture lines up with the graph tensor for
tensor, then checks it numerically against onnxruntime. The measured difference is recorded
in the new card (``notes.import_max_abs_diff``).

Example:
    >>> model, card = import_onnx("ppocr-v4-rec")           # doctest: +SKIP
    >>> card.notes["import_max_abs_diff"] < 1e-4            # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xcompress.artifact import Artifact, resolve_model
from xcompress.card import ModelCard, Task
from xcompress.errors import ModelError
from xcompress.fsutil import sha256_file
from xcompress.models.base import OCRModel
from xcompress.models.onnx_import import compare_with_onnx, load_onnx_weights
from xcompress.models.registry import ArchConfig, build_model

#: tolerance of the numeric check run on every import
IMPORT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Importer:
    """Builds the config of ``arch`` for a given ONNX artifact (None = not this family)."""

    arch: str
    task: Task
    make_config: Callable[[Artifact, int | None], ArchConfig | dict | None]
    check_widths: tuple[int, ...]  # rec: widths at H=48; det: square sizes


_IMPORTERS: list[Importer] = []


def register_importer(importer: Importer) -> Importer:
    _IMPORTERS.append(importer)
    return importer


def _onnx_output_dim(path: Path) -> int | None:
    import onnx

    out = onnx.load(str(path), load_external_data=False).graph.output[0]
    dims = out.type.tensor_type.shape.dim
    return dims[-1].dim_value or None if dims else None


def _card_config(art: Artifact, arch: str) -> dict | None:
    """The architecture config an xcompress export recorded in its card (a searched or
    pruned model is not the default config of its family)."""
    notes = art.card.notes or {}
    return notes.get("arch_config") if notes.get("arch") == arch else None


register_importer(Importer(
    arch="ppocrv4-rec", task="rec",
    make_config=lambda art, n: _card_config(art, "ppocrv4-rec") or (
        {"num_classes": n} if n else None),
    check_widths=(160, 320),
))  # fmt: skip
register_importer(Importer(
    arch="ppocrv4-det", task="det", make_config=lambda art, n: _card_config(art, "ppocrv4-det")
    or {}, check_widths=(320,),
))  # fmt: skip


def _check_inputs(task: Task, widths: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if task == "rec":
        return [rng.uniform(-1, 1, (1, 3, 48, w)).astype(np.float32) for w in widths]
    return [rng.uniform(-2, 2, (1, 3, w, w)).astype(np.float32) for w in widths]


def import_onnx(
    spec: str | Path | Artifact, task: Task | None = None, arch: str | None = None
) -> tuple[OCRModel, ModelCard]:
    """Import a zoo model / ONNX file / model folder into a native module.

    Args:
        spec: zoo name (``ppocr-v4-rec``), folder with ``xcompress.json``, ``.onnx`` file, or
            a resolved :class:`~xcompress.artifact.Artifact` (e.g. with a ``--charset``).
        task: required for a bare ONNX file without a card.
        arch: force one architecture instead of trying the registered importers.

    Returns:
        ``(model, card)``: the module in eval mode and a card (``format="torch"``) whose
        ``notes`` record the max abs difference to onnxruntime on random inputs.

    Raises:
        ModelError: no registered architecture matches the graph, or the numeric check fails.
    """
    art = resolve_model(spec, task)
    if art.card.format != "onnx":
        raise ModelError(f"{art.path.name}: import reads ONNX models, not {art.card.format}")
    n_out = _onnx_output_dim(art.path) if art.task == "rec" else None
    if art.task == "rec" and art.card.num_classes and n_out and n_out != art.card.num_classes:
        raise ModelError(
            f"{art.path.name} outputs {n_out} classes but its charset gives "
            f"{art.card.num_classes}: fix the card's charset"
        )
    tried: list[str] = []
    for imp in _IMPORTERS:
        if imp.task != art.task or (arch is not None and imp.arch != arch):
            continue
        cfg = imp.make_config(art, n_out)
        if cfg is None:
            continue
        model = build_model(imp.arch, cfg)
        try:
            report = load_onnx_weights(model, art.path)
        except ModelError as e:
            tried.append(f"{imp.arch}: {e}")
            continue
        diff = compare_with_onnx(model, art.path, _check_inputs(art.task, imp.check_widths))
        if diff > IMPORT_TOLERANCE:
            raise ModelError(
                f"imported {imp.arch} differs from onnxruntime by {diff:.2e} "
                f"(> {IMPORT_TOLERANCE}): this graph is not supported exactly"
            )
        card = art.card.derive(
            file="model.pt", format="torch", sha256=None, parent=sha256_file(art.path),
            step="import",
            step_config={"arch": imp.arch, "source": str(art.path if spec is art else spec)},
            notes={**art.card.notes, "import_max_abs_diff": diff,
                   "import_tensors": report.tensors, "import_values": report.values,
                   "onnx_output_name": _onnx_output_name(art.path)},
        )  # fmt: skip
        return model.eval(), card
    detail = "; ".join(tried) if tried else f"no importer for task {art.task}"
    raise ModelError(f"cannot import {art.path}: {detail}")


def _onnx_output_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.output[0].name
