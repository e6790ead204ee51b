"""TFLite export: bucket logic, float/int8 export of tiny nets, LiteRT runner, errors.

The tiny nets are conv-only (a few hundred ops), so a conversion takes seconds; the real
PP-OCR exports are in ``test_export_tflite_heavy.py`` (marked heavy).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from xcompress.card import CARD_NAME, InputSpec, ModelCard, Preprocess
from xcompress.errors import DataError, ModelError
from xcompress.runtime.litert import content_size, fit_to_bucket, pick_bucket

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("ai_edge_litert")

CHARSET = list("0123456789 ")  # 11 characters + CTC blank = 12 classes


class TinyRec(torch.nn.Module):
    """[B,3,16,W] -> softmax [B, W/4, 12]: conv, conv, mean over height, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, 2, 1)
        self.fc = torch.nn.Linear(16, len(CHARSET) + 1)

    def forward(self, x):
        y = torch.relu(self.c2(torch.relu(self.c1(x)))).mean(dim=2).transpose(1, 2)
        return torch.softmax(self.fc(y), dim=2)


class TinyDet(torch.nn.Module):
    """[B,3,H,W] -> probability map [B,1,H,W]."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 4, 3, 1, 1)
        self.c2 = torch.nn.Conv2d(4, 1, 3, 1, 1)

    def forward(self, x):
        return torch.sigmoid(self.c2(torch.relu(self.c1(x))))


def _rec_card() -> ModelCard:
    return ModelCard(
        name="tiny-rec", task="rec", file="model.pt", format="torch", charset=CHARSET,
        input=InputSpec(height=16), preprocess=Preprocess(kind="rec", image_shape=(3, 16, 32)),
    )  # fmt: skip


def _source(module, card):
    from xcompress.export import ModelSource

    torch.manual_seed(0)
    return ModelSource(module.eval(), card, None, card.name, "0" * 64)


@pytest.fixture(scope="module")
def rec_data(tmp_path_factory):
    from xcompress.data import RecSample, write_rec_labels

    root = tmp_path_factory.mktemp("rec_data")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(10):
        img = np.full((16, int(rng.integers(20, 90)), 3), 255, np.uint8)
        cv2.putText(img, str(i * 7), (1, 13), cv2.FONT_HERSHEY_PLAIN, 1.0, (0, 0, 0), 1)
        path = root / f"{i}.png"
        cv2.imwrite(str(path), img)
        samples.append(RecSample(path, str(i * 7)))
    write_rec_labels(root / "label.txt", samples)
    return root


@pytest.fixture(scope="module")
def rec_exports(tmp_path_factory, rec_data):
    """The tiny recognizer exported three ways: float, int8 (float I/O), int8 (int8 I/O)."""
    from xcompress.export import get_exporter

    torch.manual_seed(0)
    module = TinyRec().eval()
    out = tmp_path_factory.mktemp("rec_exports")
    ex = get_exporter("tflite")
    common = {"widths": (32, 64), "calib": str(rec_data), "calib_limit": 6}
    arts = {
        "float": ex.export(_source(module, _rec_card()), {**common}, out / "float"),
        "int8": ex.export(_source(module, _rec_card()), {**common, "int8": True}, out / "int8"),
        "int8io": ex.export(_source(module, _rec_card()),
                            {**common, "int8": True, "io_dtype": "int8"}, out / "int8io"),
    }  # fmt: skip
    return module, arts


# ------------------------------------------------------------------ bucket logic (pure)


def test_pick_bucket_smallest_that_fits():
    buckets = [(48, 640), (48, 320), (48, 960)]
    assert pick_bucket(buckets, 48, 320) == 1
    assert pick_bucket(buckets, 48, 321) == 0
    assert pick_bucket(buckets, 48, 961) is None
    assert pick_bucket([(640, 640), (960, 960), (480, 960)], 480, 700) == 2


def test_fit_pads_with_zeros_right_and_bottom():
    x = np.full((2, 3, 10, 30), 0.5, np.float32)
    f = fit_to_bucket(x, (16, 64))
    assert f.batch.shape == (2, 3, 16, 64)
    assert f.valid == (10, 30) and f.scaled_from is None
    np.testing.assert_array_equal(f.batch[:, :, :10, :30], x)
    assert float(np.abs(f.batch[:, :, 10:, :]).max()) == 0.0
    assert float(np.abs(f.batch[:, :, :, 30:]).max()) == 0.0


def test_fit_trims_padding_before_scaling():
    x = np.zeros((1, 3, 16, 100), np.float32)
    x[:, :, :, :50] = -0.25  # content 50 wide, 50 columns of PaddleOCR padding
    assert content_size(x) == (16, 50)
    f = fit_to_bucket(x, (16, 64))
    assert f.scaled_from is None and f.valid == (16, 50)
    np.testing.assert_array_equal(f.batch[:, :, :, :50], x[:, :, :, :50])


def test_fit_squeezes_a_too_wide_line_keeping_height():
    x = np.full((1, 3, 16, 200), 0.5, np.float32)
    f = fit_to_bucket(x, (16, 64))
    assert f.batch.shape == (1, 3, 16, 64) and f.valid == (16, 64)
    assert f.scaled_from == (16, 200)
    np.testing.assert_allclose(f.batch, 0.5, atol=1e-6)


def test_fit_scales_a_too_large_page_keeping_aspect():
    f = fit_to_bucket(np.ones((1, 3, 256, 128), np.float32), (128, 128))
    assert f.valid == (128, 64) and f.scaled_from == (256, 128)
    assert float(f.batch[0, 0, :, 64:].max()) == 0.0


# ------------------------------------------------------------------ registry and errors


def test_registry_lists_tflite_and_rejects_unknown():
    from xcompress.export import get_exporter, list_exporters

    assert "tflite" in list_exporters()
    assert get_exporter("tflite").suffix == ".tflite"
    with pytest.raises(ModelError, match="no exporter 'coreml'"):
        get_exporter("coreml")


def test_int8_without_calib_is_a_one_line_data_error(tmp_path):
    from xcompress.export import get_exporter

    with pytest.raises(DataError, match="--int8 needs calibration data") as e:
        get_exporter("tflite").export(_source(TinyRec(), _rec_card()), {"int8": True}, tmp_path)
    assert "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("cfg", "match"),
    [({"io_dtype": "int8"}, "io_dtype int8 needs int8"),
     ({"det_sizes": ((100, 96),)}, "multiples of 32"),
     ({"float_ops": (".*",)}, "float_ops needs int8"),
     ({"int8": "maybe"}, "int8")],
)  # fmt: skip
def test_bad_settings_are_one_line_model_errors(cfg, match):
    from xcompress.export import get_exporter

    with pytest.raises(ModelError, match=match) as e:
        get_exporter("tflite").make_config(cfg)
    assert "\n" not in str(e.value)


def test_unconvertible_module_is_a_model_error(tmp_path):
    from xcompress.export import get_exporter

    class DataDependent(torch.nn.Module):
        def forward(self, x):  # control flow on values: torch.export cannot trace it
            return (
                x[:, :, :, : int(x.abs().sum().item()) % 7 + 1].softmax(3).mean(2).transpose(1, 2)
            )

    with pytest.raises(ModelError, match="cannot convert DataDependent") as e:
        get_exporter("tflite").export(_source(DataDependent(), _rec_card()), {"widths": (32,)},
                                      tmp_path / "out")  # fmt: skip
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ float / int8 exports


def test_float_export_matches_torch_at_any_width(rec_exports):
    from xcompress.runtime import open_runner
    from xcompress.runtime.litert import LiteRTRunner

    module, arts = rec_exports
    runner = open_runner(arts["float"].path)
    assert isinstance(runner, LiteRTRunner)  # the registry picks the runner by suffix
    assert sorted(runner.buckets) == [(16, 32), (16, 64)]
    rng = np.random.default_rng(1)
    for w in (20, 32, 48):  # 48 is padded into the 64 bucket
        x = rng.uniform(-1, 1, (2, 3, 16, w)).astype(np.float32)
        bucket = 32 if w <= 32 else 64
        padded = np.zeros((2, 3, 16, bucket), np.float32)
        padded[..., :w] = x
        with torch.no_grad():
            ref = module(torch.from_numpy(padded)).numpy()
        out = runner.run(x)
        assert out.shape == ref.shape == (2, bucket // 4, 12)
        assert float(np.abs(out - ref).max()) <= 1e-4


def test_export_writes_card_and_report(rec_exports):
    _, arts = rec_exports
    folder = arts["int8"].path.parent
    assert sorted(p.name for p in folder.iterdir()) == [
        ".xcompress-output.json", "model.tflite", "report.json", "report.md", CARD_NAME]
    card = ModelCard.load(folder)
    assert (card.format, card.step, card.file) == ("tflite", "export-tflite", "model.tflite")
    assert card.charset == CHARSET and card.parent == "0" * 64
    assert card.step_config["int8"] is True and card.step_config["widths"] == [32, 64]
    assert card.notes["tflite_signatures"] == {"w32": [1, 3, 16, 32], "w64": [1, 3, 16, 64]}
    rep = json.loads((folder / "report.json").read_text())
    assert rep["variant"] == "int8" and rep["float_max_abs_diff"] <= 1e-4
    # eval defaults to the calibration samples after calib_limit: 10 - 6 = 4
    assert rep["accuracy"]["n"] == 4
    assert set(rep["accuracy"]) >= {"parent", "tflite"}
    assert "| tflite | ai-edge-litert |" in (folder / "report.md").read_text()


def _interpreter_io(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    r = it.get_signature_runner(it.get_signature_list().__iter__().__next__())
    return (next(iter(r.get_input_details().values()))["dtype"],
            next(iter(r.get_output_details().values()))["dtype"])  # fmt: skip


def test_int8_is_full_integer_and_close_to_float(rec_exports):
    from ai_edge_litert.interpreter import Interpreter

    from xcompress.runtime import open_runner

    module, arts = rec_exports
    assert _interpreter_io(arts["int8"].path) == (np.float32, np.float32)
    assert _interpreter_io(arts["int8io"].path) == (np.int8, np.int8)
    # every conv / matmul runs on int8 tensors
    it = Interpreter(model_path=str(arts["int8"].path))
    ops = {d["op_name"] for d in it._get_ops_details()}
    assert {"QUANTIZE", "DEQUANTIZE"} <= ops
    dtypes = [np.dtype(d["dtype"]).name for d in it.get_tensor_details()]
    assert dtypes.count("int8") > dtypes.count("float32")
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (1, 3, 16, 60)).astype(np.float32)
    f = open_runner(arts["float"].path).run(x)
    q = open_runner(arts["int8"].path).run(x)
    q8 = open_runner(arts["int8io"].path).run(x)  # the runner (de)quantizes int8 I/O
    assert q.shape == f.shape == q8.shape
    assert 0 < float(np.abs(q - f).max()) < 0.05  # quantized: close, not identical
    assert float(np.abs(q8 - q).max()) <= 1.0 / 128  # same graph, I/O (de)quantized outside
    assert float(np.mean(q.argmax(2) == f.argmax(2))) >= 0.9


def test_float_ops_leave_matching_layers_in_float(rec_exports, rec_data, tmp_path):
    from xcompress.export import get_exporter

    module, arts = rec_exports
    cfg = {"widths": (32,), "calib": str(rec_data), "calib_limit": 6, "int8": True}
    mixed = get_exporter("tflite").export(
        _source(module, _rec_card()), {**cfg, "float_ops": (".*c2.*",)}, tmp_path / "mixed"
    )

    full = _op_weight_dtypes(arts["int8"].path)
    part = _op_weight_dtypes(mixed.path)
    assert sorted(full["CONV_2D"]) == ["int8", "int8"]
    assert full["FULLY_CONNECTED"] == part["FULLY_CONNECTED"] == ["int8"]
    assert sorted(part["CONV_2D"]) == ["float32", "int8"]  # c1 int8, c2 left float


def _op_weight_dtypes(path):
    """op name -> dtypes of its weight (second input) tensors."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    details = {d["index"]: d for d in it.get_tensor_details()}
    out: dict[str, list[str]] = {}
    for op in it._get_ops_details():
        if len(op["inputs"]) > 1 and op["inputs"][1] in details:
            dtype = np.dtype(details[op["inputs"][1]]["dtype"]).name
            out.setdefault(op["op_name"], []).append(dtype)
    return out


