"""Data sets: PaddleOCR-format labels (read, write, check) and synthetic generators.

Example:
    >>> from xcompress.data import load_dataset, check_charset   # doctest: +SKIP
    >>> ds = load_dataset("data/rec_val")                          # doctest: +SKIP
    >>> check_charset(ds, card.charset).raise_if_missing()         # doctest: +SKIP

The synthetic generators live in :mod:`xcompress.data.synth` (imported on demand: they pull
in PIL and OpenCV).
"""

from xcompress.data.labels import (
    CharsetReport,
    ClsSample,
    Dataset,
    DetSample,
    RecSample,
    Sample,
    Task,
    TextBox,
    check_charset,
    find_label_file,
    load_dataset,
    read_image,
    write_cls_labels,
    write_det_labels,
    write_labels,
    write_rec_labels,
)

__all__ = [
    "CharsetReport",
    "ClsSample",
    "Dataset",
    "DetSample",
    "RecSample",
    "Sample",
    "Task",
    "TextBox",
    "check_charset",
    "find_label_file",
    "load_dataset",
    "read_image",
    "write_cls_labels",
    "write_det_labels",
    "write_labels",
    "write_rec_labels",
]
