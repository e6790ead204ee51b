"""Benchmark ``xcompress quantize`` against plain onnxruntime PTQ (and neural-compressor).

One command, one run, one Markdown table::

    .venv/bin/python benchmarks/quantize_bench.py --out bench/quantize

For ppocr-v4-rec and ppocr-v4-det it compares, on the same data and shapes:

* fp32: the zoo model;
* ort-minmax: ``onnxruntime.quantization.quantize_static`` MinMax, per-channel QDQ, after the
  opset upgrade it needs (12 -> 17), calibrated on the same calibration set;
* xcompress: ``xcompress.quantize.quantize`` with default settings;
* neural-compressor: ``onnx_neural_compressor`` if installed; its error is recorded if it fails.

Calibration data comes from xcompress's own generator (``xcompress data synth``). Accuracy is
measured on held-out sets this script renders with *other fonts* (Liberation, AR PL UMing /
UKai: ``apt-get install fonts-liberation2 fonts-arphic-uming fonts-arphic-ukai``) and *other
text* (Faker's en_US / zh_CN providers: addresses, companies, jobs, phone numbers, dates,
IBANs; ``pip install faker``), never the generator's fonts or corpus. Latency: each int8
model timed alternately with fp32 in one run (median / p90, ratio) at 1x3x48x320 (rec) and
1x3x960x960 (det), 2 threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import make_det_heldout, make_rec_heldout  # noqa: E402


# --- baselines ----------------------------------------------------------------------------------
def ort_minmax(fp32: Path, calib_inputs: list[np.ndarray], out: Path) -> Path:
    """Plain onnxruntime PTQ: upgrade the opset to 17 (per-channel QDQ needs >= 13), run
    onnxruntime's recommended ``quant_pre_process`` (shape inference + basic graph
    optimization, which also turns Paddle's Constant weights into initializers the quantizer
    can see), then ``quantize_static`` MinMax, per-channel QDQ, u8 activations / s8 weights."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    up = version_converter.convert_version(onnx.load(str(fp32)), 17)
    raw_path = out.with_suffix(".fp32-opset17.onnx")
    onnx.save(up, raw_path)
    up_path = out.with_suffix(".fp32-pre.onnx")
    quant_pre_process(str(raw_path), str(up_path), skip_symbolic_shape=True)
    name = up.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib_inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    quantize_static(str(up_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return out


def neural_compressor(fp32: Path, calib_inputs: list[np.ndarray], out: Path) -> Path:
    """onnx-neural-compressor static PTQ (QDQ, per-channel); raises whatever it raises.

    It pins numpy<2, so install it apart and pass ``--inc-path``:
    ``pip install --no-deps --target /tmp/inc onnx-neural-compressor==1.0
    onnxruntime_extensions py-cpuinfo prettytable wcwidth psutil``.
    """
    import onnx
    from onnx_neural_compressor import data_reader  # type: ignore[import-not-found]
    from onnx_neural_compressor.quantization import config as inc_config  # type: ignore
    from onnx_neural_compressor.quantization import quantize as inc_quantize  # type: ignore
    from onnxruntime.quantization import QuantFormat

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

    class Reader(data_reader.CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(calib_inputs):
                return None
            self.i += 1
            return {name: calib_inputs[self.i - 1]}

        def rewind(self):
            self.i = 0

    cfg = inc_config.StaticQuantConfig(Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    inc_quantize(str(fp32), str(out), cfg)
    return out


# --- main ---------------------------------------------------------------------------------------
def _eval(artifact, data: Path) -> dict[str, float]:
    from xcompress.eval import EvalConfig, evaluate

    return dict(evaluate(artifact, data, EvalConfig(threads=2, progress=False)).metrics)


def run(out: Path, calib_rec_n: int, calib_det_n: int, held_rec_n: int, held_det_n: int,
        models: list[str], runs: int) -> dict:
    from xcompress.artifact import Artifact, resolve_model
    from xcompress.data import load_dataset, read_image
    from xcompress.ocr.preprocess import preprocess_for
    from xcompress.profile import ProfileConfig, get_profiler
    from xcompress.quantize import QuantizeConfig, quantize

    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    rec_card = resolve_model("ppocr-v4-rec").card
    charset = set(rec_card.charset or [])
    sets = {
        "rec": {"en": make_rec_heldout(data / "heldout_rec_en", "en", held_rec_n, 101, charset),
                "zh": make_rec_heldout(data / "heldout_rec_zh", "zh", held_rec_n, 202, charset)},
        "det": {"mix": make_det_heldout(data / "heldout_det2", held_det_n, 303, charset)},
    }
    calib = {}
    for task, n in (("rec", calib_rec_n), ("det", calib_det_n)):
        folder = data / f"calib_{task}"
        if not (folder / "label.txt").is_file():
            # the product's own generator, through its CLI (charset of ppocr-v4-rec)
            subprocess.run([str(Path(sys.executable).parent / "xcompress"), "data", "synth",
                            task, "--out", str(folder), "--count", str(n), "--lang", "mix",
                            "--seed", "0"], check=True)
        calib[task] = folder

    json_path = out / "quantize_bench.json"
    # re-running some models keeps the others' rows (one table for all)
    results: dict = json.loads(json_path.read_text()) if json_path.is_file() else {"models": {}}
    profiler = get_profiler("host")
    for name in models:
        art = resolve_model(name)
        task = art.card.task
        shape = (1, 3, 48, 320) if task == "rec" else (1, 3, 960, 960)
        mdir = out / name
        mdir.mkdir(exist_ok=True)
        samples = list(load_dataset(calib[task]).samples)[: 100 if task == "rec" else 12]
        calib_inputs = [preprocess_for(art.card, [read_image(s.image)]).batch for s in samples]
        rows: dict[str, dict] = {}
        candidates: dict[str, Path | None] = {"fp32": art.path}

        t = time.perf_counter()
        try:
            candidates["ort-minmax"] = ort_minmax(art.path, calib_inputs, mdir / "ort-minmax.onnx")
            rows["ort-minmax"] = {"time_s": time.perf_counter() - t}
        except Exception as e:  # record, do not hide
            rows["ort-minmax"] = {"error": f"{type(e).__name__}: {e}"[:300]}

        t = time.perf_counter()
        try:
            res = quantize(art, calib[task], mdir / "xcompress", QuantizeConfig(), progress=True)
            candidates["xcompress"] = res.model_path
            rows["xcompress"] = {"time_s": time.perf_counter() - t,
                                 "float_layers": len(res.report["layers"]["kept_float"]),
                                 "plan": res.report["plan"]["name"]}
        except Exception as e:
            rows["xcompress"] = {"error": f"{type(e).__name__}: {e}"[:300]}

        t = time.perf_counter()
        try:
            candidates["neural-compressor"] = neural_compressor(
                art.path, calib_inputs, mdir / "inc.onnx")
            rows["neural-compressor"] = {"time_s": time.perf_counter() - t}
        except Exception as e:
            rows["neural-compressor"] = {
                "error": f"{type(e).__name__}: {e}"[:300],
                "trace": traceback.format_exc(limit=2)[-600:]}

        rows["fp32"] = {}
        for label, path in candidates.items():
            if path is None:
                continue
            row = rows[label]
            # external weights (neural-compressor writes <model>.onnx_data) count too
            ext = Path(str(path) + "_data")
            row["bytes"] = Path(path).stat().st_size + (ext.stat().st_size if ext.is_file() else 0)
            cand = Artifact(Path(path), art.card)
            try:
                row["accuracy"] = {k: _eval(cand, d) for k, d in sets[task].items()}
            except Exception as e:
                row["error"] = f"eval: {type(e).__name__}: {e}"[:300]
                continue
            if label != "fp32":
                try:
                    cmp = profiler.compare(art.path, path, ProfileConfig(
                        shape=shape, threads=2, warmup=5, runs=runs))
                    row["latency"] = {"fp32_median_ms": cmp.a.median_ms,
                                      "fp32_p90_ms": cmp.a.p90_ms,
                                      "median_ms": cmp.b.median_ms, "p90_ms": cmp.b.p90_ms,
                                      "ratio": cmp.ratio, "ci95": [cmp.ci95_low, cmp.ci95_high]}
                except Exception as e:
                    row["latency_error"] = f"{type(e).__name__}: {e}"[:300]
        results["models"][name] = {"task": task, "shape": list(shape), "threads": 2,
                                   "fp32_bytes": art.path.stat().st_size, "rows": rows}
        (out / "quantize_bench.json").write_text(json.dumps(results, indent=2))
    return results


def markdown(results: dict) -> str:
    lines = ["# xcompress quantize vs baselines", ""]
    for name, r in results["models"].items():
        task = r["task"]
        metric = "cer" if task == "rec" else "hmean"
        sets = None
        lines += [f"## {name} ({task}); latency at {'x'.join(map(str, r['shape']))}, "
                  f"{r['threads']} threads, alternating with fp32", ""]
        for label in ("fp32", "ort-minmax", "xcompress", "neural-compressor"):
            row = r["rows"].get(label, {})
            acc = row.get("accuracy") or {}
            if sets is None and acc:
                sets = list(acc)
                head = " | ".join(
                    f"{s} {metric} %" + (f" | {s} line acc (no space) %" if task == "rec" else "")
                    for s in sets)
                header = (f"| model | size % of fp32 | {head} | median ms | p90 ms | "
                          "fp32/int8 | time s | note |")
                lines += [header, "|---" * (header.count("|") - 1) + "|"]
            if sets is None:
                continue
            cells = []
            for s in sets:
                m = acc.get(s)
                cells.append(f"{m[metric] * 100:.2f}" if m else "-")
                if task == "rec":
                    cells.append(f"{m['line_accuracy_nospace'] * 100:.1f}" if m else "-")
            lat = row.get("latency", {})
            size = f"{row['bytes'] / r['fp32_bytes'] * 100:.1f}" if "bytes" in row else "-"
            med = lat.get("median_ms", lat.get("fp32_median_ms"))
            note = row.get("error", "")
            if label == "xcompress" and "plan" in row:
                note = f"plan {row['plan']}, {row['float_layers']} float layers"
            lines.append(
                f"| {label} | {size} | {' | '.join(cells)} | "
                f"{f'{med:.2f}' if med and lat else '-'} | "
                f"{lat['p90_ms']:.2f} | {lat['ratio']:.2f} | " if lat else
                f"| {label} | {size} | {' | '.join(cells)} | - | - | - | ")
            took = f"{row['time_s']:.0f}" if "time_s" in row else "-"
            lines[-1] += f"{took} | {note} |"
        lines.append("")
        if "fp32" in r["rows"] and r["rows"]["xcompress"].get("latency"):
            fl = r["rows"]["xcompress"]["latency"]
            lines.append(f"fp32 in the xcompress round: median {fl['fp32_median_ms']:.2f} ms, "
                         f"p90 {fl['fp32_p90_ms']:.2f} ms.")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/quantize"))
    ap.add_argument("--models", nargs="+", default=["ppocr-v4-rec", "ppocr-v4-det"])
    ap.add_argument("--calib-rec", type=int, default=300)
    ap.add_argument("--calib-det", type=int, default=40)
    ap.add_argument("--heldout-rec", type=int, default=200)
    ap.add_argument("--heldout-det", type=int, default=30)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--inc-path", type=Path, default=None,
                    help="folder with onnx-neural-compressor installed apart (numpy<2 pin)")
    a = ap.parse_args()
    if a.inc_path is not None:
        sys.path.append(str(a.inc_path))
    results = run(a.out, a.calib_rec, a.calib_det, a.heldout_rec, a.heldout_det, a.models, a.runs)
    md = markdown(results)
    (a.out / "quantize_bench.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