def test_eval_runs_on_the_tflite_artifact(rec_exports, rec_data):
    from xcompress.eval import evaluate
    from xcompress.eval.report import EvalConfig

    _, arts = rec_exports
    rep = evaluate(arts["float"].path.parent, rec_data, EvalConfig(progress=False))
    assert rep.model.format == "tflite" and rep.settings.runtime == "ai-edge-litert"
    assert rep.n_samples == 10 and 0.0 <= rep.metrics["cer"] <= 1.0


def test_load_source_refuses_a_tflite_model(rec_exports):
    from xcompress.export import load_source

    _, arts = rec_exports
    with pytest.raises(ModelError, match="is a tflite model"):
        load_source(arts["float"].path.parent)


def test_det_buckets_crop_and_scale_the_map(tmp_path):
    from xcompress.export import get_exporter
    from xcompress.runtime import open_runner

    torch.manual_seed(0)
    module = TinyDet().eval()
    card = ModelCard(name="tiny-det", task="det", file="model.pt", format="torch")
    art = get_exporter("tflite").export(
        _source(module, card), {"det_sizes": ((32, 64), (64, 64))}, tmp_path / "det"
    )
    runner = open_runner(art.path)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    padded = np.zeros((1, 3, 32, 64), np.float32)
    padded[..., :32] = x
    with torch.no_grad():
        ref = module(torch.from_numpy(padded)).numpy()[..., :32]
    out = runner.run(x)
    assert out.shape == (1, 1, 32, 32)
    assert float(np.abs(out - ref).max()) <= 1e-4
    big = runner.run(np.full((1, 3, 128, 96), 0.3, np.float32))  # larger than every bucket
    assert big.shape == (1, 1, 128, 96)
    assert ModelCard.load(art.path.parent).input.height is None


