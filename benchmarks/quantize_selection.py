"""Which check predicts an int8 recognizer's loss on text the generator never made? (issue 13)

``xcompress quantize`` picks calibration candidates and checks its budget on synthetic lines.
This benchmark asks whether that check ranks int8 models the way held-out text does. For
each given int8 model of one recognizer it measures, against the fp32 parent:

* on fresh synthetic lines (a seed quantize never uses; the ``photo`` preset and a harsher
  one: fainter, blurrier, noisier, heavier JPEG), the disagreement with float (the signal
  quantize chooses by, :mod:`xcompress.quantize.signals`) and the space-insensitive CER change;
* on the held-out sets of ``benchmarks/heldout.py`` (other fonts, document text, scan and
  photo damage), the CER* change -- what a user sees;

then the Spearman rank correlation of each check with the held-out document loss (mean over
doc-en, doc-zh, codes). A check with a high correlation is one a selection can trust.

Example:
    python benchmarks/heldout.py runs/heldout
    python benchmarks/quantize_selection.py --heldout runs/heldout --out bench/selection \\
        runs/q-a runs/q-b runs/q-c
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_score  # noqa: E402

DOC_SETS = ("doc-en", "doc-zh", "codes")
ALL_SETS = ("en", "zh", *DOC_SETS)


def synthetic_sets(root: Path, charset: tuple[str, ...], n: int) -> dict[str, Path]:
    """Fresh synthetic check sets (seeds 5 / 6: quantize's own set uses seed 0)."""
    from xcompress.data.synth import AugmentConfig
    from xcompress.data.synth.generator import SynthConfig, generate

    harsh = AugmentConfig(lighting=0.6, blur=0.6, motion_blur=0.3, noise=0.7, jpeg=1.0,
                          texture=0.6, low_contrast=0.9, downscale=0.6, jpeg_quality=(15, 50))
    out = {}
    for preset, aug, seed in (("photo", AugmentConfig.photo(), 5), ("harsh", harsh, 6)):
        for lang in ("en", "zh"):
            d = root / f"{preset}-{lang}"
            if not (d / "label.txt").is_file():
                generate(SynthConfig(task="rec", count=n, seed=seed, lang=lang,
                                     charset=charset, augment=aug), d)
            out[f"{preset}-{lang}"] = d
    return out


def _outputs(model_path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from xcompress.runtime.ort import OrtRunner

    runner = OrtRunner(model_path, threads=2)
    return [runner.run(x) for x in inputs]


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (no ties expected among these measurements)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    n = len(a)
    return float(1 - 6 * np.sum((ra - rb) ** 2) / (n * (n * n - 1))) if n > 1 else 0.0


def run(models: list[str], heldout: Path, out: Path, n: int) -> dict:
    import cv2

    from xcompress.artifact import resolve_model
    from xcompress.data import load_dataset
    from xcompress.ocr.preprocess import preprocess_for
    from xcompress.quantize.signals import get_signal

    fp = resolve_model("ppocr-v4-rec")
    synth = synthetic_sets(out / "synth", tuple(fp.card.charset or ()), n)
    signal = get_signal("rec")
    samples = {k: list(load_dataset(d).samples) for k, d in synth.items()}
    inputs = {k: [preprocess_for(fp.card, [cv2.imread(str(s.image))]).batch for s in v]
              for k, v in samples.items()}
    ref = {k: _outputs(fp.path, v) for k, v in inputs.items()}
    rows: dict[str, dict[str, float]] = {}
    for m in models:
        art = resolve_model(m)
        row: dict[str, float] = {}
        for k, xs in inputs.items():
            outs = _outputs(art.path, xs)
            row[f"{k} disagreement"] = signal.disagreement(ref[k], outs, fp.card)
        sc = heldout_score.score(["ppocr-v4-rec", m], [d for d in synth.values()] +
                                 [heldout / s for s in ALL_SETS])
        for d, e in sc["sets"].items():
            row[f"{Path(d).name} cer* change"] = e["results"][1]["delta"]["cer_nospace"]
        rows[m] = row
        print(m, {k: round(v, 4) for k, v in row.items()}, flush=True)
    target = [float(np.mean([r[f"{s} cer* change"] for s in DOC_SETS])) for r in rows.values()]
    checks = {
        "disagreement, photo (en+zh)": [r["photo-en disagreement"] + r["photo-zh disagreement"]
                                        for r in rows.values()],
        "disagreement, harsh (en+zh)": [r["harsh-en disagreement"] + r["harsh-zh disagreement"]
                                        for r in rows.values()],
        "CER* change, photo (en+zh)": [r["photo-en cer* change"] + r["photo-zh cer* change"]
                                       for r in rows.values()],
        "CER* change, harsh (en+zh)": [r["harsh-en cer* change"] + r["harsh-zh cer* change"]
                                       for r in rows.values()],
    }
    res = {"models": rows, "n_synthetic": n, "doc_loss": dict(zip(rows, target, strict=True)),
           "spearman": {k: spearman(v, target) for k, v in checks.items()}}
    (out / "selection.json").write_text(json.dumps(res, indent=2))
    return res


def markdown(res: dict) -> str:
    from xcompress.profile.machine import host_machine

    lines = ["# Which check predicts held-out loss of int8 ppocr-v4-rec models", "",
             f"Machine: {host_machine().describe()}; 2 threads, onnxruntime CPU. Synthetic "
             f"checks: {res['n_synthetic']} fresh lines per language and preset. Held-out: "
             "benchmarks/heldout.py, 200 lines per set. CER* = space-insensitive CER; changes "
             "are int8 - fp32 in points.", "",
             "| model | photo dis. | harsh dis. | photo CER* | harsh CER* | en | zh | doc-en | "
             "doc-zh | codes | doc mean |", "|---|" + "---:|" * 10]
    for m, r in res["models"].items():
        dis = [r[f"{p}-en disagreement"] + r[f"{p}-zh disagreement"] for p in ("photo", "harsh")]
        syn = [100 * (r[f"{p}-en cer* change"] + r[f"{p}-zh cer* change"]) / 2
               for p in ("photo", "harsh")]
        held = [100 * r[f"{s} cer* change"] for s in ALL_SETS]
        lines.append(f"| {m} | {dis[0]:.4f} | {dis[1]:.4f} | {syn[0]:+.2f} | {syn[1]:+.2f} | "
                     + " | ".join(f"{v:+.2f}" for v in held)
                     + f" | {100 * res['doc_loss'][m]:+.2f} |")
    lines += ["", "Spearman rank correlation with the held-out document loss "
              f"({len(res['models'])} models):", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in res["spearman"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="int8 model folders of ppocr-v4-rec")
    ap.add_argument("--heldout", type=Path, required=True, help="benchmarks/heldout.py output")
    ap.add_argument("--out", type=Path, default=Path("bench/selection"))
    ap.add_argument("--n", type=int, default=150, help="synthetic lines per language/preset")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    md = markdown(run(a.models, a.heldout, a.out, a.n))
    (a.out / "selection.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
