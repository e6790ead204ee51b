"""Artifacts: a model file plus its card, resolved from whatever the user passed.

``MODEL`` on the command line may be a zoo name (``ppocr-v4-rec``), a folder holding a model and
its ``xcompress.json``, or a model file (its card is read from the same folder if present;
otherwise ``--task`` is required and a card is inferred from the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcompress.card import (
    CARD_NAME,
    InputSpec,
    ModelCard,
    Task,
    default_postprocess,
    default_preprocess,
)
from xcompress.errors import ModelError
from xcompress.runtime import format_of_suffix, model_suffixes

# The charset readers live in the one charset module; re-exported for existing imports.
from xcompress.zoo.charset import charset_for_model, charset_from_onnx

__all__ = [
    "MODEL_SUFFIXES",
    "Artifact",
    "charset_for_model",
    "charset_from_onnx",
    "check_contract",
    "infer_card",
    "resolve_model",
]

MODEL_SUFFIXES = model_suffixes()  # from the runtime layer: .onnx, .tflite, .pt


@dataclass(frozen=True)
class Artifact:
    """A model file and its card."""

    path: Path
    card: ModelCard

    @property
    def task(self) -> Task:
        return self.card.task


def _model_name(path: Path) -> str:
    # PaddleOCR exports are called inference.onnx / model.onnx: the folder names the model
    generic = {"inference", "model", "rec", "det", "cls"}
    return path.parent.name if path.stem in generic and path.parent.name else path.stem


def infer_card(path: Path, task: Task, charset_file: str | Path | None = None) -> ModelCard:
    """A card for a bare model file, from its own metadata, a dict file and PP-OCR defaults."""
    from xcompress.zoo.charset import onnx_num_classes

    charset = None
    fmt = format_of_suffix()[path.suffix.lower()]
    if fmt == "onnx":  # the task's shape contract first: it says more than "no charset"
        from xcompress.contract import check_onnx_contract

        check_onnx_contract(path, task)
    if task == "rec" and fmt == "onnx":
        if charset_file is not None:
            charset = charset_for_model(charset_file, _num_classes(path, onnx_num_classes),
                                        path.name)
        else:
            charset = charset_from_onnx(path)
        if charset is None:
            raise ModelError(
                f"{path.name} has no charset metadata: pass its dict file with --charset "
                "(e.g. ppocr_keys_v1.txt), or a folder with an xcompress.json card"
            )
    elif charset_file is not None and task != "rec":
        raise ModelError(f"--charset is for recognizers; {path.name} is given as {task}")
    spec = InputSpec()
    if fmt == "onnx":
        from xcompress.contract import read_onnx_io

        ins = read_onnx_io(path).inputs
        if ins and len(ins[0][1]) == 4:
            name, (_, _, h, w) = ins[0]
            spec = InputSpec(name=name, height=h, width=w)
    return ModelCard(
        name=_model_name(path),
        task=task,
        file=path.name,
        format=fmt,
        input=spec,
        preprocess=default_preprocess(task),
        postprocess=default_postprocess(task),
        charset=charset,
    )


def _num_classes(path: Path, counter) -> int:
    try:
        return counter(path)
    except ModelError:
        raise
    except Exception as e:  # onnx / onnxruntime errors for a file that is not a model
        raise ModelError(
            f"cannot read {path.name} as ONNX ({type(e).__name__}): pass a valid .onnx model"
        ) from None


def check_contract(art: Artifact) -> None:
    """Refuse a model whose inputs/outputs do not fit its card's task (ONNX models).

    Raises:
        ModelError: see :func:`xcompress.contract.check_onnx_contract`.
    """
    if art.card.format != "onnx" or art.path.suffix.lower() != ".onnx":
        return
    from xcompress.contract import check_onnx_contract

    labels = art.card.postprocess.labels if art.card.postprocess else None
    check_onnx_contract(art.path, art.task, art.card.num_classes,
                        len(labels) if labels else None)


def model_sha(spec: str | Path | Artifact) -> str:
    """sha256 of the model file ``spec`` resolves to (a derived card's ``parent``)."""
    from xcompress.fsutil import sha256_file

    return sha256_file(resolve_model(spec).path)


def resolve_model(
    spec: str | Path | Artifact,
    task: Task | None = None,
    charset: str | Path | None = None,
) -> Artifact:
    """Turn a zoo name, folder or model file into an :class:`Artifact`, checked against its task.

    This is the one place that knows what a model argument may be; every command, the
    recipes, export and training resolve models through it.

    Args:
        spec: zoo name, folder with ``xcompress.json``, model file (ONNX / TFLite with a card
            beside it, or bare with ``task``), an xcompress ``.pt`` checkpoint (format
            ``"torch"``, its card read from the checkpoint), or an Artifact (returned as it
            is once ``task`` is checked).
        task: required for a bare model file without a card; checked against the card otherwise.
        charset: a PaddleOCR dict file for a recognizer without a card (or to replace the
            card's charset); a space is appended when the model has one class more.

    Raises:
        ModelError: no such model, a bare file without ``task``, a corrupt file, or a model
            whose inputs/outputs do not fit the task (:mod:`xcompress.contract`).

    Example:
        >>> art = resolve_model("ppocr-v4-rec")   # doctest: +SKIP
        >>> art.card.task
        'rec'
        >>> resolve_model("runs/crnn/best.pt").card.format   # doctest: +SKIP
        'torch'
    """
    from xcompress import zoo

    if isinstance(spec, Artifact):
        if task is not None and spec.task != task:
            raise ModelError(f"{spec.path} is a {spec.task} model, not {task}")
        return spec
    p = Path(spec)
    if not p.exists() and zoo.is_zoo_name(str(spec)):
        p = zoo.ensure_local(str(spec))
    if p.is_dir():
        return _from_folder(p, str(spec), task, charset)
    if p.is_file():
        return _from_file(p, str(spec), task, charset)
    names = ", ".join(zoo.names())
    raise ModelError(f"no such model: {spec} (not a file, folder, or zoo name: {names})")


def _from_folder(p: Path, spec: str, task: Task | None, charset: str | Path | None) -> Artifact:
    """A folder: its card names the model; without one, its only model file."""
    if not (p / CARD_NAME).is_file():
        models = [f for f in sorted(p.iterdir()) if f.suffix.lower() in MODEL_SUFFIXES]
        if len(models) == 1 and (task is not None or models[0].suffix.lower() == ".pt"):
            return _from_file(models[0], str(models[0]), task, charset)
        if not models:
            raise ModelError(f"{p} holds no model file ({', '.join(MODEL_SUFFIXES)})")
        raise ModelError(
            f"{p} has no {CARD_NAME}: pass the model file itself with --task "
            "(or write a card once: xcompress card MODEL --task ... --out DIR)"
        )
    card = ModelCard.load(p)
    return _with_card(p / card.file, card, spec, task, charset)


def _from_file(p: Path, spec: str, task: Task | None, charset: str | Path | None) -> Artifact:
    """A model file: a checkpoint carries its card; others use the card beside them, if any."""
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(f"{p.name}: not a model file (expected {', '.join(MODEL_SUFFIXES)})")
    if p.suffix.lower() == ".pt":
        return _with_card(p, _checkpoint_card(p), spec, task, charset)
    card_path = p.parent / CARD_NAME
    card = ModelCard.load(card_path) if card_path.is_file() else None
    if card is None or card.file != p.name:
        if task is None:
            raise ModelError(f"{p.name} has no model card beside it: pass --task rec|det|cls")
        return _checked(Artifact(p, infer_card(p, task, charset)))
    return _with_card(p, card, spec, task, charset)


def _checkpoint_card(path: Path) -> ModelCard:
    """The card an xcompress checkpoint carries (reading it imports torch)."""
    from pydantic import ValidationError

    from xcompress.models.checkpoint import read_checkpoint

    try:
        card = ModelCard.model_validate(read_checkpoint(path)["card"])
    except ValidationError as e:
        first = str(e).splitlines()[0]
        raise ModelError(f"{path}: the checkpoint's card is invalid ({first}); re-create it") from e
    return card if card.format == "torch" else card.derive(format="torch")


def _with_card(
    path: Path, card: ModelCard, spec: str, task: Task | None, charset: str | Path | None
) -> Artifact:
    """Check a model and its card against ``task``; apply a ``--charset`` dict file."""
    if task is not None and card.task != task:
        raise ModelError(f"{spec} is a {card.task} model, not {task}")
    if not path.is_file():
        raise ModelError(f"model file {path} named by the card is missing")
    if charset is not None:
        if card.task != "rec":
            raise ModelError(f"--charset is for recognizers; {spec} is a {card.task} model")
        if card.format == "onnx":
            from xcompress.zoo.charset import onnx_num_classes

            n = _num_classes(path, onnx_num_classes)
        else:
            n = card.num_classes or 0
        card = card.derive(charset=charset_for_model(charset, n, path.name))
    return _checked(Artifact(path, card))


def _checked(art: Artifact) -> Artifact:
    check_contract(art)
    return art
