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


def per_sample(artifact, samples: Sequence, threads: int = 2) -> tuple[dict, np.ndarray]:
    """The task's metrics and its per-sample counts (``xcompress.eval.bootstrap``)."""
    from xcompress.eval.tasks import evaluator_for
    from xcompress.runtime.ort import OrtRunner

    runner = OrtRunner(artifact.path, threads=threads)
    res = evaluator_for(artifact.card.task).evaluate(runner, artifact.card, samples, 1,
                                                     lambda n: None)
    return dict(res.metrics), res.counts


def metric_of(task: str, counts: np.ndarray) -> dict[str, float]:
    """Metrics from per-sample counts (the same numbers as ``xcompress eval``)."""
    from xcompress.eval.bootstrap import metrics_from_counts

    m = metrics_from_counts(task, counts)
    return {k: m[k] for k in (("cer_nospace", "cer") if task == "rec" else
                              ("hmean",) if task == "det" else ("accuracy",))}


def paired_ci(task: str, a: np.ndarray, b: np.ndarray) -> dict[str, tuple[float, float]]:
    """95% interval of metric(b) - metric(a) under paired resampling of the samples."""
    from xcompress.eval.bootstrap import paired_interval

    return {k: paired_interval(task, a, b, k) for k in metric_of(task, a)}


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
