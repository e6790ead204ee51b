"""Recognizer charsets: reading PaddleOCR dict files and checking a charset against a model.

A PP-OCR recognizer with ``use_space_char`` outputs ``1 + len(dict) + 1`` classes: class 0 is
the CTC blank, classes 1..len(dict) the dict's lines in order, the last one a space. The card
stores ``charset = dict_lines + [" "]`` so class ``i >= 1`` decodes to ``charset[i - 1]``.

Example:
    >>> parse_dict("a\\r\\nb\\r\\n\\u3000\\r\\n")
    ['a', 'b', '\\u3000', ' ']
"""

from __future__ import annotations

from pathlib import Path

from xcompress.card import ModelCard
from xcompress.errors import ModelError

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
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
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
