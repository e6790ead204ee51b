"""End-to-end evaluation of the real PP-OCRv4 models on lines/pages rendered here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from xcompress.cli.main import main
from xcompress.errors import DataError, ModelError
from xcompress.eval import EvalConfig, evaluate

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = [
    "Hello World 2024",
    "0123456789",
    "Total: 12.50",
    "INVOICE 4471",
    "quick brown fox",
    "Room 305",
    "ABCDEFG",
    "2026-11-22",
    "Price 99.99",
    "Thank you",
]
pytestmark = pytest.mark.skipif(not Path(FONT).is_file(), reason="DejaVu font not installed")


def _line(text: str, size: int = 32) -> Image.Image:
    font = ImageFont.truetype(FONT, size)
    left, top, right, bottom = font.getbbox(text)
    im = Image.new("RGB", (right - left + 16, bottom - top + 16), "white")
    ImageDraw.Draw(im).text((8 - left, 8 - top), text, fill="black", font=font)
    return im


def _write_set(folder: Path, rows: list[tuple[Image.Image, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for i, (im, label) in enumerate(rows):
        im.save(folder / f"{i:03d}.png")
        labels.append(f"{i:03d}.png\t{label}")
    (folder / "label.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def rec_set(tmp_path_factory) -> Path:
    return _write_set(tmp_path_factory.mktemp("rec"), [(_line(t), t) for t in LINES])


@pytest.fixture(scope="module")
def rec_model(zoo_model):
    return zoo_model("ppocr-v4-rec")


def test_rec_eval_real_model_reads_clean_lines(rec_model, rec_set):
    rep = evaluate(rec_model, rec_set, EvalConfig(threads=1, progress=False))
    assert rep.task == "rec" and rep.n_samples == 10
    # PP-OCRv4 (a Chinese model) often drops spaces between English words: the space-free
    # view is the fair one; both must be high on clean rendered lines
    assert rep.metrics["line_accuracy_nospace"] >= 0.9
    assert rep.metrics["cer_nospace"] <= 0.02
    assert rep.metrics["cer"] <= 0.05
    s = rep.settings
    assert s.runtime == "onnxruntime" and s.threads == 1 and s.cores >= 1
    assert rep.model.sha256 and len(rep.model.sha256) == 64
    assert rep.charset_mismatch is None


def test_rec_eval_failures_keep_image_order_when_batched(rec_model, tmp_path):
    rows = [(_line(t), t) for t in LINES[:6]]
    rows[4] = (rows[4][0], "wrong label")  # image 004 now "fails"
    data = _write_set(tmp_path / "rec", rows)
    for batch in (1, 4):
        rep = evaluate(rec_model, data, EvalConfig(batch_size=batch, failures=1, progress=False))
        assert [Path(f.image).name for f in rep.failures] == ["004.png"]
        assert rep.failures[0].got.replace(" ", "") == LINES[4].replace(" ", "")
        assert rep.failures[0].expected == "wrong label"


def test_rec_eval_warns_about_labels_the_model_cannot_output(rec_model, tmp_path, caplog):
    rows = [(_line("Room 305"), "Room 305"), (_line("ABC"), "ABC\u2603\u2603")]
    data = _write_set(tmp_path / "snow", rows)
    rep = evaluate(rec_model, data, EvalConfig(progress=False))
    assert rep.charset_mismatch is not None
    assert rep.charset_mismatch.lines_affected == 1
    assert rep.charset_mismatch.missing == {"\u2603": 2}
    assert rep.metrics["line_accuracy_nospace"] == 0.5
    assert "not in the model's charset" in caplog.text


def test_cli_eval_json_and_failures(rec_set, rec_model, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(
        ["eval", str(rec_model.path.parent), "--data", str(rec_set), "--json", str(out)]
        + ["--threads", "1", "--failures", "3", "--limit", "5"]
    )
    assert code == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["task"] == "rec" and rep["n_samples"] == 5 and rep["data"]["total"] == 10
    assert 0.0 <= rep["cer"] <= 0.05 and rep["line_accuracy"] == rep["metrics"]["line_accuracy"]
    assert rep["settings"]["threads"] == 1 and rep["model"]["path"] == str(rec_model.path)
    printed = capsys.readouterr().out
    assert "line_accuracy" in printed and "onnxruntime" in printed


def test_cli_eval_user_errors_exit_2(rec_set, rec_model, tmp_path, capsys):
    assert main(["eval", str(rec_model.path.parent), "--data", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["eval", str(rec_model.path.parent), "--data", str(rec_set), "--task", "det"]) == 2
    assert "not det" in capsys.readouterr().err


def test_eval_refuses_a_data_set_of_another_task(rec_model, tmp_path):
    box = {"transcription": "a", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]}
    data = _write_set(tmp_path / "det", [(Image.new("RGB", (32, 32)), json.dumps([box]))])
    with pytest.raises(DataError):
        evaluate(rec_model, data, EvalConfig(progress=False))
    with pytest.raises(ModelError):
        evaluate(rec_model, data, EvalConfig(task="det", progress=False))


def _det_pages(n: int) -> list[tuple[Image.Image, str]]:
    """Pages with four rendered lines each and their boxes (PaddleOCR det labels)."""
    font = ImageFont.truetype(FONT, 36)
    pages = []
    for p in range(n):
        im = Image.new("RGB", (640, 480), "white")
        draw = ImageDraw.Draw(im)
        boxes = []
        for k in range(4):
            text = LINES[(p * 4 + k) % len(LINES)]
            x, y = 40 + 30 * k, 40 + 110 * k
            left, top, right, bottom = font.getbbox(text)
            draw.text((x - left, y - top), text, fill="black", font=font)
            w, h = right - left, bottom - top
            pts = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
            boxes.append({"transcription": text, "points": pts})
        pages.append((im, json.dumps(boxes)))
    return pages


def test_det_eval_real_model_finds_rendered_lines(zoo_model, tmp_path):
    data = _write_set(tmp_path / "det", _det_pages(2))
    rep = evaluate(zoo_model("ppocr-v4-det"), data, EvalConfig(threads=1, progress=False))
    assert rep.task == "det" and rep.n_samples == 2
    assert rep.metrics["n_gt"] == 8
    assert rep.metrics["hmean"] >= 0.85
    assert rep.settings.preprocess["limit_side_len"] == 960


def test_cls_eval_real_model_tells_upright_from_upside_down(zoo_model, tmp_path):
    rows = []
    for i, text in enumerate(LINES[:8]):
        im = _line(text)
        rows.append((im.rotate(180), "180") if i % 2 else (im, "0"))
    data = _write_set(tmp_path / "cls", rows)
    rep = evaluate(zoo_model("ppocr-v4-cls"), data, EvalConfig(batch_size=4, progress=False))
    assert rep.task == "cls" and rep.metrics["accuracy"] >= 0.875


@pytest.mark.heavy
def test_eval_agrees_with_independent_evaluator(rec_set, tmp_path):
    """benchmarks/eval_agreement.py: ours vs RapidOCR + plain-Python scoring, within 0.5 pt."""
    pytest.importorskip("rapidocr_onnxruntime")
    import importlib.util

    script = Path(__file__).parents[1] / "benchmarks" / "eval_agreement.py"
    spec = importlib.util.spec_from_file_location("eval_agreement", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):  # noisy, blurred, varied sizes: accuracy well below 100 %
        text = LINES[i % len(LINES)]
        arr = np.asarray(_line(text, size=int(rng.integers(12, 40))), np.float32)
        arr = np.clip(arr + rng.normal(0, 40, arr.shape), 0, 255).astype(np.uint8)
        rows.append((Image.fromarray(arr), text))
    data = _write_set(tmp_path / "noisy", rows)
    out = tmp_path / "agree.json"
    det = _write_set(tmp_path / "pages", _det_pages(2))
    args = ["--rec-data", str(data), "--det-data", str(det), "--json", str(out)]
    assert mod.main(args) == 0
    agree = json.loads(out.read_text())
    assert {r["metric"] for r in agree} >= {"line_accuracy", "cer", "hmean"}
    assert all(abs(r["ours"] - r["independent"]) <= 0.005 for r in agree)


def _with_bad_images(folder: Path) -> Path:
    """The first lines of LINES, with image 001 cut in half and image 003 empty."""
    data = _write_set(folder, [(_line(t), t) for t in LINES[:5]])
    good = (data / "001.png").read_bytes()
    (data / "001.png").write_bytes(good[: len(good) // 2])
    (data / "003.png").write_bytes(b"")
    return data


def test_eval_fails_on_a_bad_image_or_skips_it(rec_model, tmp_path):
    data = _with_bad_images(tmp_path / "bad")
    with pytest.raises(DataError) as e:
        evaluate(rec_model, data, EvalConfig(progress=False))
    msg = str(e.value)
    assert msg.startswith("2 of 5 images cannot be used; first ") and "001.png: truncated" in msg
    assert "--skip-bad" in msg
    rep = evaluate(rec_model, data, EvalConfig(progress=False, skip_bad=True))
    assert rep.n_samples == 3 and rep.data.count == 3 and rep.data.total == 5
    assert [(Path(s.image).name, s.reason.split(" ")[0]) for s in rep.data.skipped] == [
        ("001.png", "truncated"),
        ("003.png", "empty"),
    ]
    assert rep.metrics["line_accuracy_nospace"] >= 0.66


def test_cli_eval_skip_bad_reports_skipped_files(rec_model, tmp_path, capsys):
    data = _with_bad_images(tmp_path / "bad")
    out = tmp_path / "report.json"
    args = ["eval", str(rec_model.path.parent), "--data", str(data), "--json", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 of 5 images") and err.count("\n") == 1
    assert not out.exists()
    assert main([*args, "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "001.png: truncated" in printed
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert [Path(s["image"]).name for s in rep["data"]["skipped"]] == ["001.png", "003.png"]
    assert rep["n_samples"] == 3


def test_eval_refuses_a_cls_set_for_a_recognizer(rec_model, tmp_path):
    rows = [(_line(t), lab) for t, lab in zip(LINES[:4], ["0", "180", "0", "0"], strict=True)]
    data = _write_set(tmp_path / "cls", rows)
    with pytest.raises(DataError, match=r"looks like a cls set \(all 4 labels are 0 or 180\)"):
        evaluate(rec_model, data, EvalConfig(progress=False))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--json", "{tmp}"], "--json {tmp} is a folder"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--task", "bogus"], "--task must be rec, det or cls"),
    ],
)
def test_cli_eval_argument_mistakes_fail_before_any_work(
    rec_model, tmp_path, capsys, extra, needle
):
    # --data does not exist: each mistake must be reported before the data set is read
    args = ["eval", str(rec_model.path.parent), "--data", str(tmp_path / "none")]
    assert main([*args, *[a.format(tmp=tmp_path) for a in extra]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert needle.format(tmp=tmp_path) in err


def test_cli_eval_image_file_as_data(rec_set, rec_model, capsys):
    args = ["eval", str(rec_model.path.parent), "--data", str(rec_set / "000.png")]
    assert main(args) == 2
    assert "is an image file, not a data set" in capsys.readouterr().err
