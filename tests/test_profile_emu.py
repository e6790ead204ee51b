"""The emulated ARM64 board: profiler contract, parity, deterministic instruction counts.

Tests that run qemu are skipped where qemu-user or gcc is missing (``.ci/run`` installs them);
the board itself is set up on first use into the user cache (~25 s, then cached).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from profiler_contract import ProfilerContract
from test_profile import write_tiny_conv

from xcompress.boards import apt as apt_mod
from xcompress.boards import qemu as qemu_mod
from xcompress.boards.emu import EmuBoardSpec
from xcompress.cli.main import main
from xcompress.errors import MissingDependencyError, XCompressError
from xcompress.profile import ProfileConfig, Profiler, get_profiler
from xcompress.profile.emu import QemuProfiler, per_run_counts, read_counts
from xcompress.profile.run import open_profiler

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-aarch64") is None or shutil.which("gcc") is None,
    reason="needs qemu-user and gcc (apt-get install qemu-user gcc)",
)


@pytest.fixture(scope="module")
def board():
    """The emulated board with its instruction counter, set up once (cached afterwards)."""
    from xcompress.boards.emu import ensure_arm64_emu

    return ensure_arm64_emu(need_plugin=True)


def write_int8_conv(tmp: Path) -> tuple[Path, Path]:
    """An fp32 Conv(8->16, 3x3) + Relu and its int8 QDQ copy (u8 activations, s8 weights)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv8",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, "H", "W"])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32, int8 = tmp / "conv8.onnx", tmp / "int8" / "conv8.int8.onnx"
    int8.parent.mkdir()
    onnx.save(model, fp32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            gen = np.random.default_rng(1)
            self.batches = iter(
                [{"x": gen.uniform(-1, 1, (1, 8, 16, 16)).astype(np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 7-bit weights: an x86 host without VNNI (AVX2 only) multiplies u8 x s8 with
        # VPMADDUBSW, whose 16-bit pair sums saturate on 8-bit weights (max |diff| vs the
        # aarch64 guest 0.48 on such a host); the parity asserted below is then exact
        reduce_range=True,
    )
    return fp32, int8


# -- the contract, under qemu -----------------------------------------------------------------


@needs_qemu
class TestQemuProfiler(ProfilerContract):
    shape = (1, 3, 8, 8)
    runs = 6
    warmup = 1

    @pytest.fixture
    def profiler(self, board) -> Profiler:
        return get_profiler("arm64-emu-cortex-a76")

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        return write_tiny_conv(tmp_path / "tiny.onnx")

    def test_results_say_emulated(self, profiler, model_path, config):
        r = profiler.profile(model_path, config)
        assert r.runtime_options["timing"] == "emulated"
        assert r.runtime_options["qemu_cpu"] == "cortex-a76"
        assert (r.machine.isa, r.machine.int8_dot) == ("aarch64", ("dotprod",))
        assert r.runtime_version == _ort_version()  # the board runs the host's version

    def test_parity_and_deterministic_count(self, profiler, model_path):
        cfg = ProfileConfig(shape=(1, 3, 8, 8))
        first = profiler.inspect(model_path, cfg)
        second = profiler.inspect(model_path, cfg)
        assert first.max_abs_diff_vs_host is not None and first.max_abs_diff_vs_host < 1e-5
        assert first.output_shape == (1, 8, 8, 8)
        # Same model and input, another process: the same count, run by run, to 0.1%. Exact
        # equality held on most runs, but once (the first run on a new machine) the second
        # process counted 9 more instructions per run (75,849 vs 75,840): the guest's own
        # libraries, not the model.
        assert first.per_run_instructions == pytest.approx(second.per_run_instructions, rel=1e-3)
        assert first.instructions_per_inference == pytest.approx(
            second.instructions_per_inference, rel=1e-3)
        assert first.instructions_per_inference > 10_000
        assert len(first.per_run_instructions) == first.counted_runs == 3
        assert first.int8_dot_instructions_per_inference == 0  # fp32: no int8 dot products
        assert first.other_instructions_per_inference == first.instructions_per_inference

    def test_wrong_shape_is_a_model_error(self, profiler, model_path):
        with pytest.raises(XCompressError, match="cannot run the model"):
            profiler.profile(model_path, ProfileConfig(shape=(1, 3, 8), runs=1, warmup=0))


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


@needs_qemu
def test_int8_dot_products_counted_only_where_the_cpu_has_them(board, tmp_path):
    fp32, int8 = write_int8_conv(tmp_path)
    cfg = ProfileConfig(shape=(1, 8, 16, 16))
    a76 = open_profiler("arm64-emu", cpu="cortex-a76")
    a72 = open_profiler("arm64-emu", cpu="cortex-a72")
    q76, q72, f76 = a76.inspect(int8, cfg), a72.inspect(int8, cfg), a76.inspect(fp32, cfg)
    # 16x16 outputs x 16 channels x 72 MACs = 294,912 MACs; an SDOT/UDOT does 16.
    assert q76.int8_dot_instructions_per_inference >= 294_912 // 16
    assert q72.int8_dot_instructions_per_inference == 0  # Armv8.0: no SDOT/UDOT
    assert f76.int8_dot_instructions_per_inference == 0
    assert q76.instructions_per_inference < q72.instructions_per_inference
    assert q76.max_abs_diff_vs_host is not None and q76.max_abs_diff_vs_host < 1e-3
    assert q76.int8_dot_share == pytest.approx(
        q76.int8_dot_instructions_per_inference / q76.instructions_per_inference
    )


@needs_qemu
def test_cli_writes_the_named_keys(board, tmp_path, capsys):
    model = write_tiny_conv(tmp_path / "m.onnx")
    out = tmp_path / "r.json"
    code = main(
        [
            "profile", str(model), "--shape", "1x3x8x8", "--target", "arm64-emu",
            "--cpu", "neoverse-n1", "--runs", "3", "--warmup", "1", "--threads", "1",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "NOT a device latency" in printed
    rep = json.loads(out.read_text())
    emu = rep["emulation"]
    assert rep["target"]["name"] == "arm64-emu-neoverse-n1"
    assert emu["cpu"] == "neoverse-n1"
    assert emu["max_abs_diff_vs_host"] < 1e-5
    assert emu["instructions_per_inference"] > 10_000
    assert emu["emulated_wall_ms"] == pytest.approx(rep["result"]["median_ms"])
    assert "not a device latency" in emu["emulated_wall_note"]


@needs_qemu
@pytest.mark.heavy
def test_ppocr_v4_rec_int8_needs_fewer_instructions(board, tmp_path):
    from xcompress import zoo

    fp32 = zoo.ensure_local("ppocr-v4-rec") / "model.onnx"
    _, int8 = write_ppocr_int8(fp32, tmp_path)
    prof = open_profiler("arm64-emu", cpu="cortex-a76")
    cfg = ProfileConfig(shape=(1, 3, 48, 320))
    f, q = prof.inspect(fp32, cfg), prof.inspect(int8, cfg)
    assert f.max_abs_diff_vs_host < 1e-4
    assert q.int8_dot_instructions_per_inference > 0
    assert q.instructions_per_inference < 0.8 * f.instructions_per_inference


def write_ppocr_int8(fp32: Path, tmp: Path) -> tuple[Path, Path]:
    """A quick int8 QDQ PP-OCRv4 rec (opset 17, random calibration): for counting only."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    up = tmp / "v4rec17.onnx"
    onnx.save(onnx.version_converter.convert_version(onnx.load(fp32), 17), up)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            gen = np.random.default_rng(0)
            self.batches = iter(
                [{"x": gen.uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self.batches, None)

    out = tmp / "v4rec.int8.onnx"
    quantize_static(str(up), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return up, out


# -- no qemu needed ----------------------------------------------------------------------------


def test_read_counts(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text(
        "marker 1 50 0 0\nmarker 1 100 3 0\nmarker 3 1100 43 5\nmarker 3 2150 83 9\n"
        "exit 0 3000 90 9\n"
    )
    snaps = read_counts(f)
    assert snaps[1] == (1, 100, 3, 0) and len(snaps) == 4
    # Runs are counted from the last begin marker: 1000 and 1050 instructions.
    assert per_run_counts(snaps) == [(1000, 40, 5), (1050, 40, 4)]


def test_cpu_option_applies_to_emulated_targets_only():
    with pytest.raises(XCompressError, match="--cpu applies to emulated targets"):
        open_profiler("host", cpu="cortex-a76")
    with pytest.raises(XCompressError, match="unknown emulated CPU 'cortex-x9'.*cortex-a76"):
        open_profiler("arm64-emu", cpu="cortex-x9")
    p = open_profiler("arm64-emu", cpu="cortex-a72")
    assert isinstance(p, QemuProfiler)
    assert (p.target.name, p.target.emu_cpu, p.target.int8_dot) == (
        "arm64-emu-cortex-a72",
        "cortex-a72",
        None,
    )
    assert open_profiler("arm64-emu").target.name == "arm64-emu-cortex-a76"


def test_every_target_form_goes_through_the_one_resolver(tmp_path):
    from xcompress.profile.run import resolve_target

    assert get_profiler("arm64-emu").target.name == "arm64-emu-cortex-a76"  # alias, old entry
    assert resolve_target("arm64-emu", cpu="neoverse-n1").int8_dot == "dotprod"
    yaml_file = tmp_path / "my-emu.yaml"
    yaml_file.write_text("kind: arm64-emu\nisa: aarch64\ncores: 2\nemu_cpu: cortex-a72\n")
    assert open_profiler(yaml_file).target.name == get_profiler(str(yaml_file)).target.name
    prof = open_profiler("arm64-emu")
    assert open_profiler(prof) is prof  # a ready profiler passes through


def test_emulated_target_int8_dot_is_read_against_its_cpu(tmp_path):
    path = tmp_path / "emu.yaml"
    path.write_text("kind: arm64-emu\nisa: aarch64\ncores: 4\nemu_cpu: cortex-a76\n")
    assert open_profiler(path).target.int8_dot == "dotprod"  # left out: the CPU model's
    path.write_text(
        "kind: arm64-emu\nisa: aarch64\ncores: 4\nemu_cpu: cortex-a72\nint8_dot: dotprod\n"
    )
    with pytest.raises(XCompressError, match="says int8_dot: dotprod.*cortex-a72 has none"):
        open_profiler(path)


def test_emulated_cpus_are_data():
    assert list(qemu_mod.EMU_CPUS) == [
        "cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1",
        "max", "max,sme=off",
    ]  # fmt: skip
    a76, n1, mx = (qemu_mod.cpu_facts(c) for c in ("cortex-a76", "neoverse-n1", "max"))
    assert (a76.implementer, a76.part, a76.variant, a76.int8_dot) == (0x41, 0xD0B, 4, "dotprod")
    assert n1.features == a76.features and n1.features.endswith("lrcpc dcpop asimddp")
    assert mx.features.endswith("asimddp i8mm sve sve2") and mx.int8_dot == "i8mm"
    assert dict(mx.broken_runtimes)["litert"].endswith("or max,sme=off")
    assert qemu_mod.cpu_facts("cortex-a53").features == (
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
    )


def test_litert_refused_on_sme_cpu(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    prof = open_profiler("arm64-emu", cpu="max")
    with pytest.raises(XCompressError, match="max,sme=off"):
        prof.profile(model, ProfileConfig(shape=(1, 3, 8, 8)))


def test_missing_qemu_names_the_package(monkeypatch):
    monkeypatch.setattr(qemu_mod.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="apt-get install qemu-user"):
        qemu_mod.find_qemu()


def test_fake_cpuinfo_describes_the_cpu():
    from xcompress.profile.machine import machine_from_cpuinfo

    text = qemu_mod.cpu_facts("cortex-a76").cpuinfo(4)
    assert text.count("processor\t:") == 4 and "CPU part\t: 0xd0b" in text
    assert machine_from_cpuinfo(text, "aarch64", 4).int8_dot == ("dotprod",)
    a72 = qemu_mod.cpu_facts("cortex-a72").cpuinfo(1)
    assert machine_from_cpuinfo(a72, "aarch64", 1).int8_dot == ()


def test_apt_sources_parsing(monkeypatch, tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
        "Components: main\n"
    )
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://security.debian.org/debian-security "
        "bookworm-security main contrib\n"
    )
    (tmp_path / "os-release").write_text('NAME="Debian"\nVERSION_CODENAME=bookworm\n')
    monkeypatch.setattr(apt_mod, "SOURCES_DIR", d)
    monkeypatch.setattr(apt_mod, "SOURCES_LIST", tmp_path / "sources.list")
    monkeypatch.setattr(apt_mod, "OS_RELEASE", tmp_path / "os-release")
    got = apt_mod.system_sources()
    assert [(s.uri, s.suites) for s in got] == [
        ("http://security.debian.org/debian-security", ("bookworm-security",)),
        ("http://deb.debian.org/debian", ("bookworm", "bookworm-updates")),
    ]  # the third-party repository is left out
    stanza = got[1].stanza("arm64")
    assert "Types: deb deb-src" in stanza and "Architectures: arm64" in stanza
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in stanza


def test_board_spec_key_tracks_its_recipe():
    a = EmuBoardSpec()
    assert a.key() == EmuBoardSpec().key()
    assert a.key() != EmuBoardSpec(cores=8).key()
    assert any(w.startswith("onnxruntime==") for w in a.wheels)  # pinned to the host's
