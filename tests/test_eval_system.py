"""End-to-end system evaluation: the e2e protocol on hand-made cases, and the real PP-OCRv4
det + cls + rec pipeline on rendered pages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_eval import FONT, _det_pages, _write_set  # the shared page renderer

from xcompress.cli.main import main
from xcompress.errors import DataError, ModelError
from xcompress.eval.system import SystemEvalConfig, evaluate_system
from xcompress.ocr.metrics import E2E_COLUMNS, e2e_metrics, e2e_page, half_width
from xcompress.ocr.system import rotate_crop, sorted_boxes

SQ = [[0, 0], [100, 0], [100, 20], [0, 20]]


def _box(x: float, y: float, w: float = 100, h: float = 20) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def _gt(points, text, ignore=False):
    return {"points": points, "transcription": "###" if ignore else text}


def test_e2e_page_counts_hits_ignoring_spaces_and_width():
    gts = [_gt(_box(0, 0), "Total 12"), _gt(_box(0, 50), "（１）"), _gt(_box(0, 100), "x")]
    preds = [(np.array(_box(2, 1)), "Total12"), (np.array(_box(0, 50)), "(1)"),
             (np.array(_box(300, 300)), "stray")]
    c = dict(zip(E2E_COLUMNS, e2e_page(preds, gts), strict=True))
    assert (c["hit_nospace"], c["hit"], c["n_dt"], c["n_gt"]) == (2, 0, 3, 3)
    m = e2e_metrics(e2e_page(preds, gts))
    assert m["e2e_precision"] == pytest.approx(2 / 3) and m["e2e_recall"] == pytest.approx(2 / 3)
    assert m["e2e_hmean_asis"] == 0.0
    assert half_width("（１）　Ａ") == "(1) A"


def test_e2e_page_one_to_one_highest_iou_first_and_dont_care():
    # two predictions overlap one ground truth: the better-placed one takes it
    gts = [_gt(_box(0, 0), "abc"), _gt(_box(0, 60), "", ignore=True)]
    preds = [(np.array(_box(30, 0)), "abc"), (np.array(_box(1, 0)), "abd"),
             (np.array(_box(0, 60)), "anything")]
    c = dict(zip(E2E_COLUMNS, e2e_page(preds, gts), strict=True))
    assert c["hit_nospace"] == 0  # the IoU-best prediction read 'abd'
    assert c["n_gt"] == 1 and c["n_dt"] == 2  # the line read on the don't-care box is left out
    assert c["edits_nospace"] == 1 and c["chars_nospace"] == 3
    # below IoU 0.5 nothing matches
    far = e2e_page([(np.array(_box(60, 0)), "abc")], [_gt(_box(0, 0), "abc")])
    assert e2e_metrics(far)["e2e_hmean"] == 0.0


def test_sorted_boxes_reading_order_within_a_row():
    a, b, c = np.array(_box(200, 5), float), np.array(_box(0, 0), float), np.array(_box(0, 50))
    assert [int(x[0][0]) for x in sorted_boxes([a, c, b])] == [0, 200, 0]


def test_rotate_crop_upright_rectangle_and_tall_boxes_turned():
    img = np.zeros((100, 200, 3), np.uint8)
    img[10:30, 20:120] = 255
    crop = rotate_crop(img, np.array(_box(20, 10), np.float32))
    assert crop.shape[:2] == (20, 100) and crop.mean() > 250
    tall = rotate_crop(img, np.array(_box(20, 10, 20, 60), np.float32))
    assert tall.shape[:2] == (20, 60)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    if not Path(FONT).is_file():
        pytest.skip("DejaVu font not installed")
    return _write_set(tmp_path_factory.mktemp("pages"), _det_pages(2))


def test_system_reads_rendered_pages_end_to_end(zoo_model, pages):
    members = [zoo_model(n) for n in ("ppocr-v4-det", "ppocr-v4-cls", "ppocr-v4-rec")]
    rep = evaluate_system(*members, pages, SystemEvalConfig(threads=1, progress=False))
    m = rep.metrics
    assert m["n_gt"] == 8 and m["det_hmean"] >= 0.85
    assert m["e2e_hmean"] >= 0.75 and m["e2e_hmean"] <= m["det_hmean"] + 1e-9
    assert m["page_ms_mean"] > 0 and {"det_ms_mean", "cls_ms_mean", "rec_ms_mean"} <= set(m)
    assert [x.role for x in rep.members] == ["det", "cls", "rec"]
    assert rep.size_bytes == sum(a.path.stat().st_size for a in members)
    assert len(rep.page_counts) == 2 and rep.data["lines"] == 8
    # without the classifier the upright pages read the same
    no_cls = evaluate_system(members[0], None, members[2], pages,
                             SystemEvalConfig(threads=1, progress=False))
    assert no_cls.metrics["e2e_hmean"] == pytest.approx(m["e2e_hmean"])
    assert "cls_ms_mean" not in no_cls.metrics


def test_cli_eval_system_json(zoo_model, pages, tmp_path, capsys):
    for n in ("ppocr-v4-det", "ppocr-v4-cls", "ppocr-v4-rec"):
        zoo_model(n)
    out = tmp_path / "sys.json"
    code = main(["eval", "--system", "ppocr-v4-det,ppocr-v4-cls,ppocr-v4-rec", "--data",
                 str(pages), "--threads", "1", "--json", str(out), "--limit", "1"])
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["data"]["pages"] == 1 and 0 <= rep["e2e_hmean"] <= 1 and rep["size_bytes"] > 0
    assert "e2e_hmean" in capsys.readouterr().out


def test_system_mistakes_are_one_line_errors(zoo_model, pages, tmp_path, capsys):
    det, rec = zoo_model("ppocr-v4-det"), zoo_model("ppocr-v4-rec")
    with pytest.raises(ModelError, match="not det"):
        evaluate_system(rec, None, rec, pages, SystemEvalConfig(progress=False))
    no_text = _write_set(tmp_path / "notext", [(Image.new("RGB", (64, 64)), json.dumps(
        [{"transcription": "###", "points": SQ}]))])
    with pytest.raises(DataError, match="no transcriptions"):
        evaluate_system(det, None, rec, no_text, SystemEvalConfig(progress=False))
    assert main(["eval", "--system", "a,b,c,d", "--data", str(pages)]) == 2
    assert "DET,CLS,REC" in capsys.readouterr().err
    assert main(["eval", "ppocr-v4-rec", "--system", "a,b", "--data", str(pages)]) == 2
    assert main(["eval", "--data", str(pages)]) == 2
    assert main(["eval", "--system", "a,b,c", "--data", str(pages), "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err


@pytest.mark.heavy
def test_system_agrees_with_independent_end_to_end_scorer(pages, tmp_path):
    """benchmarks/e2e_agreement.py: ours vs RapidOCR's pipeline + assignment scoring."""
    pytest.importorskip("rapidocr_onnxruntime")
    import importlib.util

    script = Path(__file__).parents[1] / "benchmarks" / "e2e_agreement.py"
    spec = importlib.util.spec_from_file_location("e2e_agreement", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "agree.json"
    assert mod.main(["--data", str(pages), "--json", str(out), "--threads", "1"]) == 0
    assert {r["metric"] for r in json.loads(out.read_text())} >= {"e2e_hmean", "e2e_hmean_asis"}


def test_crops_are_the_lines_the_system_reads(zoo_model, pages, tmp_path):
    from xcompress.data import load_dataset
    from xcompress.data.crops import cut_crops

    zoo_model("ppocr-v4-det")
    rep = cut_crops(pages, "ppocr-v4-det", tmp_path / "crops", threads=1)
    assert rep.pages == 2 and rep.lines == 8 and rep.boxes >= 8
    ds = load_dataset(tmp_path / "crops", task="rec")
    truth = {b.text for s in load_dataset(pages, task="det").samples for b in s.boxes}
    assert {s.text for s in ds.samples} == truth
    # the recognizer reads its crops as the system does
    from xcompress.eval import EvalConfig, evaluate

    assert evaluate("ppocr-v4-rec", tmp_path / "crops", EvalConfig(progress=False)
                    ).metrics["cer_nospace"] < 0.05
    with pytest.raises(DataError, match="no detected box"):
        cut_crops(_write_set(tmp_path / "blank", [(Image.new("RGB", (64, 64), "white"),
                                                  json.dumps([_gt(SQ, "x")]))]),
                  "ppocr-v4-det", tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_recipe_data_spec_crops(tmp_path):
    from pydantic import ValidationError

    from xcompress.pipeline.recipe import DataSpec

    spec = DataSpec.model_validate({"crops": {"det": "ppocr-v4-det",
                                              "pages": {"task": "det", "count": 4}}})
    assert spec.crops is not None and spec.crops.pages.count == 4
    with pytest.raises(ValidationError, match="pages.task must be det"):
        DataSpec.model_validate({"crops": {"det": "d", "pages": {"task": "rec", "count": 4}}})
    with pytest.raises(ValidationError, match="exactly one"):
        DataSpec.model_validate({"path": "x", "crops": {"det": "d", "pages": "p"}})


def test_batched_recognition_keeps_each_crop_its_own_reading(zoo_model):
    """Crops are read in batches sorted by width (PaddleOCR's order), yet every reading goes
    back to its own crop: a fake recognizer reads each row's brightest pixel as a character."""
    from xcompress.ocr.system import Member, OcrSystem, SystemConfig

    det, rec = zoo_model("ppocr-v4-det"), zoo_model("ppocr-v4-rec")
    charset = rec.card.charset or []

    class Brightest:  # CTC probabilities: one frame, the class of the row's brightest pixel
        def run(self, batch):
            ids = np.rint((batch.reshape(len(batch), -1).max(1) + 1) * 10).astype(int)
            probs = np.zeros((len(batch), 1, len(charset) + 1), np.float32)
            probs[np.arange(len(batch)), 0, ids] = 1.0
            return probs

    widths = [300, 40, 220, 90, 160, 60, 400, 120]  # not sorted: batches reorder them
    crops = [np.full((32, w, 3), 140 + 12 * i, np.uint8) for i, w in enumerate(widths)]
    reads = {}
    for batch in (1, 3, 6):
        system = OcrSystem(Member(None, det.card), Member(Brightest(), rec.card),
                           config=SystemConfig(rec_batch=batch))
        reads[batch] = system.recognize(crops)
    assert reads[1] == reads[3] == reads[6]
    assert len({t for t, _ in reads[1]}) == len(crops)  # each crop its own character
