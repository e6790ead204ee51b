"""Recognition, detection and classification metrics on hand-made cases (exact values)."""

from __future__ import annotations

import pytest

from xcompress.data import TextBox
from xcompress.ocr.metrics import char_errors, cls_metrics, det_metrics, rec_metrics


def test_rec_metrics_exact_values_with_and_without_spaces():
    preds = ["abc", "hello world", ""]
    labels = ["abd", "helloworld", "xy"]
    m = rec_metrics(preds, labels)
    # edit distances 1, 1, 2 over 3 + 10 + 2 label characters
    assert m.n == 3
    assert m.line_accuracy == 0.0
    assert m.cer == pytest.approx(4 / 15)
    assert m.ned == pytest.approx(1 - (1 / 3 + 1 / 11 + 2 / 2) / 3)
    # without spaces the second line is right: distances 1, 0, 2
    assert m.line_accuracy_nospace == pytest.approx(1 / 3)
    assert m.cer_nospace == pytest.approx(3 / 15)
    assert m.ned_nospace == pytest.approx(1 - (1 / 3 + 0 + 1) / 3)


def test_rec_metrics_perfect_and_cjk():
    m = rec_metrics(["发票金额", "12.50"], ["发票金额", "12.50"])
    assert (m.line_accuracy, m.cer, m.ned) == (1.0, 0.0, 1.0)
    assert rec_metrics(["发金额"], ["发票金额"]).cer == pytest.approx(1 / 4)


def test_char_errors_per_line():
    assert char_errors("kitten", "sitting") == pytest.approx(3 / 7)
    assert char_errors("", "") == 0.0 and char_errors("a", "") == 1.0


def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_det_metrics_one_to_one_matching_with_ignore_boxes():
    gts = [
        [
            TextBox(_rect(0, 0, 10, 10), "A"),
            TextBox(_rect(20, 0, 30, 10), "B"),  # missed
            TextBox(_rect(50, 0, 60, 10), "###", ignore=True),
        ],
        [TextBox(_rect(0, 0, 10, 10), "D")],
    ]
    preds = [
        [
            _rect(0, 0, 10, 9),  # IoU 0.9 with A
            _rect(51, 1, 59, 9),  # inside the ignored box: not counted
            _rect(100, 100, 110, 110),  # false positive
        ],
        [
            _rect(5, 0, 15, 10),  # IoU 1/3: no match
            _rect(0, 0, 10, 10),  # match
            _rect(0, 0, 10, 10),  # duplicate: D is already taken
        ],
    ]
    m = det_metrics(preds, gts)
    assert (m.matched, m.n_gt, m.n_det) == (2, 3, 5)
    assert m.precision == pytest.approx(2 / 5)
    assert m.recall == pytest.approx(2 / 3)
    assert m.hmean == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))


def test_det_metrics_iou_is_strictly_above_threshold_and_accepts_dicts():
    gt = [[{"transcription": "x", "points": _rect(0, 0, 10, 10)}]]
    assert det_metrics([[_rect(0, 0, 10, 20)]], gt).matched == 0  # IoU exactly 0.5
    assert det_metrics([[_rect(0, 0, 10, 19)]], gt).matched == 1  # IoU 100/190
    # "###" transcriptions are ignored even without the flag
    ign = [[{"transcription": "###", "points": _rect(0, 0, 10, 10)}]]
    m = det_metrics([[_rect(0, 0, 10, 10)]], ign)
    assert (m.n_gt, m.n_det, m.precision, m.recall, m.hmean) == (0, 0, 0.0, 0.0, 0.0)


def test_det_metrics_no_predictions():
    m = det_metrics([[]], [[TextBox(_rect(0, 0, 5, 5), "a")]])
    assert (m.precision, m.recall, m.hmean) == (0.0, 0.0, 0.0)


def test_cls_metrics():
    m = cls_metrics(["0", "180", "0", "0"], ["0", "180", "180", "0"])
    assert (m.n, m.accuracy) == (4, 0.75)
