"""Profiling: the profiler contract (host and a deterministic fake), statistics, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from profiler_contract import ProfilerContract

from xcompress.card import ModelCard
from xcompress.cli.main import main
from xcompress.errors import ModelError, XCompressError
from xcompress.profile import Loaded, ProfileConfig, Profiler, get_profiler
from xcompress.profile import base as profile_base
from xcompress.profile.machine import Machine, machine_from_cpuinfo
from xcompress.profile.run import default_shape, parse_shape
from xcompress.targets import Target

TINY_MACS_PER_PIXEL = 8 * 3 * 9  # Conv 3->8, 3x3
TINY_REC_MACS_PER_PIXEL = 4 * 3 * 9  # Conv 3->4 classes, 3x3


def write_tiny_conv(path: Path) -> Path:
    """Conv(3->8, 3x3, pad 1, bias) + Relu on an N x 3 x H x W input with dynamic N, H, W."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, "H", "W"])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def write_tiny_rec(path: Path) -> Path:
    """A recognizer-shaped tiny model: Conv(3->4, 3x3) -> mean over H -> N x W x 4 classes
    (blank + the charset a, b, space), so it passes the rec task contract."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("ReduceMean", ["c"], ["m"], axes=[2], keepdims=0),
            helper.make_node("Transpose", ["m"], ["y"], perm=[0, 2, 1]),
        ],
        "tiny_rec",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "W", 4])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


# -- the contract, on this machine -----------------------------------------------------------


class TestHostProfiler(ProfilerContract):
    shape = (1, 3, 16, 16)

    @pytest.fixture
    def profiler(self) -> Profiler:
        return get_profiler("host")

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        return write_tiny_conv(tmp_path / "tiny.onnx")

    def test_records_runtime_and_machine(self, profiler, model_path, config):
        r = profiler.profile(model_path, config)
        assert (r.runtime, r.runtime_version) == ("ort", onnx_runtime_version())
        from xcompress.runtime.ort import host_session_config

        # no spinning while timing, and this host's exact-int8 entry where it needs one
        assert r.runtime_options == {"session.intra_op.allow_spinning": "0",
                                     **host_session_config()}  # fmt: skip
        assert r.machine.isa in ("x86_64", "aarch64")

    def test_wrong_rank_is_a_model_error(self, profiler, model_path):
        with pytest.raises(ModelError, match="cannot run at shape 1x3x16"):
            profiler.profile(model_path, ProfileConfig(shape=(1, 3, 16), runs=1, warmup=0))

    def test_corrupt_file_is_a_model_error(self, profiler, tmp_path):
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not a model")
        with pytest.raises(ModelError, match="cannot load"):
            profiler.profile(bad, ProfileConfig(shape=(1, 3, 8, 8), runs=1))


def onnx_runtime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# -- the contract, on a deterministic fake board ---------------------------------------------

FAKE_TARGET = Target(
    name="fake-board", kind="ssh", isa="aarch64", cores=4, default_threads=3, runtimes=("ort",)
)


class FakeProfiler(Profiler):
    """A board whose run k of a model takes ``base * (1 + 0.01 * (k % 5))`` ms.

    ``base`` is the number written in the model file, so tests know every sample exactly.
    """

    def load(self, model_path: Path, config: ProfileConfig, threads: int) -> Loaded:
        return Loaded(
            path=model_path,
            runtime="ort",
            runtime_version="0-fake",
            threads=threads,
            shape=config.shape,
            state={"base": float(model_path.read_text()), "k": 0},
        )

    def time_round(self, loaded: Loaded, n: int) -> list[float]:
        s = loaded.state
        out = [s["base"] * (1 + 0.01 * ((s["k"] + i) % 5)) for i in range(n)]
        s["k"] += n
        return out

    def machine(self) -> Machine:
        return machine_from_cpuinfo("Features : fp asimd asimddp\n", "aarch64", 4)


@pytest.fixture
def fake_profiler(monkeypatch) -> Profiler:
    monkeypatch.setitem(profile_base._PROFILERS, "ssh", FakeProfiler)
    return FakeProfiler(FAKE_TARGET)


def write_fake(path: Path, base_ms: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(base_ms))
    return path


class TestFakeProfiler(ProfilerContract):
    @pytest.fixture
    def profiler(self, fake_profiler) -> Profiler:
        return fake_profiler

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        return write_fake(tmp_path / "m.onnx", 2.0)


def test_profile_statistics_are_exact(fake_profiler, tmp_path):
    cfg = ProfileConfig(shape=(1, 3, 8, 8), runs=9, warmup=3)
    r = fake_profiler.profile(write_fake(tmp_path / "m.onnx", 2.0), cfg)
    expected = [2.0 * (1 + 0.01 * (k % 5)) for k in range(3, 12)]  # after 3 warm-up runs
    assert r.samples_ms == pytest.approx(expected)
    assert r.median_ms == pytest.approx(np.median(expected))
    assert r.p90_ms == pytest.approx(np.percentile(expected, 90))
    assert r.iqr_ms == pytest.approx(np.percentile(expected, 75) - np.percentile(expected, 25))
    assert r.std_ms == pytest.approx(np.std(expected, ddof=1))
    assert (r.min_ms, r.max_ms) == pytest.approx((2.0, 2.08))
    assert r.threads == 3  # the target's default_threads
    assert r.machine.int8_dot == ("dotprod",)


def test_compare_ratio_and_spread_are_exact(fake_profiler, tmp_path):
    slow = write_fake(tmp_path / "slow.onnx", 3.0)
    fast = write_fake(tmp_path / "fast.onnx", 1.5)
    c = fake_profiler.compare(slow, fast, ProfileConfig(shape=(1,), runs=10, warmup=2))
    # Both models see the same run index k in each round, so every ratio is exactly 2.
    assert c.ratio == pytest.approx(2.0)
    assert c.p90_ratio == pytest.approx(2.0)
    assert (c.round_ratio_q25, c.round_ratio_q75) == pytest.approx((2.0, 2.0))
    assert (c.ci95_low, c.ci95_high) == pytest.approx((2.0, 2.0))
    assert c.rounds == 10


def test_compare_min_time_adds_rounds(fake_profiler, tmp_path):
    a = write_fake(tmp_path / "a.onnx", 1.0)
    b = write_fake(tmp_path / "b.onnx", 2.0)
    c = fake_profiler.compare(a, b, ProfileConfig(shape=(1,), runs=4, min_time_s=0.05))
    assert sum(c.a.samples_ms) >= 50.0  # the faster model also got its 50 ms
    assert c.a.n_runs == c.b.n_runs == c.rounds > 4


class NoisyProfiler(FakeProfiler):
    """The fake board with +-20% seeded noise on every run: a shared machine."""

    def time_round(self, loaded: Loaded, n: int) -> list[float]:
        rng = loaded.state.setdefault("rng", np.random.default_rng(len(str(loaded.path))))
        return [t * float(rng.uniform(0.8, 1.2)) for t in super().time_round(loaded, n)]


def _half_width(c) -> float:
    return max(c.ratio - c.ci95_low, c.ci95_high - c.ratio) / c.ratio


def test_compare_ratio_precision_times_until_the_interval_is_narrow(tmp_path):
    prof = NoisyProfiler(FAKE_TARGET)
    a, b = write_fake(tmp_path / "a.onnx", 1.0), write_fake(tmp_path / "bb.onnx", 2.0)
    loose = prof.compare(a, b, ProfileConfig(shape=(1,), runs=10, warmup=0))
    assert loose.rounds == 10 and _half_width(loose) > 0.02  # 10 noisy runs: a wide interval
    tight = prof.compare(a, b, ProfileConfig(shape=(1,), runs=10, warmup=0, ratio_precision=0.02,
                                             max_time_s=60.0))  # fmt: skip
    assert tight.rounds > 10
    assert _half_width(tight) <= 0.02
    assert tight.ratio == pytest.approx(0.5, rel=0.03)


def test_compare_ratio_precision_stops_at_max_time(tmp_path):
    prof = NoisyProfiler(FAKE_TARGET)
    a, b = write_fake(tmp_path / "a.onnx", 1.0), write_fake(tmp_path / "bb.onnx", 2.0)
    c = prof.compare(a, b, ProfileConfig(shape=(1,), runs=4, warmup=0, ratio_precision=1e-6,
                                         max_time_s=0.2))  # fmt: skip
    spent = sum(c.a.samples_ms) + sum(c.b.samples_ms)
    assert 200.0 <= spent <= 200.0 + 2 * 1.2 * 2.04 * 1.05  # stops within one round of it


def test_compare_ratio_precision_adds_nothing_when_already_precise(fake_profiler, tmp_path):
    a, b = write_fake(tmp_path / "a.onnx", 1.0), write_fake(tmp_path / "b.onnx", 2.0)
    c = fake_profiler.compare(a, b, ProfileConfig(shape=(1,), runs=6, ratio_precision=0.01))
    assert c.rounds == 6  # exact ratios: the interval has no width


def test_threads_fall_back_to_machine_cores(monkeypatch, tmp_path):
    monkeypatch.setitem(profile_base._PROFILERS, "ssh", FakeProfiler)
    prof = get_profiler(FAKE_TARGET.model_copy(update={"default_threads": None}))
    r = prof.profile(write_fake(tmp_path / "m.onnx", 1.0), ProfileConfig(shape=(1,), runs=2))
    assert r.threads == 4


def test_runtime_missing_on_target_is_refused(monkeypatch, tmp_path):
    monkeypatch.setitem(profile_base._PROFILERS, "ssh", FakeProfiler)
    prof = get_profiler(FAKE_TARGET.model_copy(update={"runtimes": ("litert",)}))
    with pytest.raises(ModelError, match="has no ort runtime"):
        prof.profile(write_fake(tmp_path / "m.onnx", 1.0), ProfileConfig(shape=(1,)))


def test_unsupported_format_is_refused(fake_profiler, tmp_path):
    with pytest.raises(ModelError, match="unsupported format"):
        fake_profiler.profile(write_fake(tmp_path / "m.pt", 1.0), ProfileConfig(shape=(1,)))


def test_kind_without_profiler_is_a_user_error(monkeypatch):
    monkeypatch.delitem(profile_base._PROFILERS, "ssh", raising=False)
    with pytest.raises(XCompressError, match="kind 'ssh', which has no profiler.*host"):
        get_profiler("rpi4-cortex-a72")


def test_profile_config_is_frozen_and_validated():
    cfg = ProfileConfig(shape=(1, 3, 48, 320))
    with pytest.raises(ValueError):
        cfg.runs = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        ProfileConfig(shape=(1, 3), runs=0)


# -- shapes ----------------------------------------------------------------------------------


def test_parse_shape():
    assert parse_shape("1x3x48x320") == (1, 3, 48, 320)
    assert parse_shape(" 2X3 ") == (2, 3)
    for bad in ("", "1x3x", "1,3,48", "1x0x4", "ax3", "-1x3"):
        with pytest.raises(XCompressError, match="bad shape"):
            parse_shape(bad)


@pytest.mark.parametrize(
    ("task", "shape"),
    [("rec", (1, 3, 48, 320)), ("cls", (1, 3, 48, 192)), ("det", (1, 3, 960, 960))],
)
def test_default_shape_from_card(task, shape):
    assert default_shape(ModelCard(name="m", task=task)) == shape


# -- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def rec_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    folder.mkdir()
    write_tiny_rec(folder / "model.onnx")
    ModelCard(name="tiny-rec", task="rec", charset=["a", "b", " "]).save(folder)
    return folder


def test_cli_profile_folder_default_shape_and_json(rec_folder, tmp_path, capsys):
    out = tmp_path / "out" / "prof.json"
    rc = main(
        [
            "profile",
            str(rec_folder),
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    stdout = capsys.readouterr().out
    assert rc == 0
    macs = TINY_REC_MACS_PER_PIXEL * 48 * 320  # the rec default shape, 1x3x48x320
    assert "1x3x48x320" in stdout and f"{macs / 1e6:.3f} M" in stdout
    data = json.loads(out.read_text())
    assert data["shape"] == [1, 3, 48, 320]
    assert data["result"]["n_runs"] == 3 and data["result"]["threads"] == 1
    assert data["cost"]["macs"] == macs
    assert data["cost"]["params"] == 4 * 3 * 9 + 4
    assert data["result"]["machine"]["cores"] >= 1
    assert data["comparison"] is None


def test_cli_profile_vs_prints_ratio(rec_folder, tmp_path, capsys):
    other = write_tiny_rec(tmp_path / "other.onnx")
    out = tmp_path / "cmp.json"
    rc = main(
        [
            "profile",
            str(rec_folder),
            "--vs",
            str(other),
            "--shape",
            "1x3x16x16",
            "--runs",
            "6",
            "--warmup",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    assert "A/B median" in capsys.readouterr().out
    c = json.loads(out.read_text())["comparison"]
    assert c["a"]["n_runs"] == c["b"]["n_runs"] == 6
    assert c["ratio"] == pytest.approx(c["a"]["median_ms"] / c["b"]["median_ms"])


def test_cli_bare_file_needs_shape(tmp_path, capsys):
    model = write_tiny_conv(tmp_path / "bare.onnx")
    assert main(["profile", str(model), "--runs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--shape" in err and err.count("\n") == 1
    assert main(["profile", str(model), "--shape", "1x3x8x8", "--runs", "2"]) == 0
    assert f"{TINY_MACS_PER_PIXEL * 64 / 1e3:.3f} k" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "1x3xfoo"], "bad shape"),
        (["--shape", "1x3x16"], "has 4 dims"),
        (["--target", "no-such-board"], "unknown target 'no-such-board'"),
    ],
)
def test_cli_user_errors_are_one_line(rec_folder, capsys, args, message):
    assert main(["profile", str(rec_folder), "--runs", "2", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_missing_model(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nope.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such model") and err.count("\n") == 1


@pytest.mark.heavy
def test_cli_profile_zoo_rec_vs_itself(zoo_model, tmp_path, capsys):
    folder = zoo_model("ppocr-v4-rec").path.parent
    out = tmp_path / "p.json"
    argv = ["profile", "ppocr-v4-rec", "--vs", str(folder), "--runs", "10", "--warmup", "2"]
    assert main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["shape"] == [1, 3, 48, 320] and data["task"] == "rec"
    assert data["cost"]["macs"] == data["vs_cost"]["macs"] == 702_469_440
    assert 0.5 < data["comparison"]["ratio"] < 2.0
    assert "A/B median" in capsys.readouterr().out
