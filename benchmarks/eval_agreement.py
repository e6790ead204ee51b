"""Check ``xcompress eval`` against an independent evaluator (must agree within 0.5 point).

The independent side is RapidOCR (``rapidocr-onnxruntime==1.4.4``, a benchmark-only extra):
its own ``TextRecognizer`` / ``TextDetector`` (its own preprocessing, CTC and DB decoding) run
the same ONNX files on the same images. Its outputs are scored here with code that shares
nothing with ``xcompress.ocr.metrics``: a plain-Python edit distance (no rapidfuzz) and a
separate greedy IoU matcher.

RapidOCR's detector defaults differ from PaddleOCR's (limit_type ``min`` 736, box_thresh 0.5,
unclip 1.6, dilation, mean/std 0.5, and a 960/1500/2000 side-length ladder for ``max``); they
are set to PaddleOCR's defaults here (``limit_type max`` 960, thresh 0.3, box_thresh 0.6,
unclip 1.5, no dilation, ImageNet mean/std) so both sides compute the same thing.

Usage:
    python benchmarks/eval_agreement.py --rec-data data/rec_val --det-data data/det_val
    python benchmarks/eval_agreement.py            # generates small sets with xcompress data synth

Exit status: 0 when every metric agrees within ``--tol`` points, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

IGNORE = ("###", "*")


# --- independent scoring (deliberately not xcompress.ocr.metrics) ----------------------------


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, two-row dynamic programme."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def score_rec(preds: list[str], labels: list[str]) -> dict[str, float]:
    out = {}
    for suffix, norm in (("", lambda s: s), ("_nospace", lambda s: s.replace(" ", ""))):
        p = [norm(x) for x in preds]
        t = [norm(x) for x in labels]
        out[f"line_accuracy{suffix}"] = sum(a == b for a, b in zip(p, t, strict=True)) / len(t)
        out[f"cer{suffix}"] = sum(edit_distance(a, b) for a, b in zip(p, t, strict=True)) / max(
            1, sum(len(b) for b in t)
        )
    return out


def score_det(preds: list[list[np.ndarray]], gts: list[list[dict]], iou_thr: float = 0.5):
    from shapely.geometry import Polygon

    matched = n_gt = n_det = 0
    for boxes, gt in zip(preds, gts, strict=True):
        care = [Polygon(g["points"]) for g in gt if g["transcription"] not in IGNORE]
        dont = [Polygon(g["points"]) for g in gt if g["transcription"] in IGNORE]
        dets = []
        for b in boxes:
            d = Polygon(np.asarray(b, float))
            if any(d.area and d.intersection(g).area / d.area > 0.5 for g in dont):
                continue
            dets.append(d)
        n_gt += len(care)
        n_det += len(dets)
        free = set(range(len(dets)))
        for g in care:
            for j in sorted(free):
                inter = g.intersection(dets[j]).area
                if inter / (g.area + dets[j].area - inter) > iou_thr:
                    free.discard(j)
                    matched += 1
                    break
    p = matched / n_det if n_det else 0.0
    r = matched / n_gt if n_gt else 0.0
    return {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r) if p + r else 0.0}


# --- independent inference (RapidOCR) --------------------------------------------------------


def _read_labels(folder: Path) -> list[tuple[Path, str]]:
    rows = []
    for line in (folder / "label.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rel, label = line.split("\t", 1)
            rows.append((folder / rel, label))
    return rows


def _imread(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)


def rapid_rec(
    model: Path, folder: Path, threads: int, limit: int | None, batch: int
) -> dict[str, float]:
    from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer

    rows = _read_labels(folder)[:limit]
    rec = TextRecognizer(
        {
            "model_path": str(model),
            "rec_img_shape": [3, 48, 320],
            # Same batch size as ours: a batch pads every line to its widest one, which
            # changes a few outputs, and the two sides group lines of equal ratio differently.
            "rec_batch_num": batch,
            "intra_op_num_threads": threads,
        }
    )
    results, _ = rec([_imread(p) for p, _ in rows])
    return score_rec([r[0] for r in results], [t for _, t in rows])


def rapid_det(
    model: Path, folder: Path, threads: int, limit: int | None, batch: int
) -> dict[str, float]:
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    class PaddleDefaultsDetector(TextDetector):
        # RapidOCR replaces limit_side_len by 960/1500/2000 depending on the page size;
        # PaddleOCR always scales the long side down to limit_side_len.
        def get_preprocess(self, max_wh):
            return DetPreProcess(self.limit_side_len, self.limit_type, self.mean, self.std)

    det = PaddleDefaultsDetector(
        {
            "model_path": str(model),
            "intra_op_num_threads": threads,
            "limit_side_len": 960,
            "limit_type": "max",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "thresh": 0.3,
            "box_thresh": 0.6,
            "unclip_ratio": 1.5,
            "max_candidates": 1000,
            "use_dilation": False,
            "score_mode": "fast",
        }
    )
    rows = _read_labels(folder)[:limit]
    preds = []
    for path, _ in rows:
        boxes, _ = det(_imread(path))
        preds.append([] if boxes is None else list(boxes))
    return score_det(preds, [json.loads(label) for _, label in rows])


def print_agreement(rows: list[tuple[str, str, float, float]], tol: float, first: str) -> bool:
    """The agreement table (values as fractions, shown in points); True when every metric
    agrees within ``tol`` points."""
    print(f"| {first} | metric | xcompress | independent | abs diff (points) |")
    print("|---|---|---:|---:|---:|")
    worst = 0.0
    for key, k, a, b in rows:
        diff = abs(a - b) * 100
        worst = max(worst, diff)
        print(f"| {key} | {k} | {a * 100:.2f} | {b * 100:.2f} | {diff:.2f} |")
    ok = worst <= tol
    print(f"\nlargest difference {worst:.2f} points: {'OK' if ok else 'FAIL'} (tol {tol})")
    return ok


# --- ours ------------------------------------------------------------------------------------


def ours(model: str, folder: Path, task: str, threads: int, limit: int | None, batch: int):
    from xcompress.artifact import resolve_model
    from xcompress.eval import EvalConfig, evaluate

    art = resolve_model(model, task=task)
    cfg = EvalConfig(threads=threads, limit=limit, batch_size=batch, task=task, progress=False)
    return art.path, evaluate(art, folder, cfg).metrics


def synth(task: str, out: Path, n: int, model: str) -> Path:
    """A small generated set, made by the product's own generator (labels fit the model)."""
    folder = out / f"{task}_synth"
    cmd = [sys.executable, "-m", "xcompress.cli.main", "data", "synth", task, "--out", str(folder)]
    cmd += ["--count", str(n), "--seed", "0"]
    if task == "rec":
        cmd += ["--model", model]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        err = res.stderr.strip().splitlines()[-1:] or ["no message"]
        sys.exit(f"could not generate {task} data ({err[0]}); pass --{task}-data")
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rec-model", default="ppocr-v4-rec")
    ap.add_argument("--det-model", default="ppocr-v4-det")
    ap.add_argument("--rec-data", type=Path)
    ap.add_argument("--det-data", type=Path)
    ap.add_argument("--skip", choices=("rec", "det"), action="append", default=[])
    ap.add_argument("--n", type=int, default=200, help="samples to generate without --*-data")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1, help="recognizer batch size (both sides)")
    ap.add_argument("--tol", type=float, default=0.5, help="allowed difference, in points")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)

    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, model, data, indep in (
            ("rec", args.rec_model, args.rec_data, rapid_rec),
            ("det", args.det_model, args.det_data, rapid_det),
        ):
            if task in args.skip:
                continue
            data = data or synth(task, Path(tmp), args.n, model)
            path, mine = ours(model, data, task, args.threads, args.limit, args.batch_size)
            theirs = indep(path, data, args.threads, args.limit, args.batch_size)
            rows += [(task, k, mine[k], v) for k, v in theirs.items()]

    ok = print_agreement(rows, args.tol, "task")
    if args.json:
        args.json.write_text(
            json.dumps(
                [dict(zip(("task", "metric", "ours", "independent"), r, strict=True)) for r in rows]
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
