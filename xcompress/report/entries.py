"""Run folders to report entries: one entry per artifact of a run, keyed ``MODEL/STEP``.

A model run (``xcompress run RECIPE``) gives one entry per row of its table: the original
(``MODEL/original``) and each step's artifact (``MODEL/<step folder>``), with its metrics on
the recipe's first eval set, ratios against the original (``speedup`` measured alternately
in the same run, ``size_ratio``) and accuracy deltas in metric units (``cer_nospace_delta``
0.005 = half a point). A system run gives ``NAME/system`` (end-to-end metrics, whole-system
ratios and ``e2e_hmean_delta``) plus its members' runs, read the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcompress.errors import XCompressError

#: accuracy metrics that become ``<name>_delta`` entries (compressed - original)
DELTA_METRICS = ("cer_nospace", "cer", "line_accuracy_nospace", "line_accuracy", "hmean",
                 "precision", "recall", "accuracy", "e2e_hmean", "e2e_hmean_asis",
                 "matched_cer_nospace", "det_hmean")
#: metrics where smaller is better (plots and Pareto fronts)
LOWER_IS_BETTER = ("cer_nospace", "cer", "matched_cer_nospace")


@dataclass(frozen=True)
class Entry:
    """One artifact of a run: what it is, what it was measured on, and its numbers."""

    key: str  # MODEL/STEP
    run: str
    kind: str  # "model" | "system"
    task: str  # rec / det / cls / system
    model: str
    step: str
    path: str
    data: dict[str, Any]
    shape: list[int] | None
    batch: int
    threads: int
    runtime: str
    target: str
    metrics: dict[str, float]
    ratios: dict[str, float] = field(default_factory=dict)
    deltas: dict[str, float] = field(default_factory=dict)
    latency_ms: float | None = None
    parent: bool = False  # the original the run started from
    machine: dict[str, Any] = field(default_factory=dict)  # the run report's machine facts

    def values(self) -> dict[str, float]:
        """Every number of the entry by name (what a baseline threshold may name)."""
        return {**self.metrics, **self.ratios, **self.deltas}


def _sha_of_data(path: str) -> str | None:
    p = Path(path)
    label = p / "label.txt" if p.is_dir() else p
    if not label.is_file():
        return None
    return hashlib.sha256(label.read_bytes()).hexdigest()


def _data_info(report: dict[str, Any]) -> dict[str, Any]:
    return {name: {**d, "sha256": _sha_of_data(d["path"])}
            for name, d in report.get("data", {}).items()}


def _read(folder: Path) -> dict[str, Any]:
    f = folder / "report.json"
    if not f.is_file():
        raise XCompressError(f"{folder} is not a run folder (no report.json): give folders "
                             "written by `xcompress run`")
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise XCompressError(f"{f} is not valid JSON ({e}): re-run the recipe") from None


def _model_entries(run: Path, rep: dict[str, Any]) -> list[Entry]:
    if "rows" not in rep or "model" not in rep:
        raise XCompressError(f"{run}/report.json is not a run report (no rows): give folders "
                             "written by `xcompress run`")
    evals = rep.get("recipe", {}).get("report", {}).get("eval", [])
    data = _data_info(rep)
    rows = rep["rows"]
    first = next(iter(rows[0]["metrics"]), None) if rows else None  # the first eval set
    base = rows[0]
    out = []
    for r in rows:
        metrics = dict(r["metrics"].get(first, {})) if first else {}
        for ds, vals in r["metrics"].items():  # the other sets, prefixed
            if ds != first:
                metrics.update({f"{Path(ds).name}.{k}": v for k, v in vals.items()})
        metrics["size_bytes"] = float(r["size_bytes"])
        ratios = {"size_ratio": r["size_bytes"] / base["size_bytes"]}
        lat = r.get("latency") or {}
        if lat.get("speedup") is not None:
            ratios["speedup"] = float(lat["speedup"])
        if lat.get("median_ms") is not None:
            metrics["median_ms"] = float(lat["median_ms"])
        deltas = {}
        if first:
            b = base["metrics"].get(first, {})
            deltas = {f"{k}_delta": metrics[k] - b[k] for k in DELTA_METRICS
                      if k in metrics and k in b}
        out.append(Entry(
            key=f"{rep['model']['name']}/{r['artifact']}", run=str(run), kind="model",
            task=rep["model"]["task"], model=rep["model"]["name"], step=r["artifact"],
            path=r["path"], data={k: v for k, v in data.items() if not evals or k in evals},
            shape=rep.get("shape"), batch=1, threads=rep.get("threads", 0),
            runtime=rep.get("runtime", "?"), target=rep.get("target", "host"),
            metrics=metrics, ratios=ratios, deltas=deltas, latency_ms=lat.get("median_ms"),
            parent=r is base, machine=rep.get("machine", {})))
    return out


def _system_entries(run: Path, rep: dict[str, Any]) -> list[Entry]:
    out = []
    machine = dict(rep.get("machine", {}))
    for m in rep["members"]:  # each member's own run, when it had steps
        folder = run / "members" / m["role"]
        if (folder / "report.json").is_file():
            out += _model_entries(folder, _read(folder))
    if "int8_dot" not in machine and out:  # system reports before 2026-12-07: the members'
        machine.setdefault("int8_dot", out[0].machine.get("int8_dot"))
    runtime = ", ".join(rep.get("runtime", []))
    for name, s in rep["sets"].items():
        a, b = s["original"], s["compressed"]
        for side, r in (("original", a), ("system", b)):
            metrics = {k: float(v) for k, v in r["metrics"].items()}
            metrics["size_bytes"] = float(r["size_bytes"])
            ratios, deltas = {}, {}
            if side == "system":
                ratios = {"speedup": s["speedup"], "size_ratio": b["size_bytes"] / a["size_bytes"]}
                deltas = {f"{k}_delta": b["metrics"][k] - a["metrics"][k] for k in DELTA_METRICS
                          if k in b["metrics"] and k in a["metrics"]}
                deltas["e2e_hmean_delta_ci95_low"] = s["e2e_hmean_delta_ci95"][0]
            step = side if len(rep["sets"]) == 1 else f"{side}@{name}"
            out.append(Entry(
                key=f"{rep['name']}/{step}", run=str(run), kind="system", task="system",
                model=rep["name"], step=step, path=str(run),
                data={name: {**s["data"], "sha256": s["data"].get("sha256")}}, shape=None,
                batch=1, threads=rep.get("threads", 0), runtime=runtime, target="host",
                metrics=metrics, ratios=ratios, deltas=deltas,
                latency_ms=r["metrics"]["page_ms_mean"], parent=side == "original",
                machine=machine))
    return out


def collect(runs: list[str | Path]) -> list[Entry]:
    """Every entry of the given run folders (model or system runs), in order.

    Raises:
        XCompressError: a folder that is not a run folder, or two runs giving the same key.
    """
    entries: list[Entry] = []
    for r in runs:
        folder = Path(r)
        rep = _read(folder)
        entries += _system_entries(folder, rep) if rep.get("kind") == "system" else \
            _model_entries(folder, rep)
    seen: dict[str, str] = {}
    for e in entries:
        if e.key in seen and seen[e.key] != e.run:
            raise XCompressError(f"{e.key} is in two runs ({seen[e.key]} and {e.run}): report "
                                 "them separately, or give the steps different names")
        seen[e.key] = e.run
    return entries
