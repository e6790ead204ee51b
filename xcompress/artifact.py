"""Artifacts: a model file plus its card, resolved from whatever the user passed.

``MODEL`` on the command line may be a zoo name (``ppocr-v4-rec``), a folder holding a model and
its ``xcompress.json``, or a model file (its card is read from the same folder if present;
otherwise ``--task`` is required and a card is inferred from the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcompress.card import CARD_NAME, ModelCard, Task, default_postprocess, default_preprocess
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


def infer_card(path: Path, task: Task) -> ModelCard:
    """A card for a bare model file, from its own metadata and PP-OCR defaults."""
    charset = None
    if task == "rec" and path.suffix == ".onnx":
        charset = charset_from_onnx(path)
        if charset is None:
            raise ModelError(
                f"{path.name} has no charset metadata: pass a folder with an xcompress.json card"
            )
    return ModelCard(
        name=path.stem,
        task=task,
        file=path.name,
        format={".onnx": "onnx", ".tflite": "tflite", ".pt": "torch"}[path.suffix],
        preprocess=default_preprocess(task),
        postprocess=default_postprocess(task),
        charset=charset,
    )


def resolve_model(spec: str | Path, task: Task | None = None) -> Artifact:
    """Turn a zoo name, folder or model file into an :class:`Artifact`.

    Args:
        spec: zoo name, folder with ``xcompress.json``, or model file.
        task: required for a bare model file without a card; checked against the card otherwise.

    Example:
        >>> art = resolve_model("ppocr-v4-rec")   # doctest: +SKIP
        >>> art.card.task
        'rec'
    """
    from xcompress import zoo

    p = Path(spec)
    if not p.exists() and zoo.is_zoo_name(str(spec)):
        p = zoo.ensure_local(str(spec))
    if p.is_dir():
        if not (p / CARD_NAME).is_file():
            models = [f for f in sorted(p.iterdir()) if f.suffix in MODEL_SUFFIXES]
            if len(models) == 1 and task is not None:
                return Artifact(models[0], infer_card(models[0], task))
            raise ModelError(f"{p} has no {CARD_NAME}: pass the model file itself with --task")
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
            card = infer_card(p, task)
        path = p
    else:
        names = ", ".join(zoo.names())
        raise ModelError(f"no such model: {spec} (not a file, folder, or zoo name: {names})")
    if task is not None and card.task != task:
        raise ModelError(f"{spec} is a {card.task} model, not {task}")
    if not path.is_file():
        raise ModelError(f"model file {path} named by the card is missing")
    return Artifact(path, card)
