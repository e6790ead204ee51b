"""``xcompress eval MODEL --data DIR``: accuracy of a model on a PaddleOCR-format data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Metrics shown first, per task; the rest of the report's metrics follow.
_HEADLINE = {
    "rec": ("line_accuracy", "cer", "line_accuracy_nospace", "cer_nospace", "ned"),
    "det": ("precision", "recall", "hmean"),
    "cls": ("accuracy",),
}
_COUNTS = ("matched", "n_gt", "n_det")
# What the last column of the worst-samples table shows, per task.
_FAILURE_SCORE = {"rec": "cer", "det": "hmean", "cls": "confidence"}


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def eval_command(
    model: Annotated[str, typer.Argument(help="Zoo name, model folder, or model file.")],
    data: Annotated[Path, typer.Option("--data", help="Folder with a PaddleOCR label.txt.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the full report as JSON here.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="rec, det or cls (needed for a bare file).")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1,
    failures: Annotated[int, typer.Option("--failures", min=0, help="Show the N worst.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
) -> None:
    """Evaluate MODEL on --data: line accuracy / CER (rec), P/R/Hmean (det), accuracy (cls).

    Example: xcompress eval ppocr-v4-rec --data data/rec_val --json eval.json --failures 5
    """
    from rich.console import Console
    from rich.table import Table

    from xcompress.errors import XCompressError
    from xcompress.eval import EvalConfig, evaluate

    if task is not None and task not in _HEADLINE:
        raise XCompressError(f"--task must be rec, det or cls, not {task!r}")
    config = EvalConfig(
        threads=threads,
        batch_size=batch_size,
        limit=limit,
        failures=max(failures, 10),  # the JSON keeps at least 10 for later inspection
        task=task,  # type: ignore[arg-type]
    )
    report = evaluate(model, data, config)

    console = Console()
    table = Table(title=f"{report.model.name} on {report.data.path}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    shown = [k for k in _HEADLINE[report.task] if k in report.metrics]
    shown += [k for k in report.metrics if k not in shown]
    for k in shown:
        v = report.metrics[k]
        table.add_row(k, f"{int(v)}" if k in _COUNTS else f"{v:.4f}")
    s = report.settings
    table.add_section()
    table.add_row("samples", f"{report.data.count} of {report.data.total}")
    table.add_row("model", f"{report.model.path} (sha256 {report.model.sha256[:12]})")
    table.add_row("runtime", f"{s.runtime} {s.runtime_version}, threads {s.threads or 'default'}")
    table.add_row("batch size", str(s.batch_size))
    table.add_row("machine", f"{s.cpu}, {s.cores} cores")
    table.add_row("time", f"{s.seconds:.1f} s")
    console.print(table)

    if report.charset_mismatch:
        cm = report.charset_mismatch
        console.print(
            f"[yellow]warning:[/] {cm.lines_affected} labels hold {cm.occurrences} characters "
            f"the model cannot output: {' '.join(repr(c) for c in list(cm.missing)[:12])}"
        )
    if failures and not report.failures:
        console.print("no failing samples")
    elif failures:
        worst = Table(title=f"{min(failures, len(report.failures))} worst samples")
        for col in ("image", "expected", "got", _FAILURE_SCORE[report.task]):
            worst.add_column(col)
        for f in report.failures[:failures]:
            val = f.cer if report.task == "rec" else (f.hmean if f.hmean is not None else f.score)
            # repr() makes leading/trailing and doubled spaces visible
            texts = (repr(f.expected), repr(f.got)) if report.task == "rec" else (f.expected, f.got)
            worst.add_row(Path(f.image).name, *texts, "" if val is None else f"{val:.3f}")
        console.print(worst)
    if json_out is not None:
        report.save(json_out)
        console.print(f"report written to {json_out}")
