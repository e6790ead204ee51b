"""apt-get with a private state folder: Debian packages for another architecture, and sources.

Building the emulated board needs arm64 ``.deb`` files (Python, libstdc++) and the source
package of the installed QEMU (for its plugin header). The system's apt would need root,
``dpkg --add-architecture arm64`` and ``deb-src`` lines, all of which change the machine.
Instead :class:`PrivateApt` runs the system's ``apt-get`` with every state, cache and source
list path pointed into a cache folder, reusing only the system's mirrors and keyrings. An empty
dpkg status file makes ``install --download-only`` return the full dependency closure.

Example:
    >>> apt = PrivateApt(Path("/tmp/apt"), arch="arm64")             # doctest: +SKIP
    >>> apt.update()                                                  # doctest: +SKIP
    >>> debs = apt.download_closure(["python3.11-minimal"], Path("/tmp/debs"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from xcompress.errors import MissingDependencyError, XCompressError
from xcompress.fsutil import error_line

log = logging.getLogger(__name__)

APT_TIMEOUT_S = 1800
SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
OS_RELEASE = Path("/etc/os-release")


@dataclass(frozen=True)
class AptSource:
    """One mirror entry: where, which suites and components, and its keyring."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None

    def stanza(self, arch: str) -> str:
        lines = [
            "Types: deb deb-src",
            f"URIs: {self.uri}",
            f"Suites: {' '.join(self.suites)}",
            f"Components: {' '.join(self.components)}",
            f"Architectures: {arch}",
        ]
        if self.signed_by:
            lines.append(f"Signed-By: {self.signed_by}")
        return "\n".join(lines) + "\n"


def parse_deb822(text: str) -> list[AptSource]:
    """Entries of a ``.sources`` file (deb822 stanzas) that carry binary packages."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        suites, comps = fields.get("suites", "").split(), fields.get("components", "").split()
        signed = fields.get("signed-by")
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, tuple(suites), tuple(comps), signed or None))
    return out


def parse_one_line(text: str) -> list[AptSource]:
    """Entries of a ``sources.list`` file (``deb [opts] uri suite comp...`` lines)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
        out.append(
            AptSource(m.group(2), (m.group(3),), tuple(m.group(4).split()), opts.get("signed-by"))
        )
    return out


def system_sources() -> list[AptSource]:
    """The system's Debian mirrors for its own release (third-party repositories left out).

    Kept: entries with the ``main`` component whose suites start with this release's
    codename (``bookworm``, ``bookworm-updates``, ``bookworm-security``); a third-party
    repository rarely has arm64 packages or sources and would fail the private update.
    """
    found: list[AptSource] = []
    if SOURCES_LIST.is_file():
        found += parse_one_line(SOURCES_LIST.read_text(errors="replace"))
    if SOURCES_DIR.is_dir():
        for f in sorted(SOURCES_DIR.iterdir()):
            if f.suffix == ".list":
                found += parse_one_line(f.read_text(errors="replace"))
            elif f.suffix == ".sources":
                found += parse_deb822(f.read_text(errors="replace"))
    codename = _codename()
    return [
        s
        for s in found
        if "main" in s.components
        and (not codename or all(x.startswith(codename) for x in s.suites))
    ]


def _codename() -> str:
    try:
        text = OS_RELEASE.read_text()
    except OSError:
        return ""
    m = re.search(r"^VERSION_CODENAME=\"?([\w-]+)", text, re.M)
    return m.group(1) if m else ""


def require_tool(name: str, package: str) -> str:
    """Path of a host tool, or a one-line error naming the Debian package that has it."""
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(
            f"{name} not found: install it with `sudo apt-get install {package}`"
        )
    return path


class PrivateApt:
    """The system's apt-get, with its state, cache and sources under ``root``."""

    def __init__(self, root: Path, arch: str) -> None:
        self.root = Path(root)
        self.arch = arch
        self.apt_get = require_tool("apt-get", "apt")

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::State": r / "state",
            "Dir::State::Lists": r / "state" / "lists",
            "Dir::State::status": r / "state" / "status",
            "Dir::Cache": r / "cache",
            "Dir::Etc::SourceList": "/dev/null",
            "Dir::Etc::SourceParts": r / "sources.list.d",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": "/dev/null",
            "APT::Architecture": self.arch,
            "APT::Architectures::": self.arch,
            "APT::Install-Recommends": "false",
            "Acquire::Languages": "none",
            # As root apt drops to the _apt user for downloads, which cannot write here.
            "APT::Sandbox::User": "root",
            "Debug::NoLocking": "true",  # our own folders: no system lock to take
        }
        return [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def update(self) -> None:
        """Write the private source list (from the system's mirrors) and fetch the indexes."""
        sources = system_sources()
        if not sources:
            raise XCompressError(
                "no Debian mirror found in /etc/apt/sources.list*: the arm64-emu board is built "
                "from Debian packages, so it needs a Debian (bookworm or later) host"
            )
        for d in ("state/lists/partial", "cache/archives/partial", "sources.list.d"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        text = "\n".join(s.stanza(self.arch) for s in sources)
        (self.root / "sources.list.d" / "xcompress.sources").write_text(text)
        self._run(["update"], self.root)

    def download_closure(self, packages: list[str], dest: Path) -> list[Path]:
        """Download ``packages`` and everything they depend on into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "partial").mkdir(exist_ok=True)
        self._run(
            ["install", "--download-only", "-y", "-o", f"Dir::Cache::archives={dest}", *packages],
            dest,
        )
        return sorted(dest.glob("*.deb"))

    def download_source(self, package: str, version: str, dest: Path) -> list[Path]:
        """Download the source package ``package=version`` (``.dsc`` + tarballs) into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run(["source", "--download-only", f"{package}={version}"], dest)
        return sorted(p for p in dest.iterdir() if p.is_file())

    def _run(self, args: list[str], cwd: Path) -> None:
        cmd = [self.apt_get, *self.options(), *args]
        log.info("apt-get %s", " ".join(args))
        try:
            proc = subprocess.run(
                cmd, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as e:
            raise XCompressError(f"apt-get {args[0]} timed out after {APT_TIMEOUT_S} s") from e
        if proc.returncode != 0:
            err = error_line(proc.stderr + proc.stdout, ("E:", "W:"))
            raise XCompressError(
                f"apt-get {' '.join(args[:2])} failed ({err}); check the network and the "
                f"Debian mirrors in /etc/apt/sources.list*"
            )
