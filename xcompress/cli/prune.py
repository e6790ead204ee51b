"""``xcompress prune``: structured channel pruning and CTC charset slimming, distilled."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xcompress.cli.options import DATA_SPEC, ForceOpt, TargetOpt


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_command)


def prune_command(
    model: Annotated[
        str, typer.Argument(help="Zoo name, model folder, ONNX file or .pt checkpoint.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (model.pt, model.onnx, "
                                      "card, report); re-run the same command to resume.")],
    target_macs: Annotated[float | None, typer.Option(
        "--target-macs", help="Prune to this share of the input's MACs, e.g. 0.7.")] = None,
    target_latency_ratio: Annotated[float | None, typer.Option(
        "--target-latency-ratio",
        help="Prune until fp32 latency / the input's, measured on --target, is at most this.",
    )] = None,
    target: TargetOpt = "host",
    importance: Annotated[str, typer.Option(
        "--importance", help="Channel importance: l1, fpgm or taylor.")] = "l1",
    keep_charset: Annotated[str | None, typer.Option(
        "--keep-charset", metavar="FILE|ascii|digits|alnum",
        help="Slim a recognizer's CTC classifier to these characters (blank and space kept).",
    )] = None,
    space: Annotated[Path | None, typer.Option(
        "--space", help="Search space YAML whose widths bound the pruning (default: "
        "search_spaces/<arch>.yaml).")] = None,
    round_to: Annotated[int | None, typer.Option(
        "--round-to", min=1, help="Channel counts are multiples of this (default: the "
        "space's divisor, 16 for PP-OCR).")] = None,
    data: Annotated[list[str] | None, typer.Option(
        "--data", help=f"Distillation data: {DATA_SPEC}.")] = None,
    val: Annotated[list[str] | None, typer.Option(
        "--val", help=f"Held-out set: {DATA_SPEC}.")] = None,
    val_count: Annotated[int, typer.Option("--val-count", min=1,
                                           help="Size of a synthetic held-out set.")] = 200,
    lang: Annotated[str, typer.Option("--lang", help="Synthetic text language (en, zh).")] = "en",
    steps: Annotated[int, typer.Option("--steps", min=0,
                                       help="Distillation steps over all rounds.")] = 600,
    minutes: Annotated[float | None, typer.Option(
        "--minutes", help="Stop distilling after this many minutes in all.")] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1,
                                        help="Prune -> distill rounds.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per step.")] = 8,
    ctc_weight: Annotated[float, typer.Option(
        "--ctc-weight", min=0.0, help="Weight of the loss on the data's labels (0: learn from "
        "the teacher alone).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Data seed.")] = 0,
    shape: Annotated[str | None, typer.Option(
        "--shape", help="Input shape MACs and latency are measured at, e.g. 1x3x48x320.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1,
                                                help="Threads (timing and training).")] = None,
    force: ForceOpt = False,
) -> None:
    """Prune channels to a MACs or latency target and recover by distillation; resumable.

    Example: xcompress prune ppocr-v4-rec --target-macs 0.7 --minutes 25 --out runs/prune
    """
    from xcompress.cli.options import build_config
    from xcompress.profile.run import parse_shape
    from xcompress.prune.runner import PruneConfig, run_prune
    from xcompress.search.runner import default_log

    cfg = build_config(
        PruneConfig, {},
        model=model, out=str(out), target_macs=target_macs,
        target_latency_ratio=target_latency_ratio, target=target, importance=importance,
        keep_charset=keep_charset, space=str(space) if space else None, round_to=round_to,
        data=data or ["synth"], val=val or ["synth"], val_count=val_count, lang=lang,
        steps=steps, minutes=minutes, rounds=rounds, batch_size=batch_size, seed=seed,
        ctc_weight=ctc_weight,
        shape=parse_shape(shape) if shape else None, threads=threads,
    )  # fmt: skip
    res = run_prune(cfg, log=default_log(), force=force)
    rep = res.report
    print(f"{res.out}: {rep['input']['macs'] / 1e6:.1f} -> {rep['output']['macs'] / 1e6:.1f} "
          f"MMACs, {rep['input']['onnx_mb']:.2f} -> {rep['output']['onnx_mb']:.2f} MB, fp32 "
          f"latency {rep['latency_ratio']:.3f}x; report: {res.out / 'report.md'}")
