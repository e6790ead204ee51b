"""Exporters: a native module (or a model that imports into one) -> a deployable artifact.

An :class:`Exporter` turns a :class:`ModelSource` (a torch module, its card and, when known,
the ONNX model it came from) into a new artifact folder: the model file, its card
(``xcompress.json``) and a report. Exporters are registered by name, so the CLI's
``xcompress export MODEL --to NAME`` and recipes look them up instead of branching:

    >>> from xcompress.export import export_model, list_exporters
    >>> "tflite" in list_exporters()                                       # doctest: +SKIP
    True
    >>> art = export_model("ppocr-v4-rec", "tflite", {"int8": True, "calib": "data/rec"},
    ...                    "out/v4rec_tflite")                             # doctest: +SKIP
    >>> art.path.name                                                      # doctest: +SKIP
    'model.tflite'

Each exporter module imports its heavy converter inside ``export``; importing this package
stays lean (no torch, no converter).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from xcompress.artifact import Artifact
from xcompress.card import ModelCard
from xcompress.errors import ModelError
from xcompress.registry import LazyRegistry

if TYPE_CHECKING:
    from xcompress.eval.metrics import TaskMetrics


class ExportConfig(BaseModel):
    """Base of every exporter's config: frozen, typed, saved as the card's ``step_config``."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class ModelSource:
    """What an exporter starts from.

    Attributes:
        module: the native torch module in eval mode (``forward`` = the deployed outputs).
        card: its card (task, charset, preprocessing, provenance).
        parent: the ONNX artifact the module was imported from, if any: exporters compare
            their output with it (accuracy next to the parent's).
        spec: what the user passed (zoo name, folder, file), for messages and provenance.
        parent_sha256: sha256 of the file the module came from (ONNX model or checkpoint).
    """

    module: Any
    card: ModelCard
    parent: Artifact | None = None
    spec: str = ""
    parent_sha256: str | None = None


class Exporter(ABC):
    """One target format. Subclasses set ``name``, ``suffix``, ``config_cls``.

    Contract: :meth:`export` writes ``out_dir/model<suffix>`` and ``out_dir/xcompress.json``
    (``format`` and ``step`` set, ``parent`` = the source's sha256) atomically, and returns
    the new :class:`~xcompress.artifact.Artifact`; user mistakes raise
    :class:`~xcompress.errors.XCompressError` subclasses with one-line messages.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    config_cls: ClassVar[type[ExportConfig]]

    def make_config(self, config: ExportConfig | dict[str, Any] | None = None) -> ExportConfig:
        """Validate a dict (CLI / recipe) into this exporter's config type."""
        if isinstance(config, self.config_cls):
            return config
        if isinstance(config, ExportConfig):
            raise ModelError(
                f"the {self.name} exporter takes a {self.config_cls.__name__}, "
                f"not a {type(config).__name__}"
            )
        try:
            return self.config_cls.model_validate(config or {})
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "config"
            raise ModelError(f"invalid {self.name} export setting {where}: {err['msg']}") from e

    @abstractmethod
    def export(self, source: ModelSource, config: ExportConfig, out_dir: str | Path) -> Artifact:
        """Export ``source`` into ``out_dir`` and return the artifact.

        Write with ``fsutil.atomic_dir(out_dir, command="export")``: all or nothing, and
        nothing in ``out_dir`` that an export did not write is removed.
        """


# Built-in exporters, imported on first lookup so `import xcompress.export` stays lean.
_EXPORTERS: LazyRegistry[type[Exporter]] = LazyRegistry(
    "exporter", ("xcompress.export.onnx", "xcompress.export.tflite"))


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    """Class decorator: make ``cls`` available as ``--to cls.name``."""
    return _EXPORTERS.register(cls)


def list_exporters() -> list[str]:
    """Names of the registered exporters (``--to`` values)."""
    return _EXPORTERS.names()


def get_exporter(name: str) -> Exporter:
    """An instance of the exporter registered as ``name``."""
    cls = _EXPORTERS.lookup(name)
    if cls is None:
        raise ModelError(f"no exporter {name!r} (available: {', '.join(_EXPORTERS.names())})")
    return cls()


