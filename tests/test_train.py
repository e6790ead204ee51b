"""Training: losses, a tiny run that lowers the loss, resume, distillation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xcompress.errors import DataError
from xcompress.train import DistillConfig, TrainConfig, train
from xcompress.train.data import CTCCodec, RecBatchSpec, collate
from xcompress.train.losses import (
    ctc_loss,
    db_loss,
    dice_loss,
    prob_map_distill,
    symmetric_kl,
)

torch.set_num_threads(1)
TINY_CRNN = {"stages": [{"channels": 8}, {"channels": 16}], "hidden": 16}


def test_codec_roundtrip() -> None:
    codec = CTCCodec(list("0123456789 "))
    assert codec.num_classes == 12
    assert codec.encode("2026 x") == [3, 1, 3, 7, 11]  # 'x' is not in the charset
    assert codec.decode_greedy(np.array([3, 3, 0, 1, 1, 0, 0, 3, 7, 7])) == "2026"


def test_collate_pads_to_a_multiple_and_normalizes() -> None:
    imgs = [np.full((20, 50, 3), 255, np.uint8), np.zeros((40, 30, 3), np.uint8)]
    x, widths = collate(imgs, RecBatchSpec(height=32, max_width=100, width_multiple=8))
    assert x.shape == (2, 3, 32, 80) and widths == [80, 24]
    assert float(x[0].max()) == 1.0 and float(x[1, :, :, :24].min()) == -1.0
    assert float(x[1, :, :, 24:].abs().max()) == 0.0  # padding


def test_ctc_loss_prefers_the_right_alignment() -> None:
    good = torch.full((1, 6, 4), -5.0)
    for t, c in enumerate([1, 0, 2, 0, 3, 0]):
        good[0, t, c] = 5.0
    bad = good.flip(1)
    assert float(ctc_loss(good, [[1, 2, 3]])) < 0.1 < float(ctc_loss(bad, [[1, 2, 3]]))


def test_symmetric_kl_is_zero_iff_equal_and_symmetric() -> None:
    a, b = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    assert float(symmetric_kl(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(symmetric_kl(a, b)) == pytest.approx(float(symmetric_kl(b, a)), rel=1e-5)
    assert float(symmetric_kl(a, b)) > 0.1


def test_db_losses_are_lowest_at_the_target() -> None:
    gt = torch.zeros(1, 1, 16, 16)
    gt[..., 4:10, 3:12] = 1
    mask = torch.ones_like(gt)
    tgt = {"shrink": gt, "shrink_mask": mask, "thresh": gt * 0.3 + 0.3, "thresh_mask": mask}
    perfect = {"shrink": gt.clamp(0.01, 0.99), "thresh": tgt["thresh"], "binary": gt}
    wrong = {"shrink": 1 - perfect["shrink"], "thresh": 1 - tgt["thresh"], "binary": 1 - gt}
    assert float(db_loss(perfect, tgt)) < 0.1 < float(db_loss(wrong, tgt))
    assert float(dice_loss(gt, gt, mask)) == pytest.approx(0.0, abs=1e-5)
    assert float(prob_map_distill(gt.clamp(0.01, 0.99), gt)) < float(prob_map_distill(1 - gt, gt))


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model="crnn", arch_config=TINY_CRNN, charset="0123456789", train=["synth"],
        val=["synth"], val_count=16, steps=40, eval_every=20, batch_size=8, lr=5e-3, warmup=5,
        max_width=96, threads=1, out=str(tmp_path / "run"),
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_training_run_lowers_the_loss_and_resumes(tmp_path) -> None:
    res = train(_cfg(tmp_path, steps=20), progress=False)
    assert res.step == 20 and (tmp_path / "run" / "last.pt").is_file()
    res = train(_cfg(tmp_path, steps=40), progress=False)  # resumes at step 20
    hist = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [20, 40]
    assert hist[1]["loss"]["ctc"] < 0.8 * hist[0]["loss"]["ctc"]
    assert (tmp_path / "run" / "best.pt").is_file()


def test_distillation_from_a_teacher_checkpoint(tmp_path) -> None:
    train(_cfg(tmp_path, steps=10, eval_every=10, out=str(tmp_path / "teacher")), progress=False)
    teacher = str(tmp_path / "teacher" / "last.pt")
    res = train(
        _cfg(tmp_path, model=teacher, steps=6, eval_every=3, lr=1e-4, out=str(tmp_path / "s"),
             distill=DistillConfig(teacher=teacher)),
        progress=False,
    )  # fmt: skip
    first = res.history[0]["loss"]
    assert {"ctc", "kl", "feature"} <= set(first)
    # student starts as a copy of the teacher: the distillation terms start near zero
    assert first["kl"] < 0.05 and first["feature"] < 0.05


def test_scratch_training_needs_a_charset(tmp_path) -> None:
    with pytest.raises(DataError, match="charset"):
        train(_cfg(tmp_path, charset=None), progress=False)


def test_db_targets_shrink_inside_threshold_on_the_border() -> None:
    from xcompress.train.db_targets import db_targets

    box = np.array([[10, 10], [70, 10], [70, 30], [10, 30]], np.float32)
    tiny = np.array([[2, 2], [4, 2], [4, 3], [2, 3]], np.float32)
    t = db_targets([box, tiny], [False, False], 40, 80)
    assert t["shrink"][20, 40] == 1.0 and t["shrink"][10, 10] == 0.0  # corner is shrunk away
    assert t["shrink"][20, 12] == 0.0 and t["shrink"][20, 20] == 1.0
    assert t["thresh"][10, 40] == pytest.approx(0.7, abs=1e-5)  # on the edge: max
    assert t["thresh"][20, 40] == pytest.approx(0.3, abs=1e-5)  # deep inside: min
    assert t["shrink_mask"][2, 3] == 0.0  # too small to learn: masked out
    ignored = db_targets([box], [True], 40, 80)
    assert ignored["shrink"].sum() == 0 and ignored["shrink_mask"][20, 40] == 0.0


def test_tiny_detector_training_lowers_the_db_loss(tmp_path) -> None:
    from xcompress.models import get_arch

    tiny = get_arch("ppocrv4-det").tiny().model_dump(mode="json")
    cfg = TrainConfig(
        model="ppocrv4-det", arch_config=tiny, train=["synth"], val=["synth"], val_count=2,
        steps=24, eval_every=8, batch_size=2, lr=3e-3, warmup=2, det_size=128, threads=1,
        out=str(tmp_path / "det"),
    )  # fmt: skip
    res = train(cfg, progress=False)
    losses = [h["loss"]["db"] for h in res.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert 0.0 <= res.final["synth"] <= 1.0


def test_frozen_modules_do_not_change(tmp_path) -> None:
    from xcompress.models.checkpoint import read_checkpoint

    train(_cfg(tmp_path, steps=4, eval_every=4, out=str(tmp_path / "a")), progress=False)
    start = read_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    train(
        _cfg(tmp_path, model=str(tmp_path / "a" / "last.pt"), steps=4, eval_every=4,
             freeze=["cnn"], out=str(tmp_path / "b")),
        progress=False,
    )  # fmt: skip
    after = read_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    assert torch.equal(after["cnn.0.weight"], start["cnn.0.weight"])
    assert not torch.equal(after["head.weight"], start["head.weight"])


def test_train_time_score_equals_xcompress_eval_of_the_export(tmp_path) -> None:
    """One evaluation core: the held-out numbers of training are what `xcompress eval` says
    of the exported ONNX model on the same folder (same preprocessing, decoding, metrics)."""
    from xcompress.data.synth import SynthConfig, generate
    from xcompress.eval import EvalConfig, evaluate
    from xcompress.export import export_model

    val = tmp_path / "val"
    generate(SynthConfig(task="rec", count=12, seed=3, charset=tuple("0123456789")), val)
    # one step from a random start: the module still emits many characters, so decoding and
    # both CERs are exercised rather than an all-blank output
    res = train(_cfg(tmp_path, steps=1, eval_every=1, warmup=0, val=[str(val)]), progress=False)
    ((name, got),) = res.final_metrics.items()
    assert res.metric == "cer_nospace" and res.final[name] == got["cer_nospace"]
    assert got["cer"] > 0 and got["mean_score"] > 0
    art = export_model(str(tmp_path / "run" / "last.pt"), "onnx", {}, tmp_path / "onnx")
    rep = evaluate(art, val, EvalConfig(progress=False))
    assert rep.n_samples == 12
    for k in ("cer_nospace", "cer", "line_accuracy", "line_accuracy_nospace", "ned", "mean_score"):
        assert rep.metrics[k] == pytest.approx(got[k], abs=1e-6), k


def test_best_checkpoint_follows_the_headline_metric(tmp_path) -> None:
    from xcompress.models.checkpoint import read_checkpoint

    res = train(_cfg(tmp_path, steps=30, eval_every=10, val_count=8), progress=False)
    assert res.task == "rec" and res.metric == "cer_nospace"
    cers = {h["step"]: h["val"]["synth"] for h in res.history}
    assert all(h["val"]["synth"] == h["val_metrics"]["synth"]["cer_nospace"] for h in res.history)
    assert {"cer", "cer_nospace", "line_accuracy"} <= set(res.history[0]["val_metrics"]["synth"])
    best_step = min(cers, key=lambda k: (cers[k], k))  # lowest CER wins, the first on ties
    assert res.best_step == best_step and res.best["synth"] == cers[best_step]
    notes = read_checkpoint(tmp_path / "run" / "best.pt")["card"]["notes"]
    assert notes["train_step"] == best_step and notes["val_metric"] == "cer_nospace"
    state = read_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    assert state["best_metric"] == "cer_nospace" and state["best_step"] == best_step


def test_evaluate_lines_is_the_eval_core(tmp_path) -> None:
    from xcompress.data.labels import read_image
    from xcompress.data.synth import SynthConfig, generate
    from xcompress.models import build_model
    from xcompress.train import evaluate_lines

    ds = generate(SynthConfig(task="rec", count=4, seed=5, charset=tuple("0123456789")),
                  tmp_path / "lines")  # fmt: skip
    items = [(read_image(s.image), s.text) for s in ds.samples]
    model = build_model("crnn", {**TINY_CRNN, "num_classes": 11}).train()
    m = evaluate_lines(model, CTCCodec(list("0123456789")), items, RecBatchSpec(32, 96))
    assert {"line_accuracy", "line_accuracy_nospace", "cer", "cer_nospace"} <= set(m)
    assert model.training  # the caller's mode is restored


def test_unknown_model_names_architectures_and_zoo(tmp_path) -> None:
    from xcompress.errors import ModelError

    with pytest.raises(ModelError, match="not an architecture .*crnn"):
        train(_cfg(tmp_path, model="crnnn"), progress=False)
