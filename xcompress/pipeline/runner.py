"""Run a recipe: data, steps, then one report comparing every artifact with the original."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcompress.artifact import Artifact, resolve_model
from xcompress.errors import XCompressError
from xcompress.fsutil import mark_output, prepare_output_dir, write_json, write_text
from xcompress.pipeline.recipe import DataSpec, Recipe
from xcompress.pipeline.steps import get_step

STEP_RECORD = "step.json"


@dataclass(frozen=True)
class Row:
    """One artifact in the final table."""

    label: str
    artifact: Artifact
    size_bytes: int
    metrics: dict[str, dict[str, float]]  # data set -> metric -> value
    latency: dict[str, float] | None  # median_ms, p90_ms, ratio (original / this)


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_recipe` made: the run folder, the table rows and the report dict."""

    out_dir: Path
    rows: list[Row]
    report: dict[str, Any]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done(record: Path, key: str) -> bool:
    """True if an earlier run finished this piece of work with the same inputs (``key``)."""
    return record.is_file() and json.loads(record.read_text()).get("key") == key


def _say(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold cyan]xcompress[/] {msg}", soft_wrap=True)


def _make_data(name: str, spec: DataSpec, art: Artifact, out_dir: Path) -> Path:
    """The folder of data set ``name``: the given path, or a synthetic set made once."""
    from xcompress.data import load_dataset

    if spec.path is not None:
        path = Path(spec.path)
        load_dataset(path)  # fail early, with the reader's clear error
        return path
    assert spec.synth is not None
    folder = out_dir / "data" / name
    key = _hash({"synth": spec.synth.model_dump(), "charset": _hash(art.card.charset)})
    record = folder / "recipe-data.json"
    if _done(record, key):
        return folder  # made by an earlier run of this recipe
    from xcompress.data.synth import SynthConfig, generate

    _say(f"making data '{name}': {spec.synth.count} synthetic {spec.synth.task} samples")
    cfg = SynthConfig(
        task=spec.synth.task,
        count=spec.synth.count,
        seed=spec.synth.seed,
        lang=spec.synth.lang,
        charset=tuple(art.card.charset) if art.card.charset else None,
    )
    generate(cfg, folder, force=True)
    write_json(record, {"key": key})
    return folder


def _run_step(recipe: Recipe, index: int, parent: Artifact, data: dict[str, Path], out_dir: Path):
    spec = recipe.steps[index]
    step = get_step(spec.step)
    config = step.parse_config(spec.config)
    missing = [r for r in step.roles if r not in spec.data]
    if missing:
        raise XCompressError(f"step {spec.folder}: needs data for {', '.join(missing)}")
    folder = out_dir / "steps" / spec.folder
    key = _hash(
        {"step": spec.step, "config": config.model_dump(mode="json"), "parent": parent.card.sha256,
         "data": {r: str(data[d]) for r, d in spec.data.items()}}
    )
    record = folder / STEP_RECORD
    if _done(record, key):
        _say(f"step {spec.folder}: already done with this config, reusing {folder}")
        return resolve_model(folder)
    _say(f"step {spec.folder} ({spec.step}) ...")
    t0 = time.perf_counter()
    art = step.run(parent, config, {r: data[d] for r, d in spec.data.items()}, folder)
    write_json(record, {"key": key, "step": spec.step, "seconds": time.perf_counter() - t0})
    return art


def _metrics_of(report) -> dict[str, float]:
    keep = ("line_accuracy", "line_accuracy_nospace", "cer", "cer_nospace", "precision",
            "recall", "hmean", "accuracy")
    return {k: float(v) for k, v in report.metrics.items() if k in keep}


#: what a run folder holds (its output mark lists these)
RUN_ENTRIES = ("data", "steps", "report.json", "report.md", "manifest.json")


