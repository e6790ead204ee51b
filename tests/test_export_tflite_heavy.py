"""Real PP-OCRv4 exports to int8 TFLite (heavy: minutes on 2 cores; run with -m heavy).

The held-out accuracy numbers of record come from ``benchmarks/tflite_bench.py``; these cases
check the same path end to end on small generated sets.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.heavy

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")


def _synth(task, out, count, seed):
    from xcompress.data.synth.generator import SynthConfig, generate

    generate(SynthConfig(task=task, count=count, seed=seed, lang="mix"), out)
    return out


def test_ppocr_v4_rec_int8_tflite_keeps_cer(tmp_path, zoo_model):
    from xcompress.data.synth.generator import SynthConfig, generate
    from xcompress.export import export_model

    charset = tuple(zoo_model("ppocr-v4-rec").card.charset)
    calib = tmp_path / "calib"
    generate(SynthConfig(task="rec", count=90, seed=5, lang="mix", charset=charset), calib)
    art = export_model(
        "ppocr-v4-rec", "tflite",
        {"int8": True, "calib": str(calib), "calib_limit": 50, "widths": (320, 640)},
        tmp_path / "out",
    )  # fmt: skip
    rep = json.loads((art.path.parent / "report.json").read_text())
    assert rep["float_max_abs_diff"] <= 1e-4
    assert rep["exact_ranges"]  # the SVTR neck's ranges are exact min/max
    acc = rep["accuracy"]
    assert acc["n"] == 40
    assert acc["tflite"]["cer_nospace"] - acc["parent"]["cer_nospace"] <= 0.02
    assert rep["size_bytes"] < rep["parent_size_bytes"]  # int8, two buckets < fp32 ONNX


def test_ppocr_v4_det_int8_tflite_keeps_hmean(tmp_path, zoo_model):
    from xcompress.export import export_model

    calib = _synth("det", tmp_path / "calib", 14, 5)
    art = export_model(
        "ppocr-v4-det", "tflite",
        {"int8": True, "calib": str(calib), "calib_limit": 8, "det_sizes": ((960, 960),)},
        tmp_path / "out",
    )  # fmt: skip
    rep = json.loads((art.path.parent / "report.json").read_text())
    assert rep["float_max_abs_diff"] <= 1e-4
    acc = rep["accuracy"]
    assert acc["n"] == 6
    assert acc["parent"]["hmean"] - acc["tflite"]["hmean"] <= 0.05
