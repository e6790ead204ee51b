"""The host's side of the board runner (:mod:`xcompress.boards.runner`).

A :class:`RunnerSession` starts the runner under some launcher (``qemu-aarch64 ...`` or
``ssh ... python3 -u runner.py ...``), waits for its ``ready`` line and then sends it
JSON-line requests. Every read has a time-out, so a hung board or emulator becomes an error
with the runner's last words, never a hung xcompress.

Example:
    >>> s = RunnerSession.start(["python3", "-u", "runner.py", "--model", "m.onnx",
    ...                          "--input", "x.npy", "--runtime", "ort"],
    ...                         what="host python", ready_timeout_s=60)  # doctest: +SKIP
    >>> s.request({"op": "time", "n": 3})["times_ms"]                      # doctest: +SKIP
    [7.9, 7.8, 7.9]
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from xcompress.errors import ModelError, XCompressError

RUNNER_MODULE = "runner.py"

# Turns the runner's {"error", "kind", ...} into the exception the user sees.
ErrorMapper = Callable[[dict[str, Any]], XCompressError]


def runner_source() -> Path:
    """Path of the runner script shipped with xcompress (copied to boards as is)."""
    return Path(str(resources.files("xcompress.boards") / RUNNER_MODULE))


def default_error(what: str) -> ErrorMapper:
    def mapper(msg: dict[str, Any]) -> XCompressError:
        if msg.get("kind") == "missing_runtime":
            return XCompressError(
                f"{what} lacks {msg.get('missing')} for {msg.get('python', 'its python')}: "
                f"install it there, or point xcompress at a python that has it"
            )
        return ModelError(f"{what} cannot run the model: {msg.get('error')}")

    return mapper


class RunnerSession:
    """A running board runner, spoken to in JSON lines over its stdin/stdout."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        what: str,
        request_timeout_s: float,
        on_error: ErrorMapper,
    ) -> None:
        self.proc = proc
        self.what = what
        self.request_timeout_s = request_timeout_s
        self.on_error = on_error
        self.ready: dict[str, Any] = {}
        self._sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stderr.fileno(), False)
        self._sel.register(proc.stdout, selectors.EVENT_READ, "out")
        self._sel.register(proc.stderr, selectors.EVENT_READ, "err")
        self._buf = b""
        self._stderr: deque[str] = deque(maxlen=20)  # the last words, for error messages

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        what: str,
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 600.0,
        request_timeout_s: float = 600.0,
        on_error: ErrorMapper | None = None,
        on_exit: Callable[[int, str], XCompressError | None] | None = None,
    ) -> RunnerSession:
        """Start the runner and wait for its ``ready`` line.

        Args:
            argv: the full command (launcher + runner + its arguments).
            what: how errors name the board, e.g. ``"the emulated board"``.
            on_error: maps the runner's error line to an exception.
            on_exit: maps (exit code, stderr tail) of a runner that died without a JSON
                error line to an exception (e.g. ssh's host-key failure); None: a generic one.

        Raises:
            XCompressError: the runner failed to start, said so, or timed out.
        """
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle
            )
        except OSError as e:
            raise XCompressError(f"cannot start {argv[0]} for {what}: {e}") from e
        session = cls(proc, what, request_timeout_s, on_error or default_error(what))
        session._on_exit = on_exit
        try:
            session.ready = session._read(ready_timeout_s)
        except BaseException:
            session.kill()
            raise
        return session

    _on_exit: Callable[[int, str], XCompressError | None] | None = None

    def request(self, req: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request and return the answer (raises on an error answer)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._raise_dead()
        return self._read(timeout_s or self.request_timeout_s)

    def time(self, n: int) -> list[float]:
        """Run the loaded model ``n`` times back to back on the board; each run's ms."""
        return [float(t) for t in self.request({"op": "time", "n": n})["times_ms"]]

    def close(self) -> None:
        """Ask the runner to quit; kill it if it does not within a few seconds."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._sel.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._sel.close()

    def stderr_tail(self) -> str:
        return " | ".join(self._stderr)

    # -- reading -----------------------------------------------------------------------------

    def _read(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            line, sep, rest = self._buf.partition(b"\n")
            if sep:
                self._buf = rest
                text = line.decode(errors="replace").strip()
                if not text.startswith("{"):
                    continue  # stray output of a runtime; the protocol lines are JSON
                msg = json.loads(text)
                if "error" in msg:
                    raise self.on_error(msg)
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise XCompressError(
                    f"{self.what} did not answer within {timeout_s:.0f} s"
                    + (f" (last output: {self.stderr_tail()})" if self._stderr else "")
                )
            events = self._sel.select(timeout=min(left, 1.0))
            got = False
            for key, _ in events:
                chunk = key.fileobj.read()  # type: ignore[union-attr]
                if not chunk:
                    continue
                got = True
                if key.data == "out":
                    self._buf += chunk
                else:
                    for ln in chunk.decode(errors="replace").splitlines():
                        if ln.strip():
                            self._stderr.append(ln.strip()[:300])
            if not got and self.proc.poll() is not None:
                self._drain()
                if b"\n" not in self._buf:
                    self._raise_dead()

    def _drain(self) -> None:
        for key in list(self._sel.get_map().values()):
            try:
                chunk = key.fileobj.read()  # type: ignore[union-attr]
            except (OSError, ValueError):
                continue
            if chunk and key.data == "out":
                self._buf += chunk
            elif chunk:
                self._stderr.extend(ln.strip()[:300] for ln in chunk.decode().splitlines())

    def _raise_dead(self) -> None:
        code = self.proc.wait()
        tail = self.stderr_tail()
        if self._on_exit is not None:
            err = self._on_exit(code, tail)
            if err is not None:
                raise err
        raise XCompressError(
            f"{self.what} stopped (exit code {code})" + (f": {tail}" if tail else "")
        )
