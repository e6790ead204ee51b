"""``xcompress report``: one report over one or more runs, and the regression gate.

:func:`build_report` reads run folders (:mod:`xcompress.report.entries`), checks them against
a baseline (:mod:`xcompress.report.gate`) and writes, in one rename:

* ``report.json`` -- schema-versioned: per entry its model, data (with the label file's
  sha256), shape, batch, threads, runtime, target, every metric, ratio and delta; plus the
  machine, the runtime versions and the commit;
* ``report.md`` -- the tables, the context lines and the gate's verdict;
* ``accuracy_latency.png`` (per model: accuracy vs latency, the Pareto front, the parent
  marked) and ``size.png`` (size of each entry, per model).

Example:
    >>> res = build_report(["runs/demo"], "benchmarks/baseline.yaml",   # doctest: +SKIP
    ...                    "runs/report")
    >>> [c.describe() for c in res.failed]                             # doctest: +SKIP
    []
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xcompress.report.entries import LOWER_IS_BETTER, Entry, collect
from xcompress.report.gate import Check, check, failed, load_baseline

SCHEMA_VERSION = 1
#: the step summary GitHub shows is capped at 1 MiB; stay well below it
SUMMARY_LIMIT = 512 * 1024
_VERSIONED = ("xcompress", "onnxruntime", "onnx", "ai-edge-litert", "torch", "optuna",
              "neural-compressor")


@dataclass(frozen=True)
class ReportResult:
    out: Path | None
    entries: list[Entry]
    checks: list[Check]
    failed: list[Check]
    markdown: str
    report: dict[str, Any]


def _commit() -> str | None:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _machine() -> dict[str, Any]:
    from xcompress.eval.evaluate import cpu_model
    from xcompress.profile.machine import host_machine

    return {"cpu": cpu_model(), "isa": platform.machine(), "cores": os.cpu_count() or 1,
            "system": platform.system(), "int8_dot": list(host_machine().int8_dot)}


def build_report(runs: list[str | Path], baseline: str | Path | None = None,
                 out: str | Path | None = None, strict: bool = False,
                 plots: bool = True) -> ReportResult:
    """Read ``runs``, gate them against ``baseline``, write the report to ``out``.

    Raises:
        XCompressError: a folder that is not a run, a malformed baseline, an unwritable
            ``out`` (checked before anything is read).
    """
    from xcompress.fsutil import atomic_dir, prepare_output_dir, write_json, write_text

    if out is not None:
        prepare_output_dir(out, "report")
    thresholds = load_baseline(baseline) if baseline is not None else None
    entries = collect(list(dict.fromkeys(str(r) for r in runs)))
    checks = check(entries, thresholds) if thresholds is not None else []
    bad = failed(checks, strict)
    report = {
        "schema_version": SCHEMA_VERSION,
        "commit": _commit(),
        "machine": _machine(),
        "versions": _versions(),
        "runs": list(dict.fromkeys(e.run for e in entries)),
        "baseline": str(baseline) if baseline is not None else None,
        "entries": [asdict(e) for e in entries],
        "gate": {"passed": not bad, "strict": strict,
                 "checks": [{"key": c.key, "metric": c.metric, "value": c.value,
                             "status": c.status, **c.threshold.model_dump(exclude_none=True),
                             **({"machine_class": c.machine_class} if c.machine_class else {})}
                            for c in checks]},
    }
    md = render_markdown(report, entries, checks, bad)
    if out is not None:
        with atomic_dir(out, "report") as tmp:
            write_json(tmp / "report.json", report)
            if plots:
                from xcompress.report.plots import plot_accuracy_latency, plot_sizes

                plot_accuracy_latency(entries, tmp / "accuracy_latency.png")
                plot_sizes(entries, tmp / "size.png")
                md += "\n![accuracy vs latency](accuracy_latency.png)\n\n![size](size.png)\n"
            write_text(tmp / "report.md", md)
    _step_summary(md)
    return ReportResult(Path(out) if out is not None else None, entries, checks, bad, md,
                        report)


def _step_summary(md: str) -> None:
    """Append the Markdown to GitHub's job summary when ``GITHUB_STEP_SUMMARY`` is set."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    body = md.replace("![accuracy vs latency](accuracy_latency.png)", "").replace(
        "![size](size.png)", "")
    if len(body.encode()) > SUMMARY_LIMIT:
        body = body.encode()[:SUMMARY_LIMIT].decode(errors="ignore") + \
            "\n\n(cut at 512 KiB: the whole report is in the artifacts)\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(body + "\n")


