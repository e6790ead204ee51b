"""The runtime layer: the descriptor contract for each runtime, one session factory, and the
board runner choosing the LiteRT bucket the host runner chooses."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime_contract import RuntimeContract
from test_profile import write_tiny_conv

from xcompress.boards import runner as board_runner
from xcompress.boards.session import runner_source
from xcompress.errors import ModelError
from xcompress.runtime import (
    Runner,
    format_of_suffix,
    get_runtime,
    list_runtimes,
    model_suffixes,
    open_runner,
    runtime_names,
)
from xcompress.runtime import litert as litert_mod
from xcompress.runtime import ort as ort_mod

TESTED_RUNTIMES = {"ort", "litert"}  # each has a RuntimeContract class below


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A tiny detector exported by xcompress: two buckets, 32x32 and 32x64."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    from xcompress.card import ModelCard
    from xcompress.export import ModelSource, get_exporter

    class TinyDet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 4, 3, 1, 1)
            self.c2 = torch.nn.Conv2d(4, 1, 3, 1, 1)

        def forward(self, x):
            return torch.sigmoid(self.c2(torch.relu(self.c1(x))))

    torch.manual_seed(0)
    card = ModelCard(name="tiny-det", task="det", file="model.pt", format="torch")
    source = ModelSource(TinyDet().eval(), card, None, card.name, "0" * 64)
    out = tmp_path_factory.mktemp("tflite") / "det"
    art = get_exporter("tflite").export(source, {"det_sizes": ((32, 32), (32, 64))}, out)
    return art.path


# -- the contract, per runtime -----------------------------------------------------------------


class TestOrt(RuntimeContract):
    shape = (1, 3, 16, 16)

    @pytest.fixture
    def runtime(self):
        return get_runtime("ort")

    @pytest.fixture
    def model_path(self, tmp_path):
        return write_tiny_conv(tmp_path / "tiny.onnx")


class TestLiteRT(RuntimeContract):
    shape = (1, 3, 24, 40)  # between the buckets: padded into 32x64

    @pytest.fixture
    def runtime(self):
        return get_runtime("litert")

    @pytest.fixture
    def model_path(self, tiny_tflite):
        return tiny_tflite


def test_every_runnable_runtime_has_a_contract_test():
    assert set(runtime_names()) == TESTED_RUNTIMES


def test_suffixes_and_formats_are_the_descriptors():
    assert model_suffixes() == (".onnx", ".tflite", ".pt")
    assert format_of_suffix() == {".onnx": "onnx", ".tflite": "tflite", ".pt": "torch"}
    assert [rt.name for rt in list_runtimes()] == ["ort", "litert", "torch"]


def test_a_format_without_runner_is_refused_like_an_unknown_one(tmp_path):
    for name in ("m.pt", "m.xyz"):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(ModelError, match=r"unsupported model format \(supported: .onnx, "):
            open_runner(tmp_path / name)


def test_a_runner_of_no_registered_runtime_names_itself():
    class Echo(Runner):
        input_name = output_name = "x"  # type: ignore[assignment]

        def run(self, batch: np.ndarray) -> np.ndarray:
            return batch

    assert Echo().runtime_info == ("Echo", "unknown")


def test_importing_the_layer_loads_no_backend():
    code = (
        "import sys, xcompress.runtime\n"
        "print([m for m in ('onnxruntime', 'ai_edge_litert', 'cv2') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- one place for onnxruntime sessions -----------------------------------------------------------


def test_session_options_are_the_projects():
    so = ort_mod.session_options(3, timing=True)
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (3, 1)
    assert so.log_severity_level == ort_mod.LOG_SEVERITY
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    plain = ort_mod.session_options(None)
    assert plain.intra_op_num_threads == 0  # onnxruntime's default
    with pytest.raises(RuntimeError, match="does not have configuration"):
        plain.get_session_config_entry("session.intra_op.allow_spinning")


def test_only_the_runtime_layer_and_the_board_runner_make_sessions():
    root = Path(ort_mod.__file__).parents[1]
    makers = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py") if "InferenceSession(" in p.read_text()
    )
    assert makers == ["boards/runner.py", "runtime/ort.py"]


def test_ort_int8_ops_are_the_quantizers():
    from xcompress.quantize.plans import get_plan
    from xcompress.quantize.rewrites import ORT_INT8_OPS

    ort = get_runtime("ort")
    assert ORT_INT8_OPS is ort.int8_ops
    assert get_plan("int8-conv").op_types == ort.int8_weight_ops
    assert get_plan("int8-all").op_types == ort.int8_graph_ops


# -- the board runner: standalone, same options, same buckets -------------------------------------


def test_board_runner_imports_only_the_standard_library_at_top():
    tree = ast.parse(runner_source().read_text())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert top <= set(sys.stdlib_module_names)


def test_board_runner_sessions_have_the_layers_options():
    assert board_runner.ORT_TIMING_CONFIG == ort_mod.TIMING_SESSION_CONFIG
    assert board_runner.ORT_LOG_SEVERITY == ort_mod.LOG_SEVERITY


BUCKET_SETS = [
    [(48, 320), (48, 640), (48, 960)],
    [(48, 960), (48, 320)],
    [(640, 640), (960, 960), (480, 960)],
    [(32, 32), (32, 64), (64, 32)],
    [(16, 16)],
]


@pytest.mark.parametrize("buckets", BUCKET_SETS)
def test_board_runner_chooses_the_hosts_bucket(buckets):
    sizes = [16, 24, 32, 40, 48, 64, 100, 320, 321, 480, 640, 700, 960, 1000]
    contents = [None, (16, 16), (48, 300), (32, 64), (1000, 1000)]
    for h, w, content in itertools.product(sizes, sizes, contents):
        fn = None if content is None else (lambda c=content: c)
        assert board_runner.choose_bucket(buckets, h, w, fn) == litert_mod.choose_bucket(
            buckets, h, w, fn
        ), (buckets, h, w, content)


@pytest.mark.parametrize(
    ("shape", "size"), [((1, 3, 20, 30), (37, 23)), ((2, 1, 40, 64), (32, 53))]
)
def test_board_runner_resize_is_opencvs_bilinear(shape, size):
    import cv2

    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    ours = board_runner._resize(x, *size)
    ref = np.stack([
        np.stack([cv2.resize(ch, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for ch in img])
        for img in x
    ])  # fmt: skip
    assert ours.shape == ref.shape and float(np.abs(ours - ref).max()) < 1e-5


def _run_board_runner(model: Path, runtime: str, x: np.ndarray, tmp: Path) -> np.ndarray:
    np.save(tmp / "x.npy", x)
    cmd = [sys.executable, "-u", str(runner_source()), "--model", str(model), "--input",
           str(tmp / "x.npy"), "--runtime", runtime, "--output", str(tmp / "y.npy")]  # fmt: skip
    proc = subprocess.run(cmd, input='{"op": "time", "n": 2}\n{"op": "quit"}\n',
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and lines[0].get("ready"), proc.stdout + proc.stderr
    assert len(lines[1]["times_ms"]) == 2
    return np.load(tmp / "y.npy")


@pytest.mark.parametrize(
    "shape",
    [(1, 3, 32, 64), (1, 3, 24, 40), (2, 3, 32, 20), (1, 3, 48, 80)],  # exact, pad, batch, scale
)
def test_board_runner_runs_the_graph_the_host_runs(tiny_tflite, tmp_path, shape):
    x = np.random.default_rng(2).uniform(-1, 1, shape).astype(np.float32)
    host = open_runner(tiny_tflite, threads=1).run(x)
    board = _run_board_runner(tiny_tflite, "litert", x, tmp_path)
    assert board.shape == host.shape == (shape[0], 1, *shape[2:])
    assert float(np.abs(board - host).max()) < 1e-4


def test_board_runner_runs_onnx_as_the_host(tmp_path):
    model = write_tiny_conv(tmp_path / "tiny.onnx")
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 8, 12)).astype(np.float32)
    board = _run_board_runner(model, "ort", x, tmp_path)
    assert np.allclose(board, open_runner(model, threads=1).run(x), atol=1e-6)


@pytest.mark.parametrize(("isa", "flags", "exact"), [
    ("x86_64", "avx2 fma", True),              # VPMADDUBSW kernels saturate: exact ones asked
    ("x86_64", "avx2 avx512_vnni", False),     # VNNI: exact already, the fast path stays
    ("aarch64", "asimd", False),               # ARM: nothing to change
])  # fmt: skip
def test_exact_int8_sessions_only_on_x86_without_vnni(monkeypatch, isa, flags, exact):
    from xcompress.profile import machine
    from xcompress.runtime import ort as ort_rt

    fake = machine.machine_from_cpuinfo(f"model name : cpu\nflags : {flags}\n", isa, 2)
    monkeypatch.setattr(machine, "host_machine", lambda: fake)
    ort_rt.host_session_config.cache_clear()
    try:
        so = ort_rt.session_options(2)
        got = so.get_session_config_entry("session.x64quantprecision") if exact else None
        assert ort_rt.host_session_config() == (ort_rt.X64_EXACT_INT8_CONFIG if exact else {})
        assert got == ("1" if exact else None)
    finally:
        ort_rt.host_session_config.cache_clear()
