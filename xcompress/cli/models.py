"""``xcompress import`` / ``export`` / ``train``: native PyTorch models.

Example:
    xcompress import ppocr-v4-rec --out runs/v4rec.pt
    xcompress export runs/v4rec.pt --to onnx --out runs/v4rec_onnx
    xcompress train crnn --synth digits --steps 2000 --out runs/crnn
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xcompress.cli.options import CharsetOpt, ForceOpt, TaskOpt, check_task


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("export")(export_command)
    app.command("train")(train_command)


def import_command(
    model: Annotated[str, typer.Argument(help="Zoo name, model folder or .onnx file.")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint to write (.pt).")],
    task: TaskOpt = None,
    charset: CharsetOpt = None,
    arch: Annotated[
        str | None, typer.Option("--arch", help="Force an architecture (default: try each).")
    ] = None,
) -> None:
    """Import a trained ONNX model into a native PyTorch module with the exact weights.

    The import is checked against onnxruntime on random inputs (max abs diff <= 1e-4).

    Example: xcompress import ppocr-v4-rec --out v4rec.pt
    """
    from xcompress.artifact import resolve_model
    from xcompress.errors import XCompressError
    from xcompress.fsutil import prepare_output_file
    from xcompress.models.checkpoint import save_checkpoint
    from xcompress.models.importers import import_onnx

    if check_task(task) == "cls":
        raise XCompressError("--task cls: direction classifiers have no native module to "
                             "import into; quantize or profile the ONNX model instead")
    if out.suffix != ".pt":
        raise XCompressError(f"--out must end in .pt, got {out.name}")
    prepare_output_file(out)
    net, card = import_onnx(resolve_model(model, task, charset), arch=arch)
    save_checkpoint(out, net, card)
    n = sum(p.numel() for p in net.parameters())
    print(
        f"imported {card.name} as {net.arch} ({n:,} parameters, "
        f"{card.notes['import_tensors']} tensors); max abs diff vs onnxruntime "
        f"{card.notes['import_max_abs_diff']:.2e}; wrote {out}"
    )


def export_command(
    model: Annotated[
        str, typer.Argument(help="Checkpoint (.pt), zoo name, or ONNX model / folder with card.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model + card into: "
                                      "new, empty, or an earlier export (see --force).")],
    to: Annotated[str, typer.Option("--to", help="Target format: onnx or tflite.")] = "onnx",
    opset: Annotated[int, typer.Option("--opset", min=13, max=21, help="onnx: opset.")] = 17,
    int8: Annotated[
        bool, typer.Option("--int8", help="tflite: full-integer int8 (needs --calib).")
    ] = False,
    calib: Annotated[
        Path | None, typer.Option("--calib", help="tflite int8: PaddleOCR-format calibration set.")
    ] = None,
    calib_limit: Annotated[
        int, typer.Option("--calib-limit", min=1, help="tflite int8: most calibration samples.")
    ] = 128,
    eval_data: Annotated[
        Path | None,
        typer.Option("--eval", help="tflite: accuracy check set (default: rest of --calib)."),
    ] = None,
    io: Annotated[str, typer.Option("--io", help="tflite int8 model I/O: float32 or int8.")] = (
        "float32"
    ),
    widths: Annotated[
        str | None, typer.Option("--widths", help="tflite rec width buckets, e.g. 320,640,960.")
    ] = None,
    keep_float: Annotated[
        list[str] | None,
        typer.Option("--keep-float", help="tflite int8: regex of layers left float; repeatable."),
    ] = None,
    exact_range: Annotated[
        list[str] | None,
        typer.Option("--exact-range", help="tflite int8: regex of tensors ranged by exact "
                     "min/max (default: the model's own choice); repeatable."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Threads for the checks.")
    ] = None,
    task: TaskOpt = None,
    charset: CharsetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Export a checkpoint to ONNX, or any model to TFLite (float or int8).

    Examples:
        xcompress export v4rec.pt --to onnx --out v4rec_onnx
        xcompress export ppocr-v4-rec --to tflite --int8 --calib data/rec --out v4rec_tflite
    """
    from xcompress.errors import XCompressError
    from xcompress.export import export_model, summarize
    from xcompress.fsutil import prepare_output_dir

    options: dict = {"opset": opset} if to == "onnx" else {
        "int8": int8, "io_dtype": io, "calib": str(calib) if calib else None,
        "calib_limit": calib_limit, "eval": str(eval_data) if eval_data else None,
        "float_ops": tuple(keep_float or ()), "threads": threads,
        "exact_ranges": tuple(exact_range) if exact_range else None}  # fmt: skip
    if widths:
        try:
            options["widths"] = tuple(int(w) for w in widths.split(",") if w.strip())
        except ValueError:
            msg = f"--widths takes integers like 320,640,960, not {widths}"
            raise XCompressError(msg) from None
    prepare_output_dir(out, "export", force=force)  # before the model is pulled or imported
    source: str | object = model
    if task is not None or charset is not None:
        from xcompress.artifact import resolve_model

        source = resolve_model(model, check_task(task), charset)  # type: ignore[arg-type]
    art = export_model(source, to, options, out, force=force)  # type: ignore[arg-type]
    if to == "onnx":
        diff = art.card.notes.get("export_max_abs_diff")
        print(f"exported {model} to {art.path}; max abs diff vs torch {diff:.2e}")
    else:
        print(summarize(art))


