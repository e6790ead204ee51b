"""PP-OCR preprocessing: shapes, padding, normalization values, det resize rule."""

from __future__ import annotations

import numpy as np
import pytest

from xcompress.card import ModelCard, default_preprocess
from xcompress.ocr.preprocess import (
    cls_resize_norm,
    det_resize_norm,
    preprocess_for,
    rec_batch,
    rec_resize_norm,
)


def test_rec_resize_keeps_ratio_and_pads_right_with_zeros():
    img = np.full((32, 100, 3), 255, np.uint8)  # ratio 3.125 -> width ceil(150.0) = 150
    x = rec_resize_norm(img)
    assert x.shape == (3, 48, 320) and x.dtype == np.float32
    assert np.all(x[:, :, :150] == 1.0)  # (255/255 - 0.5) / 0.5
    assert np.all(x[:, :, 150:] == 0.0)


def test_rec_resize_black_is_minus_one_and_channel_order_is_bgr():
    img = np.zeros((48, 48, 3), np.uint8)
    img[:, :, 0] = 255  # blue in BGR
    x = rec_resize_norm(img)
    assert np.all(x[0, :, :48] == 1.0) and np.all(x[1:, :, :48] == -1.0)


def test_rec_width_follows_max_wh_ratio_and_caps_wide_lines():
    img = np.full((10, 1000, 3), 200, np.uint8)  # ratio 100: resized width capped
    assert rec_resize_norm(img).shape == (3, 48, 320)
    assert np.all(rec_resize_norm(img)[:, :, -1] != 0.0)  # filled to the last column
    assert rec_resize_norm(img, max_wh_ratio=10.0).shape == (3, 48, 480)
    # a ratio below 320/48 never shrinks the width
    assert rec_resize_norm(img, max_wh_ratio=2.0).shape == (3, 48, 320)


def test_rec_batch_pads_to_the_widest_line():
    imgs = [np.zeros((10, w, 3), np.uint8) for w in (20, 50, 120)]  # ratios 2, 5, 12
    b = rec_batch(imgs)
    assert b.shape == (3, 3, 48, 576)  # int(48 * 12)
    # the first line is 96 px wide (ceil(48 * 2)), the rest is padding
    assert np.all(b[0, :, :, :96] == -1.0) and np.all(b[0, :, :, 96:] == 0.0)


def test_cls_resize_fixed_width():
    x = cls_resize_norm(np.full((24, 30, 3), 255, np.uint8))
    assert x.shape == (3, 48, 192)
    assert np.all(x[:, :, :60] == 1.0) and np.all(x[:, :, 60:] == 0.0)


@pytest.mark.parametrize(
    ("hw", "out_hw"),
    [
        ((500, 1000), (480, 960)),  # long side scaled to 960
        ((2000, 3000), (640, 960)),
        ((100, 50), (96, 64)),  # not scaled up, only rounded to multiples of 32
        ((10, 10), (32, 32)),  # at least 32
    ],
)
def test_det_resize_multiple_of_32(hw, out_hw):
    pre = default_preprocess("det")
    x, (rh, rw) = det_resize_norm(np.zeros((*hw, 3), np.uint8), pre)
    assert x.shape == (3, *out_hw)
    assert rh == pytest.approx(out_hw[0] / hw[0]) and rw == pytest.approx(out_hw[1] / hw[1])


def test_det_normalize_applies_mean_std_in_image_channel_order():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :, 0] = 255
    x, _ = det_resize_norm(img, default_preprocess("det"))
    # PaddleOCR applies mean[0]/std[0] (ImageNet "R") to channel 0 of the BGR image
    assert x[0, 5, 5] == pytest.approx((1.0 - 0.485) / 0.229, rel=1e-6)
    assert x[1, 5, 5] == pytest.approx((0.0 - 0.456) / 0.224, rel=1e-6)
    assert x[2, 5, 5] == pytest.approx((0.0 - 0.406) / 0.225, rel=1e-6)


def test_preprocess_for_dispatches_by_card():
    rec = ModelCard(name="r", task="rec", charset=["a"])
    cls = ModelCard(name="c", task="cls")
    det = ModelCard(name="d", task="det")
    line = np.zeros((32, 64, 3), np.uint8)
    assert preprocess_for(rec, [line, line]).batch.shape == (2, 3, 48, 320)
    assert preprocess_for(cls, [line]).batch.shape == (1, 3, 48, 192)
    p = preprocess_for(det, [np.zeros((500, 1000, 3), np.uint8)])
    assert p.batch.shape == (1, 3, 480, 960)
    assert p.src_shapes == [(500, 1000, 0.96, 0.96)]
    with pytest.raises(ValueError, match="one"):
        preprocess_for(det, [np.zeros((64, 64, 3), np.uint8), np.zeros((96, 64, 3), np.uint8)])
