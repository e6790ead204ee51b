"""Data sets: PaddleOCR-format labels (read, write, check) and synthetic generators.

Example:
    >>> from xcompress.data import load_dataset, check_charset, find_bad_images  # doctest: +SKIP
    >>> ds = load_dataset("data/rec_val")                          # doctest: +SKIP
    >>> check_charset(ds, card.charset).raise_if_missing()         # doctest: +SKIP
    >>> find_bad_images(s.image for s in ds)                       # doctest: +SKIP
    [BadImage(image=PosixPath('.../000007.jpg'), reason='empty file (0 bytes)')]

The synthetic generators live in :mod:`xcompress.data.synth` (imported on demand: they pull
in PIL and OpenCV).
"""

from xcompress.data.labels import (
    BadImage,
    CharsetReport,
    ClsSample,
    Dataset,
    DetSample,
    RecSample,
    Sample,
    Task,
    TaskMismatchError,
    TextBox,
    check_charset,
    find_bad_images,
    find_label_file,
    image_problem,
    load_dataset,
    read_image,
    write_cls_labels,
    write_det_labels,
    write_labels,
    write_rec_labels,
)

__all__ = [
    "BadImage",
    "CharsetReport",
    "ClsSample",
    "Dataset",
    "DetSample",
    "RecSample",
    "Sample",
    "Task",
    "TaskMismatchError",
    "TextBox",
    "check_charset",
    "find_bad_images",
    "find_label_file",
    "image_problem",
    "load_dataset",
    "read_image",
    "write_cls_labels",
    "write_det_labels",
    "write_labels",
    "write_rec_labels",
]
