"""``xcompress prune``: importance criteria, exact MACs, the greedy plan, a tiny end-to-end
prune of a CRNN (its BiLSTM included) with resume, charset slimming through the command, and
its mistakes (one line, exit code, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xcompress.card import ModelCard, default_postprocess, default_preprocess
from xcompress.models import build_model
from xcompress.models.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
DIGITS = list("0123456789")
TINY = {"stages": [{"channels": 16}, {"channels": 32}], "hidden": 16,
        "num_classes": len(DIGITS) + 1}  # fmt: skip
TINY_SPACE = """\
arch: crnn
stages: 2
stages_at: stages
divisor: 8
choices:
  width_mults: [0.5, 0.75, 1.0]
fields:
  hidden: [8, 16]
width_fields: [hidden]
"""
SHAPE = (1, 3, 32, 128)


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny trained-looking CRNN digits checkpoint (random weights, BN stats set)."""
    torch.manual_seed(0)
    model = build_model("crnn", TINY).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    pre = default_preprocess("rec").model_copy(update={"image_shape": (3, 32, 128)})
    card = ModelCard(name="tiny-crnn", task="rec", file="model.pt", format="torch",
                     preprocess=pre, postprocess=default_postprocess("rec"),
                     charset=DIGITS)  # fmt: skip
    return save_checkpoint(tmp_path_factory.mktemp("parent") / "model.pt", model, card)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(TINY_SPACE, encoding="utf-8")
    return p


def _args(parent: Path, space: Path, out: Path, *extra: str) -> list[str]:
    return ["prune", str(parent), "--space", str(space), "--out", str(out), "--steps", "2",
            "--batch-size", "4", "--val-count", "6", "--threads", "1", "--shape", "1x3x32x128",
            *extra]  # fmt: skip


# -- importance -----------------------------------------------------------------------------


def test_importance_criteria_score_every_slice():
    from xcompress.prune.importance import IMPORTANCE, make_importance

    w = torch.randn(6, 4, 3, 3)
    for name in ("l1", "fpgm"):
        imp = make_importance(name)
        for dim in (0, 1):
            s = imp(w, dim)
            assert s.shape == (w.shape[dim],) and bool((s >= 0).all())
    assert set(IMPORTANCE.names()) == {"l1", "fpgm", "taylor"}
    # FPGM keeps an outlier filter that L1 would also keep, but drops the duplicate pair's
    # member closest to the rest, whatever its norm
    w = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 5.0], [-1.0, 0.0]])
    assert make_importance("fpgm")(w, 0).argmin().item() in (0, 1)


def test_unknown_importance_is_one_line():
    from xcompress.errors import XCompressError
    from xcompress.prune.importance import make_importance

    with pytest.raises(XCompressError, match="unknown criterion .*fpgm, l1, taylor"):
        make_importance("random")


def test_taylor_needs_gradients_and_ranks_by_them(parent):
    from xcompress.errors import XCompressError
    from xcompress.prune.importance import make_importance

    model, _ = load_checkpoint(parent)
    imp = make_importance("taylor")
    with pytest.raises(XCompressError, match="no gradient"):
        imp(model.head.weight)
    x = torch.randn(2, 3, 32, 128)

    def loss(m, x, _t):
        return m.forward_train(x)["logits"].square().mean()

    imp.prepare(model, [(x, None)], loss)
    assert all(p.grad is None for p in model.parameters())  # nothing left behind
    s = imp(model.head.weight, 1)
    assert s.shape == (model.head.in_features,) and bool((s >= 0).all())


def test_ranked_by_changes_what_a_subnet_keeps(parent):
    from xcompress.prune.importance import make_importance
    from xcompress.search.derive import derive_subnet, l1_scores, ranked_by, top_k

    def first_conv(m):
        return next(c for c in m.cnn if isinstance(c, torch.nn.Conv2d))

    model, _ = load_checkpoint(parent)
    conv = first_conv(model)
    cfg = model.config.model_dump(mode="json")
    cfg["stages"][0]["width_mult"] = 0.5
    child = derive_subnet(model, cfg)
    k = first_conv(child).out_channels
    assert k < conv.out_channels
    assert torch.equal(first_conv(child).weight, conv.weight[top_k(l1_scores(conv.weight), k)])
    fpgm = make_importance("fpgm")
    with ranked_by(fpgm):
        child = derive_subnet(model, cfg)
    fpgm_keep = top_k(fpgm(conv.weight), k)
    assert torch.equal(first_conv(child).weight, conv.weight[fpgm_keep])


# -- plan -----------------------------------------------------------------------------------


