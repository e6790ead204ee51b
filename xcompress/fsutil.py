"""File helpers: atomic writes and hashing.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted
run never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xcompress.errors import XCompressError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``.

    On an exception the temporary file is removed and ``dest`` is untouched.

    Example:
        >>> with atomic_path("out/model.onnx") as tmp:   # doctest: +SKIP
        ...     onnx.save(model, tmp)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: Hidden file in every output folder a command writes: which command wrote it and which
#: top-level entries are its own, so a re-run replaces only those and nothing of the user's.
OUTPUT_MARK = ".xcompress-output.json"


def _read_mark(folder: Path) -> dict[str, Any] | None:
    try:
        mark = json.loads((folder / OUTPUT_MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(mark, dict) or not isinstance(mark.get("files"), list):
        return None
    return mark


def output_owner(folder: str | os.PathLike[str]) -> str | None:
    """The command that wrote ``folder`` (from its output mark), or None."""
    mark = _read_mark(Path(folder))
    return None if mark is None else str(mark.get("command"))


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a temporary file in the nearest existing ancestor of ``folder``.

    ``os.access`` is not enough: it says yes to root on a read-only folder, and knows
    nothing of read-only mounts or full disks.
    """
    base = folder
    while not base.exists():
        if base.parent == base:
            break
        base = base.parent
    if not base.is_dir():
        raise XCompressError(
            f"{what} {folder}: {base} is a file, not a folder; choose another path"
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=".xcompress-probe.", dir=base)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise XCompressError(
            f"{what} {folder} is not writable ({reason} in {base}): choose another path"
        ) from None


def prepare_output_dir(
    out: str | os.PathLike[str], command: str, *, force: bool = False, what: str = "--out"
) -> Path:
    """Check an output folder before any work is done; return it as the user gave it (so
    messages and printed paths read as they typed; :func:`atomic_dir` resolves ``.``).

    The policy every command that writes a folder follows:

    * a path that is a file is refused (a folder is never put in its place);
    * a non-empty folder is refused unless it is a previous output of the same ``command``
      (a re-run) or ``force`` is set; with ``force``, files the command did not write stay;
    * the folder (or its nearest existing parent) must be writable, checked now rather
      than after minutes of work.

    Raises:
        XCompressError: one line naming the folder and what to do.
    """
    path = Path(os.path.abspath(out))  # "." and "a/.." get a real name
    if path.exists() and not path.is_dir():
        raise XCompressError(f"{what} {out} is a file, not a folder: choose a folder path")
    if path.is_dir() and any(path.iterdir()) and not force:
        owner = output_owner(path)
        if owner != command:
            held = f"output of `xcompress {owner}`" if owner else "files xcompress did not write"
            raise XCompressError(
                f"{what} {out} is not empty (it holds {held}): choose another folder, or pass "
                "--force to write into it (files this command did not write are kept)"
            )
    _probe_writable(path, what)
    return Path(out)


def prepare_output_file(out: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check a file output (``--json``, a checkpoint) before any work: not a folder, writable."""
    path = Path(os.path.abspath(out))
    if path.is_dir():
        raise XCompressError(f"{what} {out} is a folder: pass a file path")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise XCompressError(f"{what} {out} is not writable: choose another path")
    _probe_writable(path.parent, what)
    return path


def mark_output(folder: str | os.PathLike[str], command: str, files: tuple[str, ...]) -> None:
    """Record ``files`` as ``command``'s own in ``folder`` (for outputs written file by file,
    such as a training run; :func:`atomic_dir` marks its folders itself)."""
    folder = Path(folder)
    old = _read_mark(folder)
    own = set(files)
    if old is not None and old.get("command") == command:
        own |= set(old["files"])
    write_json(folder / OUTPUT_MARK, {"command": command, "files": sorted(own)})


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], command: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success publish its contents as ``dest``.

    Without ``command`` (internal caches), ``dest`` is replaced whole in one rename, so
    readers never see a mix of old and new files.

    With ``command`` (a user's ``--out``; check it first with :func:`prepare_output_dir`),
    nothing the command did not write is ever deleted: if ``dest`` holds only this
    command's previous output it is replaced whole; otherwise (an empty folder, which may be
    the working directory, or one holding the user's files) each new entry is moved in
    beside the user's files, replacing only same-named entries, and entries of the previous
    output that this run did not write again are removed. An output mark records which
    entries are the command's own.
    """
    dest = Path(os.path.abspath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if command is not None:
            entries = sorted(p.name for p in tmp.iterdir() if p.name != OUTPUT_MARK)
            mark = {"command": command, "files": entries}
            (tmp / OUTPUT_MARK).write_text(json.dumps(mark, indent=1) + "\n", encoding="utf-8")
        if dest.exists() and not dest.is_dir():
            raise XCompressError(f"{dest} is a file, not a folder: choose a folder path")
        old_mark = _read_mark(dest) if dest.is_dir() else None
        same = old_mark is not None and old_mark.get("command") == command
        own = set(old_mark["files"]) | {OUTPUT_MARK} if same else set()
        present = {p.name for p in dest.iterdir()} if dest.is_dir() else set()
        # a whole-folder swap would pull the working directory from under the user (--out .)
        in_cwd = dest.exists() and Path.cwd().resolve().is_relative_to(dest.resolve())
        if not dest.exists() or command is None or (
                same and present and present <= own and not in_cwd):
            if dest.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old",
                                            dir=dest.parent))
                os.replace(dest, old / "d")
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        else:  # user files live here too: merge entry by entry, theirs untouched
            new = {p.name for p in tmp.iterdir()}
            for name in sorted(new):
                target = dest / name
                if target.is_dir() or (tmp / name).is_dir():
                    _remove(target)
                os.replace(tmp / name, target)
            if same:
                for name in own - new:
                    _remove(dest / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_same_settings(saved_path: Path, now: dict[str, Any], resumable: frozenset[str],
                        what: str = "a run") -> None:  # fmt: skip
    """Refuse to resume a run folder whose saved config differs in what is learned.

    ``resumable`` names the settings a re-run may change (budgets, machine settings); any
    other difference is one line naming them. No saved config: nothing to check.
    """
    if not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise XCompressError(f"{saved_path} is unreadable: use a new --out") from None
    differ = sorted(k for k in set(saved) | set(now)
                    if k not in resumable and saved.get(k) != now.get(k))  # fmt: skip
    if differ:
        raise XCompressError(
            f"{saved_path.parent} holds {what} with other settings ({', '.join(differ)} "
            "differ): re-run with the same options to resume it, or choose a new --out"
        )


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def error_line(output: str, prefixes: tuple[str, ...] = ("ERROR",), last: bool = False) -> str:
    r"""The line of a failed command's output worth quoting in a one-line error.

    The first (or ``last``) line starting with one of ``prefixes``; else the first non-empty
    line; else ``"no output"``.

    Example:
        >>> error_line("Looking in indexes\nERROR: a\nERROR: b\n", last=True)
        'ERROR: b'
    """
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith(prefixes)] or lines or ["no output"]
    return errs[-1] if last else errs[0]

