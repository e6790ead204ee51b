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

MODEL_SUFFIXES = (".onnx", ".tflite", ".pt")


@dataclass(frozen=True)
class Artifact:
    """A model file and its card."""

    path: Path
    card: ModelCard

    @property
    def task(self) -> Task:
        return self.card.task


def charset_from_onnx(path: str | Path) -> list[str] | None:
    """The charset a PaddleOCR-exported recognizer keeps in its ``character`` metadata.

    PaddleOCR appends a space to the dictionary (``use_space_char``); the metadata does not
    hold it, so it is added here. Returns None if the model has no such metadata.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == "character":
            chars = prop.value.split("\n")
            return [*chars, " "]
    return None


def charset_for_model(dict_file: str | Path, num_classes: int, model_name: str) -> list[str]:
    """A recognizer's charset from a PaddleOCR dict file, fitted to the model's classes.

    PaddleOCR's semantics: one character per line; the CTC blank is class 0; a space is
    appended (``use_space_char``) when the model has one class more than dict + blank.

    Raises:
        ModelError: the dict does not fit the model (both counts in the message).
    """
    from xcompress.data.charset import charset_from_file

    chars = list(charset_from_file(dict_file, add_space=False))
    if len(chars) + 1 == num_classes:
        return chars
    if len(chars) + 2 == num_classes and " " not in chars:
        return [*chars, " "]
    raise ModelError(
        f"{Path(dict_file).name} has {len(chars)} characters, but {model_name} outputs "
        f"{num_classes} classes (dict + blank{' + space' if ' ' not in chars else ''}): "
        "pass the dict file the model was trained with"
    )


def _model_name(path: Path) -> str:
    # PaddleOCR exports are called inference.onnx / model.onnx: the folder names the model
    generic = {"inference", "model", "rec", "det", "cls"}
    return path.parent.name if path.stem in generic and path.parent.name else path.stem


def infer_card(path: Path, task: Task, charset_file: str | Path | None = None) -> ModelCard:
    """A card for a bare model file, from its own metadata, a dict file and PP-OCR defaults."""
    from xcompress.zoo.charset import onnx_num_classes

    charset = None
    fmt = {".onnx": "onnx", ".tflite": "tflite", ".pt": "torch"}[path.suffix.lower()]
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


def resolve_model(
    spec: str | Path | Artifact,
    task: Task | None = None,
    charset: str | Path | None = None,
) -> Artifact:
    """Turn a zoo name, folder or model file into an :class:`Artifact`, checked against its task.

    Args:
        spec: zoo name, folder with ``xcompress.json``, model file, or an Artifact (returned
            as it is once ``task`` is checked).
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
    """
    from xcompress import zoo

    if isinstance(spec, Artifact):
        if task is not None and spec.task != task:
            raise ModelError(f"{spec.path} is a {spec.task} model, not {task}")
        return spec
    p = Path(spec)
    if not p.exists() and zoo.is_zoo_name(str(spec)):
        p = zoo.ensure_local(str(spec))
    card: ModelCard | None
    if p.is_dir():
        if not (p / CARD_NAME).is_file():
            models = [f for f in sorted(p.iterdir()) if f.suffix.lower() in MODEL_SUFFIXES]
            if len(models) == 1 and task is not None:
                return _checked(Artifact(models[0], infer_card(models[0], task, charset)))
            if not models:
                raise ModelError(f"{p} holds no model file ({', '.join(MODEL_SUFFIXES)})")
            raise ModelError(
                f"{p} has no {CARD_NAME}: pass the model file itself with --task "
                "(or write a card once: xcompress card MODEL --task ... --out DIR)"
            )
        card = ModelCard.load(p)
        path = p / card.file
    elif p.is_file():
        if p.suffix.lower() not in MODEL_SUFFIXES:
            raise ModelError(f"{p.name}: not a model file (expected {', '.join(MODEL_SUFFIXES)})")
        card_path = p.parent / CARD_NAME
        card = ModelCard.load(card_path) if card_path.is_file() else None
        if card is None or card.file != p.name:
            if task is None:
                raise ModelError(f"{p.name} has no model card beside it: pass --task rec|det|cls")
            return _checked(Artifact(p, infer_card(p, task, charset)))
        path = p
    else:
        names = ", ".join(zoo.names())
        raise ModelError(f"no such model: {spec} (not a file, folder, or zoo name: {names})")
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
