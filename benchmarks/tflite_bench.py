"""TFLite export benchmark: int8 / float LiteRT accuracy next to the fp32 ONNX parent.

Two steps:

    python benchmarks/tflite_bench.py data runs/tflite_data      # held-out + calibration sets
    python benchmarks/tflite_bench.py run runs/tflite_data runs/tflite_bench

``data`` writes PaddleOCR-format sets that differ from the package's synthetic generator:

- ``rec_en`` / ``rec_zh``: text lines rendered in fonts the generator never uses (Liberation
  for Latin, AR PL UKai / UMing for Chinese; Debian ``fonts-liberation``,
  ``fonts-arphic-ukai``, ``fonts-arphic-uming``) with text the generator's corpora do not
  hold (English: the license texts in ``/usr/share/common-licenses``; Chinese: the Chinese
  manual pages of Debian ``manpages-zh``), filtered to the recognizer's charset;
- ``det_heldout``: ``xcompress data synth det`` pages with a seed the calibration set does
  not use;
- ``calib_rec`` / ``calib_det``: generator data (its own seed) for int8 calibration.

``run`` exports ppocr-v4-rec and ppocr-v4-det to int8 (and float) TFLite with
``xcompress.export`` and evaluates parent and artifact on every held-out set with
``xcompress.eval.evaluate``; it writes ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EN_SOURCES = sorted(Path("/usr/share/common-licenses").glob("*"))
ZH_MAN = Path("/usr/share/man/zh_CN")
EN_FONTS = [
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Italic.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
]
ZH_FONTS = [
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
]
APT_HINT = "apt-get install -y fonts-liberation fonts-arphic-ukai fonts-arphic-uming manpages-zh"


def _en_phrases(rng: np.random.Generator, charset: set[str], n: int) -> list[str]:
    words: list[str] = []
    for p in EN_SOURCES:
        if p.is_file():
            words += p.read_text(encoding="utf-8", errors="ignore").split()
    words = [w for w in words if w.isprintable() and all(c in charset for c in w) and len(w) < 20]
    out = []
    while len(out) < n:
        k = int(rng.integers(1, 7))
        i = int(rng.integers(0, len(words) - k))
        out.append(" ".join(words[i : i + k]))
    return out


_CJK = re.compile(r"[\u4e00-\u9fff][\u4e00-\u9fff，。、；：（）“”！？0-9A-Za-z]{3,}")


def _zh_phrases(rng: np.random.Generator, charset: set[str], n: int) -> list[str]:
    runs: list[str] = []
    for p in sorted(ZH_MAN.rglob("*.gz")):
        try:
            text = gzip.decompress(p.read_bytes()).decode("utf-8", errors="ignore")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith((".", "'")):
                line = line.split(" ", 1)[1] if " " in line else ""
            line = re.sub(r"\\f[A-Z0-9]|\\[-&(|e]|\\\(..", "", line)
            runs += [r for r in _CJK.findall(line) if all(c in charset for c in r)]
    runs = sorted(set(runs))
    out = []
    while len(out) < n:
        r = runs[int(rng.integers(0, len(runs)))]
        k = int(rng.integers(4, 17))
        s = int(rng.integers(0, max(1, len(r) - k + 1)))
        out.append(r[s : s + k])
    return out


def _render(rng: np.random.Generator, text: str, font_path: str) -> np.ndarray:
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.integers(22, 44))
    font = ImageFont.truetype(font_path, size, index=int(rng.integers(0, 2)) if
                              font_path.endswith(".ttc") else 0)  # fmt: skip
    x0, y0, x1, y1 = font.getbbox(text)
    pad_x, pad_y = int(rng.integers(2, 12)), int(rng.integers(2, 9))
    w, h = x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y
    bg = tuple(int(v) for v in rng.integers(170, 256, 3))
    ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((pad_x - x0, pad_y - y0), text, font=font, fill=ink)
    arr = np.asarray(img)[:, :, ::-1].copy()
    if rng.random() < 0.5:
        arr = cv2.GaussianBlur(arr, (3, 3), float(rng.uniform(0.3, 1.0)))
    noise = rng.normal(0, rng.uniform(0, 8), arr.shape)
    return np.clip(arr + noise, 0, 255).astype(np.uint8)


def make_rec_set(out: Path, lang: str, n: int, seed: int, charset: set[str]) -> None:
    import cv2

    from xcompress.data import RecSample, write_rec_labels

    fonts = EN_FONTS if lang == "en" else ZH_FONTS
    missing = [f for f in fonts if not Path(f).is_file()]
    if missing or (lang == "zh" and not ZH_MAN.is_dir()):
        sys.exit(f"missing fonts / texts ({missing or ZH_MAN}): {APT_HINT}")
    rng = np.random.default_rng(seed)
    texts = _en_phrases(rng, charset, n) if lang == "en" else _zh_phrases(rng, charset, n)
    (out / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i, text in enumerate(texts):
        img = _render(rng, text, fonts[i % len(fonts)])
        path = out / "images" / f"{i:05d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
        samples.append(RecSample(path, text))
    write_rec_labels(out / "label.txt", samples)


def cmd_data(args: argparse.Namespace) -> None:
    from xcompress.artifact import resolve_model

    out = Path(args.out)
    charset = set(resolve_model("ppocr-v4-rec").card.charset or [])
    for lang in ("en", "zh"):
        make_rec_set(out / f"rec_{lang}", lang, args.rec_count, 7 + (lang == "zh"), charset)
        print(f"wrote {out / f'rec_{lang}'}")
    synth = [sys.executable, "-m", "xcompress.cli.main", "data", "synth"]
    jobs = [("rec", "calib_rec", args.calib_count, 101), ("det", "calib_det", args.det_count, 101),
            ("det", "det_heldout", args.det_count, 202)]  # fmt: skip
    for task, name, count, seed in jobs:
        subprocess.run([*synth, task, "-o", str(out / name), "-n", str(count), "--seed", str(seed),
                        "--lang", "mix", "--force"], check=True)  # fmt: skip


def cmd_run(args: argparse.Namespace) -> None:
    from xcompress.eval import evaluate
    from xcompress.eval.report import EvalConfig
    from xcompress.export import export_model, load_source
    from xcompress.export.tflite import TFLiteExportConfig

    data, out = Path(args.data), Path(args.out)
    ecfg = EvalConfig(threads=args.threads, progress=False, limit=args.limit)
    jobs = {
        "ppocr-v4-rec": ("calib_rec", ["rec_en", "rec_zh"], ("cer_nospace", "cer",
                                                                "line_accuracy_nospace")),
        "ppocr-v4-det": ("calib_det", ["det_heldout"], ("hmean", "precision", "recall")),
    }  # fmt: skip
    summary: dict = {}
    for model in args.models:
        calib, sets, keys = jobs[model]
        source = load_source(model)
        rows = {s: {"onnx-fp32": evaluate(model, data / s, ecfg).metrics} for s in sets}
        for variant in args.variants:
            mixed = tuple(args.float_ops) if variant == "int8-mixed" else ()
            cfg = TFLiteExportConfig(int8=variant.startswith("int8"), float_ops=mixed,
                                     calib=str(data / calib),
                                     calib_limit=args.calib_limit, eval=str(data / sets[0]),
                                     eval_limit=20, threads=args.threads)  # fmt: skip
            t0 = time.perf_counter()
            art = export_model(source, "tflite", cfg, out / f"{model}-{variant}")
            secs = time.perf_counter() - t0
            rep = json.loads((art.path.parent / "report.json").read_text())
            summary.setdefault(model, {})[f"tflite-{variant}"] = {
                "size_mb": rep["size_bytes"] / 1e6, "export_s": round(secs),
                "float_max_abs_diff": rep["float_max_abs_diff"]}  # fmt: skip
            for s in sets:
                rows[s][f"tflite-{variant}"] = evaluate(art.path.parent, data / s, ecfg).metrics
            print(f"{model} {variant}: {rep['size_bytes'] / 1e6:.2f} MB in {secs:.0f}s", flush=True)
        summary.setdefault(model, {})["onnx_size_mb"] = source.parent.path.stat().st_size / 1e6
        summary[model]["metrics"] = rows
        lines = [f"## {model}", "", "| set | model | " + " | ".join(keys) + " |",
                 "|---|---|" + "---|" * len(keys)]  # fmt: skip
        for s, by in rows.items():
            for name, m in by.items():
                lines.append(f"| {s} | {name} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |")
        summary[model]["table"] = "\n".join(lines)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "summary.md").write_text("\n\n".join(v["table"] for v in summary.values()) + "\n")
        print(summary[model]["table"], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write held-out and calibration sets")
    d.add_argument("out")
    d.add_argument("--rec-count", type=int, default=200)
    d.add_argument("--calib-count", type=int, default=300)
    d.add_argument("--det-count", type=int, default=40)
    r = sub.add_parser("run", help="export + evaluate")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--models", nargs="+", default=["ppocr-v4-rec", "ppocr-v4-det"])
    r.add_argument(
        "--variants",
        nargs="+",
        default=["int8", "float32"],
        help="int8 (full integer), int8-mixed (--float-ops left float), float32",
    )
    r.add_argument("--float-ops", nargs="+", default=[".*LearnableAffine.*"])
    r.add_argument("--calib-limit", type=int, default=128)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    args = ap.parse_args()
    {"data": cmd_data, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