def test_count_macs_is_the_onnx_count(parent, tmp_path):
    from xcompress.models.export import export_onnx
    from xcompress.profile.flops import count_onnx
    from xcompress.prune.plan import count_macs

    model, card = load_checkpoint(parent)
    export_onnx(model, card.derive(file="model.onnx", format="onnx"), tmp_path, check=False)
    onnx_cost = count_onnx(tmp_path / "model.onnx", SHAPE)
    assert onnx_cost.uncounted == {"LSTM": 1}  # the ONNX count leaves the LSTM out; torch's
    steps, rnn = SHAPE[-1] // 4, model.rnn  # counts its gate matmuls: 2 directions x 4 gates
    lstm = steps * 2 * 4 * rnn.hidden_size * (rnn.input_size + rnn.hidden_size)
    assert count_macs("crnn", model.config.model_dump(mode="json"), SHAPE) == (
        onnx_cost.macs + lstm)


def test_prune_space_pins_depth_and_narrows_widths(parent, space_file):
    from xcompress.prune.plan import prune_space
    from xcompress.search.space import load_space

    model, _ = load_checkpoint(parent)
    ps = prune_space(model, load_space(space_file, "crnn"), round_to=8)
    names = [g.name for g in ps.groups]
    assert names == ["s0.width", "s1.width", "hidden"]
    assert ps.groups[2].choices == (16, 8)  # trained value first, then narrower
    assert all(g.choices[0] == 1.0 for g in ps.groups[:2])
    assert ps.base["s0.depth"] == 1 and ps.space.divisor == 8


def test_greedy_allocation_takes_the_cheapest_loss_per_mac():
    from xcompress.prune.plan import Group, PruneSpace, Sensitivity, allocate

    ps = PruneSpace(space=None, groups=(Group("a", (1, 2, 3)), Group("b", (1, 2, 3))), base={})
    macs = {"a": [0, 30, 50], "b": [0, 30, 60]}  # MACs saved by each notch

    def macs_of(state):
        return 100 - macs["a"][state["a"]] - macs["b"][state["b"]]

    probes = []

    def probe(g, i):
        probes.append((g, i))
        return {"a": [0, 1.0, 5.0], "b": [0, 0.5, 0.6]}[g][i]

    sens = Sensitivity(probe, {"a": 0, "b": 0})
    path = allocate(ps, sens, macs_of, lambda s, m: m <= 35)
    assert [s for s, _ in path] == [{"a": 0, "b": 0}, {"a": 0, "b": 1}, {"a": 0, "b": 2},
                                    {"a": 1, "b": 2}]  # fmt: skip
    assert path[-1][1] == 10 and len(set(probes)) == len(probes)  # each probe measured once
    # nothing meets the goal: the path ends at the smallest state
    assert allocate(ps, sens, macs_of, lambda s, m: m < 0)[-1][0] == {"a": 2, "b": 2}


def test_a_narrower_width_never_measures_cheaper_than_a_wider_one():
    from xcompress.prune.plan import Group, PruneSpace, Sensitivity, allocate

    ps = PruneSpace(space=None, groups=(Group("a", (1, 2, 3)), Group("b", (1, 2, 3))), base={})
    macs = {"a": [0, 30, 60], "b": [0, 30, 60]}

    def macs_of(state):
        return 120 - macs["a"][state["a"]] - macs["b"][state["b"]]

    # b's last notch measures lower than its first (refit noise): without the running
    # maximum it would be free and the plan would take b to its narrowest before a
    raw = {"a": [0, 0.5, 1.0], "b": [0, 2.0, 0.1]}
    sens = Sensitivity(lambda g, i: raw[g][i], {"a": 0, "b": 0})
    assert sens("b", 1) == 2.0 and sens("b", 2) == 2.0 and sens.rise[("b", 2)] == 0.1
    path = allocate(ps, sens, macs_of, lambda s, m: m <= 60)
    assert path[-1][0] == {"a": 2, "b": 0}


# -- the command ----------------------------------------------------------------------------


