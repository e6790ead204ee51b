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
