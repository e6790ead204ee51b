"""Recognizer lines cut from detection pages the way the OCR system cuts them.

A recognizer inside a system never reads a clean rendered line: it reads the detector's box,
warped upright (:func:`~xcompress.ocr.system.rotate_crop`), with the box's margins and tilt.
Calibrating and budget-checking its int8 model on such crops is what makes the budget hold
end to end: on held-out pages, the PP-OCRv4 recognizer calibrated on synthetic lines lost
4.7 / 8.5 / 4.0 points of end-to-end Hmean; calibrated and checked on crops (0.1-point
budget) 0.6 / 2.5 / 1.5 (``benchmarks/results/system.md``).

:func:`cut_crops` runs a detector on every page of a PaddleOCR detection set, matches each
box to a ground truth one to one at IoU >= ``iou`` (highest first), and writes the crop with
that ground truth's transcription as a recognition set. Boxes that match nothing and
don't-care regions are left out.

Example:
    >>> cut_crops("data/pages", "ppocr-v4-det", "data/rec-crops")   # doctest: +SKIP
    CropReport(pages=60, boxes=431, lines=408)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CropReport:
    pages: int
    boxes: int  # boxes the detector found
    lines: int  # crops written (boxes matched to a ground truth)


def _match(boxes: list[np.ndarray], gts: list, iou: float) -> list[tuple[int, str]]:
    """(box index, transcription) of the one-to-one matches, highest IoU first."""
    from shapely.geometry import Polygon

    care = [(Polygon(np.asarray(g.points, float)).buffer(0), g.text) for g in gts
            if not g.ignore and g.text and g.text != "###"]
    pairs = []
    for j, b in enumerate(boxes):
        d = Polygon(np.asarray(b, float)).buffer(0)
        for i, (g, _) in enumerate(care):
            inter = g.intersection(d).area
            union = g.area + d.area - inter
            if union > 0 and inter / union >= iou:
                pairs.append((inter / union, i, j))
    used_g, used_d, out = set(), set(), []
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_g and j not in used_d:
            used_g.add(i)
            used_d.add(j)
            out.append((j, care[i][1]))
    return sorted(out)


def cut_crops(pages: str | Path, det: str | Path, out: str | Path, iou: float = 0.5,
              threads: int | None = None, command: str | None = None) -> CropReport:
    """Cut a recognition set from detection pages with ``det``'s boxes (see module doc);
    ``out`` is written whole in one rename (``command``: a user's ``--out``, see
    :func:`~xcompress.fsutil.atomic_dir`).

    Raises:
        DataError: not a detection set, or no box matched a transcription.
    """
    import cv2

    from xcompress.artifact import resolve_model
    from xcompress.data import RecSample, load_dataset, read_image, write_rec_labels
    from xcompress.errors import DataError
    from xcompress.fsutil import atomic_dir
    from xcompress.ocr.postprocess import DBPostProcess
    from xcompress.ocr.preprocess import preprocess_for
    from xcompress.ocr.system import rotate_crop, sorted_boxes
    from xcompress.runtime import open_runner

    art = resolve_model(det, task="det")
    runner = open_runner(art.path, threads=threads)
    db = DBPostProcess(art.card.resolved_postprocess())
    ds = load_dataset(pages, task="det")
    n_boxes, samples = 0, []
    with atomic_dir(out, command) as tmp:
        for s in ds.samples:
            img = read_image(s.image)
            prepared = preprocess_for(art.card, [img])
            boxes, _ = db(runner.run(prepared.batch), prepared.src_shapes)
            found = sorted_boxes(boxes[0])
            n_boxes += len(found)
            for j, text in _match(found, list(s.boxes), iou):
                name = f"{len(samples):05d}.png"
                cv2.imwrite(str(tmp / name), rotate_crop(img, found[j]))
                samples.append(RecSample(Path(name), text))
        if not samples:
            raise DataError(f"{pages}: no detected box matched a transcription at IoU {iou}: "
                            "check the labels, or use another detector")
        write_rec_labels(tmp / "label.txt", samples)
    return CropReport(len(ds.samples), n_boxes, len(samples))
