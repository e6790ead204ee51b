"""``xcompress`` entry point.

Each command lives in its own module under ``xcompress.cli`` and only parses arguments;
the work is done by the same library functions the Python API and recipes call. Heavy
libraries are imported inside the commands, so ``xcompress --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from xcompress.errors import XCompressError

app = typer.Typer(
    name="xcompress",
    help="Compress trained OCR models (PP-OCR det/cls/rec) for a target device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _root() -> None:
    """Compress trained OCR models (PP-OCR det/cls/rec) for a target device."""


# Each module has `register(app)`, which adds its command or command group to the root app.
_COMMAND_MODULES = ("zoo", "data", "eval", "profile", "quantize", "models", "run", "board")


def _load_commands() -> None:
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"xcompress.cli.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"xcompress.cli.{mod_name}":
                continue  # command not built yet
            raise
        mod.register(app)


_load_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return a non-zero exit code."""
    try:
        app(args=argv, prog_name="xcompress")
    except XCompressError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except SystemExit as e:  # typer's normal way out, with the command's exit code
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
