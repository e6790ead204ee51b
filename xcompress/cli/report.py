"""``xcompress report RUN... [--baseline FILE] [--out DIR]``: one report over runs, gated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)


def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of `xcompress run`.")],
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="Thresholds per MODEL/STEP (e.g. benchmarks/baseline.yaml); a "
        "regression exits 1, naming the metric.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for report.md, report.json and the PNG plots.")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also fail when a value beats the baseline's `improve` mark (the "
        "baseline should be raised).")] = False,
) -> None:
    """Report over one or more runs: Markdown, schema-versioned JSON, plots, regression gate.

    With GITHUB_STEP_SUMMARY set, the Markdown is appended to the job summary.

    Example: xcompress report runs/demo --baseline benchmarks/baseline.yaml --out runs/report
    """
    from rich.console import Console

    from xcompress.report import build_report

    res = build_report(runs, baseline, out, strict=strict)
    console = Console()
    console.print(res.markdown, markup=False, highlight=False, soft_wrap=True)
    if res.out is not None:
        console.print(f"report: {res.out / 'report.md'}", markup=False)
    for c in res.checks:
        if c.status == "improvement":
            console.print(f"note: {c.describe()}: raise the baseline", markup=False)
    if res.failed:
        for c in res.failed:
            typer.echo(f"regression: {c.describe()}", err=True)
        raise typer.Exit(1)
