"""Where a charset comes from: a model (zoo name / folder / file) or a PaddleOCR dict file.

Example:
    >>> chars = charset_from_model("ppocr-v4-rec")   # doctest: +SKIP  (pulls the model once)
    >>> len(chars)                                    # doctest: +SKIP
    6624
"""

from __future__ import annotations

import os
from pathlib import Path

from xcompress.data.labels import MODEL_SUFFIXES
from xcompress.errors import DataError, XCompressError


def charset_from_model(spec: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The charset on a model's card (space included); None for models without one (det/cls).

    Args:
        spec: zoo name, model folder with ``xcompress.json``, or model file.
    """
    from xcompress.artifact import resolve_model

    card = resolve_model(str(spec)).card
    return tuple(card.charset) if card.charset else None


def charset_from_file(path: str | os.PathLike[str], add_space: bool = True) -> tuple[str, ...]:
    """Read a PaddleOCR dictionary (one character per line); a space is appended, as
    PaddleOCR's ``use_space_char`` does.

    Raises:
        DataError: missing, unreadable or malformed file, a folder, or a model file.
    """
    from xcompress.zoo.charset import parse_dict

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
        chars = parse_dict(text, add_space=add_space and " " not in text.split("\n"))
    except XCompressError as e:
        raise DataError(f"{p}: {e}") from None
    if not chars:
        raise DataError(f"charset file {p} is empty: write one character per line")
    return tuple(chars)
