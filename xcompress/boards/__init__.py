"""Boards: the devices models are profiled on, and their one-time set-up.

- :mod:`xcompress.boards.emu`: an emulated ARM64 board (Debian arm64 user space under
  qemu-aarch64), set up by ``xcompress board setup arm64-emu`` or on first use.
- :mod:`xcompress.boards.plugin`: the QEMU plugin counting guest instructions.
- :mod:`xcompress.boards.runner`: the model runner copied to a board (emulated or real).
- :mod:`xcompress.boards.session`: the host's side of that runner.

Set-ups are registered by board name in :data:`BOARD_SETUPS`, so the CLI lists and runs
them without knowing any board.

Example:
    >>> sorted(BOARD_SETUPS)
    ['arm64-emu']
    >>> setup_board("arm64-emu")        # doctest: +SKIP
    {'board': 'arm64-emu', 'sysroot': '...', 'plugin': '...', ...}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xcompress.errors import XCompressError


@dataclass(frozen=True)
class BoardSetup:
    """How to set a board up and report its state.

    ``setup(force)`` builds it (idempotent; ``force`` rebuilds) and returns facts about it;
    ``status()`` returns facts without building anything.
    """

    description: str
    setup: Callable[[bool], dict[str, Any]]
    status: Callable[[], dict[str, Any]]


def _emu_setup(force: bool) -> dict[str, Any]:
    from xcompress.boards.emu import ensure_arm64_emu

    board = ensure_arm64_emu(force=force)
    return {
        "board": "arm64-emu",
        "sysroot": str(board.sysroot),
        "plugin": str(board.plugin),
        "qemu": f"{board.qemu.path} {board.qemu.version}",
        **{k: v for k, v in board.info().items() if k in ("spec",)},
    }


def _emu_status() -> dict[str, Any]:
    from xcompress.boards.emu import BOARD_NAME, boards_root, is_set_up

    return {"board": "arm64-emu", "set_up": is_set_up(), "root": str(boards_root() / BOARD_NAME)}


BOARD_SETUPS: dict[str, BoardSetup] = {
    "arm64-emu": BoardSetup(
        "Debian arm64 Python + onnxruntime/LiteRT under qemu-aarch64, with an instruction counter",
        _emu_setup,
        _emu_status,
    ),
}


def setup_board(name: str, force: bool = False) -> dict[str, Any]:
    """Set up a board by name (cached; ``force`` rebuilds) and return facts about it.

    Raises:
        XCompressError: unknown board, or the set-up failed (the message says why).
    """
    entry = BOARD_SETUPS.get(name)
    if entry is None:
        raise XCompressError(f"unknown board {name!r}: use one of {', '.join(BOARD_SETUPS)}")
    return entry.setup(force)
