"""Where a charset comes from: a model (zoo name / folder / file) or a PaddleOCR dict file.

The implementation lives in :mod:`xcompress.zoo.charset`, the one charset module; these names
are re-exported here for the data commands and existing imports.

Example:
    >>> chars = charset_from_model("ppocr-v4-rec")   # doctest: +SKIP
    >>> len(chars)                                    # doctest: +SKIP
    6624
"""

from __future__ import annotations

from xcompress.zoo.charset import charset_from_file, charset_from_model

__all__ = ["charset_from_file", "charset_from_model"]
