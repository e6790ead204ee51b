"""Where a search keeps its study, and how a study survives workers that die.

A search is an Optuna ask/tell loop over an Optuna storage: by default one SQLite file,
``RUN/study.db`` (``optuna-dashboard sqlite:///RUN/study.db`` reads it as it grows), or a
PostgreSQL database when workers run on several machines. Re-running the same command resumes
the same study: completed trials are kept.

Optuna's own heartbeat (stale RUNNING -> FAIL, ``RetryFailedTrialCallback``) only runs inside
``study.optimize()``, not with ask/tell, so this module brings its own:

- :class:`Heartbeat` marks a running trial with who runs it (host, pid) and when it last
  showed a sign of life;
- :func:`recover_stale_trials`, called by every worker before it asks, fails the RUNNING trials
  whose worker is gone (its pid is dead, or its heartbeat is old) and enqueues each one again,
  once. A trial killed mid-run (``kill -9``, out of memory) is thus retried or failed, never
  left RUNNING.

Example:
    >>> import tempfile, optuna
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp())
    >>> storage = open_storage(default_storage_url(run))
    >>> study = optuna.create_study(study_name="s", storage=storage)
    >>> trial = study.ask()
    >>> with Heartbeat(storage, trial._trial_id, interval_s=30):
    ...     value = trial.suggest_float("x", 0, 1) ** 2
    >>> study.tell(trial, value)  # doctest: +ELLIPSIS
    FrozenTrial(...)
    >>> recover_stale_trials(study)
    []
    >>> study_counts(study)["COMPLETE"]
    1
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from xcompress.errors import XCompressError

__all__ = [
    "Heartbeat",
    "default_storage_url",
    "open_storage",
    "recover_stale_trials",
    "study_counts",
]

_log = logging.getLogger(__name__)

# Parallel SQLite workers queue on the file lock instead of failing with "database is locked":
# a trial's writes are a few milliseconds, so a minute of waiting means something is stuck.
SQLITE_LOCK_TIMEOUT_S = 60
# A down or firewalled PostgreSQL host must fail in seconds, not after the OS's TCP timeout
# (minutes); libpq's minimum useful value is 2.
PG_CONNECT_TIMEOUT_S = 5

# Workers started together on a new storage all create its tables and stamp its schema
# version; the losers fail on a duplicate and succeed once the winner is done.
SETUP_ATTEMPTS = 5

# Marks the engines this module creates, for the class-wide "begin" listener below.
_IMMEDIATE = "xcompress_sqlite_begin_immediate"

_PG_DRIVERS = ("postgresql", "postgres")


def default_storage_url(run_dir: Path) -> str:
    """The SQLite study file of a run folder, as an absolute URL.

    Example:
        >>> default_storage_url(Path("/runs/a"))
        'sqlite:////runs/a/study.db'
    """
    return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"


def open_storage(url: str) -> RDBStorage:
    """Open (creating its tables if needed) the Optuna storage at ``url``.

    Args:
        url: ``sqlite:///path/study.db`` (the folder must exist), or a PostgreSQL URL:
            ``postgresql://``, ``postgres://`` or ``postgresql+psycopg://user:pw@host:port/db``.
            A bare ``postgresql://`` is served by psycopg 3 (what xcompress installs) unless
            psycopg2 is importable.

    Returns:
        An :class:`optuna.storages.RDBStorage`; pass it to ``optuna.create_study`` /
        ``optuna.load_study`` and to :class:`Heartbeat`. Give worker processes the URL, not
        this object: each worker opens its own (a pickled copy loses the SQLite locking).

    Raises:
        XCompressError: one line naming the URL (password masked) and what to do, for any
            failure to connect: server down or unreachable (within a few seconds), wrong
            password, unknown database, missing driver, malformed URL.

    Example:
        >>> open_storage("postgresql://bob:secret@127.0.0.1:1/x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        xcompress.errors.XCompressError: cannot reach the study storage \
postgresql+psycopg://bob:***@127.0.0.1:1/x (connection refused): start the server or ...
    """
    try:
        parsed = _normalize_url(make_url(url))
    except Exception as e:  # noqa: BLE001 - make_url raises ArgumentError, ValueError, ...
        raise XCompressError(
            f"malformed study storage URL {_mask_raw(url)!r} ({_first_line(e)}): expected e.g. "
            "sqlite:///runs/x/study.db or postgresql://user:password@host:5432/db"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    for attempt in range(SETUP_ATTEMPTS):
        try:
            storage = RDBStorage(
                parsed.render_as_string(hide_password=False), **_engine_kwargs(parsed)
            )
            break
        except Exception as e:  # noqa: BLE001 - drivers raise their own types; one line for users
            if attempt + 1 < SETUP_ATTEMPTS and _lost_setup_race(e):
                time.sleep(random.uniform(0.05, 0.5))
                continue
            raise XCompressError(_connect_error_message(shown, e, parsed.password)) from None
    if parsed.get_backend_name() == "sqlite":
        # Only from now on: Optuna's schema set-up nests a connection inside a session, which
        # would wait on its own write lock under BEGIN IMMEDIATE.
        storage.engine.update_execution_options(**{_IMMEDIATE: True})
    return storage


class Heartbeat:
    """Marks a trial as alive while its ``with`` block runs.

    On entry it writes the trial user attrs ``worker`` = ``{"host", "pid", "started", "boot",
    "proc_start"}`` (``started``: when this worker began the trial, epoch seconds; ``boot`` and
    ``proc_start`` tell a recycled pid or a look-alike host from the real worker) and
    ``heartbeat`` = ``time.time()``; then a daemon thread rewrites ``heartbeat`` every
    ``interval_s``. It stops on exit, and by itself once the trial is finished (told, or failed
    by another worker's :func:`recover_stale_trials`). A storage hiccup is logged, not raised:
    a missed beat only matters after ``stale_after_s``.

    Example:
        >>> trial = study.ask()                                    # doctest: +SKIP
        >>> with Heartbeat(storage, trial._trial_id):              # doctest: +SKIP
        ...     value = objective(trial)
        >>> study.tell(trial, value)                               # doctest: +SKIP
    """

    def __init__(self, storage: BaseStorage, trial_id: int, interval_s: float = 30.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.storage = storage
        self.trial_id = trial_id
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        # Written before the block starts, so a worker killed at once is already recognisable.
        self.storage.set_trial_user_attr(self.trial_id, "worker", _this_worker())
        self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
        self._thread = threading.Thread(
            target=self._beat, name=f"xcompress-heartbeat-{self.trial_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            # A beat stuck on a locked database must not hold the worker up for a minute.
            self._thread.join(timeout=5.0)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except UpdateFinishedTrialError:
                return
            except Exception as e:  # noqa: BLE001 - keep beating through a storage hiccup
                _log.warning("heartbeat of trial id %s not written: %s", self.trial_id, e)


def recover_stale_trials(
    study: optuna.Study, *, stale_after_s: float = 300.0, retry: bool = True
) -> list[int]:
    """Fail the RUNNING trials whose worker is gone, and enqueue each of them again once.

    A worker is gone when it ran on this machine and its process is dead (or the pid now
    belongs to another process), or when its last heartbeat is older than ``stale_after_s``
    (workers on other machines; also a live process that abandoned its trial). A RUNNING trial
    with no heartbeat at all counts from its start: a fresh one is another worker that has just
    asked and not yet started its :class:`Heartbeat`, and is left alone.

    Each failed trial gets the user attr ``failed_reason``. With ``retry`` its params are
    enqueued with the user attr ``retry_of`` = its number, unless it is itself a retry: a
    candidate that kills its worker every time is then failed twice, not retried forever.

    Safe when several workers run it at once: the trial state change is the claim, and only
    the worker whose change went through enqueues the retry.

    Args:
        study: the study to clean up (typically right after loading it, and before each ask).
        stale_after_s: heartbeat age that counts as dead; keep it several heartbeat intervals.
        retry: enqueue the failed trials' params again.

    Returns:
        The numbers of the trials this call failed.

    Example:
        >>> recover_stale_trials(study, stale_after_s=120)   # doctest: +SKIP
        [7]
        >>> study.trials[-1].user_attrs                      # doctest: +SKIP
        {'retry_of': 7}
    """
    storage = study._storage  # no public accessor; the storage owns the state transition
    now = time.time()
    here = _this_machine()
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _why_gone(trial, now, here, stale_after_s)
        if reason is None or not _claim_failure(storage, trial, reason):
            continue
        failed.append(trial.number)
        again = retry and "retry_of" not in trial.user_attrs
        _log.warning(
            "trial %d failed (%s), %s",
            trial.number,
            reason,
            "enqueued again" if again else "not retried",
        )
        if again:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    return failed


def study_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials the study holds in each state.

    Example:
        >>> study_counts(optuna.create_study())
        {'COMPLETE': 0, 'RUNNING': 0, 'FAIL': 0, 'PRUNED': 0, 'WAITING': 0}
    """
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return {s: counts.get(s, 0) for s in ("COMPLETE", "RUNNING", "FAIL", "PRUNED", "WAITING")}


# --- opening -------------------------------------------------------------------------------


def _normalize_url(url: URL) -> URL:
    """Map the PostgreSQL spellings onto a driver that is installed."""
    backend, _, driver = url.drivername.partition("+")
    if backend not in _PG_DRIVERS:
        return url
    if not driver:
        driver = "psycopg2" if _importable("psycopg2") else "psycopg"
    return url.set(drivername=f"postgresql+{driver}")


def _engine_kwargs(url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {
            "engine_kwargs": {
                # isolation_level None: pysqlite must not issue its own (deferred) BEGIN;
                # the listener below issues BEGIN IMMEDIATE instead.
                "connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S, "isolation_level": None},
            }
        }
    if url.get_backend_name() == "postgresql":
        connect_args = (
            {} if "connect_timeout" in url.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        )
        # pre_ping: a trial can take an hour, long enough for a server or a NAT to drop an
        # idle pooled connection; the next write would fail without it.
        return {"engine_kwargs": {"connect_args": connect_args, "pool_pre_ping": True}}
    return {}


@event.listens_for(Engine, "begin")
def _begin_immediate(conn: sqlalchemy.Connection) -> None:
    """Start every transaction of our SQLite engines with ``BEGIN IMMEDIATE``.

    Optuna claims a trial with ``SELECT ... FOR UPDATE`` then ``UPDATE``. SQLite ignores
    FOR UPDATE and pysqlite begins the transaction only at the UPDATE, so two workers can both
    read a WAITING trial and both run it (and both fail the same dead trial, and both enqueue
    its retry). BEGIN IMMEDIATE takes the write lock before the read: such transactions run
    one at a time, which costs nothing next to a trial's minutes.
    """
    if conn.get_execution_options().get(_IMMEDIATE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _lost_setup_race(error: BaseException) -> bool:
    """Whether opening failed only because another process was creating the same tables."""
    chain: BaseException | None = error
    for _ in range(8):  # Optuna wraps the driver's error once or twice; never loop on a cycle
        if chain is None:
            break
        text = str(chain).lower()
        if isinstance(chain, sqlalchemy.exc.IntegrityError) or any(
            w in text for w in ("already exists", "duplicate key")
        ):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def _connect_error_message(shown: str, error: BaseException, password: str | None) -> str:
    """One line: what failed, the masked URL, the driver's reason, and what to do."""
    # Optuna re-raises a missing driver as a generic ImportError; the cause names the module.
    missing_driver = isinstance(error, ImportError)
    reason = _short_reason(error.__cause__ or error if missing_driver else error)
    if password:
        reason = reason.replace(password, "***")
    low = reason.lower()
    if missing_driver:
        what = "cannot open the study storage"
        hint = "install its driver (pip install 'psycopg[binary]' for PostgreSQL)"
    elif "password" in low or "role" in low and "does not exist" in low:
        what, hint = "cannot log in to the study storage", "check the user and password"
    elif "database" in low and "does not exist" in low:
        what, hint = "cannot open the study storage", "create the database first (createdb)"
    elif "unable to open database file" in low:
        what, hint = "cannot open the study storage", "check that its folder exists and is writable"
    elif "compatible" in low or "schema" in low:
        what, hint = "cannot use the study storage", "upgrade it with `optuna storage upgrade`"
    elif any(w in low for w in ("refused", "timeout", "timed out", "translate host", "route")):
        what, hint = "cannot reach the study storage", "start the server"
    else:
        what, hint = "cannot open the study storage", "check the URL"
    return f"{what} {shown} ({reason}): {hint} or pass another --storage"


def _short_reason(error: BaseException) -> str:
    """The driver's own words, first line, without libpq's repeated preamble.

    Example:
        >>> _short_reason(OSError('connection failed: connection to server at "h", port 1 '
        ...                       'failed: FATAL:  database "x" does not exist\\nmore'))
        'database "x" does not exist'
    """
    inner = getattr(error, "orig", None) or error
    line = _first_line(inner)
    line = line.rsplit("failed: ", 1)[-1]
    line = re.sub(r"^(FATAL|ERROR):\s*", "", line).strip()
    if not line:
        line = type(inner).__name__
    return line[:1].lower() + line[1:] if line[1:2].islower() else line


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return re.sub(r"\s+", " ", text.splitlines()[0]) if text else type(error).__name__


def _mask_raw(url: str) -> str:
    """Hide the password of a URL that did not even parse."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --- who is alive --------------------------------------------------------------------------


def _this_worker() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "boot": _this_machine(),
        "proc_start": _proc_start_ticks(os.getpid()),
    }


def _this_machine() -> str:
    """What makes a pid meaningful here: this boot of this kernel, this pid namespace.

    The host name alone is not enough: two containers, or a machine rebooted since, can share
    it while their pids mean different processes. Empty where ``/proc`` does not say.
    """
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        return ""
    return "/".join(parts)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a pid, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _proc_start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _process_alive(pid: int, proc_start: int | None) -> bool:
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in "ZX":  # a zombie is a dead worker nobody has reaped yet
            return False
        # A recycled pid is another process: the dead worker's trial must not wait on it.
        return proc_start is None or stat[1] == proc_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _why_gone(trial: FrozenTrial, now: float, here: str, stale_after_s: float) -> str | None:
    """Why the worker of a RUNNING trial counts as gone, or None while it may be alive."""
    worker = trial.user_attrs.get("worker")
    if (
        isinstance(worker, dict)
        and worker.get("host") == socket.gethostname()
        and worker.get("boot", "") == here
        and isinstance(worker.get("pid"), int)
        and not _process_alive(worker["pid"], worker.get("proc_start"))
    ):
        return f"worker pid {worker['pid']} on host {worker['host']} died"
    beat = trial.user_attrs.get("heartbeat")
    if isinstance(beat, (int, float)):
        last = float(beat)
    elif isinstance(trial.datetime_start, datetime):
        # Optuna stamps the start with the asking worker's naive local time.
        last = trial.datetime_start.timestamp()
    else:
        return None
    age = now - last
    return f"no heartbeat for {age:.0f} s" if age > stale_after_s else None


def _claim_failure(storage: BaseStorage, trial: FrozenTrial, reason: str) -> bool:
    """Record why and set FAIL; False when another worker (or the trial's own) got there first."""
    try:
        # The reason goes first: attributes of a finished trial can no longer be written.
        storage.set_trial_user_attr(trial._trial_id, "failed_reason", reason)
        return storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    except optuna.exceptions.StorageInternalError as e:
        _log.warning(
            "trial %d not failed (storage busy, next recovery retries): %s", trial.number, e
        )
        return False
