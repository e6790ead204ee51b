"""The system table on held-out pages: the PP-OCRv4 system before and after
``recipes/ppocr-v4-system.yaml``, scored end to end on pages rendered apart from the generator.

Runs the recipe into ``--run`` (or reuses a finished run: ``xcompress run`` resumes), then
reads three held-out page sets (``benchmarks/heldout.py``: fonts and text the generator does
not use; ``det-mix`` lightly damaged, ``e2e-mix`` and ``doc-det`` damaged as photos and
scans, with rotated lines) with each system, page by page in turn so latencies are measured
alternately: the fp32 original, the compressed system the recipe chose (int8 ONNX members),
and, where the run exported them, the int8 TFLite members (LiteRT). Reports per member and
per system: size, end-to-end Hmean (ignoring spaces; as-is), CER of matched lines, detection
Hmean, ms per page, speed-up, and the paired 95 % bootstrap interval of the Hmean change.

Usage:
    python benchmarks/system_bench.py [--run runs/system] [--md benchmarks/results/system.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
ROLES = ("det", "cls", "rec")


def heldout_sets(root: Path) -> dict[str, Path]:
    import heldout

    from xcompress.artifact import resolve_model

    cs = set(resolve_model("ppocr-v4-rec").card.charset or [])
    det = heldout.det_sets(root, cs)
    return {
        "det-mix": det["det-mix"],
        "e2e-mix": heldout.make_det_heldout((root / "e2e-mix").resolve(), 30, 404, cs,
                                            hard=True),
        "doc-det": det["doc-det"],
    }


def systems_of(run: Path) -> dict[str, tuple]:
    rep = json.loads((run / "report.json").read_text())
    members = {m["role"]: m for m in rep["members"]}
    orig = tuple(rep["recipe"]["members"][r]["model"] if r in members else None for r in ROLES)
    chosen = tuple(members[r]["path"] if r in members else None for r in ROLES)
    out = {"fp32": orig, "int8 ONNX": chosen}
    steps = [run / "members" / r / "steps" / "tflite-int8" for r in ROLES]
    tfl = tuple(str(t) if (t / "xcompress.json").is_file() else c
                for t, c in zip(steps, chosen, strict=True))
    if tuple(tfl) != chosen:
        out["int8 TFLite"] = tuple(tfl)
    return out


def e2e_change(base, rep) -> tuple[float, float, float, str]:
    """``rep``'s e2e Hmean* change against ``base`` (system reports of the same pages): the
    change, its paired 95% bootstrap interval over pages, and the table cell ("" for
    ``base`` itself)."""
    from xcompress.eval.bootstrap import paired_interval

    delta = rep.metrics["e2e_hmean"] - base.metrics["e2e_hmean"]
    lo, hi = paired_interval("e2e", np.asarray(base.page_counts), np.asarray(rep.page_counts),
                             "e2e_hmean")
    cell = "" if rep is base else f"{100 * delta:+.2f} ({100 * lo:+.2f} .. {100 * hi:+.2f})"
    return delta, lo, hi, cell


def write_results(md: Path, text: str, data: dict) -> None:
    """Print the Markdown ``text`` and write it to ``md``, ``data`` beside it as JSON."""
    print(text)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text, encoding="utf-8")
    md.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it (given relative or not)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "ppocr-v4-system.yaml")
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "system")
    ap.add_argument("--heldout", type=Path, default=REPO / "bench" / "heldout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rec-batch", type=int, default=6, help="crops per recognizer call")
    ap.add_argument("--md", type=Path, default=REPO / "benchmarks" / "results" / "system.md")
    args = ap.parse_args(argv)
    from xcompress.eval.evaluate import cpu_model
    from xcompress.eval.system import SystemEvalConfig, evaluate_systems

    if not (args.run / "report.json").is_file():
        subprocess.run([sys.executable, "-m", "xcompress.cli.main", "run", str(args.recipe),
                        "--out", str(args.run)], check=True)
    systems = systems_of(args.run)
    sets = heldout_sets(args.heldout)
    cfg = SystemEvalConfig(threads=args.threads, rec_batch=args.rec_batch, progress=False)
    results = {}
    for name, path in sets.items():
        print(f"{name}: {', '.join(systems)}", flush=True)
        results[name] = evaluate_systems(systems, path, cfg)
    lines = ["# The PP-OCRv4 system end to end on held-out pages", "",
             f"Recipe `{_shown(args.recipe)}` (run `{args.run}`); machine "
             f"{cpu_model()}, {platform.machine()}; {args.threads} threads; whole pipeline per "
             f"page (det + cls + rec, rec {args.rec_batch} crops per call sorted by width as "
             "PaddleOCR), systems page by page in turn. "
             "e2e Hmean*: a read line counts when its box matches a ground truth at IoU >= 0.5 "
             "and its text equals the transcription ignoring spaces (full-width folded), "
             "PaddleOCR's end-to-end protocol; as-is: exact text. Change: vs fp32, paired 95% "
             "bootstrap interval over pages.", ""]
    first = next(iter(results.values()))
    lines += ["## Members", "", "| system | det | cls | rec | total MB |", "|---|---|---|---|---:|"]
    for label, rep in first.items():
        cells = {m.role: f"{Path(m.path).parent.name}/{Path(m.path).name} "
                 f"({m.size_bytes / 1e6:.2f} MB, {m.runtime})" for m in rep.members}
        lines.append(f"| {label} | {cells.get('det', '-')} | {cells.get('cls', '-')} | "
                     f"{cells.get('rec', '-')} | {rep.size_bytes / 1e6:.2f} |")
    out_json = {}
    for name, reps in results.items():
        base = reps["fp32"]
        d = base.data
        lines += ["", f"## {name}: {d['pages']} pages, {d['lines']} lines "
                  f"(label sha256 {d['sha256'][:12]})", "",
                  "| system | MB | e2e Hmean* | change (95% CI) | e2e Hmean as-is | matched CER* "
                  "| det Hmean | ms / page | speed-up |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
        out_json[name] = {}
        for label, rep in reps.items():
            m = rep.metrics
            delta, lo, hi, change = e2e_change(base, rep)
            speed = base.metrics["page_ms_mean"] / m["page_ms_mean"]
            lines.append(f"| {label} | {rep.size_bytes / 1e6:.2f} | {100 * m['e2e_hmean']:.2f} | "
                         f"{change} | {100 * m['e2e_hmean_asis']:.2f} | "
                         f"{100 * m['matched_cer_nospace']:.2f}% | {100 * m['det_hmean']:.2f} | "
                         f"{m['page_ms_mean']:.1f} | {speed:.2f}x |")
            out_json[name][label] = {**rep.to_dict(), "e2e_hmean_delta": delta,
                                     "e2e_hmean_delta_ci95": [lo, hi], "speedup": speed}
    write_results(args.md, "\n".join(lines) + "\n", out_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
