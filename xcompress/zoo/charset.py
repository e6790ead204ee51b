"""Recognizer charsets, in one place: where a charset comes from and whether it fits a model.

Sources: a PaddleOCR dict file (:func:`charset_from_file`, :func:`parse_dict`), the
``character`` metadata of a PaddleOCR-exported ONNX model (:func:`charset_from_onnx`), or a
model's card (:func:`charset_from_model`). Checks: :func:`charset_for_model` fits a dict file to
a model's number of classes; :func:`check_num_classes` / :func:`check_charset` refuse a card
whose charset does not fit. (``xcompress.data.charset`` and ``xcompress.artifact`` re-export
the functions they used to define.)

A PP-OCR recognizer with ``use_space_char`` outputs ``1 + len(dict) + 1`` classes: class 0 is
the CTC blank, classes 1..len(dict) the dict's lines in order, the last one a space. The card
stores ``charset = dict_lines + [" "]`` so class ``i >= 1`` decodes to ``charset[i - 1]``.

Example:
    >>> parse_dict("a\\r\\nb\\r\\n\\u3000\\r\\n")
    ['a', 'b', '\\u3000', ' ']
"""

from __future__ import annotations

import os
from pathlib import Path

from xcompress.card import ModelCard
from xcompress.errors import DataError, ModelError, XCompressError

SPACE = " "


def parse_dict(text: str, add_space: bool = True) -> list[str]:
    """The charset of a PaddleOCR dictionary file's text (one character per line).

    Only line ends are removed: ``str.strip`` or ``splitlines`` would eat real entries such as
    the ideographic space U+3000 or U+2028, shifting every later class.
    """
    lines = text.split("\n")
    if lines and lines[-1] in ("", "\r"):
        lines.pop()  # the file's final newline
    chars = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if any(c == "" for c in chars):
        raise ModelError("charset dictionary has an empty line; every line must hold one entry")
    return [*chars, SPACE] if add_space else chars


def charset_from_file(path: str | os.PathLike[str], add_space: bool = True) -> tuple[str, ...]:
    """Read a PaddleOCR dictionary (one character per line); a space is appended, as
    PaddleOCR's ``use_space_char`` does.

    Raises:
        DataError: missing, unreadable or malformed file, a folder, or a model file.
    """
    from xcompress.data.labels import MODEL_SUFFIXES

    p = Path(path)
    if p.is_dir():
        raise DataError(
            f"charset file {p} is a folder: pass a PaddleOCR dict file "
            "(one character per line, e.g. ppocr_keys_v1.txt)"
        )
    if p.suffix.lower() in MODEL_SUFFIXES:
        raise DataError(
            f"charset file {p} is a model file: pass it as --model, or pass a PaddleOCR dict "
            "file (one character per line) as --charset"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"charset file {p} does not exist") from None
    except UnicodeDecodeError:
        raise DataError(
            f"charset file {p} is not UTF-8 text: pass a PaddleOCR dict file "
            "(one character per line, UTF-8)"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read charset file {p}: {e.strerror or e}") from None
    try:
        chars = parse_dict(text, add_space=add_space and SPACE not in text.split("\n"))
    except XCompressError as e:
        raise DataError(f"{p}: {e}") from None
    if not chars:
        raise DataError(f"charset file {p} is empty: write one character per line")
    return tuple(chars)


def charset_from_onnx(path: str | Path) -> list[str] | None:
    """The charset a PaddleOCR-exported recognizer keeps in its ``character`` metadata.

    PaddleOCR appends a space to the dictionary (``use_space_char``); the metadata does not
    hold it, so it is added here. Returns None if the model has no such metadata.

    Raises:
        ModelError: the metadata has an empty entry (see :func:`parse_dict`).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == "character":
            return parse_dict(prop.value)
    return None


def charset_from_model(spec: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The charset on a model's card (space included); None for models without one (det/cls).

    Args:
        spec: anything :func:`xcompress.artifact.resolve_model` takes: zoo name, model folder
            with ``xcompress.json``, model file with a card, ``.pt`` checkpoint.

    Example:
        >>> chars = charset_from_model("ppocr-v4-rec")   # doctest: +SKIP
        >>> len(chars)                                    # doctest: +SKIP
        6624
    """
    from xcompress.artifact import resolve_model

    card = resolve_model(str(spec)).card
    return tuple(card.charset) if card.charset else None


def charset_for_model(dict_file: str | Path, num_classes: int, model_name: str) -> list[str]:
    """A recognizer's charset from a PaddleOCR dict file, fitted to the model's classes.

    PaddleOCR's semantics: one character per line; the CTC blank is class 0; a space is
    appended (``use_space_char``) when the model has one class more than dict + blank.

    Raises:
        ModelError: the dict does not fit the model (both counts in the message).
    """
    chars = list(charset_from_file(dict_file, add_space=False))
    if len(chars) + 1 == num_classes:
        return chars
    if len(chars) + 2 == num_classes and SPACE not in chars:
        return [*chars, SPACE]
    raise ModelError(
        f"{Path(dict_file).name} has {len(chars)} characters, but {model_name} outputs "
        f"{num_classes} classes (dict + blank{' + space' if SPACE not in chars else ''}): "
        "pass the dict file the model was trained with"
    )


def onnx_num_classes(onnx_path: str | Path) -> int:
    """Width of a recognizer's first output (its number of classes).

    Read from the graph's declared output shape when it is static; otherwise (e.g. a derived
    model whose shapes were stripped) measured by running onnxruntime on one 1x3x48x320 zero
    line.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value > 0:
        return int(dims[-1].dim_value)
    del model
    import numpy as np

    from xcompress.runtime.ort import ort_session

    sess = ort_session(onnx_path)
    inp = sess.get_inputs()[0]
    out = sess.run(None, {inp.name: np.zeros((1, 3, 48, 320), dtype=np.float32)})[0]
    return int(out.shape[-1])


def check_num_classes(card: ModelCard, num_classes: int) -> None:
    """Refuse a rec card whose charset does not fit a model with ``num_classes`` outputs.

    Raises:
        ModelError: the card has no charset, or ``len(charset) + 1 != num_classes``.
    """
    if card.task != "rec":
        return
    if card.charset is None:
        raise ModelError(f"{card.name}: a recognizer card needs a charset to decode its output")
    want = len(card.charset) + 1
    if want != num_classes:
        raise ModelError(
            f"{card.name}: charset has {len(card.charset)} entries (+1 blank = {want} classes) "
            f"but the model outputs {num_classes} classes; use the dict the model was trained with"
        )


def check_charset(card: ModelCard, onnx_path: str | Path) -> int:
    """Check a rec card's charset against the ONNX model's output width.

    Does nothing for det/cls cards.

    Args:
        card: the model card (its ``charset`` must include the trailing space).
        onnx_path: the ONNX model the card describes.

    Returns:
        The model's number of output classes (0 for non-rec cards).

    Raises:
        ModelError: the charset does not fit the output (message says both counts).

    Example:
        >>> from xcompress.zoo import ensure_local          # doctest: +SKIP
        >>> d = ensure_local("ppocr-v4-rec")                 # doctest: +SKIP
        >>> check_charset(ModelCard.load(d), d / "model.onnx")   # doctest: +SKIP
        6625
    """
    if card.task != "rec":
        return 0
    n = onnx_num_classes(onnx_path)
    check_num_classes(card, n)
    return n
