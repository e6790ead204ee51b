"""``xcompress eval MODEL --data DIR``: accuracy of a model on a PaddleOCR-format data set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from xcompress.cli.options import CharsetOpt, TaskOpt

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from xcompress.eval import EvalConfig, EvalReport

# Counts are printed as integers; the metric order per task is xcompress.eval.metrics'.
_COUNTS = ("matched", "n_gt", "n_det")
# What the last column of the worst-samples table shows, per task.
_FAILURE_SCORE = {"rec": "cer", "det": "hmean", "cls": "confidence"}


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def _check_ranges(**values: int | None) -> None:
    """One error line for an out-of-range number (``--limit 0``, ``--threads 0``, ...)."""
    from xcompress.errors import XCompressError

    lowest = {"threads": 1, "batch_size": 1, "failures": 0, "limit": 1}
    for name, value in values.items():
        if value is not None and value < lowest[name]:
            flag = "--" + name.replace("_", "-")
            raise XCompressError(f"{flag} must be at least {lowest[name]}, got {value}")


def eval_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with a PaddleOCR label.txt.")],
    model: Annotated[
        str | None, typer.Argument(help="Zoo name, model folder, or model file.")
    ] = None,
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            help="DET,CLS,REC (or DET,REC): score the whole OCR pipeline end to end on "
            "detection pages with transcriptions, instead of one MODEL.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the full report as JSON here.")
    ] = None,
    task: TaskOpt = None,
    charset: CharsetOpt = None,
    # Ranges are checked below (one error line) rather than by typer (a usage box).
    threads: Annotated[int | None, typer.Option("--threads", help="At least 1.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="At least 1. Lines per call (default 1; with "
                     "--system: crops per recognizer call, default 6 as PaddleOCR)."),
    ] = None,
    failures: Annotated[int, typer.Option("--failures", help="Show the N worst.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate the first N samples.")
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Skip images that cannot be used (missing, truncated, ...)."
        ),
    ] = False,
) -> None:
    """Evaluate MODEL on --data: line accuracy / CER (rec), P/R/Hmean (det), accuracy (cls);
    or a whole system end to end (--system).

    Examples: xcompress eval ppocr-v4-rec --data data/rec_val --json eval.json --failures 5;
    xcompress eval --system ppocr-v4-det,ppocr-v4-cls,ppocr-v4-rec --data data/pages
    """
    from rich.console import Console

    from xcompress.errors import XCompressError
    from xcompress.eval import evaluate

    if (model is None) == (system is None):
        raise XCompressError("give a MODEL, or --system DET,CLS,REC for end-to-end scoring")
    if system is not None:
        from xcompress.eval.system import SystemEvalConfig

        rec_batch = SystemEvalConfig().rec_batch if batch_size is None else batch_size
        _eval_system(system, data, json_out, threads, limit, failures, rec_batch)
        return
    config = _config(task, threads, 1 if batch_size is None else batch_size, failures, limit,
                     skip_bad, json_out)
    target: str | object = model
    if charset is not None:
        from xcompress.artifact import resolve_model

        target = resolve_model(model, task, charset)  # type: ignore[arg-type]
    report = evaluate(target, data, config)  # type: ignore[arg-type]

    console = Console()
    console.print(_summary_table(report))
    _print_notes(console, report)
    if failures and not report.failures:
        console.print("no failing samples")
    elif failures:
        console.print(_worst_table(report, failures))
    if json_out is not None:
        report.save(json_out)
        console.print(f"report written to {json_out}")


def _eval_system(system: str, data: Path, json_out: Path | None, threads: int | None,
                 limit: int | None, failures: int, rec_batch: int) -> None:
    """``--system``: the pipeline on every page, scored end to end, and its latency."""
    from rich.console import Console

    from xcompress.errors import XCompressError
    from xcompress.eval.system import SystemEvalConfig, evaluate_system
    from xcompress.fsutil import prepare_output_file

    parts = [p.strip() for p in system.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise XCompressError(f"--system takes DET,CLS,REC or DET,REC, got {system!r}")
    _check_ranges(threads=threads, limit=limit, failures=failures, batch_size=rec_batch)
    if json_out is not None:
        prepare_output_file(json_out, "--json")
    det, cls, rec = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    report = evaluate_system(det, cls, rec, data, SystemEvalConfig(
        threads=threads, limit=limit, failures=max(failures, 10), rec_batch=rec_batch))
    console = Console()
    console.print(_system_table(report))
    if failures:
        for f in report.failures[:failures]:
            console.print(f"{Path(f.image).name}: e2e Hmean {f.e2e_hmean:.3f}, {f.hits} of "
                          f"{f.n_gt} lines read exactly; missed {f.missed[:5]}", soft_wrap=True)
    if json_out is not None:
        report.save(json_out)
        console.print(f"report written to {json_out}")


def _system_table(report) -> Table:
    from rich.table import Table

    m = report.metrics
    table = Table(title=f"system on {report.data['path']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k in ("e2e_hmean", "e2e_precision", "e2e_recall", "e2e_hmean_asis",
              "matched_cer_nospace", "matched_cer", "det_hmean"):
        table.add_row(k, f"{m[k]:.4f}")
    table.add_row("page ms (mean / median / p90)",
                  f"{m['page_ms_mean']:.1f} / {m['page_ms_median']:.1f} / {m['page_ms_p90']:.1f}")
    table.add_row("ms per member",
                  ", ".join(f"{r} {m[f'{r}_ms_mean']:.1f}" for r in ("det", "cls", "rec")
                            if f"{r}_ms_mean" in m))
    table.add_section()
    table.add_row("pages", f"{report.data['pages']} ({report.data['lines']} lines)")
    for mem in report.members:
        table.add_row(mem.role, f"{mem.path} ({mem.size_bytes / 1e6:.2f} MB, {mem.runtime} "
                      f"{mem.runtime_version})")
    s = report.settings
    table.add_row("settings", f"threads {s['threads'] or 'default'}, drop_score "
                  f"{s['drop_score']}, cls_thresh {s['cls_thresh']}, rec batch "
                  f"{s['rec_batch']}, IoU {s['iou']}")
    table.add_row("machine", f"{s['cpu']}, {s['cores']} cores")
    table.add_row("time", f"{s['seconds']:.1f} s")
    return table


def _config(
    task: str | None, threads: int | None, batch_size: int, failures: int, limit: int | None,
    skip_bad: bool, json_out: Path | None,
) -> EvalConfig:  # fmt: skip
    """The evaluation settings, every argument checked before any work (one error line)."""
    from xcompress.errors import XCompressError
    from xcompress.eval import TASK_METRICS, EvalConfig
    from xcompress.fsutil import prepare_output_file

    if task is not None and task not in TASK_METRICS:
        raise XCompressError(f"--task must be rec, det or cls, not {task!r}")
    _check_ranges(threads=threads, batch_size=batch_size, failures=failures, limit=limit)
    if json_out is not None:  # a folder or unwritable path fails now, not after the run
        prepare_output_file(json_out, "--json")
    return EvalConfig(
        threads=threads,
        batch_size=batch_size,
        limit=limit,
        failures=max(failures, 10),  # the JSON keeps at least 10 for later inspection
        task=task,  # type: ignore[arg-type]
        skip_bad=skip_bad,
    )


def _summary_table(report: EvalReport) -> Table:
    """Metrics (the task's order first, both CERs for rec) and the settings behind them."""
    from rich.table import Table

    from xcompress.eval import task_metrics

    table = Table(title=f"{report.model.name} on {report.data.path}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    shown = [k for k in task_metrics(report.task).shown if k in report.metrics]
    shown += [k for k in report.metrics if k not in shown]
    for k in shown:
        v = report.metrics[k]
        table.add_row(k, f"{int(v)}" if k in _COUNTS else f"{v:.4f}")
    s = report.settings
    table.add_section()
    table.add_row("samples", f"{report.data.count} of {report.data.total}")
    if report.data.skipped:
        table.add_row("skipped", f"{len(report.data.skipped)} images that cannot be used")
    table.add_row("model", f"{report.model.path} (sha256 {report.model.sha256[:12]})")
    table.add_row("runtime", f"{s.runtime} {s.runtime_version}, threads {s.threads or 'default'}")
    table.add_row("batch size", str(s.batch_size))
    table.add_row("machine", f"{s.cpu}, {s.cores} cores")
    table.add_row("time", f"{s.seconds:.1f} s")
    return table


def _print_notes(console: Console, report: EvalReport) -> None:
    """Skipped images and label characters the model cannot output, one line each."""
    from rich.markup import escape

    skipped = report.data.skipped
    if skipped:
        names = "; ".join(f"{Path(k.image).name}: {k.reason}" for k in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        console.print(
            f"[yellow]skipped {len(skipped)} images:[/] {escape(names)}{more}", highlight=False,
            soft_wrap=True,
        )
    if report.charset_mismatch:
        cm = report.charset_mismatch
        console.print(
            f"[yellow]warning:[/] {cm.lines_affected} labels hold {cm.occurrences} characters "
            f"the model cannot output: {' '.join(repr(c) for c in list(cm.missing)[:12])}",
            soft_wrap=True,
        )


def _worst_table(report: EvalReport, n: int) -> Table:
    """The ``n`` worst samples: image, expected, got, and the task's per-sample score."""
    from rich.table import Table

    worst = Table(title=f"{min(n, len(report.failures))} worst samples")
    for col in ("image", "expected", "got", _FAILURE_SCORE[report.task]):
        worst.add_column(col)
    for f in report.failures[:n]:
        val = f.cer if report.task == "rec" else (f.hmean if f.hmean is not None else f.score)
        # repr() makes leading/trailing and doubled spaces visible
        texts = (repr(f.expected), repr(f.got)) if report.task == "rec" else (f.expected, f.got)
        worst.add_row(Path(f.image).name, *texts, "" if val is None else f"{val:.3f}")
    return worst
