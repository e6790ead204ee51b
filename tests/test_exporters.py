"""Every registered exporter passes the exporter contract (``tests/exporter_contract.py``)."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from exporter_contract import ExporterContract  # noqa: E402

from xcompress.card import InputSpec, ModelCard, Preprocess  # noqa: E402
from xcompress.export import ModelSource, list_exporters  # noqa: E402

torch.set_num_threads(1)
DIGITS = list("0123456789")
TINY_CRNN = {"stages": [{"channels": 8}, {"channels": 16}], "hidden": 16}


def _card(height: int, width: int) -> ModelCard:
    return ModelCard(
        name="tiny-rec", task="rec", file="model.pt", format="torch", charset=[*DIGITS, " "],
        input=InputSpec(name="x", height=height), output_name="probs",
        preprocess=Preprocess(kind="rec", image_shape=(3, height, width)),
    )  # fmt: skip


class TestOnnxExporter(ExporterContract):
    exporter_name = "onnx"
    format = "onnx"
    bad_configs = ({"opset": 12}, {"opset": "new"})

    @pytest.fixture
    def source(self):
        from xcompress.models import build_model

        torch.manual_seed(0)
        model = build_model("crnn", {**TINY_CRNN, "num_classes": len(DIGITS) + 2}).eval()
        return ModelSource(model, _card(model.input_height, 96), None, "tiny", "1" * 64)


class TestTFLiteExporter(ExporterContract):
    exporter_name = "tflite"
    format = "tflite"
    bad_configs = ({"io_dtype": "int8"}, {"det_sizes": ((100, 96),)}, {"widths": (4,)})

    @pytest.fixture(autouse=True)
    def _needs_litert(self):
        pytest.importorskip("litert_torch")
        pytest.importorskip("ai_edge_litert")

    @pytest.fixture
    def source(self):
        from test_export_tflite import TinyRec

        torch.manual_seed(0)
        return ModelSource(TinyRec().eval(), _card(16, 32), None, "tiny", "2" * 64)

    @pytest.fixture
    def config(self):
        return {"widths": (32,)}


def test_every_registered_exporter_has_a_contract_test():
    covered = {cls.exporter_name for cls in vars(sys.modules[__name__]).values()
               if isinstance(cls, type) and issubclass(cls, ExporterContract)
               and hasattr(cls, "exporter_name")}
    assert set(list_exporters()) <= covered
