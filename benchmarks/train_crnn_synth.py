"""Demonstration: the small CRNN trained from scratch on synthetic lines.

Target (issue): >= 95% line accuracy on a held-out synthetic set within 15 minutes on 2 cores.
The run stops at the time budget (or the step budget), evaluates the best checkpoint on a
held-out synthetic set (different seed than every training sample) and writes
``report.json`` in the run folder.

Usage:
    python benchmarks/train_crnn_synth.py --charset digits --minutes 15 --out runs/crnn_digits
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from pathlib import Path

CHARSETS = {
    "digits": string.digits,
    "alnum": string.digits + string.ascii_uppercase,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--charset", choices=sorted(CHARSETS), default="digits")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--val-count", type=int, default=500)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--out", default="runs/crnn_synth")
    args = ap.parse_args(argv)

    import torch

    from xcompress.models.checkpoint import load_checkpoint
    from xcompress.train import TrainConfig, evaluate_lines, train
    from xcompress.train.data import CTCCodec, RecBatchSpec, SynthSource

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        model="crnn", charset=CHARSETS[args.charset], train=["synth"], val=["synth"],
        val_count=200, steps=args.steps, eval_every=250, batch_size=args.batch_size,
        lr=3e-3, warmup=100, lr_hold=0.5, max_width=256, seed=0, threads=args.threads,
        # leave room for the final held-out evaluation inside the budget
        max_seconds=max(60.0, args.minutes * 60 - 45), out=args.out,
    )  # fmt: skip
    t0 = time.monotonic()
    result = train(cfg)
    train_s = time.monotonic() - t0
    model, card = load_checkpoint(Path(args.out) / "best.pt")
    codec = CTCCodec(card.charset or [])
    # Held-out set: a seed no training stream or the in-training validation uses.
    held_out = SynthSource(codec.charset).items(seed=424242, count=args.val_count)
    acc = evaluate_lines(model, codec, held_out, RecBatchSpec(height=32, max_width=256))
    total_s = time.monotonic() - t0  # training + final held-out evaluation
    report = {
        "charset": args.charset, "threads": args.threads, "train_seconds": round(train_s, 1),
        "total_seconds": round(total_s, 1), "budget_seconds": args.minutes * 60,
        "steps": result.step, "best_step": result.best_step,
        "held_out_lines": len(held_out), "held_out": acc, "target": args.target,
        "passed": acc["line_accuracy"] >= args.target and total_s <= args.minutes * 60,
        "torch": torch.__version__,
    }  # fmt: skip
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
