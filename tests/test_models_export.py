"""Export back to ONNX: same contract as the original, ORT == torch within 1e-4."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from xcompress.artifact import charset_from_onnx
from xcompress.card import InputSpec, ModelCard
from xcompress.models import build_model, get_arch, list_archs
from xcompress.models.export import export_onnx, max_abs_diff

torch.set_num_threads(1)
TOL = 1e-4


def _card(task: str, charset: list[str] | None) -> ModelCard:
    return ModelCard(name="tiny", task=task, file="model.pt", format="torch",  # type: ignore[arg-type]
                     charset=charset, input=InputSpec(name="x"), output_name="probs")  # fmt: skip


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", list_archs())
def test_export_roundtrip_tiny(name: str, tmp_path) -> None:
    entry = get_arch(name)
    cfg = entry.tiny()
    model = build_model(name, cfg).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics, so folding is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    charset = list("0123456789")[: cfg.num_classes - 1] if entry.task == "rec" else None  # type: ignore[attr-defined]
    folder = export_onnx(model, _card(entry.task, charset), tmp_path / "out")
    proto = onnx.load(str(folder / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["probs"]
    dims = _dims(proto.graph.input[0])
    if entry.task == "rec":
        assert (
            isinstance(dims[0], str) and isinstance(dims[3], str) and dims[2] == model.input_height
        )
        assert charset_from_onnx(folder / "model.onnx") == [*charset, " "]
    else:
        assert all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    card = json.loads((folder / "xcompress.json").read_text())
    assert card["format"] == "onnx" and card["notes"]["export_max_abs_diff"] <= TOL
    # independent check at shapes the export never saw
    assert max_abs_diff(model, folder / "model.onnx", entry.task, seed=5) <= TOL


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["ppocr-v4-rec", "ppocr-v4-det"])
def test_export_roundtrip_imported(name: str, zoo_model, tmp_path) -> None:
    from xcompress.models.importers import import_onnx
    from xcompress.models.onnx_import import compare_with_onnx

    original = zoo_model(name)
    model, card = import_onnx(name)
    folder = export_onnx(model, card, tmp_path / "out")
    exported = onnx.load(str(folder / "model.onnx"))
    src = onnx.load(str(original.path))
    assert exported.graph.input[0].name == src.graph.input[0].name
    assert exported.graph.output[0].name == src.graph.output[0].name
    if card.task == "rec":
        assert charset_from_onnx(folder / "model.onnx") == original.card.charset
        shapes = [(1, 3, 48, 160), (2, 3, 48, 320)]
    else:
        shapes = [(1, 3, 320, 320), (1, 3, 256, 416)]
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes]
    # exported vs torch, and exported vs the original model
    assert compare_with_onnx(model, folder / "model.onnx", inputs) <= TOL
    assert compare_with_onnx(model, original.path, inputs) <= TOL
