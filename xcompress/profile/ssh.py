"""Profiling on a real board over SSH (``--target ssh://user@host[:port]``).

For each model the profiler makes a temporary folder on the board, copies the board runner
(:mod:`xcompress.boards.runner`), the model and a fixed random input there, and starts the
runner with the board's Python in one SSH session that stays open: each
:meth:`~SshProfiler.time_round` is one JSON request over that session, so times are taken on
the board (``perf_counter_ns`` around each inference) and the network never enters them.
:meth:`~SshProfiler.close` stops the runner and removes the folder.

Security, by construction:

- key authentication only: ``BatchMode=yes`` makes ssh fail instead of prompting, and no
  password is ever accepted (an ``ssh://user:password@host`` address is refused), so none
  can reach argv or logs; the key is ssh's own choice (agent, ``~/.ssh``) or ``--ssh-key``;
- host keys are checked (``StrictHostKeyChecking=yes``): an unknown host is an error that
  says how to add its key after checking it, never a silent trust-on-first-use;
- every step has a time-out (``ConnectTimeout``, keep-alives, a limit per command).

The system's ``ssh`` client is used (so ``~/.ssh/config``, agents and jump hosts just work);
files travel as ``cat > file`` on the board's shell, which needs no SFTP server.

Example:
    >>> conn = SshConnection.parse("ssh://pi@192.168.1.20", remote_python="python3")
    >>> conn.destination
    'pi@192.168.1.20'
    >>> prof = SshProfiler(ssh_target(conn), conn)
    >>> prof.profile("rec.onnx", ProfileConfig(shape=(1, 3, 48, 320))).median_ms  # doctest: +SKIP
    41.7
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xcompress.boards.apt import require_tool
from xcompress.boards.session import RunnerSession, runner_source
from xcompress.errors import XCompressError
from xcompress.profile.base import (
    Loaded,
    ProfileConfig,
    Profiler,
    model_runtime,
    register_profiler,
)
from xcompress.profile.host import random_input
from xcompress.profile.machine import Machine, machine_from_cpuinfo
from xcompress.targets import Target

READY_TIMEOUT_S = 300.0


class SshConnection(BaseModel):
    """How to reach a board.

    Attributes:
        host, user, port: the address (user None: ssh's default / ``~/.ssh/config``).
        identity_file: a private key to use (None: the agent and ssh's defaults).
        known_hosts_file: host keys to check against (None: ssh's own known_hosts).
        remote_python: the board's Python with numpy and the runtime.
        connect_timeout_s: SSH connection time-out.
        command_timeout_s: limit for each step (a copy, a batch of timed runs).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    identity_file: Path | None = None
    known_hosts_file: Path | None = None
    remote_python: str = "python3"
    connect_timeout_s: int = Field(default=10, ge=1)
    command_timeout_s: float = Field(default=600.0, gt=0)

    @classmethod
    def parse(cls, url: str, **options: object) -> SshConnection:
        """``ssh://[user@]host[:port]`` plus keyword options.

        Raises:
            XCompressError: not an ``ssh://`` address, or one holding a password.
        """
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise XCompressError(f"bad board address {url!r}: use ssh://user@host[:port]")
        if parts.password is not None:
            raise XCompressError(
                "passwords are not accepted in board addresses: use SSH key authentication "
                "(ssh-copy-id user@host), then ssh://user@host"
            )
        try:
            port = parts.port or 22
        except ValueError as e:
            raise XCompressError(f"bad port in board address {url!r}") from e
        return cls(host=parts.hostname, user=parts.username, port=port, **options)  # type: ignore[arg-type]

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.destination.replace(self.host, host)}:{self.port}"

    def ssh_argv(self) -> list[str]:
        """``ssh`` with the options that make it safe and non-interactive."""
        cmd = [
            require_tool("ssh", "openssh-client"),
            "-p", str(self.port),
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={self.connect_timeout_s}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if self.identity_file is not None:
            cmd += ["-i", str(self.identity_file), "-o", "IdentitiesOnly=yes"]
        if self.known_hosts_file is not None:
            cmd += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
        return [*cmd, "--", self.destination]


def ssh_target(conn: SshConnection, base: Target | None = None) -> Target:
    """A target for a board at ``conn``: ``base``'s facts (or none, detected at run time),
    named by the board's address."""
    fields = (
        base.model_dump()
        if base is not None
        else {
            "kind": "ssh",
            "description": "A board reached over SSH; its CPU facts are read from it.",
            "runtimes": ("ort", "litert"),
        }
    )
    fields.update(name=conn.url, kind="ssh")
    return Target.model_validate(fields)


def ssh_error(conn: SshConnection, code: int, stderr: str) -> XCompressError | None:
    """A clear error for a failed ssh (exit 255) or a missing remote program (127)."""
    where = f"{conn.destination} port {conn.port}"
    low = stderr.lower()
    if "host key verification failed" in low or "no host key is known" in low:
        scan = f"ssh-keyscan -p {conn.port} {conn.host}"
        return XCompressError(
            f"the host key of {where} is not known (or changed): check its fingerprint, then add "
            f"it to ~/.ssh/known_hosts (e.g. `{scan} >> ~/.ssh/known_hosts`)"
        )
    if "permission denied" in low:
        return XCompressError(
            f"SSH key authentication to {where} failed: install your public key on the board "
            f"(ssh-copy-id) or pass --ssh-key"
        )
    if code == 255:
        return XCompressError(f"cannot reach board {where}: {stderr or 'ssh failed'}")
    if code == 127:
        return XCompressError(
            f"the board {where} has no {conn.remote_python}: install Python 3 there or pass "
            f"--remote-python"
        )
    return None


@dataclass
class _SshState:
    session: RunnerSession
    remote_dir: str


@register_profiler("ssh")
class SshProfiler(Profiler):
    """Times models on a board over SSH (``kind: ssh`` targets).

    Args:
        target: the board's facts.
        connection: how to reach it; without one (a bare ``kind: ssh`` target file), loading
            a model raises an error asking for ``--target ssh://user@host``.
    """

    def __init__(self, target: Target, connection: SshConnection | None = None) -> None:
        super().__init__(target)
        self.connection = connection
        self._machine: Machine | None = None

    def _conn(self) -> SshConnection:
        if self.connection is None:
            raise XCompressError(
                f"target {self.target.name} is a board reached over SSH: give its address with "
                f"--target ssh://user@host[:port]"
            )
        return self.connection

    # -- the Profiler contract ------------------------------------------------------------

    def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
        conn = self._conn()
        rt = model_runtime(model_path)
        runtime = rt.name
        remote_dir = self.run_remote("mktemp -d /tmp/xcompress-XXXXXXXX").strip()
        if not remote_dir.startswith("/tmp/xcompress-"):
            raise XCompressError(f"board {conn.destination}: mktemp gave {remote_dir!r}")
        try:
            self.copy_to(runner_source().read_bytes(), f"{remote_dir}/runner.py")
            self.copy_to(model_path.read_bytes(), f"{remote_dir}/model{model_path.suffix}")
            self.copy_to(_npy_bytes(random_input(config.shape, config.seed)), f"{remote_dir}/x.npy")
            q = shlex.quote
            command = (
                f"cd {q(remote_dir)} && exec {q(conn.remote_python)} -u runner.py "
                f"--model model{model_path.suffix} --input x.npy --runtime {runtime} "
                f"--threads {threads}"
            )
            session = RunnerSession.start(
                [*conn.ssh_argv(), command],
                what=f"board {conn.destination}",
                ready_timeout_s=READY_TIMEOUT_S,
                request_timeout_s=conn.command_timeout_s,
                on_error=self._runner_error,
                on_exit=lambda code, err: ssh_error(conn, code, err),
            )
        except BaseException:
            self._remove(remote_dir)
            raise
        if self._machine is None:
            self._machine = _machine_from_facts(session.ready)
        return Loaded(
            path=model_path,
            runtime=runtime,
            runtime_version=str(session.ready.get("runtime_version", "unknown")),
            threads=threads,
            shape=tuple(config.shape),
            runtime_options=dict(rt.timing_options),  # the board runner's sessions have them
            state=_SshState(session, remote_dir),
        )

    def time_round(self, loaded: Loaded, n: int) -> list[float]:
        return loaded.state.session.time(n)

    def close(self, loaded: Loaded) -> None:
        state: _SshState = loaded.state
        try:
            state.session.close()
        finally:
            self._remove(state.remote_dir)

    def machine(self) -> Machine:
        if self._machine is None:
            out = self.run_remote(
                "uname -m; (nproc 2>/dev/null || echo 1); cat /proc/loadavg 2>/dev/null || echo; "
                "uname -sr; cat /proc/cpuinfo 2>/dev/null"
            )
            lines = out.splitlines()
            isa, cores, load, os_name = (lines + ["", "1", "", ""])[:4]
            try:
                load_1m: float | None = float(load.split()[0])
            except (ValueError, IndexError):
                load_1m = None
            self._machine = machine_from_cpuinfo(
                "\n".join(lines[4:]),
                isa=isa.strip() or "unknown",
                cores=int(cores) if cores.strip().isdigit() else 1,
                os_name=os_name.strip(),
                load_avg_1m=load_1m,
            )
        return self._machine

    # -- ssh helpers ------------------------------------------------------------------------

    def run_remote(self, command: str, stdin: bytes | None = None) -> str:
        """Run a shell command on the board; return its stdout.

        Raises:
            XCompressError: ssh failed (unknown host key, no key accepted, unreachable), the
                command failed, or it ran past ``command_timeout_s``.
        """
        conn = self._conn()
        try:
            proc = subprocess.run(
                [*conn.ssh_argv(), command],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=conn.command_timeout_s,
            )
        except subprocess.TimeoutExpired as e:
            raise XCompressError(
                f"board {conn.destination}: no answer within {conn.command_timeout_s:.0f} s"
            ) from e
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise ssh_error(conn, proc.returncode, err) or XCompressError(
                f"board {conn.destination}: `{command.split()[0]}` failed "
                f"(exit {proc.returncode}): {err.splitlines()[-1] if err else 'no output'}"
            )
        return proc.stdout.decode(errors="replace")

    def copy_to(self, data: bytes, remote_path: str) -> None:
        self.run_remote(f"cat > {shlex.quote(remote_path)}", stdin=data)

    def _remove(self, remote_dir: str) -> None:
        try:
            self.run_remote(f"rm -rf {shlex.quote(remote_dir)}")
        except XCompressError:
            pass  # best effort: the folder is under /tmp and small

    def _runner_error(self, msg: dict[str, object]) -> XCompressError:
        conn = self._conn()
        if msg.get("kind") == "missing_runtime":
            return XCompressError(
                f"board {conn.destination} lacks {msg.get('missing')} for "
                f"{msg.get('python', conn.remote_python)}: install it there "
                f"(e.g. `pip install onnxruntime numpy`) or pass --remote-python with a Python "
                f"that has it"
            )
        from xcompress.errors import ModelError

        return ModelError(f"board {conn.destination} cannot run the model: {msg.get('error')}")


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _machine_from_facts(facts: dict[str, object]) -> Machine:
    load = facts.get("load_avg_1m")
    return machine_from_cpuinfo(
        str(facts.get("cpuinfo", "")),
        isa=str(facts.get("isa", "unknown")),
        cores=int(facts.get("cores", 1) or 1),  # type: ignore[call-overload]
        os_name=str(facts.get("os", "")),
        load_avg_1m=float(load) if isinstance(load, (int, float)) else None,
    )
