"""Exact import of the PP-OCRv4 zoo models: native module == onnxruntime within 1e-4.

Inputs are both random tensors and real-looking renders (text lines / a page of text),
preprocessed as PP-OCR does, at several widths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from xcompress.errors import ModelError
from xcompress.models.importers import import_onnx
from xcompress.models.onnx_import import compare_with_onnx

torch.set_num_threads(1)
TOL = 1e-4
LINES = ["Invoice No. 2026-0117", "TOTAL 1,284.50 EUR", "hello World 42", "a"]


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render_line(text: str, height: int = 48) -> np.ndarray:
    """A dark-on-light text line as BGR uint8."""
    font = _font(int(height * 0.7))
    x0, y0, x1, y1 = font.getbbox(text)
    img = Image.new("RGB", (x1 + 16, height), (235, 232, 220))
    ImageDraw.Draw(img).text(
        (8, (height - (y1 - y0)) // 2 - y0), text, fill=(20, 20, 30), font=font
    )
    return np.asarray(img)[:, :, ::-1].copy()


def rec_input(img: np.ndarray, width: int) -> np.ndarray:
    """PP-OCR rec normalization, resized to exactly 48 x ``width``."""
    import cv2

    x = cv2.resize(img, (width, 48)).astype(np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)[None]


def render_page(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A page with text lines of several sizes on a soft gradient, normalized for det."""
    rng = np.random.default_rng(seed)
    grad = np.linspace(200, 250, w, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(grad, (h, w, 3)).astype(np.uint8)
    img = Image.fromarray(base.copy())
    draw = ImageDraw.Draw(img)
    y = 10
    while y < h - 40:
        size = int(rng.integers(14, 40))
        draw.text((int(rng.integers(5, w // 3)), y), LINES[int(rng.integers(3))],
                  fill=(0, 0, 0), font=_font(size))  # fmt: skip
        y += size + int(rng.integers(8, 30))
    x = np.asarray(img)[:, :, ::-1].astype(np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((x - mean) / std).astype(np.float32).transpose(2, 0, 1)[None]


@pytest.fixture(scope="module")
def v4rec(zoo_model):
    art = zoo_model("ppocr-v4-rec")
    model, card = import_onnx("ppocr-v4-rec")
    return model, card, art.path


@pytest.fixture(scope="module")
def v4det(zoo_model):
    art = zoo_model("ppocr-v4-det")
    model, card = import_onnx("ppocr-v4-det")
    return model, card, art.path


def test_rec_import_card_records_the_check(v4rec) -> None:
    model, card, _ = v4rec
    assert card.format == "torch" and card.step == "import"
    assert card.notes["import_tensors"] == 234
    assert card.notes["import_max_abs_diff"] <= TOL
    assert len(card.charset) == 6624 and model.config.num_classes == 6625


@pytest.mark.parametrize("width", [160, 320, 640])
def test_rec_matches_onnxruntime(v4rec, width: int) -> None:
    model, _, path = v4rec
    rng = np.random.default_rng(width)
    inputs = [rng.uniform(-1, 1, (2, 3, 48, width)).astype(np.float32)]
    inputs += [rec_input(render_line(t), width) for t in LINES[:2]]
    diff = compare_with_onnx(model, path, inputs)
    assert diff <= TOL, diff


def test_rec_reads_a_rendered_line_like_onnxruntime(v4rec) -> None:
    model, card, _ = v4rec
    img = render_line("TOTAL 1284.50")
    x = rec_input(img, 48 * img.shape[1] // img.shape[0] // 8 * 8)
    with torch.no_grad():
        ids = model(torch.from_numpy(x))[0].argmax(-1).tolist()
    text, prev = [], 0
    for i in ids:
        if i and i != prev:
            text.append(card.charset[i - 1])
        prev = i
    assert "".join(text).replace(" ", "") == "TOTAL1284.50"


def test_det_matches_onnxruntime_small(v4det) -> None:
    model, _, path = v4det
    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-2, 2, (1, 3, 320, 320)).astype(np.float32), render_page(320, 416)]
    assert compare_with_onnx(model, path, inputs) <= TOL


@pytest.mark.heavy
@pytest.mark.parametrize("hw", [(640, 640), (736, 960)])
def test_det_matches_onnxruntime_full_size(v4det, hw: tuple[int, int]) -> None:
    model, _, path = v4det
    rng = np.random.default_rng(2)
    page = render_page(*hw)
    with torch.no_grad():
        prob = model(torch.from_numpy(page))
    assert float((prob > 0.3).float().mean()) > 0.005  # the rendered text is found
    inputs = [rng.uniform(-2, 2, (1, 3, *hw)).astype(np.float32), page]
    assert compare_with_onnx(model, path, inputs, threads=2) <= TOL


def test_wrong_family_is_refused(zoo_model) -> None:
    from xcompress.models import build_model
    from xcompress.models.onnx_import import load_onnx_weights

    det = zoo_model("ppocr-v4-det").path
    with pytest.raises(ModelError, match="does not fit"):  # same tensor count, other shapes
        load_onnx_weights(build_model("ppocrv4-rec"), det)
    with pytest.raises(ModelError, match="no ONNX importer"):
        load_onnx_weights(build_model("crnn"), det)


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["ppocr-v5-rec", "ppocr-v5-det"])
def test_v5_same_family_imports_exactly(name: str, zoo_model) -> None:
    art = zoo_model(name)
    model, card = import_onnx(name)
    rng = np.random.default_rng(3)
    if card.task == "rec":
        assert model.config.num_classes == card.num_classes == 18385
        inputs = [rng.uniform(-1, 1, (1, 3, 48, w)).astype(np.float32) for w in (160, 320, 640)]
        inputs.append(rec_input(render_line(LINES[0]), 320))
    else:
        inputs = [rng.uniform(-2, 2, (1, 3, 640, 640)).astype(np.float32), render_page(320, 480)]
    assert compare_with_onnx(model, art.path, inputs, threads=2) <= TOL
