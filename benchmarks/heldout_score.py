"""Score models on held-out sets with paired bootstrap confidence intervals of the difference.

The scores are the project's one evaluation core (``xcompress.eval.tasks``: the same numbers
``xcompress eval`` prints); the per-sample counts behind them are resampled together for
both models (paired bootstrap, 2000 resamples), so the interval says how far the measured
difference could move on another draw of the same kind of data.

Example:
    python benchmarks/heldout_score.py ppocr-v4-rec runs/q/model.int8.onnx \\
        --sets runs/heldout/en runs/heldout/doc-zh
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: bootstrap resamples of the paired difference
RESAMPLES = 2000


def _nospace(t: str) -> str:
    return "".join(t.split())


def per_sample(artifact, samples: Sequence, threads: int = 2) -> tuple[dict, np.ndarray]:
    """The task's metrics and one row of additive counts per sample.

    rec: (edits without spaces, label length without spaces, edits, label length);
    det: (matched, ground-truth boxes, detected boxes); cls: (correct, 1)."""
    from rapidfuzz.distance import Levenshtein

    from xcompress.eval.tasks import evaluator_for
    from xcompress.runtime.ort import OrtRunner

    card = artifact.card
    runner = OrtRunner(artifact.path, threads=threads)
    if card.task == "det":  # one page at a time: its own counts (Hmean from their sums)
        rows = []
        for s in samples:
            m = evaluator_for("det").evaluate(runner, card, [s], 1, lambda n: None).metrics
            rows.append((m["matched"], m["n_gt"], m["n_det"]))
        a = np.asarray(rows, np.float64)
        return _det_from_counts(a.sum(0)), a
    res = evaluator_for(card.task).evaluate(runner, card, samples, 1, lambda n: None)
    if card.task == "cls":
        bad = {f.image for f in res.failures}
        from xcompress.eval.tasks import _name

        a = np.asarray([(0.0 if _name(s.image, i) in bad else 1.0, 1.0)
                        for i, s in enumerate(samples)])
        return dict(res.metrics), a
    got = {f.image: f.got for f in res.failures}
    from xcompress.eval.tasks import _name

    rows = []
    for i, s in enumerate(samples):
        pred = got.get(_name(s.image, i), s.text)
        rows.append((Levenshtein.distance(_nospace(pred), _nospace(s.text)),
                     max(len(_nospace(s.text)), 1), Levenshtein.distance(pred, s.text),
                     max(len(s.text), 1)))
    return dict(res.metrics), np.asarray(rows, np.float64)


def _det_from_counts(c: np.ndarray) -> dict:
    p = c[0] / c[2] if c[2] else 0.0
    r = c[0] / c[1] if c[1] else 0.0
    return {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r) if p + r else 0.0}


def metric_of(task: str, counts: np.ndarray) -> dict[str, float]:
    """Metrics from summed per-sample counts (see :func:`per_sample`)."""
    c = counts.sum(0)
    if task == "rec":
        return {"cer_nospace": c[0] / c[1], "cer": c[2] / c[3]}
    if task == "det":
        return _det_from_counts(c)
    return {"accuracy": c[0] / c[1]}


def paired_ci(task: str, a: np.ndarray, b: np.ndarray, seed: int = 0
              ) -> dict[str, tuple[float, float]]:
    """95% interval of metric(b) - metric(a) under resampling the samples of both."""
    rng = np.random.default_rng(seed)
    n = len(a)
    idx = rng.integers(0, n, size=(RESAMPLES, n))
    sa, sb = a[idx].sum(1), b[idx].sum(1)  # (R, k)
    out = {}
    for key in metric_of(task, a):
        da = np.array([metric_of(task, x[None])[key] for x in sa])
        db = np.array([metric_of(task, x[None])[key] for x in sb])
        lo, hi = np.percentile(db - da, [2.5, 97.5])
        out[key] = (float(lo), float(hi))
    return out


def score(models: Sequence[str], sets: Sequence[Path], threads: int = 2,
          split: str = "all") -> dict:
    """Every model on every set; the first model is the reference of the differences.

    ``split``: ``all`` samples, or the ``odd`` / ``even`` indices (calibrate on one half,
    score on the other)."""
    from xcompress.artifact import resolve_model
    from xcompress.data import load_dataset

    arts = [resolve_model(m) for m in models]
    out: dict = {"models": list(models), "sets": {}}
    for d in sets:
        samples = list(load_dataset(d).samples)
        if split != "all":
            samples = samples[(1 if split == "odd" else 0)::2]
        task = arts[0].card.task
        rows = [per_sample(a, samples, threads) for a in arts]
        ref = rows[0][1]
        entry = {"n": len(samples), "task": task, "results": []}
        for m, (_, counts) in zip(models, rows, strict=True):
            met = metric_of(task, counts)
            r = {"model": m, **met}
            if counts is not ref:
                r["delta"] = {k: met[k] - metric_of(task, ref)[k] for k in met}
                r["ci95"] = paired_ci(task, ref, counts)
            entry["results"].append(r)
        out["sets"][str(d)] = entry
    return out


def markdown(res: dict) -> str:
    lines = []
    for d, e in res["sets"].items():
        keys = ("cer_nospace", "cer") if e["task"] == "rec" else (
            ("hmean",) if e["task"] == "det" else ("accuracy",))
        lines.append(f"{d} (n={e['n']})")
        for r in e["results"]:
            cells = []
            for k in keys:
                c = f"{k} {r[k] * 100:.2f}"
                if "delta" in r:
                    lo, hi = r["ci95"][k]
                    c += f" ({r['delta'][k] * 100:+.2f}, 95% CI {lo * 100:+.2f}..{hi * 100:+.2f})"
                cells.append(c)
            lines.append(f"  {r['model']}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--sets", nargs="+", type=Path, required=True)
    ap.add_argument("--split", choices=("all", "odd", "even"), default="all")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = score(a.models, a.sets, split=a.split)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    print(markdown(res))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
