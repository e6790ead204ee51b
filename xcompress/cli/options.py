"""Options several commands share, declared once so their names and help agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from xcompress.errors import XCompressError

TASKS = ("rec", "det", "cls")

#: how a --data / --val value is written (see xcompress.train.tasks.synth_spec)
DATA_SPEC = ("synth[:LANG[:DAMAGE]] (DAMAGE: default, photo or none) or a label folder; "
             "repeatable")

TaskOpt = Annotated[
    str | None,
    typer.Option("--task", metavar="rec|det|cls",
                 help="Task of a bare model file that has no xcompress.json card beside it."),
]
CharsetOpt = Annotated[
    Path | None,
    typer.Option("--charset", metavar="DICT",
                 help="A recognizer's PaddleOCR dict file (one character per line, e.g. "
                      "ppocr_keys_v1.txt), for a model without a card; a space is appended "
                      "when the model has one class more."),
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        help="Target name (host, arm64-emu, rpi4-cortex-a72...), target .yaml file, or a "
        "board address ssh://user@host[:port].",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Write into a non-empty --out this command did not make; "
                 "files it did not write are kept."),
]


def check_task(task: str | None) -> str | None:
    """``task`` if it is None or one of :data:`TASKS`; else a one-line error."""
    if task is not None and task not in TASKS:
        raise XCompressError(f"--task must be rec, det or cls, not {task!r}")
    return task


def build_config(cls: type[Any], flags: dict[str, str] | None = None, **fields: Any) -> Any:
    """``cls(**fields)`` (a pydantic config); an invalid value becomes one line naming the
    command-line flag (``flags`` maps field names whose flag is not ``--field-name``)."""
    from pydantic import ValidationError

    try:
        return cls(**fields)
    except ValidationError as e:
        raise XCompressError(validation_message(e, flags)) from None


def validation_message(e: Any, flags: dict[str, str] | None = None) -> str:
    """One line for a pydantic ``ValidationError``: the flag, the value and what is wrong."""
    err = e.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else "value"
    flag = (flags or {}).get(field, "--" + field.replace("_", "-"))
    value = err.get("input")
    msg = err.get("msg", "invalid").replace("Input should be", "must be")
    return f"invalid {flag} {value!r}: {msg}"