def run_recipe(recipe: Recipe, out_dir: str | Path, force: bool = False) -> RunSummary:
    """Run ``recipe`` into ``out_dir`` and print the before/after table.

    Args:
        recipe: a validated :class:`Recipe` (see :func:`load_recipe`).
        out_dir: the run folder; data, step outputs and reports go below it. A second run
            with the same recipe reuses data and finished steps (resume after interruption).
            A non-empty folder that is not a run folder is refused unless ``force``.

    Returns:
        :class:`RunSummary` with the table rows and the report written to ``report.json``.
    """
    from xcompress.data import load_dataset
    from xcompress.eval import EvalConfig, evaluate
    from xcompress.profile import ProfileConfig, get_profiler
    from xcompress.profile.run import default_shape

    out = prepare_output_dir(out_dir, "run", force=force)
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "run", RUN_ENTRIES)
    t_start = time.perf_counter()
    _say(f"recipe {recipe.name}: model {recipe.model}")
    original = resolve_model(recipe.model)
    data = {name: _make_data(name, spec, original, out) for name, spec in recipe.data.items()}

    chain = [("original", original)]
    for i, spec in enumerate(recipe.steps):
        chain.append((spec.folder, _run_step(recipe, i, chain[-1][1], data, out)))

    rep = recipe.report
    shape = tuple(rep.shape) if rep.shape else default_shape(original.card)
    pcfg = ProfileConfig(shape=shape, threads=rep.threads, runs=rep.runs, warmup=5)
    profiler = get_profiler(rep.target)
    ecfg = EvalConfig(threads=rep.threads, progress=False)
    rows: list[Row] = []
    runtime = "?"
    for label, art in chain:
        metrics = {}
        for ds in rep.eval:
            _say(f"evaluating {label} on '{ds}'")
            metrics[ds] = _metrics_of(evaluate(art, data[ds], ecfg))
        latency = None
        if art is not original:
            _say(f"timing {label} against the original, alternating, {rep.runs} runs each")
            cmp = profiler.compare(original.path, art.path, pcfg)
            latency = {"median_ms": cmp.b.median_ms, "p90_ms": cmp.b.p90_ms,
                       "speedup": cmp.ratio, "speedup_ci95": [cmp.ci95_low, cmp.ci95_high],
                       "original_median_ms": cmp.a.median_ms, "original_p90_ms": cmp.a.p90_ms}
            runtime = f"{cmp.a.runtime} {cmp.a.runtime_version}"
        rows.append(Row(label, art, art.path.stat().st_size, metrics, latency))
    # The original's latency is the one measured beside the first step's artifact.
    first = rows[1].latency if len(rows) > 1 else None
    if first:
        rows[0] = Row(rows[0].label, rows[0].artifact, rows[0].size_bytes, rows[0].metrics,
                      {"median_ms": first["original_median_ms"],
                       "p90_ms": first["original_p90_ms"], "speedup": 1.0})
    report = {
        "recipe": recipe.model_dump(mode="json"),
        "model": {"name": original.card.name, "path": str(original.path),
                  "sha256": original.card.sha256, "task": original.task},
        "data": {name: {"path": str(p), "samples": len(load_dataset(p)),
                        "source": "synthetic (xcompress data synth)" if recipe.data[name].synth
                        else "user"} for name, p in data.items()},
        "shape": list(shape),
        "threads": rep.threads,
        "runtime": runtime,
        "target": rep.target,
        "machine": profiler.machine().model_dump(),
        "rows": [{"artifact": r.label, "path": str(r.artifact.path), "size_bytes": r.size_bytes,
                  "metrics": r.metrics, "latency": r.latency} for r in rows],
        "seconds": time.perf_counter() - t_start,
    }
    write_json(out / "report.json", report)
    write_text(out / "report.md", render_markdown(report))
    write_json(out / "manifest.json", {
        "recipe": recipe.name,
        "artifacts": [{"label": lab, "path": str(a.path), "sha256": a.card.sha256,
                       "parent": a.card.parent, "step": a.card.step} for lab, a in chain],
    })
    print_table(report)
    return RunSummary(out, rows, report)


def _fmt_metric(name: str, v: float) -> str:
    return f"{100 * v:.2f}%" if name.startswith("cer") else f"{v:.4f}"


_SHORT = {"line_accuracy_nospace": "line acc*", "cer_nospace": "CER*", "cer": "CER",
          "precision": "P", "recall": "R", "hmean": "Hmean", "accuracy": "acc"}


def _columns(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(data set, metric, header) for the metrics shown, chosen by task."""
    shown = {"rec": ("line_accuracy_nospace", "cer_nospace", "cer"),
             "det": ("precision", "recall", "hmean"), "cls": ("accuracy",)}[report["model"]["task"]]
    sets = list(report["rows"][0]["metrics"])
    prefix = len(sets) > 1
    return [(ds, m, f"{ds} {_SHORT[m]}" if prefix else _SHORT[m]) for ds in sets for m in shown]


def _table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(report)
    header = ["artifact", "MB", *[c[2] for c in cols], "median ms", "p90 ms", "speed-up"]
    body = []
    for r in report["rows"]:
        lat = r["latency"] or {}
        body.append([
            r["artifact"],
            f"{r['size_bytes'] / 1e6:.2f}",
            *[_fmt_metric(m, r["metrics"][ds][m]) for ds, m, _ in cols],
            f"{lat['median_ms']:.2f}" if lat else "-",
            f"{lat['p90_ms']:.2f}" if lat else "-",
            f"{lat['speedup']:.2f}x" if lat else "-",
        ])
    return header, body


def _context_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    data = "; ".join(f"{n}: {d['samples']} samples from {d['path']} ({d['source']})"
                     for n, d in report["data"].items())
    evals = ", ".join(report["recipe"]["report"]["eval"]) or "none"
    return [
        f"metrics on: {evals}; * = ignoring spaces (PaddleOCR's default)",
        f"model: {report['model']['name']} ({report['model']['task']}, sha256 "
        f"{(report['model']['sha256'] or '?')[:12]})",
        f"data: {data}",
        f"latency: shape {'x'.join(map(str, report['shape']))}, {report['threads']} threads, "
        f"{report['runtime']}, target {report['target']}, measured alternately in one run",
        f"machine: {m['cpu']}, {m['isa']}, {m['cores']} cores, "
        f"int8 dot: {', '.join(m['int8_dot']) or 'none'}",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: context lines, then the before/after table."""
    header, body = _table_rows(report)
    lines = [f"# {report['recipe']['name']}", ""]
    lines += [f"- {c}" for c in _context_lines(report)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any]) -> None:
    """Print the before/after table with its context."""
    from rich.console import Console
    from rich.table import Table

    header, body = _table_rows(report)
    table = Table(title=f"{report['recipe']['name']}: before / after")
    for h in header:
        table.add_column(h, justify="left" if h == "artifact" else "right", no_wrap=True)
    for row in body:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for c in _context_lines(report):
        console.print(f"  {c}")
