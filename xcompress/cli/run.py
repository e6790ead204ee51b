"""``xcompress run RECIPE``: run a recipe (the main job; ``make demo`` runs recipes/demo.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xcompress.cli.options import ForceOpt


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/demo.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (re-running resumes).")],
    force: ForceOpt = False,
) -> None:
    """Run a recipe: pull the model, make the data, run each step, print the before/after table.

    Example: xcompress run recipes/demo.yaml --out runs/demo
    """
    from xcompress.pipeline import load_recipe, run_recipe

    summary = run_recipe(load_recipe(recipe), out, force=force)
    typer.echo(f"report: {summary.out_dir / 'report.md'}")
