"""``xcompress`` entry point.

Each command lives in its own module under ``xcompress.cli`` and only parses arguments;
the work is done by the same library functions the Python API and recipes call. Heavy
libraries are imported inside the commands, so ``xcompress --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

import typer
import typer.core
from typer import _click as click  # typer 0.2x vendors click; its exceptions live here
from typer.exceptions import Abort as TyperAbort
from typer.exceptions import Exit as TyperExit

from xcompress.errors import XCompressError

app = typer.Typer(
    name="xcompress",
    help="Compress trained OCR models (PP-OCR det/cls/rec) for a target device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"xcompress {version('xcompress')}")
        except PackageNotFoundError:  # running from a source tree that is not installed
            print("xcompress (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    _v: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                            help="Print the version and exit."),
) -> None:
    """Compress trained OCR models (PP-OCR det/cls/rec) for a target device."""


# Each module has `register(app)`, which adds its command or command group to the root app.
_COMMAND_MODULES = ("zoo", "data", "eval", "profile", "quantize", "models", "card", "run",
                    "board", "search", "prune", "report")


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

# Words shown in --help for a value's type, instead of typer's <str> / <list[Path]> tags.
_METAVARS = {"str": "TEXT", "path": "PATH", "Path": "PATH", "int": "INT", "float": "NUMBER",
             "bool": ""}


def _plain_word(tag: str) -> str:
    """``<list[Path]>`` -> ``PATH``, ``<int range>`` -> ``INT``, ``<bool>`` -> ``""``."""
    t = tag.strip("<>").removesuffix(" range")
    if t.startswith("list[") and t.endswith("]"):
        t = t[5:-1]
    return _METAVARS.get(t, t.upper())


def _plain_type(self, ctx=None) -> str:
    if getattr(self, "metavar", None) is not None:
        return self.metavar
    if getattr(self, "is_flag", False):
        return ""
    return _plain_word(str(self.display_type(ctx)))


# Typer (0.2x) prints a Python type tag per parameter (``<bool>``, ``<list[Path]>``) that
# says nothing to a user, and has no setting for it: its two parameter classes get
# click's plain words instead (help output only; parsing is untouched).
typer.core.TyperOption.display_type_rich = _plain_type  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _plain_type  # type: ignore[method-assign]


def _plain_help(cmd: click.Command) -> None:
    """Say "Repeatable." on every option that may be given several times."""
    for sub in getattr(cmd, "commands", {}).values():
        _plain_help(sub)
    for param in cmd.params:
        if getattr(param, "multiple", False) and "repeat" not in (param.help or "").lower():
            param.help = (param.help or "").rstrip() + " Repeatable."


def _command() -> click.Command:
    cmd = typer.main.get_command(app)
    _plain_help(cmd)
    return cmd


def _wide_non_tty() -> None:
    """A log or pipe gets long lines, not rich's 80-column wrapping that splits numbers."""
    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        os.environ["COLUMNS"] = "200"


def _user_error(e: BaseException) -> str | None:
    """The one-line message of an exception that a user's input caused, else None."""
    if isinstance(e, XCompressError):
        return str(e)
    if type(e).__name__ == "ValidationError" and type(e).__module__.startswith("pydantic"):
        from xcompress.cli.options import validation_message

        return validation_message(e)
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI time-out, ``kill``, a scheduler), raised where the command is, so its
    ``finally`` blocks run: temporary folders are removed and no half-written artifact is
    renamed into place, as on Ctrl-C. Python's default for SIGTERM ends the process at once
    and left, for example, quantize's temporary folder in /tmp."""


_TERMINATED = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    _TERMINATED.set()  # typer turns the exception into a plain return code: remember why
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return a non-zero exit code."""
    _wide_non_tty()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    _TERMINATED.clear()
    try:
        rc = _main(argv)
    except KeyboardInterrupt:  # one that arrived outside the command itself
        rc = 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    if rc == 130:  # typer returns 130 for a KeyboardInterrupt inside a command
        if _TERMINATED.is_set():
            print("error: terminated (SIGTERM); re-run the same command to resume",
                  file=sys.stderr)  # fmt: skip
            return 143
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
    return rc


def _main(argv: list[str] | None) -> int:
    try:
        # without standalone mode click returns a command's typer.Exit code instead of raising
        rc = _command().main(args=argv, prog_name="xcompress", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:  # bare `xcompress` / `xcompress data`
        e.show()
        return 2
    except click.exceptions.UsageError as e:  # unknown option, missing --out, bad value type
        cmd = e.ctx.command_path if e.ctx else "xcompress"
        msg = " ".join(e.format_message().split())
        print(f"error: {msg} (see {cmd} --help)", file=sys.stderr)
        return 2
    except TyperExit as e:
        return e.exit_code
    except TyperAbort:
        return 130
    except Exception as e:
        msg = _user_error(e)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
