"""The search's study storage: opening it (and refusing in one line), and trials that survive
their workers.

Workers are real processes, killed with SIGKILL as the kernel's OOM killer would; the same cases
run on the default SQLite file and, with ``postgres_url``, on a throw-away PostgreSQL server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from xcompress.errors import XCompressError
from xcompress.search.storage import (
    Heartbeat,
    default_storage_url,
    open_storage,
    recover_stale_trials,
    study_counts,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same case on the default SQLite file and on a PostgreSQL server."""
    if request.param == "sqlite":
        return default_storage_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def new_study(storage_url: str) -> Callable[[], optuna.Study]:
    """A factory of studies with unique names (the PostgreSQL database is shared)."""

    def make() -> optuna.Study:
        name = f"s-{uuid.uuid4().hex[:8]}"
        return optuna.create_study(study_name=name, storage=open_storage(storage_url))

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refusal(url: str) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(XCompressError) as info:
        open_storage(url)
    return str(info.value), time.monotonic() - start


# --- opening ---------------------------------------------------------------------------------


def test_default_url_is_the_run_folders_study_file(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path / "run")
    assert url == f"sqlite:///{(tmp_path / 'run').resolve()}/study.db"
    (tmp_path / "run").mkdir()
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1))
    again = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.params["x"] for t in again.trials] == [0.1, 0.2, 0.3]
    assert study_counts(again) == {
        "COMPLETE": 3,
        "RUNNING": 0,
        "FAIL": 0,
        "PRUNED": 0,
        "WAITING": 0,
    }
    # optuna-dashboard and `optuna` read the same file through a plain URL.
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 3


def test_unreachable_postgres_is_one_line_with_the_password_masked() -> None:
    port = _free_port()  # nothing listens there
    message, took = _refusal(f"postgresql://bob:s3cret@127.0.0.1:{port}/x")
    assert took < 10
    assert "\n" not in message and "s3cret" not in message
    assert f"postgresql+psycopg://bob:***@127.0.0.1:{port}/x" in message
    assert "refused" in message and "start the server" in message


def test_a_silent_postgres_host_fails_within_the_connect_timeout() -> None:
    """A host that accepts TCP but never answers (a hung server) must not hang the search."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        message, took = _refusal(f"postgres://u@127.0.0.1:{silent.getsockname()[1]}/x")
    assert took < 10, took
    assert "\n" not in message and "cannot reach" in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("nonsense", "malformed study storage URL"),
        ("postgresql://bob:pw@host:notaport/db", "malformed"),
        ("nosuchdb://x/y", "check the URL"),
        ("postgresql+psycopg2://bob:pw@127.0.0.1/x", "install its driver"),
        ("sqlite:////nonexistent/folder/study.db", "folder exists"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, words: str) -> None:
    pytest.importorskip("psycopg")
    if "psycopg2" in url and _has("psycopg2"):
        pytest.skip("psycopg2 is installed here")
    message, _ = _refusal(url)
    assert "\n" not in message and words in message and ":pw@" not in message


def test_an_unknown_postgres_database_says_so(postgres_url: str) -> None:
    message, _ = _refusal(postgres_url.rsplit("/", 1)[0] + "/nope")
    assert 'database "nope" does not exist' in message and "createdb" in message


def test_bare_postgresql_urls_use_psycopg3(postgres_url: str) -> None:
    bare = postgres_url.replace("postgresql+psycopg://", "postgres://")
    assert open_storage(bare).url.startswith("postgresql+psycopg://")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Opens a storage, creates-or-loads one study and completes one trial in it.
OPEN_WORKER = textwrap.dedent(
    """
    import sys, optuna
    from xcompress.search.storage import open_storage
    study = optuna.create_study(study_name="s", storage=open_storage(sys.argv[1]),
                                load_if_exists=True)
    study.tell(study.ask(), 1.0)
    """
)


def test_workers_opening_a_new_storage_together_all_get_in(
    storage_url: str, postgres_fresh_db: Callable[[], str]
) -> None:
    """`--workers N` on a new run: N processes create the same tables at the same moment."""
    url = storage_url if storage_url.startswith("sqlite") else postgres_fresh_db()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WORKER, url], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len(optuna.load_study(study_name="s", storage=open_storage(url)).trials) == 4


@pytest.fixture
def postgres_fresh_db(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A factory of empty databases on the session's server (asked for only when used)."""

    def make() -> str:
        import psycopg

        url = request.getfixturevalue("postgres_url")
        name = f"fresh_{uuid.uuid4().hex[:8]}"
        admin = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
        with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return url.rsplit("/", 1)[0] + "/" + name

    return make


