"""Benchmarks of `xcompress prune` (issue 12): the pruned / slimmed recognizer against the
input model on held-out lines the generator did not make, and its speed.

Subcommands (each writes ``OUT/bench.json`` and ``OUT/bench.md``; an existing prune output in
``OUT/pruned`` is scored again without re-running it):

* ``rec``: ppocr-v4-rec pruned to ``--target-latency-ratio`` (or ``--target-macs``) within
  ``--minutes``; input vs pruned (fp32): MACs, size, alternating speed, held-out CER.
* ``det``: ppocr-v4-det pruned to ``--target-macs`` within ``--minutes``; input vs pruned
  (fp32) at 960x960: MACs, size, alternating speed, Hmean on held-out pages (doc-det: document
  text in the held-out fonts, photo damage, lines rotated up to 20 degrees; det-mix: mixed
  English / Chinese pages with clutter), with a paired bootstrap interval over pages.
* ``charset``: ppocr-v4-rec with ``--keep-charset ascii``: file size and CER on the held-out
  lines whose text is ASCII only, input vs slimmed.

Held-out sets: ``benchmarks/heldout.py`` (Liberation / AR PL fonts, Faker text; blur, JPEG
30-75, noise, low contrast, rotation). Speed: alternating (ABBA) timing in one run, 1 x 3 x
48 x 320, 2 threads, onnxruntime, this machine.

Usage:
    python benchmarks/prune_bench.py rec --out runs/bench-prune-rec --latency-ratio 0.8 --minutes 20
    python benchmarks/prune_bench.py det --out runs/bench-prune-det --macs 0.6 --minutes 20
    python benchmarks/prune_bench.py charset --out runs/bench-prune-ascii
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import make_set  # noqa: E402
from search_bench import _cli, _compare, _eval, _machine, _macs, _size, _write  # noqa: E402

SHAPE = (1, 3, 48, 320)
DET_SHAPE = (1, 3, 960, 960)


def _ascii_subset(src: Path, out: Path) -> tuple[Path, int]:
    """The lines of a held-out set whose label is ASCII only (same images)."""
    out.mkdir(parents=True, exist_ok=True)
    keep = []
    for line in (src / "label.txt").read_text(encoding="utf-8").splitlines():
        name, _, text = line.partition("\t")
        if text and text.isascii():
            keep.append(f"{(src / name).resolve()}\t{text}")
    (out / "label.txt").write_text("\n".join(keep) + "\n", encoding="utf-8")
    return out, len(keep)


def _latency_cell(sp: dict | None) -> str:
    """fp32 latency vs the input (1 / speed-up) with its interval; the input's own row: 1."""
    if not sp:
        return "1.000x"
    return f"{1 / sp['speedup']:.3f}x ({1 / sp['ci95'][1]:.3f}-{1 / sp['ci95'][0]:.3f})"


def _plan_line(report_md: str) -> str:
    """The ``Plan:`` line of a prune report."""
    return next((line for line in report_md.splitlines() if line.startswith("Plan:")), "")


def _row(model: Path | str, sets: dict[str, Path]) -> dict[str, dict[str, float]]:
    return {k: _eval(Path(model), d) for k, d in sets.items()}