def _fmt(name: str, v: float | None) -> str:
    if v is None:
        return "-"
    if name == "size_bytes":
        return f"{v / 1e6:.2f} MB"
    if name in ("speedup",):
        return f"{v:.2f}x"
    if name.endswith("_delta") or name.endswith("_low"):
        return f"{100 * v:+.2f} pt"
    if name.endswith("_ms") or "_ms_" in name:
        return f"{v:.1f}"
    if name == "size_ratio":
        return f"{v:.3f}"
    return f"{100 * v:.2f}" if abs(v) <= 1.0 else f"{v:.4g}"


_HEADLINE = {"rec": ("cer_nospace", "cer"), "det": ("hmean",), "cls": ("accuracy",),
             "system": ("e2e_hmean", "e2e_hmean_asis", "matched_cer_nospace", "det_hmean")}


def render_markdown(report: dict[str, Any], entries: list[Entry], checks: list[Check],
                    bad: list[Check]) -> str:
    m = report["machine"]
    v = report["versions"]
    lines = ["# xcompress report", "",
             f"- commit: {report['commit'] or 'unknown'}; schema {report['schema_version']}",
             f"- machine: {m['cpu']}, {m['isa']}, {m['cores']} cores, int8 dot: "
             f"{', '.join(m.get('int8_dot') or []) or 'none'}",
             f"- versions: {', '.join(f'{k} {x}' for k, x in v.items())}", ""]
    by_model: dict[str, list[Entry]] = {}
    for e in entries:
        by_model.setdefault(e.model, []).append(e)
    for model, group in by_model.items():
        first = group[0]
        heads = [k for k in _HEADLINE[first.task] if any(k in e.metrics for e in group)]
        deltas = [f"{k}_delta" for k in heads if any(f"{k}_delta" in e.deltas for e in group)]
        cols = ["size_bytes", "size_ratio", *heads, *deltas, "speedup"]
        lines.append(f"## {model} ({first.task})")
        lines.append("")
        data = "; ".join(f"{n}: {d.get('samples', d.get('pages', '?'))} "
                         f"{'pages' if first.task in ('det', 'system') else 'samples'} from "
                         f"{d['path']} (sha256 {(d.get('sha256') or '?')[:12]})"
                         for n, d in first.data.items())
        shape = "x".join(map(str, first.shape)) if first.shape else "page as given"
        lines.append(f"- data: {data or 'none'}")
        lines.append(f"- shape {shape}, batch {first.batch}, {first.threads} threads, "
                     f"{first.runtime}, target {first.target}; speed-up measured alternately "
                     f"in one run; run folder {first.run}")
        lines += ["", "| entry | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for e in group:
            vals = e.values()
            lines.append(f"| {e.key}{' (parent)' if e.parent else ''} | "
                         + " | ".join(_fmt(c, vals.get(c)) for c in cols) + " |")
        lines.append("")
    if checks:
        verdict = "FAILED" if bad else "passed"
        lines += [f"## Regression gate: {verdict} ({report['baseline']})", "",
                  "| entry | metric | value | min | max | improve | thresholds for | status |",
                  "|---|---|---:|---:|---:|---:|---|---|"]
        for c in checks:
            t = c.threshold
            lines.append(f"| {c.key} | {c.metric} | {_fmt(c.metric, c.value)} | "
                         f"{'' if t.min is None else f'{t.min:g}'} | "
                         f"{'' if t.max is None else f'{t.max:g}'} | "
                         f"{'' if t.improve is None else f'{t.improve:g}'} | "
                         f"{c.machine_class or 'any machine'} | {c.status} |")
        improved = [c for c in checks if c.status == "improvement"]
        if improved:
            lines += ["", "Better than the baseline expects (raise it): "
                      + "; ".join(f"{c.key} {c.metric}" for c in improved)]
        lines.append("")
    return "\n".join(lines) + "\n"


__all__ = ["LOWER_IS_BETTER", "SCHEMA_VERSION", "ReportResult", "build_report"]