# --- stale trials ----------------------------------------------------------------------------

# Asks one trial, starts its heartbeat, says which trial, then hangs until killed.
HANGING_WORKER = textwrap.dedent(
    """
    import sys, time, optuna
    from xcompress.search.storage import Heartbeat, open_storage
    storage = open_storage(sys.argv[1])
    study = optuna.load_study(study_name=sys.argv[2], storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    with Heartbeat(storage, trial._trial_id, interval_s=0.2):
        print(trial.number, flush=True)
        time.sleep(600)
    """
)


def _run_and_kill(url: str, study_name: str) -> int:
    """Run a worker until its trial is underway, SIGKILL it, return the trial's number."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_WORKER, url, study_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip().isdigit(), proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)  # reaped: a zombie would count as dead anyway
    return int(line)


def test_a_killed_trial_is_failed_and_retried_once(
    storage_url: str, new_study: Callable[[], optuna.Study]
) -> None:
    study = new_study()
    killed = _run_and_kill(storage_url, study.study_name)
    assert study_counts(study)["RUNNING"] == 1  # what Optuna alone would leave forever

    assert recover_stale_trials(study) == [killed]
    first = study.trials[killed]
    assert first.state == TrialState.FAIL
    assert "died" in first.user_attrs["failed_reason"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].user_attrs == {"retry_of": killed}
    assert waiting[0].system_attrs["fixed_params"] == first.params
    assert recover_stale_trials(study) == []  # nothing left to do: no second retry

    # The retry is the next trial asked; it kills its worker too: failed, not enqueued again.
    again = _run_and_kill(storage_url, study.study_name)
    assert again == waiting[0].number
    assert study.trials[again].params == first.params
    assert recover_stale_trials(study) == [again]
    assert study_counts(study) == {
        "COMPLETE": 0,
        "RUNNING": 0,
        "FAIL": 2,
        "PRUNED": 0,
        "WAITING": 0,
    }


def test_recovery_judges_each_running_trial(new_study: Callable[[], optuna.Study]) -> None:
    study = new_study()
    storage = study._storage

    old_unmarked = study.ask()  # asked, never started: its worker died before its heartbeat
    time.sleep(1.5)
    fresh_unmarked = study.ask()  # another worker that has only just asked
    other_stale, other_fresh, recycled = study.ask(), study.ask(), study.ask()
    for trial, beat in ((other_stale, time.time() - 1000), (other_fresh, time.time())):
        trial.set_user_attr("worker", {"host": "elsewhere", "pid": os.getpid(), "started": 0})
        trial.set_user_attr("heartbeat", beat)
    with Heartbeat(storage, recycled._trial_id, interval_s=60):
        pass  # marks it as this process's trial...
    worker = study.trials[recycled.number].user_attrs["worker"]
    if worker["proc_start"] is not None:  # ...then pretends our pid was reused by a newer one
        recycled.set_user_attr("worker", {**worker, "proc_start": worker["proc_start"] - 1})
    live = study.ask()
    with Heartbeat(storage, live._trial_id, interval_s=0.1):
        time.sleep(0.3)  # a few beats, while recovery runs on another connection
        failed = recover_stale_trials(study, stale_after_s=1.0, retry=False)

    expect = {old_unmarked.number, other_stale.number}
    if worker["proc_start"] is not None:
        expect.add(recycled.number)
    assert sorted(failed) == sorted(expect)
    reasons = {t.number: t.user_attrs.get("failed_reason") for t in study.trials}
    assert reasons[other_stale.number].startswith("no heartbeat for 10")  # ~1000 s
    assert reasons[old_unmarked.number].startswith("no heartbeat for")
    for alive in (fresh_unmarked, other_fresh, live):
        assert study.trials[alive.number].state == TrialState.RUNNING
        assert reasons[alive.number] is None
    assert study_counts(study)["WAITING"] == 0  # retry=False
    study.tell(live, 1.0)


def test_two_workers_recovering_at_once_fail_and_retry_each_trial_once(
    storage_url: str, new_study: Callable[[], optuna.Study]
) -> None:
    study = new_study()
    for i in range(6):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("worker", {"host": "gone", "pid": 1, "started": 0})
        trial.set_user_attr("heartbeat", time.time() - 1000 - i)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def recover() -> None:
        try:
            # Each "worker" has its own connection, as separate processes would.
            mine = optuna.load_study(study_name=study.study_name, storage=open_storage(storage_url))
            go.wait()
            results.append(recover_stale_trials(mine))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=recover) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results[0] + results[1]) == list(range(6))
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["retry_of"] for t in retries) == list(range(6))


# --- several workers -------------------------------------------------------------------------

# An ask/tell loop until the study holds `target` COMPLETE trials; starts when all have started.
LOOP_WORKER = textwrap.dedent(
    """
    import os, sys, time, pathlib, optuna
    from xcompress.search.storage import (
        Heartbeat, open_storage, recover_stale_trials, study_counts)
    url, name, target, gate, n = sys.argv[1:6]
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    gate = pathlib.Path(gate)
    (gate / str(os.getpid())).touch()
    while len(list(gate.iterdir())) < int(n):
        time.sleep(0.01)
    while True:
        recover_stale_trials(study)
        if study_counts(study)["COMPLETE"] >= int(target):
            break
        trial = study.ask()
        with Heartbeat(storage, trial._trial_id, interval_s=0.5):
            x = trial.suggest_float("x", 0.0, 1.0)
            trial.set_user_attr("pid", os.getpid())
            time.sleep(0.02)
        study.tell(trial, x * x)
    """
)


def _workers(url: str, name: str, target: int, gate: Path, n: int) -> Iterator[subprocess.Popen]:
    gate.mkdir()
    for _ in range(n):
        args = [url, name, str(target), str(gate), str(n)]
        yield subprocess.Popen(
            [sys.executable, "-c", LOOP_WORKER, *args], stderr=subprocess.PIPE, text=True
        )


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(
    storage_url: str, new_study: Callable[[], optuna.Study], tmp_path: Path
) -> None:
    study = new_study()
    queued = [0.11, 0.22, 0.33, 0.44, 0.55, 0.66]
    for x in queued:  # both workers start by popping these: the race for one WAITING trial
        study.enqueue_trial({"x": x})
    procs = list(_workers(storage_url, study.study_name, 20, tmp_path / "gate", 2))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    trials = study.get_trials()
    counts = study_counts(study)
    assert counts["RUNNING"] == counts["WAITING"] == counts["FAIL"] == 0
    # Both workers may see 19 COMPLETE and ask at the same moment: one trial over is the most
    # two workers can overshoot, since each checks the count before it asks.
    assert 20 <= counts["COMPLETE"] <= 21
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t._trial_id for t in trials}) == len(trials)
    by_pid = {t.user_attrs["pid"] for t in trials}
    assert by_pid == {p.pid for p in procs}
    ran = [t.params["x"] for t in trials]
    assert all(ran.count(x) == 1 for x in queued), "an enqueued trial ran twice (or never)"
