"""``xcompress board``: set up and inspect the boards models are profiled on."""

from __future__ import annotations

from typing import Annotated

import typer

board_app = typer.Typer(
    help="Set up the boards models are profiled on (e.g. the emulated arm64 board).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(board_app, name="board")


@board_app.command("setup")
def setup(
    name: Annotated[str, typer.Argument(help="Board to set up, e.g. arm64-emu.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if set up.")] = False,
) -> None:
    """Download and build a board once (cached; safe to re-run).

    arm64-emu: Debian arm64 Python + onnxruntime/LiteRT wheels under qemu-aarch64, and the
    instruction-counting QEMU plugin. Needs the host packages qemu-user and gcc.

    Example: xcompress board setup arm64-emu
    """
    from xcompress.boards import setup_board

    facts = setup_board(name, force=force)
    for key, value in facts.items():
        typer.echo(f"{key}: {value}")


@board_app.command("list")
def list_boards() -> None:
    """Boards xcompress can set up, and whether each is set up."""
    from xcompress.boards import BOARD_SETUPS

    for name, entry in BOARD_SETUPS.items():
        state = "set up" if entry.status().get("set_up") else "not set up"
        typer.echo(f"{name}  ({state})  {entry.description}")


@board_app.command("calibrate")
def calibrate(
    target: Annotated[str, typer.Argument(help="Target: host, arm64-emu, a target .yaml, or "
                                          "ssh://user@host[:port].")],
    model: Annotated[str, typer.Option("--model", help="Trained model whose subnets are "
                                       "measured (zoo name, folder, ONNX, .pt).")],
    space: Annotated[str | None, typer.Option("--space", help="Search space YAML (default: "
                                              "the architecture's).")] = None,
    shape: Annotated[str | None, typer.Option("--shape", help="Input shape, e.g. "
                                              "1x3x48x320 (default: from the card).")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Intra-op threads.")
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=8, help="Subnets to measure.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Which subnets.")] = 0,
    timing_seconds: Annotated[float, typer.Option(
        "--timing-seconds", min=0.01, help="Most seconds of timed runs per subnet (host, "
        "ssh): more is steadier.")] = 9.0,
) -> None:
    """Build the latency predictor of a target for a model's search space (cached).

    Measures random subnets of the space against the trained model on the target, fits a
    kernel-level latency model and prints its leave-one-out error; `xcompress search` then
    predicts candidates' latency with it.

    Example: xcompress board calibrate host --model ppocr-v4-rec --samples 32
    """
    from xcompress.export import load_source
    from xcompress.profile.run import default_shape, parse_shape
    from xcompress.search.latency import calibrate as run_calibration
    from xcompress.search.latency import open_meter, save_predictor
    from xcompress.search.space import load_space

    src = load_source(model)
    sp = load_space(space, src.module.arch)
    sp.check_fits(src.module)
    shp = parse_shape(shape) if shape else default_shape(src.card)
    meter = open_meter(target, shp, threads, timing_s=timing_seconds)

    def on_point(i: int, total: int, point: object, m: object) -> None:
        typer.echo(f"{i + 1}/{total}: {m.normalized:.3f} {m.unit} "  # type: ignore[attr-defined]
                   f"(ratio {m.ratio:.3f}, {m.seconds:.1f} s)")  # type: ignore[attr-defined]

    pred = run_calibration(src.module, src.card, sp, meter, samples, seed, on_point=on_point)
    path = save_predictor(pred)
    typer.echo(f"latency predictor for {pred.arch} at {'x'.join(map(str, pred.shape))} on "
               f"{pred.target} ({pred.threads} threads, {pred.runtime}): leave-one-out mean abs "
               f"error {pred.cv_mape:.1f}%, {pred.cv_within10:.0%} within ±10% over {samples} "
               f"subnets -> {path}")
