"""The instruction-counting QEMU plugin: fetch the matching header, build, cache.

Debian ships no QEMU plugin and no ``qemu-plugin.h`` in a binary package, but the header is
in the source package of the installed QEMU. We download that source package with a private
apt (:mod:`xcompress.boards.apt`), read only ``include/qemu/qemu-plugin.h`` out of its
tarball, and compile ``insncount.c`` (beside this module) against it with gcc: a few seconds.
The result is cached per QEMU source version, since the plugin API must match the QEMU that
loads it.

Example:
    >>> so = ensure_plugin(find_qemu(), apt)   # doctest: +SKIP
    >>> so.name
    'insncount.so'
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from importlib import resources
from pathlib import Path

from xcompress.boards.apt import PrivateApt, require_tool
from xcompress.boards.qemu import QEMU_PACKAGE, Qemu
from xcompress.errors import MissingDependencyError, XCompressError
from xcompress.fsutil import atomic_dir, sha256_file, write_json

PLUGIN_SOURCE = "insncount.c"
PLUGIN_NAME = "insncount.so"
HEADER_MEMBER = re.compile(r"^[^/]+/include/qemu/qemu-plugin\.h$")
GCC_TIMEOUT_S = 300


def plugin_source() -> Path:
    return Path(str(resources.files("xcompress.boards") / PLUGIN_SOURCE))


def plugin_dir(root: Path, qemu: Qemu) -> Path:
    version = re.sub(r"[^\w.+-]", "_", qemu.debian_source_version or qemu.version)
    return root / "qemu-plugin" / version


def plugin_is_current(root: Path, qemu: Qemu) -> bool:
    """True when the cached plugin was built from this ``insncount.c`` for this QEMU."""
    folder = plugin_dir(root, qemu)
    stamp = folder / "plugin.json"
    if not (folder / PLUGIN_NAME).is_file() or not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("source_sha256") == sha256_file(plugin_source())
    except ValueError:
        return False


def ensure_plugin(root: Path, qemu: Qemu, apt: PrivateApt | None, force: bool = False) -> Path:
    """The built plugin for ``qemu``, building it (and fetching its header) if needed.

    Args:
        root: the boards cache folder.
        apt: a private apt whose indexes include ``deb-src`` (None: build only if cached).

    Raises:
        MissingDependencyError: gcc missing, or a QEMU not installed from Debian's package.
    """
    folder = plugin_dir(root, qemu)
    so = folder / PLUGIN_NAME
    if not force and plugin_is_current(root, qemu):
        return so
    src_sha = sha256_file(plugin_source())
    gcc = require_tool("gcc", "gcc")
    if qemu.debian_source_version is None:
        raise MissingDependencyError(
            f"{qemu.path} is not from a Debian package, so its plugin header cannot be fetched: "
            f"install it with `sudo apt-get install {QEMU_PACKAGE}`"
        )
    if apt is None:
        raise XCompressError(
            "the instruction-counting plugin is not built: run `xcompress board setup arm64-emu`"
        )
    with atomic_dir(folder) as tmp:
        src = tmp / "src"
        files = apt.download_source("qemu", qemu.debian_source_version, src)
        header = _extract_header(files, tmp)
        cmd = [
            gcc, "-shared", "-fPIC", "-O2", "-Wall", "-fvisibility=hidden",
            f"-I{header.parent}", "-o", str(tmp / PLUGIN_NAME), str(plugin_source()),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=GCC_TIMEOUT_S)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["no output"])[0]
            raise XCompressError(f"building the QEMU plugin failed: {first}")
        for f in src.iterdir():  # keep the header, drop the ~25 MB of sources
            f.unlink()
        src.rmdir()
        write_json(
            tmp / "plugin.json",
            {
                "qemu": qemu.version,
                "qemu_source_version": qemu.debian_source_version,
                "source_sha256": src_sha,
                "header_sha256": sha256_file(header),
            },
        )
    return so


def _extract_header(files: list[Path], dest: Path) -> Path:
    tarballs = [f for f in files if ".orig.tar" in f.name] or [
        f for f in files if ".tar." in f.name and "debian" not in f.name
    ]
    for tb in tarballs:
        with tarfile.open(tb) as tar:
            for member in tar:
                if member.isfile() and HEADER_MEMBER.match(member.name):
                    data = tar.extractfile(member)
                    assert data is not None
                    out = dest / "include" / "qemu-plugin.h"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(data.read())
                    return out
    raise XCompressError(
        f"qemu-plugin.h not found in the QEMU source package ({', '.join(f.name for f in files)})"
    )
