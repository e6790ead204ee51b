"""The SSH profiler, against a real sshd on loopback started here (the "board" is this machine).

The sshd gets a fresh host key, accepts only a fresh client key, and the client checks the
host key against a known_hosts file written here; the board's Python is this test's own (it
has numpy and onnxruntime), except where a test needs one without the runtime.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from profiler_contract import ProfilerContract
from test_profile import write_tiny_conv

from xcompress.cli.main import main
from xcompress.errors import XCompressError
from xcompress.profile import ProfileConfig, Profiler, get_profiler
from xcompress.profile.run import open_profiler
from xcompress.profile.ssh import SshConnection, SshProfiler, ssh_target

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not (Path(SSHD).is_file() and shutil.which("ssh") and shutil.which("ssh-keygen")),
    reason="needs openssh-server and openssh-client (apt-get install openssh-server)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


class Sshd:
    """An sshd on 127.0.0.1 accepting one key, and the client files to reach it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.user = getpass.getuser()
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "id_ed25519"
        self.known_hosts = folder / "known_hosts"
        _keygen(self.host_key)
        _keygen(self.client_key)
        (folder / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {kind} {blob}\n")
        config = folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "sshd.log", "wb"),  # noqa: SIM115 - lives as long as sshd
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()[-500:]}")

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def connection(self, **kw: object) -> SshConnection:
        options = {
            "identity_file": self.client_key,
            "known_hosts_file": self.known_hosts,
            "remote_python": sys.executable,
            "command_timeout_s": 120.0,
            **kw,
        }
        return SshConnection.parse(self.url, **options)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Sshd:
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _profiler(sshd: Sshd, **kw: object) -> SshProfiler:
    conn = sshd.connection(**kw)
    return SshProfiler(ssh_target(conn), conn)


def _remote_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("xcompress-*") if p.is_dir()}


class TestSshProfiler(ProfilerContract):
    shape = (1, 3, 16, 16)

    @pytest.fixture
    def profiler(self, sshd) -> Profiler:
        return _profiler(sshd)

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        return write_tiny_conv(tmp_path / "tiny.onnx")

    def test_board_facts_and_cleanup(self, profiler, model_path, config):
        before = _remote_dirs()
        r = profiler.profile(model_path, config)
        assert _remote_dirs() == before  # the board's temp folder is gone
        assert r.runtime == "ort" and r.runtime_version == _ort_version()
        assert r.target == profiler.connection.url
        assert r.machine.isa == os.uname().machine
        assert r.machine.cores == len(os.sched_getaffinity(0))


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def test_unknown_host_key_is_a_clear_error(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    prof = _profiler(sshd, known_hosts_file=empty)
    with pytest.raises(XCompressError, match="host key of .* is not known.*ssh-keyscan"):
        prof.profile(write_tiny_conv(tmp_path / "m.onnx"), ProfileConfig(shape=(1, 3, 8, 8)))


def test_wrong_key_is_a_clear_error(sshd, tmp_path):
    other = tmp_path / "other_key"
    _keygen(other)
    prof = _profiler(sshd, identity_file=other)
    with pytest.raises(XCompressError, match="key authentication .* failed"):
        prof.machine()


def test_board_without_runtime_is_a_clear_error(sshd, tmp_path):
    bare = "/usr/bin/python3"  # Debian's python: no numpy, no onnxruntime
    probe = subprocess.run([bare, "-c", "import numpy, onnxruntime"], capture_output=True)
    if not Path(bare).is_file() or probe.returncode == 0:
        pytest.skip("needs a python without onnxruntime at /usr/bin/python3")
    before = _remote_dirs()
    prof = _profiler(sshd, remote_python=bare)
    with pytest.raises(XCompressError, match=r"lacks (numpy|onnxruntime) for /usr/bin/python3"):
        prof.profile(write_tiny_conv(tmp_path / "m.onnx"), ProfileConfig(shape=(1, 3, 8, 8)))
    assert _remote_dirs() == before


def test_missing_remote_python_is_a_clear_error(sshd, tmp_path):
    prof = _profiler(sshd, remote_python="/nonexistent/python3")
    with pytest.raises(XCompressError, match="has no /nonexistent/python3"):
        prof.profile(write_tiny_conv(tmp_path / "m.onnx"), ProfileConfig(shape=(1, 3, 8, 8)))


def test_password_in_address_is_refused():
    with pytest.raises(XCompressError, match="passwords are not accepted"):
        SshConnection.parse("ssh://pi:secret@board.local")


@pytest.mark.parametrize(
    ("url", "dest", "port"),
    [
        ("ssh://pi@board.local", "pi@board.local", 22),
        ("ssh://pi@10.0.0.7:2222", "pi@10.0.0.7", 2222),
        ("ssh://board", "board", 22),
    ],
)
def test_address_parsing(url, dest, port):
    c = SshConnection.parse(url)
    assert (c.destination, c.port) == (dest, port)
    argv = c.ssh_argv()
    for opt in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=10"):
        assert opt in argv
    assert argv[-2:] == ["--", dest]


def test_bare_ssh_target_asks_for_an_address(tmp_path):
    prof = get_profiler("rpi4-cortex-a72")
    assert isinstance(prof, SshProfiler)
    with pytest.raises(XCompressError, match="--target ssh://user@host"):
        prof.profile(write_tiny_conv(tmp_path / "m.onnx"), ProfileConfig(shape=(1, 3, 8, 8)))


def test_ssh_options_need_an_ssh_target():
    with pytest.raises(XCompressError, match="need --target ssh://"):
        open_profiler("host", remote_python="python3")


def test_cli_profiles_over_ssh(sshd, tmp_path, capsys):
    model = write_tiny_conv(tmp_path / "m.onnx")
    out = tmp_path / "r.json"
    code = main(
        [
            "profile", str(model), "--shape", "1x3x16x16", "--runs", "5", "--warmup", "1",
            "--threads", "1", "--target", sshd.url, "--remote-python", sys.executable,
            "--ssh-key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
            "--runtime", "ort", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rep = json.loads(out.read_text())
    r = rep["result"]
    assert r["n_runs"] == 5 and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert rep["target"]["kind"] == "ssh" and r["target"] == sshd.url
    assert rep["emulation"] is None


def test_cli_unknown_host_exits_with_one_line(sshd, tmp_path, capsys):
    empty = tmp_path / "kh"
    empty.write_text("")
    code = main(
        [
            "profile", str(write_tiny_conv(tmp_path / "m.onnx")), "--shape", "1x3x8x8",
            "--target", sshd.url, "--ssh-key", str(sshd.client_key),
            "--known-hosts", str(empty),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: the host key of") and err.count("\n") == 1
    assert "Traceback" not in err
