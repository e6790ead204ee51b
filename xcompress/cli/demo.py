"""``xcompress demo``: the main job on built-in defaults (filled in as stages land)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo() -> None:
    """Pull a zoo model, make data, compress it and print the before/after table."""
    raise NotImplementedError