def bench_rec(args: argparse.Namespace) -> None:
    from xcompress.artifact import resolve_model

    out: Path = args.out
    pruned = out / "pruned"
    parent = resolve_model("ppocr-v4-rec")
    charset = set(parent.card.charset or [])
    sets = {k: make_set(args.heldout / k, k, args.n, 7, charset) for k in ("en", "zh")}
    target = (["--target-macs", str(args.macs)] if args.macs else
              ["--target-latency-ratio", str(args.latency_ratio)])  # fmt: skip
    if not (pruned / "model.onnx").is_file():
        _cli("prune", "ppocr-v4-rec", "--out", str(pruned), *target, "--minutes",
             str(args.minutes), "--steps", str(args.steps), "--importance", args.importance,
             "--val-count", "100", "--threads", "2",
             *[a for d in args.data for a in ("--data", d)])  # fmt: skip
    rows = {"input fp32": {"size": _size(parent.path), "macs": _macs(parent.path, SHAPE),
                           "heldout": _row("ppocr-v4-rec", sets)},
            "pruned fp32": {"size": _size(pruned / "model.onnx"),
                            "macs": _macs(pruned / "model.onnx", SHAPE),
                            "heldout": _row(pruned, sets),
                            "vs_input": _compare(pruned / "model.onnx", parent.path, SHAPE)}}
    rep = (pruned / "report.md").read_text(encoding="utf-8")
    result = {"model": "ppocr-v4-rec", "shape": list(SHAPE), "threads": 2,
              "runtime": "onnxruntime", "machine": _machine(), "target": target,
              "minutes": args.minutes, "importance": args.importance,
              "data": args.data or ["synth"],
              "heldout": {k: str(d) for k, d in sets.items()}, "heldout_lines": args.n,
              "rows": rows}  # fmt: skip
    data = "".join(f" --data {d}" for d in args.data)
    md = [f"ppocr-v4-rec `xcompress prune {' '.join(target)} --minutes {args.minutes} "
          f"--importance {args.importance}{data}` on host ({_machine()}), 1x3x48x320, 2 threads, "
          f"onnxruntime; held-out: {args.n} degraded lines each (benchmarks/heldout.py); "
          "CER* = space-insensitive CER", "",
          "| model | MMACs | size MB | en CER* | en CER | zh CER* | zh CER | fp32 latency |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        h, sp = r["heldout"], r.get("vs_input")
        lat = _latency_cell(sp)
        md.append(f"| {name} | {r['macs'] / 1e6:.1f} | {r['size'] / 1e6:.2f} | "
                  f"{h['en']['cer_nospace']:.2%} | {h['en']['cer']:.2%} | "
                  f"{h['zh']['cer_nospace']:.2%} | {h['zh']['cer']:.2%} | {lat} |")
    md += ["", _plan_line(rep)]
    _write(out, result, md)


def bench_det(args: argparse.Namespace) -> None:
    import heldout
    from heldout_score import score

    from xcompress.artifact import resolve_model

    out: Path = args.out
    pruned = out / "pruned"
    parent = resolve_model("ppocr-v4-det")
    rec_charset = set(resolve_model("ppocr-v4-rec").card.charset or [])
    sets = heldout.det_sets(args.heldout, rec_charset)
    if not (pruned / "model.onnx").is_file():
        _cli("prune", "ppocr-v4-det", "--out", str(pruned), "--target-macs", str(args.macs),
             "--minutes", str(args.minutes), "--steps", str(args.steps), "--importance",
             args.importance, "--val-count", "40", "--threads", "2")  # fmt: skip
    scored = score(["ppocr-v4-det", str(pruned)], list(sets.values()))
    per_set = list(scored["sets"].values())
    rows: dict[str, dict] = {}
    for i, (name, path) in enumerate((("input fp32", parent.path),
                                      ("pruned fp32", pruned / "model.onnx"))):
        res = [e["results"][i] for e in per_set]
        rows[name] = {"size": _size(path), "macs": _macs(path, DET_SHAPE),
                      "hmean": {k: r["hmean"] for k, r in zip(sets, res, strict=True)}}
        if i:
            rows[name]["hmean_delta_ci95"] = {k: r["ci95"]["hmean"]
                                              for k, r in zip(sets, res, strict=True)}
    rows["pruned fp32"]["vs_input"] = _compare(pruned / "model.onnx", parent.path, DET_SHAPE,
                                               runs=20)  # fmt: skip
    rep = (pruned / "report.md").read_text(encoding="utf-8")
    result = {"model": "ppocr-v4-det", "shape": list(DET_SHAPE), "threads": 2,
              "runtime": "onnxruntime", "machine": _machine(), "target_macs": args.macs,
              "minutes": args.minutes, "importance": args.importance,
              "heldout": {k: str(d) for k, d in sets.items()}, "rows": rows}  # fmt: skip
    md = [f"ppocr-v4-det `xcompress prune --target-macs {args.macs} --minutes {args.minutes} "
          f"--importance {args.importance}` on host ({_machine()}), 1x3x960x960, 2 threads, "
          "onnxruntime; held-out pages: doc-det (40 pages), det-mix (30 pages), "
          "benchmarks/heldout.py; change: paired 95% bootstrap interval over pages", "",
          "| model | MMACs | size MB | doc-det Hmean | change | det-mix Hmean | change | "
          "fp32 latency |", "|---|---:|---:|---:|---|---:|---|---:|"]  # fmt: skip
    base = rows["input fp32"]["hmean"]
    for name, r in rows.items():
        sp, ci = r.get("vs_input"), r.get("hmean_delta_ci95", {})
        lat = _latency_cell(sp)
        cells = []
        for k in sets:
            d = 100 * (r["hmean"][k] - base[k])
            cells += [f"{100 * r['hmean'][k]:.2f}",
                      f"{d:+.2f} ({100 * ci[k][0]:+.2f} .. {100 * ci[k][1]:+.2f})" if k in ci
                      else ""]  # fmt: skip
        md.append(f"| {name} | {r['macs'] / 1e6:.1f} | {r['size'] / 1e6:.2f} | "
                  + " | ".join(cells) + f" | {lat} |")
    md += ["", _plan_line(rep)]
    _write(out, result, md)


def bench_charset(args: argparse.Namespace) -> None:
    from xcompress.artifact import resolve_model

    out: Path = args.out
    slim = out / "slim"
    parent = resolve_model("ppocr-v4-rec")
    charset = set(parent.card.charset or [])
    en = make_set(args.heldout / "en", "en", args.n, 7, charset)
    ascii_set, n_ascii = _ascii_subset(en, out / "heldout-ascii")
    if not (slim / "model.onnx").is_file():
        _cli("prune", "ppocr-v4-rec", "--out", str(slim), "--keep-charset", "ascii",
             "--val", "synth:en", "--val-count", "100", "--threads", "2")  # fmt: skip
    sets = {"ascii": ascii_set}
    rows = {"input fp32": {"size": _size(parent.path), "heldout": _row("ppocr-v4-rec", sets)},
            "ascii fp32": {"size": _size(slim / "model.onnx"), "heldout": _row(slim, sets),
                           "vs_input": _compare(slim / "model.onnx", parent.path, SHAPE)}}
    result = {"model": "ppocr-v4-rec", "shape": list(SHAPE), "threads": 2,
              "runtime": "onnxruntime", "machine": _machine(), "heldout": str(ascii_set),
              "heldout_lines": n_ascii, "rows": rows}  # fmt: skip
    md = [f"ppocr-v4-rec `xcompress prune --keep-charset ascii` on host ({_machine()}), "
          f"1x3x48x320, 2 threads, onnxruntime; held-out: the {n_ascii} ASCII-only lines of "
          f"{args.n} degraded English lines (benchmarks/heldout.py)", "",
          "| model | size MB | size ratio | CER* | CER | line acc | fp32 latency vs input |",
          "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    base = rows["input fp32"]["size"]
    for name, r in rows.items():
        h, sp = r["heldout"]["ascii"], r.get("vs_input")
        md.append(f"| {name} | {r['size'] / 1e6:.2f} | {r['size'] / base:.3f} | "
                  f"{h['cer_nospace']:.2%} | {h['cer']:.2%} | {h['line_accuracy']:.3f} | "
                  + (f"{1 / sp['speedup']:.3f}x" if sp else "1.000x") + " |")
    _write(out, result, md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("rec")
    rec.add_argument("--out", type=Path, default=Path("runs/bench-prune-rec"))
    rec.add_argument("--latency-ratio", type=float, default=0.8)
    rec.add_argument("--macs", type=float, default=None, help="--target-macs instead")
    rec.add_argument("--minutes", type=float, default=20)
    rec.add_argument("--steps", type=int, default=3000)
    rec.add_argument("--importance", default="l1")
    rec.add_argument("--data", nargs="+", default=[], help="prune --data specs (default: synth)")
    det = sub.add_parser("det")
    det.add_argument("--out", type=Path, default=Path("runs/bench-prune-det"))
    det.add_argument("--macs", type=float, default=0.6)
    det.add_argument("--minutes", type=float, default=20)
    det.add_argument("--steps", type=int, default=5000)
    det.add_argument("--importance", default="l1")
    det.add_argument("--heldout", type=Path, default=Path("bench/transfer/heldout"))
    cs = sub.add_parser("charset")
    cs.add_argument("--out", type=Path, default=Path("runs/bench-prune-ascii"))
    for p in (rec, cs):
        p.add_argument("--heldout", type=Path, default=Path("runs/heldout"))
        p.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    {"rec": bench_rec, "det": bench_det, "charset": bench_charset}[args.cmd](args)


if __name__ == "__main__":
    main()
