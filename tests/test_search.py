"""``xcompress search``: spaces, the latency predictor, a tiny end-to-end search, resume after
kill -9, two workers on a real PostgreSQL server, and its mistakes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from xcompress.card import ModelCard, default_postprocess, default_preprocess
from xcompress.errors import XCompressError
from xcompress.models import build_model
from xcompress.models.checkpoint import save_checkpoint
from xcompress.search.space import SearchSpace, SpaceError, load_space

torch.set_num_threads(1)
DIGITS = list("0123456789")
TINY = {"stages": [{"channels": 16}, {"channels": 32}], "hidden": 16,
        "num_classes": len(DIGITS) + 1}  # fmt: skip
TINY_SPACE = """\
arch: crnn
stages: 2
stages_at: stages
divisor: 8
choices:
  width_mults: [0.5, 0.75, 1.0]
fields:
  hidden: [8, 16]
"""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Latency predictors are target data in the cache: each test module gets its own."""
    monkeypatch.setenv("XCOMPRESS_CACHE", str(tmp_path_factory.getbasetemp() / "xc-cache"))


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny trained-looking CRNN digits checkpoint (random weights, BN stats set)."""
    torch.manual_seed(0)
    model = build_model("crnn", TINY).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    pre = default_preprocess("rec").model_copy(update={"image_shape": (3, 32, 128)})
    card = ModelCard(name="tiny-crnn", task="rec", file="model.pt", format="torch",
                     preprocess=pre, postprocess=default_postprocess("rec"),
                     charset=DIGITS)  # fmt: skip
    folder = tmp_path_factory.mktemp("parent")
    return save_checkpoint(folder / "model.pt", model, card)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(TINY_SPACE, encoding="utf-8")
    return p


def _args(parent: Path, space: Path, out: Path, *extra: str) -> list[str]:
    return ["search", str(parent), "--space", str(space), "--out", str(out), "--trials", "4",
            "--finetune-steps", "2", "--final-steps", "2", "--batch-size", "4", "--val-count",
            "6", "--threads", "1", "--shape", "1x3x32x128", "--timing-seconds", "0.3",
            *extra]  # fmt: skip


# -- spaces ---------------------------------------------------------------------------------


def test_shipped_spaces_fit_their_architectures():
    from xcompress.models.registry import get_arch
    from xcompress.search.space import SPACES_DIR

    for path in sorted(SPACES_DIR.glob("*.yaml")):
        space = load_space(path)
        model = build_model(space.arch, get_arch(space.arch).config_cls())
        space.check_fits(model)  # its largest and smallest points derive from the model
        assert space.size() > 1 and space.param_names()


def test_space_point_to_config(space_file):
    space = load_space(space_file, "crnn")
    assert space.param_names() == ["s0.width", "s1.width", "hidden"]
    cfg = space.child_config(build_model("crnn", TINY).config.model_dump(mode="json"),
                             {"s0.width": 0.5, "s1.width": 1.0, "hidden": 8})  # fmt: skip
    model = build_model("crnn", cfg)
    assert model.config.stage_channels() == [8, 32] and model.config.hidden == 8


@pytest.mark.parametrize("text, words", [
    ("arch: crnn\nstages: 3\nstages_at: stages\nchoices: {width_mults: [1.0]}\n", ("3 stages",)),
    ("arch: crnn\nstages: 2\nstages_at: stages\nchoices: {depths: [[1, 2], [1]]}\n",
     ("does not fit", "depth")),
    ("arch: crnn\nstages: 2\nstages_at: stages\nfields: {nothing: [1, 2]}\n", ("no field",)),
    ("arch: crnn\nstages: 2\nchoices: {width_mults: []}\n", ("empty",)),
    ("arch: [oops\n", ("not a readable YAML",)),
])  # fmt: skip
def test_space_mistakes_are_one_line(tmp_path, text, words):
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(SpaceError) as e:
        load_space(p, "crnn").check_fits(build_model("crnn", TINY))
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_space_of_another_arch_is_refused(space_file):
    with pytest.raises(SpaceError, match="space for crnn"):
        load_space(space_file, "ppocrv4-rec")
    assert isinstance(SearchSpace(arch="crnn", stages=2).size(), int)


# -- the latency predictor ------------------------------------------------------------------


def test_predictor_recovers_a_linear_cost_and_reports_leave_one_out_error():
    from xcompress.search.latency import (
        FEATURES,
        CalibrationPoint,
        fit_coefficients,
        loo_abs_pct_errors,
    )

    rng = np.random.default_rng(0)
    true = np.array([0.02, 0.1, 0.03, 0.5, 0.004, 0.3])
    pts = []
    for _ in range(20):
        f = dict(zip(FEATURES, [*rng.uniform(1, 50, 4), rng.integers(20, 90), 1.0], strict=True))
        y = float(np.dot(true, [f[k] for k in FEATURES]))
        pts.append(CalibrationPoint(features=f, measured=y))
    coef = np.array(fit_coefficients(pts))
    assert np.allclose(coef, true, rtol=1e-6, atol=1e-9)
    assert max(loo_abs_pct_errors(pts)) < 1e-6


def test_timing_meter_takes_the_median_ratio_of_fresh_sessions(tmp_path):
    """One measurement = `sessions` alternating runs, each loading both models anew; the
    median ratio wins, so one slow session cannot decide it; timing_s splits over them."""
    from xcompress.profile import Loaded, ProfileConfig, Profiler
    from xcompress.profile.machine import machine_from_cpuinfo
    from xcompress.search.latency import TimingMeter, open_meter
    from xcompress.targets import Target

    speeds = iter([1.0, 1.0, 1.5, 1.0, 1.0, 1.0])  # per load: the 2nd run's candidate is slow
    loads: list[str] = []

    class Board(Profiler):
        def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
            loads.append(model_path.name)
            base = float(model_path.read_text()) * next(speeds)
            return Loaded(path=model_path, runtime="ort", runtime_version="0", threads=threads,
                          shape=config.shape, state=base)  # fmt: skip

        def time_round(self, loaded: Loaded, n: int) -> list[float]:
            return [loaded.state] * n

        def machine(self):
            return machine_from_cpuinfo("", "aarch64", 2)

    target = Target(name="b", kind="ssh", isa="aarch64", cores=2, runtimes=("ort",))
    cand, par = tmp_path / "cand.onnx", tmp_path / "par.onnx"
    cand.write_text("1.0")
    par.write_text("4.0")
    meter = open_meter(Board(target), (1, 3, 8, 8), 1, runs=3, timing_s=0.6)
    assert isinstance(meter, TimingMeter) and meter.max_time_s == pytest.approx(0.2)
    value, parent_value = meter.pair(cand, par)
    assert loads == ["cand.onnx", "par.onnx"] * 3  # three runs, each in new sessions
    assert parent_value == pytest.approx(4.0) and value == pytest.approx(1.0)  # 0.375 outvoted
    assert "median ratio of 3 runs" in meter.describe()["method"]


def test_features_count_depthwise_apart(parent, tmp_path):
    from xcompress.export import load_source
    from xcompress.search.candidates import export_candidate
    from xcompress.search.latency import latency_features

    src = load_source(str(parent))
    f = latency_features(export_candidate(src.module, src.card, tmp_path / "m"), (1, 3, 32, 128))
    assert f["dense_conv_mmacs"] > 0 and f["dw_conv_mmacs"] == 0 and f["matmul_mmacs"] > 0
    assert f["nodes"] > 5 and f["one"] == 1.0


# -- end to end -----------------------------------------------------------------------------


def test_tiny_search_end_to_end_then_resume(parent, space_file, tmp_path):
    from xcompress.cli.main import main
    from xcompress.models.checkpoint import load_checkpoint

    out = tmp_path / "run"
    assert main(_args(parent, space_file, out, "--max-latency-ratio", "5")) == 0
    trials = json.loads((out / "trials.json").read_text())
    assert trials["meta"]["model"] == str(parent)
    recs = trials["trials"]
    assert len(recs) == 4 and all(r["state"] == "COMPLETE" for r in recs)
    for r in recs:  # every trial: exact counts, predicted AND measured latency
        assert r["macs"] > 0 and r["n_params"] > 0 and r["latency"] > 0 and r["ratio"] > 0
        assert r["predicted"] is not None and r["feasible"] is True
        assert r["error"] >= 0.0 and set(r["point"]) == {"s0.width", "s1.width", "hidden"}
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["front"] and pareto["parent"]["ratio"] == 1.0
    assert pareto["predictor_error"]["trials"] == 4
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    for word in ("target: host", "threads 1", "onnxruntime", "Latency predictor", "best/"):
        assert word in report, word
    # best/: a drop-in model (checkpoint + ONNX + card)
    best = out / "best"
    model, card = load_checkpoint(best / "model.pt")
    assert card.step == "search" and card.charset == DIGITS
    assert ModelCard.load(best).file == "model.onnx"
    assert main(["eval", str(best), "--data", str(_rec_set(tmp_path)), "--json",
                 str(tmp_path / "e.json")]) == 0  # fmt: skip
    # re-running resumes: the 4 trials are kept, 2 more are run
    again = _args(parent, space_file, out, "--max-latency-ratio", "5")
    again[again.index("--trials") + 1] = "6"
    assert main(again) == 0
    recs2 = json.loads((out / "trials.json").read_text())["trials"]
    assert len(recs2) == 6 and [r["number"] for r in recs2] == list(range(6))
    assert [r["point"] for r in recs2[:4]] == [r["point"] for r in recs]
    # a re-run with other learned settings is refused
    other = _args(parent, space_file, out, "--max-latency-ratio", "5", "--seed", "3")
    assert main(other) != 0


def _rec_set(tmp: Path) -> Path:
    import cv2

    folder = tmp / "digits"
    folder.mkdir(exist_ok=True)
    lines = []
    for i in range(4):
        img = np.full((32, 96, 3), 255, np.uint8)
        cv2.putText(img, f"{i}{i + 1}", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        cv2.imwrite(str(folder / f"{i}.png"), img)
        lines.append(f"{i}.png\t{i}{i + 1}")
    (folder / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_budget_nothing_meets_is_one_line_and_writes_nothing(parent, space_file, tmp_path, capsys):
    from xcompress.cli.main import main

    out = tmp_path / "run"
    assert main(_args(parent, space_file, out, "--max-params", "10")) == 3  # a budget error
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no candidate in the space meets --max-params 10")
    assert "\n" not in err
    assert "smallest one is" in err and not out.exists()


def test_val_with_characters_outside_the_charset(parent, space_file, tmp_path, capsys):
    from xcompress.cli.main import main

    bad = _rec_set(tmp_path)
    (bad / "label.txt").write_text("0.png\tAB12\n1.png\t12\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(_args(parent, space_file, out, "--val", str(bad))) != 0
    err = capsys.readouterr().err.strip()
    assert "outside the model's charset" in err and "\n" not in err and not out.exists()


def test_unreachable_storage(parent, space_file, tmp_path, capsys):
    import socket

    from xcompress.cli.main import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    url = f"postgresql://bob:secret@127.0.0.1:{port}/nope"
    t0 = time.monotonic()
    assert main(_args(parent, space_file, out, "--storage", url)) != 0
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - t0 < 30 and "secret" not in err and "\n" not in err
    assert "storage" in err and not out.exists()


def test_killed_search_resumes_with_no_trial_left_running(parent, space_file, tmp_path):
    """kill -9 in the middle of a trial; the re-run fails it, retries it once, finishes."""
    import optuna

    out = tmp_path / "run"
    args = _args(parent, space_file, out, "--finetune-steps", "400")
    args[args.index("--trials") + 1] = "3"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "xcompress.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    db = out / "study.db"
    deadline = time.monotonic() + 240
    running = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    st = optuna.load_study(study_name="search", storage=f"sqlite:///{db}")
                    running = [t for t in st.get_trials(deepcopy=False)
                               if t.state.name == "RUNNING" and "point" not in t.user_attrs
                               and t.number == 0]  # fmt: skip
                except Exception:  # the file may be mid-creation
                    running = None
                if running:
                    time.sleep(1.0)  # well inside its 400 fine-tune steps
                    break
            time.sleep(0.3)
        assert running, "the search never started a trial"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    st = optuna.load_study(study_name="search", storage=f"sqlite:///{db}")
    assert [t.state.name for t in st.get_trials()] == ["RUNNING"]  # the zombie, as left
    from xcompress.cli.main import main

    assert main(args) == 0  # the same command resumes
    st = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in st.get_trials()]
    assert "RUNNING" not in states
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 3
    failed = next(t for t in st.get_trials() if t.state.name == "FAIL")
    retry = [t for t in st.get_trials() if t.user_attrs.get("retry_of") == failed.number]
    assert len(retry) == 1 and retry[0].params == failed.params
    assert retry[0].state.name == "COMPLETE"


def test_two_workers_on_postgresql(parent, space_file, tmp_path, postgres_url):
    """Two worker processes, one study on a real server: no lost or duplicated trial."""
    import optuna

    from xcompress.cli.main import main

    out = tmp_path / "run"
    # trials long enough (300 steps) that the second worker starts before the first is done
    args = _args(parent, space_file, out, "--storage", postgres_url, "--workers", "2",
                 "--study", "two-workers", "--finetune-steps", "300")  # fmt: skip
    args[args.index("--trials") + 1] = "6"
    assert main(args) == 0
    st = optuna.load_study(study_name="two-workers", storage=postgres_url)
    trials = st.get_trials()
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states
    done = [t for t in trials if t.state.name == "COMPLETE"]
    # each worker checks the count before it asks, so at most one trial per extra worker
    # may start after the other reached the total
    assert 6 <= len(done) <= 7
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t._trial_id for t in trials}) == len(trials)
    workers = {t.user_attrs["worker"]["pid"] for t in done}
    assert len(workers) == 2, workers
    recs = json.loads((out / "trials.json").read_text())["trials"]
    assert len(recs) == len(trials)


def test_search_errors_are_xcompress_errors():
    from xcompress.search.runner import SearchError

    assert issubclass(SearchError, XCompressError) and issubclass(SpaceError, XCompressError)


@pytest.mark.heavy
@pytest.mark.skipif(not __import__("shutil").which("qemu-aarch64"),
                    reason="needs qemu-user (apt-get install qemu-user gcc)")  # fmt: skip
def test_emulated_board_calibrates_on_instruction_counts(parent, space_file):
    """arm64-emu: latency is guest instructions per inference; the predictor fits them."""
    from xcompress.export import load_source
    from xcompress.search.latency import calibrate, open_meter

    src = load_source(str(parent))
    space = load_space(space_file, "crnn")
    meter = open_meter("arm64-emu", (1, 3, 32, 128))
    assert meter.unit == "Minsn" and meter.describe()["threads"] == 1
    pred = calibrate(src.module, src.card, space, meter, samples=10)
    assert pred.unit == "Minsn" and pred.target.startswith("arm64-emu")
    assert pred.cv_mape < 10.0  # counts are deterministic: a linear cost model fits them
