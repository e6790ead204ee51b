"""Benchmarks of `xcompress search` (issue 11): the found models on held-out data the generator
did not make, their speed against the parent, and the latency predictor's error.

Subcommands (each writes ``OUT/bench.json`` and ``OUT/bench.md``; re-running resumes):

* ``rec``: ppocr-v4-rec searched under ``--max-latency-ratio``; parent vs the found model
  (fp32), then the found model through ``xcompress quantize`` and ``xcompress export --to
  tflite --int8`` with no special case, scored on degraded held-out English and Chinese lines.
* ``crnn``: a wide CRNN digits recognizer trained with ``xcompress train``'s loop, searched
  under a parameter and latency budget, both quantized to int8; size, speed and line accuracy
  on degraded held-out digit strings (card numbers, meters, amounts, dates).
* ``predictor``: calibrate a target's latency predictor, then measure fresh random subnets
  (another seed) and report its error on them.

Held-out sets: ``benchmarks/heldout.py`` (Liberation / AR PL fonts, Faker and digit text;
blur, JPEG 30-75, noise, low contrast, rotation). Speed: alternating (ABBA) timing in one run,
1 x 3 x H x W, 2 threads, onnxruntime, this machine.

Usage:
    python benchmarks/search_bench.py rec --out runs/bench-search-rec --minutes 45
    python benchmarks/search_bench.py crnn --out runs/bench-search-crnn
    python benchmarks/search_bench.py predictor --target arm64-emu --samples 16 --test 12
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import make_set  # noqa: E402

XC = str(Path(sys.executable).parent / "xcompress")
HERE = Path(__file__).resolve().parent
WIDE_CRNN = {"stages": [{"channels": 32, "stride": [2, 2], "pool": [1, 1]},
                        {"channels": 64, "stride": [2, 2], "pool": [1, 1]},
                        {"channels": 96, "pool": [2, 1]},
                        {"channels": 128, "pool": [2, 1]}],
             "hidden": 96}  # fmt: skip


def _cli(*args: str) -> None:
    print("$ xcompress " + " ".join(args), flush=True)
    subprocess.run([XC, *args], check=True)


def _eval(model: Path, data: Path) -> dict[str, float]:
    from xcompress.eval import EvalConfig, evaluate

    return dict(evaluate(str(model), data, EvalConfig(threads=2, progress=False)).metrics)


def _compare(a: Path, b: Path, shape: tuple[int, ...], runs: int = 60) -> dict[str, float]:
    from xcompress.profile import ProfileConfig, get_profiler

    cmp = get_profiler("host").compare(
        a, b, ProfileConfig(shape=shape, threads=2, warmup=5, runs=runs))
    return {"a_ms": cmp.a.median_ms, "b_ms": cmp.b.median_ms, "speedup": 1.0 / cmp.ratio,
            "ci95": [1.0 / cmp.ci95_high, 1.0 / cmp.ci95_low]}


def _size(path: Path) -> int:
    return path.stat().st_size


def _macs(path: Path, shape: tuple[int, ...]) -> int:
    from xcompress.profile.flops import count_onnx

    return count_onnx(path, shape).macs


def _machine() -> str:
    from xcompress.profile.machine import host_machine

    return host_machine().describe()


def _write(out: Path, result: dict, md: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (out / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


# ----------------------------------------------------------------------------- rec


def bench_rec(args: argparse.Namespace) -> None:
    from xcompress.artifact import resolve_model

    out = args.out
    run = args.run or out / "search"
    parent = resolve_model("ppocr-v4-rec")
    charset = set(parent.card.charset or [])
    sets = {k: make_set(args.heldout / k, k, args.n, 7, charset) for k in ("en", "zh")}
    if args.run is None:  # else: score an existing run made with the same flags
        _cli("search", "ppocr-v4-rec", "--out", str(run), "--max-latency-ratio", str(args.ratio),
             "--minutes", str(args.minutes), "--trials", "200", "--finetune-steps",
             str(args.finetune_steps), "--final-steps", str(args.final_steps), "--data",
             "synth:en", "--data", "synth:zh", "--val", "synth:en", "--val", "synth:zh",
             "--val-count", "100", "--threads", "2")  # fmt: skip
    best = run / "best"
    int8 = out / "best-int8"
    tfl = out / "best-tflite-int8"
    if not (int8 / "model.int8.onnx").is_file():
        _cli("quantize", str(best), "--out", str(int8))
    calib = out / "calib"
    if not (calib / "label.txt").is_file():  # the product's own generator, as a user would
        _cli("data", "synth", "rec", "--out", str(calib), "--count", "200", "--lang", "mix",
             "--seed", "1")  # fmt: skip
    if not any(tfl.glob("*.tflite")):
        _cli("export", str(best), "--to", "tflite", "--int8", "--calib", str(calib), "--out",
             str(tfl))  # fmt: skip
    shape = (1, 3, 48, 320)
    models = {"parent fp32": parent.path, "found fp32": best / "model.onnx",
              "found int8 (ONNX)": int8 / "model.int8.onnx",
              "found int8 (TFLite)": next(tfl.glob("*.tflite"))}  # fmt: skip
    rows = {}
    for name, path in models.items():
        target = path.parent if name != "parent fp32" else "ppocr-v4-rec"
        rows[name] = {"size": _size(path),
                      "heldout": {k: _eval(Path(target), d) for k, d in sets.items()}}  # fmt: skip
        print(name, {k: round(v["cer_nospace"], 4) for k, v in rows[name]["heldout"].items()})
    for name in ("found fp32", "found int8 (ONNX)"):
        rows[name]["vs_parent"] = _compare(models[name], parent.path, shape)
    rows["parent fp32"]["macs"] = _macs(parent.path, shape)
    rows["found fp32"]["macs"] = _macs(models["found fp32"], shape)
    trials = json.loads((run / "trials.json").read_text())
    pareto = json.loads((run / "pareto.json").read_text())
    evaluated = [t for t in trials["trials"] if t.get("error") is not None]
    result = {"model": "ppocr-v4-rec", "shape": list(shape), "threads": 2,
              "runtime": "onnxruntime (host) / LiteRT (TFLite rows: accuracy only)",
              "machine": _machine(), "heldout": {k: str(d) for k, d in sets.items()},
              "heldout_lines": args.n, "search": {"ratio": args.ratio, "minutes": args.minutes,
              "finetune_steps": args.finetune_steps, "final_steps": args.final_steps,
              "trials": len(trials["trials"]), "evaluated": len(evaluated),
              "front": len(pareto["front"]), "predictor_error": pareto["predictor_error"],
              "best": pareto["best"]}, "rows": rows}  # fmt: skip
    md = [f"ppocr-v4-rec search, `--max-latency-ratio {args.ratio} --minutes {args.minutes}` on "
          f"host ({_machine()}), 1x3x48x320, 2 threads, onnxruntime; held-out: {args.n} "
          "degraded lines each (benchmarks/heldout.py); CER* = space-insensitive CER", "",
          "| model | size MB | en CER* | en CER | zh CER* | zh CER | speed-up vs parent fp32 |",
          "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        h = r["heldout"]
        sp = r.get("vs_parent")
        md.append(f"| {name} | {r['size'] / 1e6:.2f} | {h['en']['cer_nospace']:.2%} | "
                  f"{h['en']['cer']:.2%} | {h['zh']['cer_nospace']:.2%} | {h['zh']['cer']:.2%} | "
                  + (f"{sp['speedup']:.2f}x ({sp['ci95'][0]:.2f}-{sp['ci95'][1]:.2f})" if sp
                     else ("1.00x" if name == "parent fp32" else "")) + " |")
    pe = pareto["predictor_error"] or {}
    md += ["", f"Trials: {len(trials['trials'])}, {len(evaluated)} trained and scored, "
           f"{len(pareto['front'])} on the front; latency predictor on the trials: "
           f"{pe.get('mean_abs_pct_error', float('nan')):.1f}% mean abs error, "
           f"{pe.get('within_10pct', float('nan')):.0%} within ±10%; MACs parent "
           f"{rows['parent fp32']['macs'] / 1e6:.0f} M -> found "
           f"{rows['found fp32']['macs'] / 1e6:.0f} M."]
    _write(out, result, md)


# ----------------------------------------------------------------------------- crnn


def bench_crnn(args: argparse.Namespace) -> None:
    import torch

    from xcompress.train import TrainConfig, train

    out = args.out
    torch.set_num_threads(2)
    heldout = make_set(args.heldout / "digits", "digits", args.n, 7, height=(24, 40))
    cfg = TrainConfig(model="crnn", arch_config=WIDE_CRNN, charset="0123456789",
                      train=["synth"], val=["synth"], val_count=200, steps=args.train_steps,
                      eval_every=500, batch_size=32, lr=3e-3, warmup=100, lr_hold=0.5,
                      max_width=256, seed=0, threads=2, max_seconds=args.train_minutes * 60,
                      out=str(out / "parent"))  # fmt: skip
    t0 = time.monotonic()
    if not (out / "parent" / "best.pt").is_file():
        train(cfg, progress=False)
    train_s = time.monotonic() - t0
    pdir = out / "parent-onnx"
    if not (pdir / "model.onnx").is_file():
        _cli("export", str(out / "parent" / "best.pt"), "--to", "onnx", "--out", str(pdir))
    t1 = time.monotonic()
    run = out / "search"
    _cli("search", str(out / "parent" / "best.pt"), "--out", str(run), "--space",
         str(HERE / "crnn_wide_space.yaml"), "--max-params", str(args.max_params),
         "--max-latency-ratio", str(args.ratio), "--trials", str(args.trials), "--minutes",
         str(args.minutes), "--finetune-steps", str(args.finetune_steps), "--final-steps",
         str(args.final_steps), "--batch-size", "32", "--threads", "2")  # fmt: skip
    search_s = time.monotonic() - t1
    for src, dst in ((pdir, out / "parent-int8"), (run / "best", out / "best-int8")):
        if not (dst / "model.int8.onnx").is_file():
            _cli("quantize", str(src), "--out", str(dst))
    shape = (1, 3, 32, 256)
    models = {"parent fp32": pdir / "model.onnx", "parent int8": out / "parent-int8" /
              "model.int8.onnx", "found fp32": run / "best" / "model.onnx",
              "found int8": out / "best-int8" / "model.int8.onnx"}  # fmt: skip
    rows = {n: {"size": _size(p), "heldout": _eval(p.parent, heldout), "macs": _macs(p, shape)
                if "fp32" in n else None} for n, p in models.items()}  # fmt: skip
    for n in ("parent int8", "found fp32", "found int8"):
        rows[n]["vs_parent"] = _compare(models[n], models["parent fp32"], shape, runs=200)
    pareto = json.loads((run / "pareto.json").read_text())
    result = {"model": "crnn digits (wide parent)", "shape": list(shape), "threads": 2,
              "runtime": "onnxruntime", "machine": _machine(), "heldout": str(heldout),
              "heldout_lines": args.n, "train_seconds": round(train_s), "search_seconds":
              round(search_s), "predictor_error": pareto["predictor_error"],
              "best": pareto["best"], "rows": rows}  # fmt: skip
    md = [f"CRNN digits: wide parent trained {train_s / 60:.0f} min, searched "
          f"{search_s / 60:.0f} min (`--max-params {args.max_params} --max-latency-ratio "
          f"{args.ratio}`); host ({_machine()}), 1x3x32x256, 2 threads, onnxruntime; held-out: "
          f"{args.n} degraded digit strings (benchmarks/heldout.py)", "",
          "| model | size KB | line acc | CER | MMACs | speed-up vs parent fp32 |",
          "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        h, sp = r["heldout"], r.get("vs_parent")
        md.append(f"| {name} | {r['size'] / 1e3:.0f} | {h['line_accuracy']:.2%} | {h['cer']:.2%} | "
                  + (f"{r['macs'] / 1e6:.1f}" if r["macs"] else "") + " | "
                  + (f"{sp['speedup']:.2f}x ({sp['ci95'][0]:.2f}-{sp['ci95'][1]:.2f})" if sp
                     else "1.00x") + " |")
    _write(out, result, md)


# ----------------------------------------------------------------------------- predictor


def bench_predictor(args: argparse.Namespace) -> None:
    import tempfile

    import numpy as np

    from xcompress.export import load_source
    from xcompress.profile.run import default_shape
    from xcompress.search.candidates import export_candidate
    from xcompress.search.derive import derive_subnet
    from xcompress.search.latency import (
        calibration_points,
        latency_features,
        load_predictor,
        open_meter,
        runtime_key,
    )
    from xcompress.search.space import load_space

    _cli("board", "calibrate", args.target, "--model", args.model, "--samples",
         str(args.samples), "--threads", "2")  # fmt: skip
    src = load_source(args.model)
    space = load_space(None, src.module.arch)
    shape = default_shape(src.card)
    meter = open_meter(args.target, shape, 2)
    d = meter.describe()
    pred = load_predictor(d["target"], src.module.arch, shape, int(d["threads"]),
                          runtime_key(meter))  # fmt: skip
    pc = src.module.config.model_dump(mode="json")
    errs, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        parent = export_candidate(src.module, src.card, Path(tmp) / "parent")
        meter.calibrate_reference(parent)
        for i, point in enumerate(calibration_points(space, args.test + 2, seed=args.seed)[2:]):
            child = derive_subnet(src.module, space.child_config(pc, point))
            path = export_candidate(child, src.card, Path(tmp) / f"t{i}")
            m = meter.measure(path, parent)
            # scaled by the parent measured now vs predicted, as the search does
            p = (pred.predict(latency_features(path, shape)) * meter.reference
                 / pred.predict(latency_features(parent, shape)))
            errs.append(abs(p - m.normalized) / m.normalized * 100)
            rows.append({"predicted": p, "measured": m.normalized, "ratio": m.ratio})
            print(f"{i + 1}/{args.test}: predicted {p:.3f} measured {m.normalized:.3f} "
                  f"{meter.unit} ({errs[-1]:.1f}%)", flush=True)
    e = np.asarray(errs)
    result = {"target": d, "model": args.model, "shape": list(shape), "calibration_samples":
              args.samples, "calibration_loo_mape": pred.cv_mape, "calibration_loo_within10":
              pred.cv_within10, "test_points": len(errs), "test_mape": float(e.mean()),
              "test_within10": float((e <= 10).mean()), "test_max": float(e.max()),
              "rows": rows}  # fmt: skip
    md = [f"Latency predictor, {args.model} on {d['target']} ({d['machine']}; {d['method']}; "
          f"{d['threads']} threads; shape {shape}): calibrated on {args.samples} subnets "
          f"(leave-one-out {pred.cv_mape:.1f}% mean abs error, {pred.cv_within10:.0%} within "
          f"±10%); on {len(errs)} fresh subnets: {e.mean():.1f}% mean abs error, "
          f"{(e <= 10).mean():.0%} within ±10%, max {e.max():.1f}%."]
    _write(args.out, result, md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rec")
    r.add_argument("--out", type=Path, default=Path("runs/bench-search-rec"))
    r.add_argument("--run", type=Path, help="score this finished search run instead")
    r.add_argument("--ratio", type=float, default=0.6)
    r.add_argument("--minutes", type=float, default=60)
    r.add_argument("--finetune-steps", type=int, default=100)
    r.add_argument("--final-steps", type=int, default=400)
    c = sub.add_parser("crnn")
    c.add_argument("--out", type=Path, default=Path("runs/bench-search-crnn"))
    c.add_argument("--train-minutes", type=float, default=10)
    c.add_argument("--train-steps", type=int, default=4000)
    c.add_argument("--max-params", type=int, default=400_000)
    c.add_argument("--ratio", type=float, default=0.5)
    c.add_argument("--trials", type=int, default=16)
    c.add_argument("--minutes", type=float, default=15)
    c.add_argument("--finetune-steps", type=int, default=150)
    c.add_argument("--final-steps", type=int, default=800)
    p = sub.add_parser("predictor")
    p.add_argument("--out", type=Path, default=Path("runs/bench-search-predictor"))
    p.add_argument("--target", default="host")
    p.add_argument("--model", default="ppocr-v4-rec")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--test", type=int, default=16)
    p.add_argument("--seed", type=int, default=11)
    for s in (r, c, p):
        s.add_argument("--heldout", type=Path, default=Path("runs/heldout"))
        s.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    {"rec": bench_rec, "crnn": bench_crnn, "predictor": bench_predictor}[args.cmd](args)


if __name__ == "__main__":
    main()
