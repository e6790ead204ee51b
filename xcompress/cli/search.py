"""``xcompress search``: architecture search over a trained model under latency budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xcompress.cli.options import DATA_SPEC, ForceOpt, TargetOpt


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)


def search_command(
    model: Annotated[
        str, typer.Argument(help="Zoo name, model folder, ONNX file or .pt checkpoint.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder; re-run the same command to "
                                      "resume the search.")],
    space: Annotated[Path | None, typer.Option("--space", help="Search space YAML (default: "
                                               "search_spaces/<arch>.yaml).")] = None,
    target: TargetOpt = "host",
    max_latency_ms: Annotated[float | None, typer.Option(
        "--max-latency-ms", help="Hard budget: latency on the target, ms.")] = None,
    max_latency_ratio: Annotated[float | None, typer.Option(
        "--max-latency-ratio", help="Hard budget: latency / the parent's, same target.")] = None,
    max_macs: Annotated[float | None, typer.Option("--max-macs", help="Hard budget: MACs.")] = None,
    max_params: Annotated[float | None, typer.Option(
        "--max-params", help="Hard budget: parameters.")] = None,
    data: Annotated[list[str] | None, typer.Option(
        "--data", help=f"Fine-tune data: {DATA_SPEC}.")] = None,
    val: Annotated[list[str] | None, typer.Option(
        "--val", help=f"Held-out set: {DATA_SPEC}.")] = None,
    val_count: Annotated[int, typer.Option("--val-count", min=1,
                                           help="Size of a synthetic held-out set.")] = 200,
    lang: Annotated[str, typer.Option("--lang", help="Synthetic text language (en, zh).")] = "en",
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials in the study.")] = 20,
    minutes: Annotated[float | None, typer.Option(
        "--minutes", help="Stop starting trials after this many minutes.")] = None,
    finetune_steps: Annotated[int, typer.Option(
        "--finetune-steps", min=0, help="Distillation steps per candidate.")] = 100,
    final_steps: Annotated[int, typer.Option(
        "--final-steps", min=0, help="More steps for the best candidate (0: none).")] = 300,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per step.")] = 8,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Optuna storage URL (default sqlite:///RUN/study.db; "
        "postgresql://... for several machines).")] = None,
    study: Annotated[str, typer.Option("--study", help="Study name in the storage.")] = "search",
    workers: Annotated[int, typer.Option("--workers", min=1,
                                         help="Worker processes on this machine.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Sampler and data seed.")] = 0,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe or nsga2.")] = "tpe",
    shape: Annotated[str | None, typer.Option(
        "--shape", help="Input shape the latency is measured at, e.g. 1x3x48x320.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1,
                                                help="Threads (timing and training).")] = None,
    timing_seconds: Annotated[float, typer.Option(
        "--timing-seconds", min=0.01, help="Most seconds of timed runs per latency "
        "measurement (host, ssh): more is steadier.")] = 9.0,
    force: ForceOpt = False,
) -> None:
    """Search smaller architectures of a trained model under latency budgets; resumable.

    Example: xcompress search ppocr-v4-rec --max-latency-ratio 0.6 --minutes 60 --out runs/s
    """
    from xcompress.cli.options import build_config
    from xcompress.profile.run import parse_shape
    from xcompress.search.runner import SearchConfig, default_log, run_search

    cfg = build_config(
        SearchConfig, {},
        model=model, out=str(out), space=str(space) if space else None, target=target,
        max_latency_ms=max_latency_ms, max_latency_ratio=max_latency_ratio, max_macs=max_macs,
        max_params=max_params, data=data or ["synth"], val=val or ["synth"], val_count=val_count,
        lang=lang, trials=trials, minutes=minutes, finetune_steps=finetune_steps,
        final_steps=final_steps, batch_size=batch_size, storage=storage, study=study,
        workers=workers, seed=seed, sampler=sampler,
        shape=parse_shape(shape) if shape else None, threads=threads,
        timing_seconds=timing_seconds,
    )  # fmt: skip
    res = run_search(cfg, log=default_log(), force=force)
    n_eval = sum(1 for r in res.trials if r.get("error") is not None)
    print(f"{len(res.trials)} trials ({n_eval} trained and scored, {len(res.front)} on the "
          f"Pareto front); report: {res.report}" + (f"; best: {res.out / 'best'}" if res.best else
                                                   "; no feasible candidate"))
