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
    A system recipe (with members det / cls / rec) runs each member's steps, then compares
    the original and the compressed system end to end. Re-running resumes at the step that
    failed.

    Examples: xcompress run recipes/demo.yaml --out runs/demo;
    xcompress run recipes/ppocr-v4-system.yaml --out runs/system
    """
    from xcompress.pipeline.system import run_recipe_file

    typer.echo(f"report: {run_recipe_file(recipe, out, force=force)}")
