"""``xcompress card MODEL --task rec --charset DICT``: a card for a user's own model, once.

A PaddleOCR user has ``inference.onnx`` and a dict file and no ``xcompress.json``. Every
command takes ``--task`` / ``--charset`` for such a file; this writes the card once, so the
folder can be passed as MODEL from then on.

Example:
    xcompress card my_rec/inference.onnx --task rec --charset my_rec/ppocr_keys_v1.txt
    xcompress card my_rec/inference.onnx --task rec --charset keys.txt --out models/my-rec
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xcompress.cli.options import CharsetOpt, check_task


def register(app: typer.Typer) -> None:
    app.command("card")(card_command)


def card_command(
    model: Annotated[Path, typer.Argument(help="The model file (.onnx) to describe.")],
    task: Annotated[
        str, typer.Option("--task", metavar="rec|det|cls", help="What the model does.")
    ],
    charset: CharsetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to copy the model into with its card (default: "
                     "write xcompress.json beside the model)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name on the card (default: from the "
                                 "file or folder name).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Without --out: replace the xcompress.json beside "
                           "the model. With --out: write into a non-empty folder this command "
                           "did not make (files it did not write are kept).")
    ] = False,
) -> None:
    """Write an xcompress.json card for a bare model file (checked against the task).

    The model's inputs and outputs are checked against the task; a recognizer's classes
    against the dict (PaddleOCR semantics: one character per line, a space appended when the
    model has one class more).
    """
    import shutil

    from xcompress.artifact import resolve_model
    from xcompress.card import CARD_NAME
    from xcompress.errors import XCompressError
    from xcompress.fsutil import atomic_dir, prepare_output_dir, sha256_file

    if not model.is_file():
        raise XCompressError(f"{model} is not a file: pass the model file itself")
    if out is None and (model.parent / CARD_NAME).exists() and not force:
        raise XCompressError(
            f"{model.parent / CARD_NAME} exists: pass --force to replace it, or --out DIR"
        )
    if out is not None:
        prepare_output_dir(out, "card", force=force)
    art = resolve_model(model, check_task(task), charset)  # type: ignore[arg-type]
    card = art.card.derive(sha256=sha256_file(model), **({"name": name} if name else {}))
    if out is None:
        path = card.save(model.parent)
    else:
        with atomic_dir(out, command="card") as tmp:
            shutil.copyfile(model, tmp / model.name)
            card.save(tmp)
        path = Path(out) / CARD_NAME
    classes = f", {len(card.charset)} characters -> {card.num_classes} classes" if (
        card.charset) else ""
    typer.echo(f"wrote {path} ({card.name}: {card.task}{classes})")
    where = Path(out) if out is not None else model.parent
    typer.echo(f"  pass {where} as MODEL to eval, quantize, export and profile")
