"""``xcompress quantize MODEL --calib DIR --out OUT``: accuracy-aware int8 PTQ (ONNX, QDQ)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xcompress.cli.options import (
    DATA_SPEC,
    CharsetOpt,
    ForceOpt,
    TargetOpt,
    TaskOpt,
    build_config,
    check_task,
)


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize_command)


def quantize_command(
    model: Annotated[str, typer.Argument(help="Zoo name, model folder, or ONNX file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: new, empty, or an earlier "
                                      "quantize output (see --force).")],
    calib: Annotated[
        Path | None,
        typer.Option("--calib", help="PaddleOCR-format calibration set (default: a built-in "
                     "synthetic set made by `xcompress data synth`, seeded)."),
    ] = None,
    eval_sets: Annotated[
        list[Path] | None,
        typer.Option("--eval", help="Data set the budget is checked on; repeat --eval for "
                     "several, each must hold (default: the held-out half of --calib)."),
    ] = None,
    synth_mix: Annotated[
        float | None, typer.Option(
            "--synth-mix", min=0.0, max=0.99,
            help="With --calib: add lines of the built-in synthetic set to yours until they "
            "make this share of the calibration lines (range statistics, bias correction; the "
            "budget is checked on your lines alone). Default 0.5 for recognizers, 0 otherwise; "
            "0: your lines only.")
    ] = None,
    max_drop: Annotated[
        float, typer.Option("--max-drop", min=0.0, max=1.0,
                            help="Largest accuracy drop, fraction (0.005 = 0.5 point).")
    ] = 0.005,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric --max-drop is checked on. rec: "
                                 "cer_nospace (default: PaddleOCR's RecMetric ignores spaces, "
                                 "and PP-OCR recognizers drop spaces a reader does not miss) or "
                                 "cer; det: hmean; cls: accuracy.")
    ] = None,
    target: TargetOpt = "host",
    method: Annotated[
        str, typer.Option("--method", help="Calibration: auto (pick by agreement with float), "
                          "minmax, percentile, entropy or mse.")
    ] = "auto",
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads for timing.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of data splits and sampling.")] = 0,
    task: TaskOpt = None,
    charset: CharsetOpt = None,
    plan: Annotated[
        list[str] | None, typer.Option("--plan", help="Only this plan (int8-all or int8-conv); "
                                       "repeat --plan for several.")
    ] = None,
    force: ForceOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    allow_slower: Annotated[bool, typer.Option(
        "--allow-slower", help="Write the int8 model even if it is not faster than fp32 on the "
        "target (by default: an error, nothing written).")] = False,
    int4_weights: Annotated[bool, typer.Option(
        "--int4-weights", help="Also store the weights of as many layers as the budget allows "
        "as int4 (GPTQ): a smaller file, the same int8 speed.")] = False,
    qat: Annotated[bool, typer.Option(
        "--qat", help="Quantization-aware training of the PTQ int8 graph, distilled from the "
        "float model (recognizers); resumable.")] = False,
    data: Annotated[list[str] | None, typer.Option(
        "--data", help=f"--qat training data: {DATA_SPEC}.")] = None,
    val: Annotated[list[str] | None, typer.Option(
        "--val", help=f"--qat held-out set: {DATA_SPEC}.")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="--qat training steps.")] = 600,
    minutes: Annotated[float | None, typer.Option(
        "--minutes", help="--qat: stop training after this many minutes.")] = None,
) -> None:
    """Quantize MODEL to int8 within --max-drop of its accuracy; write OUT/model.int8.onnx,
    its card, OUT/report.json and OUT/report.md.

    Example: xcompress quantize ppocr-v4-rec --calib data/calib --out out/v4rec-int8
    """
    from xcompress.artifact import resolve_model
    from xcompress.errors import XCompressError
    from xcompress.eval.metrics import task_metrics
    from xcompress.fsutil import prepare_output_dir
    from xcompress.quantize import QuantizeConfig, quantize
    from xcompress.quantize.calibrate import calibrator_names

    if qat:
        from xcompress.quantize.qat_run import QATConfig, run_qat
        from xcompress.search.runner import default_log

        kind = resolve_model(model, task=check_task(task), charset=charset).card.task
        if kind != "rec":
            raise XCompressError(f"--qat supports recognizers for now; this model is {kind}: "
                                 "drop --qat for post-training quantization")  # fmt: skip

        qcfg = build_config(QATConfig, None, model=model, out=str(out), data=data or ["synth"],
                            val=val or ["synth"], calib=str(calib) if calib else None,
                            steps=steps, minutes=minutes, seed=seed, threads=threads,
                            max_drop=max_drop)  # fmt: skip
        res = run_qat(qcfg, log=(lambda m: None) if quiet else default_log(), force=force)
        par = res.report["parity"]
        print(f"wrote {res.out / 'model.int8.onnx'} after {res.report['steps']} QAT steps; "
              f"torch vs onnxruntime max |diff| {par['max_abs_diff']:.2e}, "
              f"{par['identical_ctc_decoding']:.1%} of {par['lines']} lines decode identically")
        for name, m in res.report["metrics"].items():
            print(f"  {name}: cer_nospace fp32 {m['fp32']['cer_nospace'] * 100:.2f}, PTQ "
                  f"{m['ptq']['cer_nospace'] * 100:.2f}, QAT {m['qat']['cer_nospace'] * 100:.2f}")
        return
    for flag, given in (("--data", data), ("--val", val), ("--minutes", minutes)):
        if given:
            raise XCompressError(f"{flag} is a --qat option: add --qat, or drop {flag}")

    if method != "auto" and method not in calibrator_names():
        raise XCompressError(f"--method must be auto or one of {', '.join(calibrator_names())}")
    fields = dict(max_drop=max_drop, target=target, method=method, threads=threads, seed=seed,
                  metric=metric, allow_slower=allow_slower, synth_mix=synth_mix,
                  int4_weights=int4_weights)
    if plan:
        fields["plans"] = tuple(plan)
    config = build_config(QuantizeConfig, None, **fields)
    prepare_output_dir(out, "quantize", force=force)  # before the model is even pulled
    artifact = resolve_model(model, task=check_task(task), charset=charset)
    res = quantize(artifact, calib, out, config, eval_paths=tuple(eval_sets or ()),
                   progress=not quiet, force=force)
    r = res.report
    lat = r["latency"]
    print(f"wrote {res.model_path}: {r['size']['ratio'] * 100:.0f}% of fp32 size, "
          f"{lat['ratio']:.2f}x faster at {'x'.join(map(str, lat['shape']))} "
          f"({lat['threads']} threads), {len(r['layers']['kept_float'])} of "
          f"{r['layers']['total']} layers float")
    shown = task_metrics(artifact.task).summary
    for name, a in r["accuracy"].items():
        k = a["metric"]  # the budget metric first, then the task's other summary metrics
        others = [m for m in shown if m != k and m in a["fp32"] and m in a["int8"]]
        also = "".join(f"; {m} {a['fp32'][m] * 100:.2f} -> {a['int8'][m] * 100:.2f}"
                       for m in others)
        print(f"  {name}: {k} {a['fp32'][k] * 100:.2f} -> {a['int8'][k] * 100:.2f} "
              f"(drop {a['drop'] * 100:.2f} pt){also}")
    for w in r.get("warnings", []):
        print(f"  warning: {w}")
    print(f"  report: {Path(res.out_dir) / 'report.md'}")