def _rec_set(tmp: Path) -> Path:
    import cv2

    folder = tmp / "digits"
    folder.mkdir(exist_ok=True)
    lines = []
    for i in range(4):
        img = np.full((32, 96, 3), 255, np.uint8)
        cv2.putText(img, f"{i}{i + 1}", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        cv2.imwrite(str(folder / f"{i}.png"), img)
        lines.append(f"{i}.png\t{i}{i + 1}")
    (folder / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_tiny_prune_end_to_end(parent, space_file, tmp_path):
    import onnxruntime as ort

    from xcompress.cli.main import main

    out = tmp_path / "pruned"
    assert main(_args(parent, space_file, out, "--target-macs", "0.6", "--importance",
                      "fpgm")) == 0  # fmt: skip
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["output"]["macs"] <= 0.6 * rep["input"]["macs"]
    assert rep["output"]["params"] < rep["input"]["params"] and rep["latency_ratio"] > 0
    assert rep["round_details"][0]["sensitivity"] and rep["machine"]["threads"] == 1
    assert rep["round_details"][0]["steps_run"] >= 1
    for word in ("MMACs", "threads 1", "onnxruntime", "sensitivity", "fpgm", "steps run of"):
        assert word in (out / "report.md").read_text(), word
    model, card = load_checkpoint(out / "model.pt")
    assert card.step == "prune" and card.charset == DIGITS
    assert model.rnn.hidden_size <= 16
    for stage in model.config.stages:  # channels rounded to the divisor
        assert stage.width_mult <= 1.0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert m.out_channels % 8 == 0
    # the ONNX is the checkpoint's module; both load in the other commands
    x = torch.rand(1, 3, 32, 128)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model.eval()(x).numpy(), atol=1e-4)
    assert main(["eval", str(out), "--data", str(_rec_set(tmp_path)), "--json",
                 str(tmp_path / "e.json")]) == 0  # fmt: skip
    assert not (tmp_path / ".pruned.prune-work").exists()  # work files gone after success


def test_interrupted_prune_resumes_after_the_last_round(parent, space_file, tmp_path):
    from xcompress.prune.runner import PruneConfig, run_prune

    out = tmp_path / "run"
    cfg = PruneConfig(model=str(parent), out=str(out), space=str(space_file), target_macs=0.5,
                      rounds=2, steps=2, batch_size=4, val_count=6, threads=1,
                      shape=SHAPE)  # fmt: skip
    logs: list[str] = []

    def stop_in_round_2(msg: str) -> None:
        logs.append(msg)
        if msg.startswith("round 2/2: sensitivity"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_prune(cfg, log=stop_in_round_2)
    assert not out.exists()  # nothing half-written where the user looks
    assert (tmp_path / ".run.prune-work" / "round-1.pt").is_file()
    logs.clear()
    res = run_prune(cfg, log=logs.append)
    assert any(m.startswith("round 1/2: done before") for m in logs)
    assert [r["round"] for r in res.report["round_details"]] == [1, 2]
    assert res.report["output"]["macs"] <= 0.5 * res.report["input"]["macs"]
    # other learned settings on the same work files are refused
    with pytest.raises(KeyboardInterrupt):
        run_prune(cfg.model_copy(update={"out": str(tmp_path / "r2")}), log=stop_in_round_2)
    with pytest.raises(Exception, match="seed"):
        run_prune(cfg.model_copy(update={"out": str(tmp_path / "r2"), "seed": 5}),
                  log=logs.append)


def test_probes_measured_before_an_interruption_are_not_measured_again(parent, space_file,
                                                                        tmp_path):
    from xcompress.prune.runner import PruneConfig, run_prune

    cfg = PruneConfig(model=str(parent), out=str(tmp_path / "run"), space=str(space_file),
                      target_macs=0.5, steps=1, batch_size=4, val_count=4, threads=1,
                      shape=SHAPE)  # fmt: skip
    first: list[str] = []

    def stop_after_two(msg: str) -> None:
        first.append(msg)
        if sum(m.startswith("  sensitivity") for m in first) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_prune(cfg, log=stop_after_two)
    done = [m for m in first if m.startswith("  sensitivity")]
    logs: list[str] = []
    run_prune(cfg, log=logs.append)
    assert "  2 sensitivity probe(s) measured before, resumed" in logs
    assert not set(done) & set(logs)  # the two are not measured again


def test_keep_charset_through_the_command(parent, space_file, tmp_path, capsys):
    from xcompress.cli.main import main

    keep = tmp_path / "keep.txt"
    keep.write_text("0\n1\n2\n", encoding="utf-8")
    out = tmp_path / "slim"
    assert main(_args(parent, space_file, out, "--keep-charset", str(keep))) == 0
    model, card = load_checkpoint(out / "model.pt")
    assert card.charset == ["0", "1", "2"] and model.head.out_features == 4
    parent_model, _ = load_checkpoint(parent)
    x = torch.rand(2, 3, 32, 128)
    with torch.no_grad():
        a = parent_model.eval().forward_train(x)["logits"][..., :4]
        b = model.eval().forward_train(x)["logits"]
    torch.testing.assert_close(a, b)  # rows blank, 0, 1, 2 of the parent's classifier
    # a charset file with characters the model cannot output: one line, nothing written
    keep.write_text("0\nA\n", encoding="utf-8")
    capsys.readouterr()
    assert main(_args(parent, space_file, tmp_path / "bad", "--keep-charset", str(keep))) != 0
    err = capsys.readouterr().err.strip()
    assert "cannot output" in err and "\n" not in err and not (tmp_path / "bad").exists()


def test_mistakes_are_one_line_and_write_nothing(parent, space_file, tmp_path, capsys):
    from xcompress.cli.main import main

    out = tmp_path / "x"
    assert main(_args(parent, space_file, out, "--target-macs", "0.01")) == 3
    err = capsys.readouterr().err.strip()
    assert "smallest model the prune space allows" in err and "\n" not in err
    assert not out.exists() and not (tmp_path / ".x.prune-work").exists()
    assert main(_args(parent, space_file, out)) != 0
    assert "nothing to do" in capsys.readouterr().err
    assert main(_args(parent, space_file, out, "--target-macs", "0.5", "--importance",
                      "magic")) != 0  # fmt: skip
    assert "unknown criterion" in capsys.readouterr().err
    assert not out.exists()