def train_command(
    model: Annotated[
        str, typer.Argument(help="Architecture (from scratch), checkpoint .pt, or zoo name.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder; re-run the same command to "
                                      "resume it.")],
    data: Annotated[
        list[str] | None, typer.Option("--data", help="Training data: 'synth' or a PaddleOCR "
                                       "label folder; repeat --data to mix several.")
    ] = None,
    val: Annotated[
        list[str] | None, typer.Option("--val", help="Held-out set: 'synth' or a folder; repeat "
                                       "--val for several.")
    ] = None,
    charset: Annotated[
        str | None,
        typer.Option("--charset", help="From scratch: the label characters, or digits / alnum."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps.")] = 1000,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=1, help="Steps between evaluations + checkpoints.")
    ] = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (> 0).")] = 1e-3,
    teacher: Annotated[
        str | None, typer.Option("--teacher", help="Distill from this model (.pt / zoo name).")
    ] = None,
    max_width: Annotated[
        int, typer.Option("--max-width", min=16, help="rec: widest padded line, px.")
    ] = 320,
    seed: Annotated[int, typer.Option("--seed", help="Seed of data and initialization.")] = 0,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Torch threads (default: all cores).")
    ] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", help="Wall-clock budget (> 0); stops early.")
    ] = None,
    det_size: Annotated[
        int, typer.Option("--det-size", min=32, help="det: square training size, px.")
    ] = 640,
    freeze: Annotated[
        list[str] | None, typer.Option("--freeze", help="Module name prefix not to train, e.g. "
                                       "backbone; repeat --freeze for several.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Train a recognizer (CTC) or detector (DB), optionally distilled; resumable.

    Example: xcompress train crnn --charset digits --steps 3000 --out runs/crnn
    """
    import string

    from xcompress.cli.options import build_config
    from xcompress.errors import XCompressError
    from xcompress.eval import format_metrics
    from xcompress.train import DistillConfig, TrainConfig, train

    if minutes is not None and minutes <= 0:
        raise XCompressError(f"--minutes must be > 0, not {minutes:g}")
    presets = {"digits": string.digits, "alnum": string.digits + string.ascii_uppercase}
    cfg = build_config(
        TrainConfig, {"max_seconds": "--minutes", "train": "--data"},
        model=model, charset=presets.get(charset or "", charset), train=data or ["synth"],
        val=val or ["synth"], steps=steps, eval_every=eval_every, batch_size=batch_size, lr=lr,
        max_width=max_width, det_size=det_size, freeze=freeze or [], seed=seed, threads=threads,
        max_seconds=minutes * 60 if minutes is not None else None, out=str(out),
        distill=DistillConfig(teacher=teacher) if teacher else None,
    )  # fmt: skip
    result = train(cfg, force=force)
    scores = "; ".join(f"{k} {format_metrics(result.task, m)}"
                       for k, m in result.best_metrics.items())  # fmt: skip
    print(f"trained {result.step} steps in {result.seconds:.0f}s; best (step {result.best_step}, "
          f"by {result.metric}): {scores}; checkpoints in {out}")  # fmt: skip
