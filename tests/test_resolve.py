"""One resolver (zoo name, folder, ONNX file, `.pt` checkpoint), one charset module, and one
declaration per task of which metric ranks models."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from tiny_models import tiny_rec

from xcompress.artifact import Artifact, resolve_model
from xcompress.card import ModelCard, default_postprocess, default_preprocess
from xcompress.errors import ModelError

TINY_CRNN = {"stages": [{"channels": 8}, {"channels": 16}], "hidden": 16}


def _checkpoint(path: Path, charset: str = "0123456789") -> Path:
    from xcompress.models import build_model
    from xcompress.models.checkpoint import save_checkpoint

    model = build_model("crnn", {**TINY_CRNN, "num_classes": len(charset) + 1})
    card = ModelCard(name="crnn-test", task="rec", file="model.pt", format="torch",
                     preprocess=default_preprocess("rec"), postprocess=default_postprocess("rec"),
                     charset=list(charset))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model, card)


def test_a_checkpoint_resolves_to_a_torch_artifact_with_its_own_card(tmp_path) -> None:
    pt = _checkpoint(tmp_path / "run" / "best.pt")
    art = resolve_model(pt)
    assert art.path == pt and art.card.format == "torch" and art.card.name == "crnn-test"
    assert art.card.charset == list("0123456789")
    assert resolve_model(str(pt), task="rec").card == art.card
    with pytest.raises(ModelError, match="is a rec model, not det"):
        resolve_model(pt, task="det")
    # a folder that holds only a checkpoint needs neither a card nor --task
    assert resolve_model(tmp_path / "run").path == pt


def test_a_checkpoint_takes_a_charset_that_fits_it(tmp_path) -> None:
    pt = _checkpoint(tmp_path / "best.pt")
    (tmp_path / "keys.txt").write_text("".join(f"{c}\n" for c in "9876543210"), encoding="utf-8")
    (tmp_path / "short.txt").write_text("a\nb\n", encoding="utf-8")
    assert resolve_model(pt, charset=tmp_path / "keys.txt").card.charset == list("9876543210")
    with pytest.raises(ModelError, match="outputs 11 classes"):
        resolve_model(pt, charset=tmp_path / "short.txt")


def test_not_a_checkpoint_is_one_line(tmp_path) -> None:
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(ModelError, match="not an xcompress checkpoint"):
        resolve_model(fake)


def test_load_source_builds_the_module_from_the_resolved_artifact(tmp_path) -> None:
    from xcompress.export import load_source

    pt = _checkpoint(tmp_path / "best.pt")
    src = load_source(pt)
    assert src.parent is None and src.card == resolve_model(pt).card and not src.module.training
    assert load_source(Artifact(pt, src.card)).card == src.card


def test_one_charset_module(tmp_path) -> None:
    import xcompress.artifact as artifact
    import xcompress.data.charset as data_charset
    import xcompress.zoo.charset as charset

    assert artifact.charset_from_onnx is charset.charset_from_onnx
    assert artifact.charset_for_model is charset.charset_for_model
    assert data_charset.charset_from_file is charset.charset_from_file
    assert data_charset.charset_from_model is charset.charset_from_model
    path = tiny_rec(tmp_path / "m.onnx", card=False, charset=["a", "b", " "]).path
    assert charset.charset_from_onnx(path) is None
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"character": "a\r\nb\n"})  # Windows line ends, final \n
    onnx.save(model, str(path))
    # the same rules as a dict file: line ends removed, the final newline is not an entry
    assert charset.charset_from_onnx(path) == charset.parse_dict("a\r\nb\n") == ["a", "b", " "]
    assert resolve_model(path, task="rec").card.charset == ["a", "b", " "]


def test_each_task_declares_its_metrics_once() -> None:
    from xcompress.eval import TASK_METRICS, task_metrics
    from xcompress.eval.tasks import _EVALUATORS
    from xcompress.quantize.signals import get_signal

    assert set(TASK_METRICS) == set(_EVALUATORS) == {"rec", "det", "cls"}
    for task, tm in TASK_METRICS.items():
        sig = get_signal(task)
        assert (sig.metric, sig.metrics, sig.higher_is_better) == (
            tm.default_budget, tm.budget, tm.higher_is_better)  # fmt: skip
        assert tm.headline in tm.shown and tm.summary[0] == tm.headline
    rec = task_metrics("rec")
    assert rec.headline == rec.default_budget == "cer_nospace" and not rec.higher_is_better
    assert {"cer", "cer_nospace"} <= set(rec.budget) and get_signal("rec", "cer").metric == "cer"
    assert rec.better(0.01, 0.02) and task_metrics("det").better(0.9, 0.8)
    with pytest.raises(KeyError, match="known: rec, det, cls"):
        task_metrics("seg")


def test_export_summary_prints_both_cers(tmp_path) -> None:
    import json

    from xcompress.export import summarize

    (tmp_path / "report.json").write_text(json.dumps({
        "task": "rec", "variant": "int8", "size_bytes": 3_000_000, "accuracy": {
            "n": 64, "metric": "cer_nospace", "drop": 0.001,
            "parent": {"cer_nospace": 0.010, "cer": 0.020},
            "tflite": {"cer_nospace": 0.011, "cer": 0.022}}}), encoding="utf-8")  # fmt: skip
    line = summarize(Artifact(tmp_path / "model.tflite", ModelCard(name="m", task="rec")))
    assert "cer_nospace 0.0110 (parent 0.0100, drop 0.10 pt), cer 0.0220 (parent 0.0200)" in line
    assert line.endswith("on 64 samples")
