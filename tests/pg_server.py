"""A throw-away PostgreSQL server for the tests that need a real one (search storage).

The session fixture ``postgres_url`` runs ``initdb -A trust`` in a temporary folder, starts the
server on a free port of 127.0.0.1 (its unix socket in the same folder, so it touches nothing
of the machine's own PostgreSQL), creates one database and yields its URL. At the end of the
session the server is stopped (``pg_ctl stop -m immediate``: nothing to keep) and the folder
removed. Nothing starts unless a test asks for the fixture.

Example:
    def test_two_workers(postgres_url):
        storage = open_storage(postgres_url)  # postgresql+psycopg://postgres@127.0.0.1:PORT/DB

Skipped, with the reason, where the server binaries or psycopg are missing. Debian's server
refuses to run as root: as root the folder is given to the ``postgres`` user and the commands
run as that user (skipped when there is no such user).
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 30
DB_NAME = "xcompress_test"


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, else the newest Debian one."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        # PATH may hold symlinks into the versioned folder; both must come from one version.
        folder = Path(initdb).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def _as_server_user() -> list[str]:
    """Command prefix that runs a program as the user the server may run as."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the server as")
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    return ["su", "postgres", "-s", "/bin/sh", "-c"]


def _as_user(prefix: list[str], argv: list[str]) -> list[str]:
    """``argv`` run through ``prefix`` (``su -c`` takes one shell string)."""
    return prefix + ([shlex.join(argv)] if prefix[:1] == ["su"] else argv)


def _run(prefix: list[str], argv: list[str], cwd: Path, timeout: float = 60) -> str:
    """Run ``argv`` (as the server user) and return its output; fail the test with it."""
    cmd = _as_user(prefix, argv)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    # cwd: the server user may not be allowed into the caller's folder.
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                text = log.read_text() if log.exists() else "(no server log)"
                pytest.fail(f"PostgreSQL not ready after {START_TIMEOUT_S} s: {e}\n{text}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of an empty database on a private PostgreSQL server, for the whole session."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    import psycopg

    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="xcompress-pg-"))
    started = False
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        data, log, port = root / "data", root / "server.log", _free_port()
        # -N: no fsync; a crashed test server is thrown away anyway.
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        _run(prefix, [*initdb, "-E", "UTF8", "--locale=C", "-N"], cwd=root)
        options = (
            f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off"
        )
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log)]
        started = True  # from here on, stop it whatever happens: a half-started one too
        _run(prefix, [*pg_ctl, "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start"], root)
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_ready(admin, log)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DB_NAME}"
    finally:
        if started:
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(
                _as_user(prefix, stop), cwd=root, capture_output=True, timeout=60, check=False
            )
        shutil.rmtree(root, ignore_errors=True)
