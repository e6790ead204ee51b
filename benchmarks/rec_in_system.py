"""Which int8 recognizer keeps the system's end-to-end accuracy: each recognizer inside the
fp32 PP-OCRv4 detector and classifier, scored end to end on page sets.

A recognizer's CER on its own check lines does not tell how many whole lines the system still
reads right. This reads every page set with the fp32 system and with one system per given
recognizer (same fp32 det and cls), page by page in turn, and reports the e2e Hmean* change
with its paired 95 % bootstrap interval over pages.

The 2026-12-07 comparison (``benchmarks/results/rec_in_system.md``)::

    xcompress quantize ppocr-v4-rec --out /tmp/rec-defaults
    xcompress data synth det --count 60 --seed 21 --lang mix --augment photo --out /tmp/p21
    xcompress data synth det --count 40 --seed 22 --lang mix --augment photo --out /tmp/p22
    xcompress data crops /tmp/p21 --det ppocr-v4-det --out /tmp/crops21
    xcompress data crops /tmp/p22 --det ppocr-v4-det --out /tmp/crops22
    xcompress quantize ppocr-v4-rec --calib /tmp/crops21 --eval /tmp/crops22 \\
        --max-drop 0.001 --out /tmp/rec-crops
    xcompress data synth det --count 200 --seed 31 --lang mix --augment photo --out /tmp/p31
    python benchmarks/heldout.py H        # H/doc-det: held-out document pages
    python benchmarks/rec_in_system.py --rec defaults=/tmp/rec-defaults \\
        --rec crops=/tmp/rec-crops --pages ci=runs/ci-system/data/pages \\
        --pages doc-det=H/doc-det --pages synth31=/tmp/p31
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"{what} {item!r}: give LABEL=PATH")
        out[label] = path
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rec", action="append", required=True, help="LABEL=model folder or file")
    ap.add_argument("--pages", action="append", required=True,
                    help="LABEL=PaddleOCR detection set")
    ap.add_argument("--det", default="ppocr-v4-det")
    ap.add_argument("--cls", default="ppocr-v4-cls")
    ap.add_argument("--fp32-rec", default="ppocr-v4-rec")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rec-batch", type=int, default=6, help="crops per recognizer call")
    ap.add_argument("--md", type=Path, default=REPO / "benchmarks" / "results" /
                    "rec_in_system.md")
    args = ap.parse_args(argv)
    from system_bench import e2e_change, write_results

    from xcompress.eval.evaluate import cpu_model
    from xcompress.eval.system import SystemEvalConfig, evaluate_systems

    recs, sets = _pairs(args.rec, "--rec"), _pairs(args.pages, "--pages")
    systems = {"fp32": (args.det, args.cls, args.fp32_rec)}
    systems.update({k: (args.det, args.cls, v) for k, v in recs.items()})
    cfg = SystemEvalConfig(threads=args.threads, rec_batch=args.rec_batch, progress=False)
    lines = ["# Int8 recognizers inside the fp32 PP-OCRv4 system", "",
             f"Detector {args.det} and classifier {args.cls} in fp32 (onnxruntime); only the "
             f"recognizer changes. Machine {cpu_model()}, {platform.machine()}; "
             f"{args.threads} threads; recognizer {args.rec_batch} crops per call sorted by "
             "width (PaddleOCR). e2e Hmean*: a read line counts when its box matches a ground "
             "truth at IoU >= 0.5 and its text equals the transcription ignoring spaces; "
             "change vs the fp32 recognizer with a paired 95% bootstrap interval over pages.",
             "", "Recognizers: " + ", ".join(f"`{k}` = {v}" for k, v in recs.items()), "",
             "| pages | lines | recognizer | e2e Hmean* | change (95% CI) | e2e as-is | "
             "matched CER* |", "|---|---:|---|---:|---|---:|---:|"]
    out: dict = {}
    for name, path in sets.items():
        print(f"{name}: {', '.join(systems)}", file=sys.stderr, flush=True)
        reps = evaluate_systems(systems, path, cfg)
        base = reps["fp32"]
        out[name] = {}
        for label, rep in reps.items():
            m = rep.metrics
            delta, lo, hi, change = e2e_change(base, rep)
            lines.append(f"| {name} ({rep.data['pages']}) | {rep.data['lines']} | {label} | "
                         f"{100 * m['e2e_hmean']:.2f} | {change} | "
                         f"{100 * m['e2e_hmean_asis']:.2f} | "
                         f"{100 * m['matched_cer_nospace']:.2f}% |")
            out[name][label] = {**rep.to_dict(), "e2e_hmean_delta": delta,
                                "e2e_hmean_delta_ci95": [lo, hi]}
    write_results(args.md, "\n".join(lines) + "\n", out)
    return 0


if __name__ == "__main__":
    from xcompress.errors import XCompressError

    try:
        sys.exit(main())
    except XCompressError as e:  # a bad model or page set: one line, exit 1
        sys.exit(f"error: {e}")
