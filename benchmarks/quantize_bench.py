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
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

FONTS_EN = [
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Italic.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf",
]
FONTS_ZH = [
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
]


# --- held-out data ------------------------------------------------------------------------------
def _texts(lang: str, n: int, seed: int, charset: set[str]) -> list[str]:
    from faker import Faker

    fk = Faker("zh_CN" if lang == "zh" else "en_US")
    fk.seed_instance(seed)
    rng = random.Random(seed)
    if lang == "zh":
        makers = [fk.address, fk.company, fk.job, fk.name, lambda: fk.sentence(nb_words=6),
                  lambda: f"{fk.city()}{fk.street_name()}{rng.randint(1, 300)}号",
                  lambda: f"电话：{fk.phone_number()}"]
    else:
        makers = [lambda: fk.address().replace("\n", ", "), fk.company, fk.catch_phrase,
                  fk.phone_number, lambda: fk.date(pattern="%d %B %Y"), fk.job,
                  lambda: f"Invoice {fk.bothify('??-#####').upper()} "
                          f"total ${rng.uniform(1, 999):.2f}",
                  fk.bs, fk.email]
    out: list[str] = []
    while len(out) < n:
        t = rng.choice(makers)().strip()
        t = t[: rng.randint(8, 28)].strip() if lang == "zh" else t[: rng.randint(10, 42)].strip()
        if t and all(c in charset for c in t):
            out.append(t)
    return out


def _render_line(text: str, font_path: str, size: int, rng: random.Random):
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(font_path, size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad_x, pad_y = rng.randint(3, 12), rng.randint(3, 9)
    bg = rng.randint(185, 255)
    size = (x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y)
    img = Image.new("RGB", size, (bg, bg - rng.randint(0, 15), bg))
    ink = rng.randint(0, 70)
    ImageDraw.Draw(img).text((pad_x - x0, pad_y - y0), text, font=font, fill=(ink, ink, ink))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return img


def make_rec_heldout(out: Path, lang: str, n: int, seed: int, charset: set[str]) -> Path:
    """Render ``n`` held-out text lines (PaddleOCR rec format) into ``out``."""
    from xcompress.data import RecSample, write_rec_labels

    if (out / "label.txt").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    fonts = FONTS_ZH if lang == "zh" else FONTS_EN
    samples = []
    for i, text in enumerate(_texts(lang, n, seed, charset)):
        img = _render_line(text, rng.choice(fonts), rng.randint(22, 40), rng)
        path = out / f"{i:04d}.jpg"
        img.save(path, quality=rng.randint(80, 95))
        samples.append(RecSample(path, text))
    write_rec_labels(out / "label.txt", samples)
    return out


def make_det_heldout(out: Path, n: int, seed: int, charset: set[str]) -> Path:
    """Render ``n`` held-out pages (PaddleOCR det format): 5-12 lines each, some small, some
    low-contrast, some rotated up to 12 degrees, on textured backgrounds with clutter."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    from xcompress.data import DetSample, TextBox, write_det_labels

    if (out / "label.txt").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    en, zh = _texts("en", n * 14, seed, charset), _texts("zh", n * 14, seed + 1, charset)
    samples = []
    for i in range(n):
        w, h = rng.choice([(960, 720), (800, 600), (720, 960), (1280, 720)])
        g = np.random.default_rng(seed + i)
        base = np.full((h, w, 3), rng.randint(150, 250), np.float32)
        base += np.linspace(0, rng.uniform(-60, 60), w, dtype=np.float32)[None, :, None]
        base += g.normal(0, rng.uniform(2, 12), (h, w, 1)).astype(np.float32)
        page = Image.fromarray(base.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(page)
        for _ in range(rng.randint(3, 10)):  # clutter: lines and boxes that are not text
            x0, y0 = rng.randint(0, w), rng.randint(0, h)
            c = rng.randint(60, 200)
            draw.line((x0, y0, x0 + rng.randint(-300, 300), y0 + rng.randint(-40, 40)),
                      fill=(c, c, c), width=rng.randint(1, 4))
        boxes: list[TextBox] = []
        taken: list[tuple[float, float, float, float]] = []
        for _ in range(rng.randint(5, 12)):
            zh_line = rng.random() < 0.5
            text = (zh if zh_line else en).pop()
            font = ImageFont.truetype(rng.choice(FONTS_ZH if zh_line else FONTS_EN),
                                      rng.randint(14, 48))
            x0, y0, x1, y1 = font.getbbox(text)
            tw, th = x1 - x0, y1 - y0
            pad = 4
            layer = Image.new("L", (tw + 2 * pad, th + 2 * pad), 0)
            ImageDraw.Draw(layer).text((pad - x0, pad - y0), text, font=font, fill=255)
            angle = rng.uniform(-12, 12) if rng.random() < 0.4 else 0.0
            rot = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
            if rot.width >= w - 20 or rot.height >= h - 20:
                continue
            for _try in range(30):
                px, py = rng.randint(10, w - rot.width - 10), rng.randint(10, h - rot.height - 10)
                rect = (px, py, px + rot.width, py + rot.height)
                if all(rect[2] < t[0] - 6 or rect[0] > t[2] + 6 or rect[3] < t[1] - 6
                       or rect[1] > t[3] + 6 for t in taken):
                    break
            else:
                continue
            taken.append(rect)
            bg = float(np.asarray(page.crop(rect)).mean())
            contrast = rng.uniform(50, 180)
            ink = int(bg - contrast) if bg > 128 else int(bg + contrast)
            ink = max(0, min(255, ink))
            page.paste(Image.new("RGB", rot.size, (ink, ink, ink)), (px, py), rot)
            # box: the text rectangle's corners through the same rotation
            cx, cy = layer.width / 2, layer.height / 2
            a = np.deg2rad(-angle)  # PIL rotates counter-clockwise in image coordinates
            corners = [(pad, pad), (pad + tw, pad), (pad + tw, pad + th), (pad, pad + th)]
            pts = []
            for x, y in corners:
                dx, dy = x - cx, y - cy
                rx = dx * np.cos(a) - dy * np.sin(a) + rot.width / 2 + px
                ry = dx * np.sin(a) + dy * np.cos(a) + rot.height / 2 + py
                pts.append((float(rx), float(ry)))
            boxes.append(TextBox(tuple(pts), text))
        if rng.random() < 0.3:
            page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
        path = out / f"{i:04d}.jpg"
        page.save(path, quality=rng.randint(75, 92))
        samples.append(DetSample(path, tuple(boxes)))
    write_det_labels(out / "label.txt", samples)
    return out


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
