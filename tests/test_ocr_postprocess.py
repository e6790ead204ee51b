"""CTC decoding, DB boxes and cls decoding on hand-made model outputs."""

from __future__ import annotations

import numpy as np
import pytest

from xcompress.card import Postprocess, default_postprocess
from xcompress.ocr.postprocess import DBPostProcess, cls_decode, ctc_greedy_decode

CHARSET = ["a", "b", " "]  # classes: 0 blank, 1 a, 2 b, 3 space


def _steps(seq: list[tuple[int, float]], n_classes: int = 4) -> np.ndarray:
    """(T, C) probabilities: at each step class k gets p, the rest share 1 - p."""
    out = np.zeros((len(seq), n_classes), np.float32)
    for t, (k, p) in enumerate(seq):
        out[t] = (1 - p) / (n_classes - 1)
        out[t, k] = p
    return out


def test_ctc_merges_repeats_drops_blanks_keeps_space():
    # a a _ a ' ' b b  ->  "aa b"
    seq = [(1, 0.9), (1, 0.7), (0, 0.8), (1, 0.6), (3, 0.5), (2, 0.95), (2, 0.4)]
    [(text, score)] = ctc_greedy_decode(_steps(seq)[None], CHARSET)
    assert text == "aa b"
    # kept steps: first of each run, blanks excluded -> 0.9, 0.6, 0.5, 0.95
    assert score == pytest.approx(np.mean([0.9, 0.6, 0.5, 0.95]), abs=1e-6)


def test_ctc_all_blank_is_empty_with_zero_score_and_batches_independently():
    blank = _steps([(0, 0.99)] * 5)
    ab = _steps([(1, 0.8), (0, 0.9), (2, 0.6), (0, 0.9), (0, 0.9)])
    assert ctc_greedy_decode(np.stack([blank, ab]), CHARSET) == [
        ("", 0.0),
        ("ab", pytest.approx(0.7, abs=1e-6)),
    ]


def test_ctc_rejects_more_classes_than_charset():
    with pytest.raises(ValueError, match="classes"):
        ctc_greedy_decode(np.zeros((1, 3, 6), np.float32), CHARSET)


def test_cls_decode_argmax_label_and_prob():
    probs = np.array([[0.95, 0.05], [0.2, 0.8]], np.float32)
    got = cls_decode(probs, ["0", "180"])
    assert [g[0] for g in got] == ["0", "180"]
    assert [round(g[1], 2) for g in got] == [0.95, 0.8]


def _expected_unclipped(x0, y0, x1, y1, ratio=1.5):
    """Rectangle of pixel centres (x0..x1, y0..y1) grown by area * ratio / perimeter."""
    w, h = x1 - x0, y1 - y0
    d = w * h * ratio / (2 * (w + h))
    return np.array([x0 - d, y0 - d, x1 + d, y1 + d])


def _bbox(box: np.ndarray) -> np.ndarray:
    return np.array([box[:, 0].min(), box[:, 1].min(), box[:, 0].max(), box[:, 1].max()])


def test_db_recovers_two_rectangles_after_unclip():
    prob = np.zeros((1, 1, 160, 320), np.float32)
    prob[0, 0, 30:60, 20:120] = 0.9  # pixel centres x 20..119, y 30..59
    prob[0, 0, 100:131, 150:301] = 0.8  # x 150..300, y 100..130
    prob[0, 0, 140:150, 10:60] = 0.5  # above thresh, below box_thresh: dropped
    prob[0, 0, 5:7, 300:302] = 0.95  # 2 px: below min size, dropped
    # the map is at half the source resolution: source page 320 x 640
    boxes, scores = DBPostProcess(default_postprocess("det"))(prob, [(320, 640, 0.5, 0.5)])
    assert len(boxes[0]) == 2
    got = sorted((_bbox(b) for b in boxes[0]), key=lambda b: b[0])
    want = [2 * _expected_unclipped(20, 30, 119, 59), 2 * _expected_unclipped(150, 100, 300, 130)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1.0)  # source px; rounding to integers
    assert sorted(round(s, 3) for s in scores[0]) == [0.8, 0.9]
    # corners come back ordered top-left, top-right, bottom-right, bottom-left
    b = boxes[0][0]
    assert b[0, 0] < b[1, 0] and b[0, 1] < b[3, 1] and b[2, 0] > b[3, 0]


def test_db_clips_boxes_to_the_image_and_accepts_nhw():
    prob = np.zeros((1, 64, 64), np.float32)
    prob[0, 0:20, 0:40] = 0.9  # touches the top-left corner: unclip goes outside
    boxes, _ = DBPostProcess()(prob, [(64, 64, 1.0, 1.0)])
    [box] = boxes[0]
    assert box.min() == 0.0 and box[:, 0].max() <= 63 and box[:, 1].max() <= 63


def test_db_box_thresh_and_dilation_settings_are_used():
    prob = np.zeros((1, 64, 64), np.float32)
    prob[0, 20:30, 10:50] = 0.5
    strict = DBPostProcess(default_postprocess("det"))
    loose = DBPostProcess(Postprocess(kind="db", box_thresh=0.4))  # other fields: defaults
    assert strict(prob, [(64, 64, 1, 1)])[0] == [[]]
    assert len(loose(prob, [(64, 64, 1, 1)])[0][0]) == 1
    assert loose.unclip_ratio == 1.5 and loose.thresh == 0.3
