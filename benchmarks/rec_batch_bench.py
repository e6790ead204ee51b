"""Per-page speed-up of a compressed system at recognizer batch sizes: does reading crops in
PaddleOCR's batches (6, sorted by width) change how much faster the int8 system is?

For each ``--batch`` (in turn, ``--rounds`` times) the fp32 and the int8 ONNX systems of a
finished system run read the same pages, page by page alternately (``evaluate_systems``), so
each round's ratio is measured in one pass on a shared machine.

Usage:
    python benchmarks/rec_batch_bench.py --run runs/ci-system --pages runs/ci-system/data/pages
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
MEMBER_MS = ("det_ms_mean", "cls_ms_mean", "rec_ms_mean")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/ci-system"))
    ap.add_argument("--pages", type=Path, default=Path("runs/ci-system/data/pages"))
    ap.add_argument("--batch", type=int, action="append", help="repeatable; default 1 and 6")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from system_bench import systems_of

    from xcompress.eval.evaluate import cpu_model
    from xcompress.eval.system import SystemEvalConfig, evaluate_systems

    systems = {k: v for k, v in systems_of(args.run).items() if k in ("fp32", "int8 ONNX")}
    print(f"{args.run} on {args.pages}; {args.threads} threads; {cpu_model()}, "
          f"{platform.machine()}")
    print("| rec batch | fp32 ms/page (det, cls, rec) | int8 ms/page (det, cls, rec) | "
          "speed-up | e2e Hmean* fp32 / int8 |\n|---:|---:|---:|---:|---:|")
    for _ in range(args.rounds):
        for batch in args.batch or [1, 6]:
            cfg = SystemEvalConfig(threads=args.threads, rec_batch=batch, progress=False)
            a, b = (r.metrics for r in evaluate_systems(systems, args.pages, cfg).values())
            cells = [f"{m['page_ms_mean']:.0f} ("
                     + ", ".join(f"{m[k]:.0f}" for k in MEMBER_MS if k in m) + ")"
                     for m in (a, b)]
            print(f"| {batch} | {cells[0]} | {cells[1]} | "
                  f"{a['page_ms_mean'] / b['page_ms_mean']:.2f}x | "
                  f"{100 * a['e2e_hmean']:.2f} / {100 * b['e2e_hmean']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
