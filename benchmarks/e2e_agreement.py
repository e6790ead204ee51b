"""Check ``xcompress eval --system`` against a separately written end-to-end scorer
(must agree within 0.5 point on the end-to-end Hmean and its as-is view).

The independent side runs RapidOCR's own detector, angle classifier and recognizer
(``rapidocr-onnxruntime==1.4.4``, installed by ``make bench-deps``) on the same ONNX files,
with RapidOCR's own box sorting and perspective crops, and scores what they read with code
that shares nothing with ``xcompress.ocr.metrics``: polygon IoU from shapely, the one-to-one
matching solved as an assignment (scipy's Hungarian solver, largest total IoU over pairs
with IoU >= 0.5) instead of PaddleOCR's greedy order, and its own half-width folding and
edit distance. The detector runs with PaddleOCR's defaults, as in ``eval_agreement.py``.

Usage:
    python benchmarks/e2e_agreement.py --data bench/heldout/doc-det [--data DIR ...]
    python benchmarks/e2e_agreement.py            # renders 30 held-out pages (heldout.py)

Exit status: 0 when every metric agrees within ``--tol`` points, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_agreement import _imread, _read_labels, print_agreement  # noqa: E402

IGNORE = ("###",)
# full-width forms U+FF01..U+FF5E and the ideographic space, folded to ASCII
_FOLD = {0x3000: 0x20, **{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}}


def score_e2e(pages: list[list[tuple[np.ndarray, str]]], gts: list[list[dict]],
              iou_thr: float = 0.5) -> dict[str, float]:
    from scipy.optimize import linear_sum_assignment
    from shapely.geometry import Polygon

    hits = {"nospace": 0, "asis": 0}
    n_dt = n_gt = 0
    for read, gt in zip(pages, gts, strict=True):
        care = [(Polygon(g["points"]).buffer(0), g["transcription"]) for g in gt]
        dets = [(Polygon(np.asarray(b, float)).buffer(0), t) for b, t in read]
        iou = np.zeros((len(care), len(dets)))
        for i, (g, _) in enumerate(care):
            for j, (d, _) in enumerate(dets):
                inter = g.intersection(d).area
                union = g.area + d.area - inter
                iou[i, j] = inter / union if union else 0.0
        ok = iou >= iou_thr
        rows, cols = linear_sum_assignment(np.where(ok, iou, 0.0), maximize=True)
        dropped = 0
        for i, j in zip(rows, cols, strict=True):
            if not ok[i, j]:
                continue
            gt_text, dt_text = care[i][1], dets[j][1]
            if gt_text in IGNORE:
                dropped += 1  # a read line on a don't-care region counts neither way
                continue
            hits["asis"] += gt_text == dt_text
            a = gt_text.translate(_FOLD).replace(" ", "")
            b = dt_text.translate(_FOLD).replace(" ", "")
            hits["nospace"] += a == b
        n_gt += sum(t not in IGNORE for _, t in care)
        n_dt += len(dets) - dropped
    out = {}
    for view, key in (("nospace", "e2e_hmean"), ("asis", "e2e_hmean_asis")):
        p = hits[view] / n_dt if n_dt else 0.0
        r = hits[view] / n_gt if n_gt else 0.0
        out[key] = 2 * p * r / (p + r) if p + r else 0.0
        if view == "nospace":
            out["e2e_precision"], out["e2e_recall"] = p, r
    return out


def rapid_system(det: Path, cls: Path, rec: Path, folder: Path, threads: int,
                 rec_batch: int = 6, drop_score: float = 0.5):
    """(box, text) per read line per page, by RapidOCR's components."""
    from rapidocr_onnxruntime.ch_ppocr_cls import TextClassifier
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess
    from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
    from rapidocr_onnxruntime.main import RapidOCR

    class PaddleDefaultsDetector(TextDetector):
        def get_preprocess(self, max_wh):  # no side-length ladder (see eval_agreement.py)
            return DetPreProcess(self.limit_side_len, self.limit_type, self.mean, self.std)

    detector = PaddleDefaultsDetector({
        "model_path": str(det), "intra_op_num_threads": threads, "limit_side_len": 960,
        "limit_type": "max", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5, "max_candidates": 1000,
        "use_dilation": False, "score_mode": "fast"})
    classifier = TextClassifier({
        "model_path": str(cls), "intra_op_num_threads": threads,
        "cls_image_shape": [3, 48, 192], "cls_batch_num": 6, "cls_thresh": 0.9,
        "label_list": ["0", "180"]})
    recognizer = TextRecognizer({
        "model_path": str(rec), "intra_op_num_threads": threads,
        "rec_img_shape": [3, 48, 320], "rec_batch_num": rec_batch})
    rows = _read_labels(folder)
    pages, gts = [], []
    for path, label in rows:
        img = _imread(path)
        boxes, _ = detector(img)
        boxes = [] if boxes is None else RapidOCR.sorted_boxes(np.asarray(boxes))
        read = []
        if len(boxes):
            crops = RapidOCR.get_crop_img_list(None, img, boxes)  # uses no instance state
            crops, _, _ = classifier(crops)
            texts, _ = recognizer(crops)
            read = [(b, t) for b, (t, s) in zip(boxes, texts, strict=True)
                    if float(s) >= drop_score]
        pages.append(read)
        gts.append(json.loads(label))
    return pages, gts


def heldout_pages(root: Path) -> Path:
    import heldout

    from xcompress.artifact import resolve_model

    charset = set(resolve_model("ppocr-v4-rec").card.charset or [])
    return heldout.make_det_heldout((root / "e2e-mix").resolve(), 30, 404, charset, hard=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--det", default="ppocr-v4-det")
    ap.add_argument("--cls", default="ppocr-v4-cls")
    ap.add_argument("--rec", default="ppocr-v4-rec")
    ap.add_argument("--data", type=Path, action="append", default=[],
                    help="detection set with transcriptions (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("bench/e2e"), help="rendered pages")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rec-batch", type=int, default=6, help="crops per recognizer call")
    ap.add_argument("--tol", type=float, default=0.5, help="allowed difference, in points")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from xcompress.artifact import resolve_model
    from xcompress.eval.system import SystemEvalConfig, evaluate_system

    paths = [resolve_model(m, task=t).path
             for m, t in ((args.det, "det"), (args.cls, "cls"), (args.rec, "rec"))]
    rows = []
    for data in args.data or [heldout_pages(args.out)]:
        mine = evaluate_system(*paths, data, SystemEvalConfig(
            threads=args.threads, rec_batch=args.rec_batch, progress=False)).metrics
        theirs = score_e2e(*rapid_system(*paths, data, args.threads, args.rec_batch))
        rows += [(str(data), k, mine[k], v) for k, v in theirs.items()]
    ok = print_agreement(rows, args.tol, "data")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("data", "metric", "ours", "independent"), r,
                                                  strict=True)) for r in rows]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
