"""Per-sample counts reproduce the evaluation core's metrics; paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from xcompress.eval.bootstrap import metrics_from_counts, paired_interval, rec_counts
from xcompress.ocr.metrics import rec_metrics


def test_rec_counts_sum_to_rec_metrics():
    labels = ["ab c", "hello world", "x", "数字 123"]
    preds = ["abc", "helo world", "", "数字 124"]
    m = rec_metrics(preds, labels)
    got = metrics_from_counts("rec", rec_counts(preds, labels))
    assert got["cer"] == pytest.approx(m.cer) and got["cer_nospace"] == pytest.approx(m.cer_nospace)


def test_identical_models_have_a_zero_interval_and_a_real_difference_is_inside():
    rng = np.random.default_rng(0)
    chars = rng.integers(5, 30, 300).astype(float)
    a_err = rng.binomial(chars.astype(int), 0.02).astype(float)
    a = np.stack([a_err, chars, a_err, chars], 1)
    assert paired_interval("rec", a, a, "cer") == (0.0, 0.0)
    b = a.copy()
    b[:, 0] += rng.binomial(chars.astype(int), 0.01)  # ~1 point worse without spaces
    lo, hi = paired_interval("rec", a, b, "cer_nospace")
    delta = metrics_from_counts("rec", b)["cer_nospace"] - metrics_from_counts("rec", a)[
        "cer_nospace"]
    assert lo < delta < hi and lo > 0  # 300 lines resolve a 1-point difference
    # fewer samples: a wider interval
    lo20, hi20 = paired_interval("rec", a[:20], b[:20], "cer_nospace")
    assert hi20 - lo20 > hi - lo


def test_det_counts_give_hmean():
    c = np.array([[8, 10, 9], [5, 5, 6]], float)  # matched, gt, det per page
    m = metrics_from_counts("det", c)
    p, r = 13 / 15, 13 / 15
    assert m["hmean"] == pytest.approx(2 * p * r / (p + r))


def test_unpaired_counts_are_refused():
    with pytest.raises(ValueError, match="same samples"):
        paired_interval("cls", np.ones((3, 2)), np.ones((4, 2)), "accuracy")


def test_e2e_counts_give_the_e2e_metrics_and_a_paired_interval():
    from xcompress.eval.bootstrap import COUNT_COLUMNS
    from xcompress.ocr.metrics import E2E_COLUMNS, e2e_metrics

    assert COUNT_COLUMNS["e2e"] == E2E_COLUMNS
    rng = np.random.default_rng(1)
    n_gt = rng.integers(3, 9, 40)
    a = np.stack([n_gt - 1, n_gt - 2, n_gt, n_gt, n_gt, 5 * n_gt, n_gt, 5 * n_gt], 1).astype(float)
    b = a.copy()
    b[:10, 0] -= 1  # ten pages lose one exact line
    assert metrics_from_counts("e2e", a)["e2e_hmean"] == pytest.approx(e2e_metrics(a)["e2e_hmean"])
    lo, hi = paired_interval("e2e", a, b, "e2e_hmean")
    assert lo < hi < 0