def load_source(
    spec: str | Path | Artifact, task: str | None = None, charset: str | Path | None = None
) -> ModelSource:
    """Turn a zoo name / ONNX model (with card) / ``.pt`` checkpoint into a :class:`ModelSource`.

    The model is resolved by :func:`~xcompress.artifact.resolve_model`; ONNX models then go
    through the exact importer (:func:`xcompress.models.importers.import_onnx`, checked
    against onnxruntime), checkpoints (format ``"torch"``) are rebuilt from their arch and
    config. Training loads its student and teacher through here too.

    Raises:
        ModelError: the model cannot be resolved, or is in a format that holds no native
            module (TFLite).

    Example:
        >>> src = load_source("ppocr-v4-rec")          # doctest: +SKIP
        >>> src.parent.path.name, src.card.task        # doctest: +SKIP
        ('model.onnx', 'rec')
    """
    from xcompress.artifact import resolve_model
    from xcompress.fsutil import sha256_file

    art = resolve_model(spec, task, charset)  # type: ignore[arg-type]
    name = str(spec.path if isinstance(spec, Artifact) else spec)
    if art.card.format == "torch":
        from xcompress.models.checkpoint import load_checkpoint

        module, _ = load_checkpoint(art.path)
        return ModelSource(module.eval(), art.card, None, name, sha256_file(art.path))
    if art.card.format != "onnx":
        raise ModelError(
            f"{spec} is a {art.card.format} model: a native module comes from an ONNX model, "
            "a zoo name or an xcompress .pt checkpoint"
        )
    ckpt = art.card.notes.get("checkpoint")
    if ckpt and (art.path.parent / ckpt).is_file():
        # the module this ONNX was exported from, saved beside it (e.g. `xcompress search`'s
        # best/): exact, and for every architecture, also those with no ONNX importer (CRNN)
        from xcompress.models.checkpoint import load_checkpoint

        module, ckpt_card = load_checkpoint(art.path.parent / ckpt)
        return ModelSource(module.eval(), ckpt_card, art, name,
                           sha256_file(art.path.parent / ckpt))  # fmt: skip
    from xcompress.models.importers import import_onnx

    module, card = import_onnx(art)
    return ModelSource(module.eval(), card, art, name, sha256_file(art.path))


def export_model(
    spec: str | Path | Artifact | ModelSource,
    to: str,
    config: ExportConfig | dict[str, Any] | None,
    out_dir: str | Path,
    *,
    force: bool = False,
) -> Artifact:
    """Export a model to the format ``to`` (the Python API behind ``xcompress export``).

    Args:
        spec: zoo name, ONNX model / folder, ``.pt`` checkpoint, or a ready :class:`ModelSource`.
        to: exporter name (see :func:`list_exporters`).
        config: the exporter's config object or a dict of its fields.
        out_dir: folder to write, checked before any work
            (:func:`~xcompress.fsutil.prepare_output_dir`): a non-empty folder that is not an
            earlier export is refused unless ``force``; nothing export did not write is removed.
        force: write into a non-empty ``out_dir`` that export did not make.

    Returns:
        The new artifact (model file + card).
    """
    from xcompress.fsutil import prepare_output_dir

    exporter = get_exporter(to)
    cfg = exporter.make_config(config)  # validate before the (slow) import
    out_dir = prepare_output_dir(out_dir, "export", force=force)
    source = spec if isinstance(spec, ModelSource) else load_source(spec)
    return exporter.export(source, cfg, out_dir)


def summarize(artifact: Artifact) -> str:
    """One line for the CLI from the export's ``report.json`` (size, parity, accuracy).

    Example:
        >>> print(summarize(art))                                        # doctest: +SKIP
        wrote out/model.tflite (int8, 3.01 MB); float max abs diff 3.6e-06; cer_nospace ...
    """
    import json

    from xcompress.eval.metrics import TASK_METRICS

    report_path = artifact.path.parent / "report.json"
    if not report_path.is_file():
        return f"wrote {artifact.path}"
    rep = json.loads(report_path.read_text(encoding="utf-8"))
    parts = [f"wrote {artifact.path} ({rep.get('variant', '?')}, "
             f"{rep.get('size_bytes', 0) / 1e6:.2f} MB)"]  # fmt: skip
    if rep.get("float_max_abs_diff") is not None:
        parts.append(f"float max abs diff {rep['float_max_abs_diff']:.1e}")
    acc = rep.get("accuracy")
    if acc and rep.get("task") in TASK_METRICS:
        parts.append(_accuracy_summary(TASK_METRICS[rep["task"]], acc))
    return "\n".join(["; ".join(p for p in parts if p),
                      *(f"  warning: {w}" for w in rep.get("warnings", []))])  # fmt: skip


def _accuracy_summary(tm: TaskMetrics, acc: dict[str, Any]) -> str:
    """``cer_nospace 0.0120 (parent 0.0110, drop 0.10 pt), cer ... on N samples``: the
    metric the budget was checked on, then the task's other budget metrics (rec: both CERs)."""
    first = acc.get("metric") or tm.default_budget
    keys = [first, *(k for k in tm.budget if k != first)]
    shown = []
    for k in keys:
        if k not in acc["tflite"] or k not in acc["parent"]:
            continue
        drop = acc.get("drop") if k == first else None
        tail = f", drop {drop * 100:.2f} pt" if drop is not None else ""
        shown.append(f"{k} {acc['tflite'][k]:.4f} (parent {acc['parent'][k]:.4f}{tail})")
    return f"{', '.join(shown)} on {acc['n']} samples" if shown else ""


__all__ = [
    "ExportConfig",
    "Exporter",
    "ModelSource",
    "export_model",
    "get_exporter",
    "list_exporters",
    "load_source",
    "register_exporter",
    "summarize",
]