class TinyUpDet(torch.nn.Module):
    """Down 2x with a conv, up 2x with a transposed conv (as PP-OCR's DB head)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.up = torch.nn.ConvTranspose2d(8, 1, 2, 2)

    def forward(self, x):
        return torch.sigmoid(self.up(torch.relu(self.down(x))))


def test_int8_transposed_conv_loads_in_litert(tmp_path):
    """ai-edge-quantizer 0.10 writes TRANSPOSE_CONV's bias with a bad per-channel axis."""
    from xcompress.data import DetSample, TextBox, write_det_labels
    from xcompress.export import get_exporter
    from xcompress.runtime import open_runner

    rng = np.random.default_rng(4)
    samples = []
    for i in range(4):
        img = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        box = TextBox(points=((8, 8), (40, 8), (40, 20), (8, 20)), text="x")
        samples.append(DetSample(tmp_path / f"{i}.png", (box,)))
    write_det_labels(tmp_path / "label.txt", samples)
    torch.manual_seed(0)
    module = TinyUpDet().eval()
    card = ModelCard(name="tiny-up", task="det", file="model.pt", format="torch")
    art = get_exporter("tflite").export(
        _source(module, card),
        {"int8": True, "calib": str(tmp_path), "calib_limit": 3, "det_sizes": ((64, 64),)},
        tmp_path / "out",
    )
    assert "TRANSPOSE_CONV" in _op_weight_dtypes(art.path)
    x = rng.uniform(-2, 2, (1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    out = open_runner(art.path).run(x)
    assert out.shape == ref.shape and float(np.abs(out - ref).max()) < 0.05


def test_calibration_keeps_smoothed_and_exact_ranges():
    from ai_edge_quantizer.utils import qsv_utils

    from xcompress.export.tflite import _pick_range, _smoothed_and_exact

    samples = [{"min": np.array(-1.0), "max": np.array(m)} for m in (2.0, 9.0, 3.0, 2.5)]
    mine, theirs = dict(samples[0]), {}  # the calibrator stores a first sample as is
    for s in samples[1:]:
        mine = _smoothed_and_exact(mine, s)
    for s in samples:
        theirs = qsv_utils.moving_average_update(theirs, s)
    smoothed, exact = _pick_range(mine, False), _pick_range(mine, True)
    # the smoothed range is exactly ai-edge-quantizer's own; the exact one keeps the outlier
    assert float(smoothed["max"]) == pytest.approx(float(theirs["max"]))
    assert float(exact["max"]) == 9.0 and float(exact["min"]) == -1.0
    assert float(smoothed["max"]) < 9.0


def test_exact_range_patterns_select_the_svtr_neck_only():
    import re

    from xcompress.export.tflite import exact_range_patterns
    from xcompress.models.rec import PPOCRv4Rec

    pats = [re.compile(p) for p in exact_range_patterns(PPOCRv4Rec)]
    neck = ("xcompress.models.rec.PPOCRv4Rec/xcompress.models.rec.SVTRNeck_neck/"
            "torch.nn.modules.linear.Linear_fc1;9")
    backbone = ("xcompress.models.rec.PPOCRv4Rec/xcompress.models.lcnetv3.LCNetV3_backbone/"
                "xcompress.models.layers.RepConv_dw;3")
    assert any(p.search(neck) for p in pats)
    assert not any(p.search(backbone) for p in pats)
    assert exact_range_patterns(TinyRec()) == ()


# ------------------------------------------------------------------ accuracy budget, warnings


def test_accuracy_check_signs_the_drop_by_metric_direction():
    from xcompress.export.tflite import accuracy_check

    rec = accuracy_check("rec", {"cer_nospace": 0.01}, {"cer_nospace": 0.049}, 0.005)
    assert rec is not None and rec["metric"] == "cer_nospace" and not rec["higher_is_better"]
    assert rec["drop"] == pytest.approx(0.039) and rec["over_budget"]
    det = accuracy_check("det", {"hmean": 0.90}, {"hmean": 0.898}, 0.005)
    assert det is not None and det["drop"] == pytest.approx(0.002) and not det["over_budget"]
    better = accuracy_check("cls", {"accuracy": 0.9}, {"accuracy": 0.95}, 0.0)
    assert better is not None and better["drop"] < 0 and not better["over_budget"]
    assert accuracy_check("rec", {"cer": 0.1}, {"cer": 0.2}, 0.005) is None  # no headline


def test_export_warnings_name_the_drop_and_the_small_calibration():
    from xcompress.export.tflite import accuracy_check, export_warnings

    check = accuracy_check("rec", {"cer_nospace": 0.0}, {"cer_nospace": 0.039}, 0.005)
    warns = export_warnings("rec", "int8", check, n_eval=16, n_calib=16)
    assert len(warns) == 2 and all("\n" not in w for w in warns)
    assert "3.90 points worse" in warns[0] and "0.50-point budget" in warns[0]
    assert "16 lines only" in warns[1] and "at least 64" in warns[1]
    ok = accuracy_check("rec", {"cer_nospace": 0.0}, {"cer_nospace": 0.004}, 0.005)
    assert export_warnings("rec", "int8", ok, n_eval=200, n_calib=128) == []
    assert export_warnings("det", "int8", None, 0, n_calib=8)[0].startswith(
        "int8 accuracy not checked")  # fmt: skip
    assert "4 pages only" in export_warnings("det", "int8", None, 0, n_calib=4)[0]
    assert export_warnings("rec", "float32", None, 0) == []  # float: no calibration to check


def test_max_drop_is_a_validated_setting():
    from xcompress.export import get_exporter

    ex = get_exporter("tflite")
    assert ex.make_config({}).max_drop == 0.005
    assert ex.make_config({"max_drop": 0.02}).max_drop == 0.02
    with pytest.raises(ModelError, match="max_drop"):
        ex.make_config({"max_drop": -0.1})


def test_export_records_drop_and_warnings_in_card_and_report(rec_exports):
    _, arts = rec_exports
    for name in ("float", "int8"):
        folder = arts[name].path.parent
        notes = ModelCard.load(folder).notes
        rep = json.loads((folder / "report.json").read_text())
        acc = notes["tflite_accuracy"]
        assert set(acc) == {"metric", "higher_is_better", "parent", "tflite", "drop", "max_drop",
                            "n", "data"}  # fmt: skip
        assert acc["metric"] == "cer_nospace" and acc["n"] == 4 and acc["max_drop"] == 0.005
        assert acc["drop"] == pytest.approx(acc["tflite"] - acc["parent"])
        assert rep["accuracy"]["drop"] == acc["drop"] and rep["warnings"] == notes["warnings"]
        assert isinstance(notes["warnings"], list)
    int8_notes = ModelCard.load(arts["int8"].path.parent).notes
    assert int8_notes["tflite_calib_samples"] == 6  # calib_limit 6 < 64: warned
    assert any("6 lines only" in w for w in int8_notes["warnings"])
    float_notes = ModelCard.load(arts["float"].path.parent).notes
    assert "tflite_calib_samples" not in float_notes  # a float export is not calibrated
    assert not any("lines only" in w for w in float_notes["warnings"])
    assert "Warnings:" in (arts["int8"].path.parent / "report.md").read_text()


def test_int8_export_without_a_check_set_warns(rec_data, tmp_path):
    from xcompress.export import get_exporter

    cfg = {"widths": (32,), "calib": str(rec_data), "int8": True}  # all 10 used: none left
    art = get_exporter("tflite").export(_source(TinyRec(), _rec_card()), cfg, tmp_path / "q")
    notes = ModelCard.load(art.path.parent).notes
    assert "tflite_accuracy" not in notes
    assert any(w.startswith("int8 accuracy not checked") for w in notes["warnings"])


def test_saturated_biases_counts_clipped_int32_values(rec_exports):
    from xcompress.export.tflite import saturated_biases

    _, arts = rec_exports
    assert saturated_biases(arts["int8"].path.read_bytes()) == 0
    rep = json.loads((arts["int8"].path.parent / "report.json").read_text())
    assert rep["int32_bias_saturated"] == 0


# ------------------------------------------------------------------ third-party noise


def test_captured_stderr_hides_native_writes_and_lets_errors_through(capfd):
    import os

    from xcompress.quiet import captured_stderr

    with captured_stderr() as cap:
        os.write(2, b"I0000 00:00:1.5 42 port.cc:153] oneDNN custom operations are on\n")
    assert "oneDNN" in cap.text and cap.tail() == ""  # INFO logs are not meaningful lines
    with pytest.raises(RuntimeError, match="convert failed"):
        with captured_stderr() as cap:
            os.write(2, b"Running Calibration::  50%|#####     | 1/2 [00:00<?, ?it/s]\r")
            os.write(2, b"E0000 00:00:00.250 42 convert.cc:9] unsupported op: Foo\n")
            raise RuntimeError("convert failed")
    assert cap.tail() == "convert.cc:9] unsupported op: Foo"
    os.write(2, b"after\n")  # fd 2 is restored
    err = capfd.readouterr().err
    assert "oneDNN" not in err and "unsupported op" not in err and "after" in err


def test_export_failure_carries_the_native_log():
    from xcompress.export.tflite import _failure
    from xcompress.quiet import Captured

    cap = Captured("W1202 00:51:02.5 1 x.py:1] noise\nF0000 00:00:00.3 7 lower.cc:88] Check "
                   "failed: rank == 4\n")  # fmt: skip
    err = _failure("litert-torch cannot convert Net", ValueError("bad graph\ndetails"), cap)
    assert str(err) == ("litert-torch cannot convert Net: bad graph "
                        "(native log: lower.cc:88] Check failed: rank == 4)")  # fmt: skip


def test_silence_third_party_filters_only_known_warnings():
    import logging
    import warnings

    from xcompress import quiet

    with warnings.catch_warnings(record=True) as seen:  # restores the filters afterwards
        warnings.simplefilter("always")
        quiet.silence_third_party()
        leaf = "`isinstance(treespec, LeafSpec)` is deprecated, use ..."
        warnings.warn(leaf, FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
        warnings.warn(leaf, UserWarning, stacklevel=1)  # same text, other category: shown
    assert [(w.category, str(w.message)[:14]) for w in seen] == [
        (FutureWarning, "something else"), (UserWarning, "`isinstance(tr")]  # fmt: skip
    assert logging.getLogger("torchao").level == logging.ERROR
    assert logging.getLogger("xcompress").getEffectiveLevel() < logging.ERROR


def test_int8_export_prints_no_third_party_noise(rec_data, tmp_path, capfd):
    from xcompress.export import get_exporter

    cfg = {"widths": (32, 64), "calib": str(rec_data), "calib_limit": 8, "int8": True}
    capfd.readouterr()
    get_exporter("tflite").export(_source(TinyRec(), _rec_card()), cfg, tmp_path / "q")
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out + err)[:2000]
