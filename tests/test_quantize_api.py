"""``quantize`` end to end on a tiny recognizer, and its errors (nothing half-written)."""

from __future__ import annotations

import json

import pytest
from onnx import TensorProto, helper

pytest.importorskip("onnxruntime")

from tiny_models import CHARSET, rec_set, tiny_rec  # noqa: E402

from xcompress.artifact import Artifact  # noqa: E402
from xcompress.card import ModelCard  # noqa: E402
from xcompress.errors import BudgetError, DataError, ModelError  # noqa: E402
from xcompress.quantize import QuantizeConfig  # noqa: E402

# tiny models are too small for int8 kernels to pay off: allow_slower lets them be written;
# the tiny recognizer's one conv is its stem, kept int8 here (float_stem has its own test)
FAST = dict(plans=("int8-all",), latency_runs=3, threads=1, allow_slower=True,
            float_stem=False, synth_mix=0.0)
_tiny_rec, _rec_set = tiny_rec, rec_set


@pytest.fixture
def tiny(tmp_path):
    return _tiny_rec(tmp_path / "tiny.onnx"), _rec_set(tmp_path / "calib")


def test_quantize_tiny_recognizer(tiny, tmp_path):
    from xcompress.quantize import quantize

    art, calib = tiny
    out = tmp_path / "out"
    res = quantize(art, calib, out, QuantizeConfig(max_drop=1.0, **FAST), progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        ".xcompress-output.json", "model.int8.onnx", "report.json", "report.md",
        "xcompress.json"]
    import onnx

    q = onnx.load(str(res.model_path))
    assert {n.op_type for n in q.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert q.graph.input[0].name == "x" and q.graph.output[0].name == "probs"
    dims = [d.dim_param or d.dim_value for d in q.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["n", 3, 48, "w"]  # dynamic axes kept
    rep = json.loads((out / "report.json").read_text())
    assert rep["model"]["opset"] == 12 and rep["model"]["upgraded_opset"] == 20
    assert rep["calibration"]["widths"][0] < rep["calibration"]["widths"][1]
    assert rep["latency"]["threads"] == 1 and rep["latency"]["ratio"] > 0
    from xcompress.runtime.ort import host_session_config  # the timed sessions' entries

    assert rep["latency"]["runtime_options"] == {"session.intra_op.allow_spinning": "0",
                                                 **host_session_config()}  # fmt: skip
    assert all(f"{k}={v}" in (out / "report.md").read_text()
               for k, v in rep["latency"]["runtime_options"].items())
    assert rep["rewrites"]["fold-scalar-chains"] >= 1
    assert res.card.step == "quantize" and res.card.step_config["max_drop"] == 1.0
    assert res.card.charset == CHARSET


def test_no_faster_int8_plan_is_an_error_and_writes_nothing(tiny, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from xcompress.quantize import quantize
    from xcompress.quantize.stages import QuantizeContext

    def slower(self, model_path, warmup, runs):  # int8 measured at 0.8x of float
        t = SimpleNamespace(median_ms=1.0)
        return SimpleNamespace(ratio=0.8, a=t, b=SimpleNamespace(median_ms=1.25), rounds=runs)

    monkeypatch.setattr(QuantizeContext, "compare", slower)
    art, calib = tiny
    out = tmp_path / "out"
    cfg = QuantizeConfig(max_drop=1.0, **{**FAST, "allow_slower": False})
    msg = r"no faster int8 plan on host: .* 0\.80x .*--allow-slower"
    with pytest.raises(BudgetError, match=msg):
        quantize(art, calib, out, cfg, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_same_inputs_same_artifact(tiny, tmp_path):
    from xcompress.quantize import quantize

    art, calib = tiny
    cfg = QuantizeConfig(max_drop=1.0, **FAST)
    a = quantize(art, calib, tmp_path / "a", cfg, progress=False)
    b = quantize(art, calib, tmp_path / "b", cfg, progress=False)
    assert a.model_path.read_bytes() == b.model_path.read_bytes()


def test_empty_calibration_set(tiny, tmp_path):
    from xcompress.quantize import quantize

    art, _ = tiny
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "label.txt").write_text("\n")
    with pytest.raises(DataError, match="no samples"):
        quantize(art, empty, tmp_path / "out", QuantizeConfig(**FAST), progress=False)
    with pytest.raises(DataError):
        quantize(art, tmp_path / "missing", tmp_path / "out", QuantizeConfig(**FAST),
                 progress=False)
    assert not (tmp_path / "out").exists()


def test_unreadable_calibration_image(tiny, tmp_path):
    from xcompress.quantize import quantize

    art, calib = tiny
    (calib / "3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        quantize(art, calib, tmp_path / "out", QuantizeConfig(**FAST), progress=False)


def test_non_ocr_model(tmp_path):
    import onnx

    from xcompress.quantize import quantize

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "notocr",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    card = ModelCard(name="m", task="rec", file="m.onnx", charset=CHARSET)
    with pytest.raises(ModelError, match="not an N x 3 x H x W image: not a PP-OCR rec model"):
        quantize(Artifact(path, card), tmp_path, tmp_path / "out", progress=False)


def test_unmeetable_budget_writes_nothing(tiny, tmp_path, monkeypatch):
    from xcompress.quantize import quantize
    from xcompress.quantize.signals import RecSignal

    art, calib = tiny
    # a synthetic signal: every int8 model loses 3 points, whatever stays float
    monkeypatch.setattr(RecSignal, "drop", lambda self, fp, q: 0.03)
    out = tmp_path / "out"
    with pytest.raises(BudgetError, match=r"best 3\.00 pt"):
        quantize(art, calib, out, QuantizeConfig(max_drop=0.005, **FAST), progress=False)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_fallback_keeps_the_sensitive_layer_float(tiny, tmp_path, monkeypatch):
    from xcompress.quantize import quantize, signals

    art, calib = tiny
    # synthetic: the drop is 0 only when the classifier head (MatMul) runs in float
    state = {}

    def drop(self, fp, q):
        return 0.0 if state.get("head_float") else 0.02

    import xcompress.quantize.stages as stages

    real_keep_float = stages.keep_float

    def spy(qdq, fp32, quantized, float_weights=False):
        state["head_float"] = not any("MatMul" in n for n in quantized)
        return real_keep_float(qdq, fp32, quantized, float_weights)

    monkeypatch.setattr(signals.RecSignal, "drop", drop)
    monkeypatch.setattr(stages, "keep_float", spy)
    monkeypatch.setattr(stages, "_sensitivity", lambda q, m, groups, *a: {
        g: (1.0 if "MatMul" in g else 0.0) for g in groups})
    res = quantize(art, calib, tmp_path / "out", QuantizeConfig(**FAST), progress=False)
    kept = res.report["layers"]["kept_float"]
    assert [k["layer"] for k in kept] == [g for g in res.report["layers"]["sensitivity"]
                                          if "MatMul" in g]
    assert "needed to meet the budget" in kept[0]["reason"]


def test_the_stem_reading_the_image_stays_float(tiny, tmp_path):
    """By default the conv reading the image computes in float (its output carries the
    image's contrast); the report lists it with its reason, the next layer stays int8."""
    import onnx

    from xcompress.quantize import quantize
    from xcompress.quantize.qdq import layer_groups, stem_layers

    art, calib = tiny
    m = onnx.load(str(art.path))
    groups = layer_groups(m, ("Conv", "MatMul"))
    assert stem_layers(m, groups) == [next(iter(groups))] and len(groups) == 2
    res = quantize(art, calib, tmp_path / "out", QuantizeConfig(
        max_drop=1.0, **{**FAST, "float_stem": True}), progress=False)
    q = onnx.load(str(res.model_path))
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    mm = next(n for n in q.graph.node if n.op_type == "MatMul")
    producer = {o: n for n in q.graph.node for o in n.output}
    assert conv.input[0] == "x"  # no Q/DQ between the image and the stem
    assert producer[mm.input[0]].op_type == "DequantizeLinear"  # the head is int8
    kept = res.report["layers"]["kept_float"]
    assert [k["layer"] for k in kept] == stem_layers(m, groups) and "stem" in kept[0]["reason"]
    assert res.report["layers"]["total"] == 2
    assert "stem: reads the image" in (tmp_path / "out" / "report.md").read_text()


def test_plan_order_is_stable_under_timing_noise():
    from xcompress.quantize.stages import order_plans as _order_plans

    # within the 10% margin the listed order wins (same inputs -> same artifact)
    assert _order_plans(["int8-all", "int8-conv"], {"int8-all": 2.0, "int8-conv": 2.1}) == [
        "int8-all", "int8-conv"]
    assert _order_plans(["int8-all", "int8-conv"], {"int8-all": 1.5, "int8-conv": 2.0}) == [
        "int8-conv", "int8-all"]


def test_cli_reports_user_errors_in_one_line(tiny, tmp_path, capsys):
    from xcompress.cli.main import main

    art, _ = tiny
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "label.txt").write_text("\n")
    code = main(["quantize", str(art.path), "--calib", str(empty),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "no samples" in err
    assert not (tmp_path / "out").exists()


def test_report_gives_the_budget_data_its_size_and_interval(tiny, tmp_path):
    from xcompress.quantize import quantize

    art, calib = tiny
    res = quantize(art, calib, tmp_path / "out", QuantizeConfig(max_drop=1.0, **FAST),
                   progress=False)
    acc = res.report["accuracy"]["calib-holdout"]
    lo, hi = acc["drop_ci95"]
    assert acc["data"] == "given" and acc["n"] >= 1 and lo <= hi
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"calib-holdout (given, {acc['n']})" in md and "drop 95% CI" in md
    # a given calibration set: no warning about synthetic data
    assert not any("synthetic" in w for w in res.report["warnings"])
    # the bias correction is reported with the check that decided it
    bc = res.report["bias_correction"]
    assert set(bc) == {"applied", "layers", "disagreement", "seconds"}
    assert not bc["applied"] or bc["disagreement"][1] < bc["disagreement"][0]


def test_tensor_groups_follow_the_producing_op():
    from xcompress.quantize.stages import tensor_groups

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["c2"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1])], [], [])
    m = helper.make_model(g)
    assert tensor_groups(m, ["x", "c", "r", "c2"]) == {"input": ["x"], "Conv": ["c", "c2"],
                                                        "Relu": ["r"]}


def test_float_stem_default_is_per_task():
    assert QuantizeConfig().stem_in_float("rec") and QuantizeConfig().stem_in_float("cls")
    assert not QuantizeConfig().stem_in_float("det")
    assert QuantizeConfig(float_stem=True).stem_in_float("det")
    assert not QuantizeConfig(float_stem=False).stem_in_float("rec")


def test_widest_range_within_the_hold_out_noise():
    """The candidate with the least disagreement gives way to one that clips less when the
    hold-out cannot tell them apart; never to one measurably worse."""
    import numpy as np

    from xcompress.quantize.stages import widest_within_noise

    rng = np.random.default_rng(1)
    base = rng.uniform(0, 0.04, 150)

    def cand(spec, per):
        return ((float(per.mean()), 0.0), {}, spec, per)

    tried = {
        "minmax": cand(("minmax", 99.999), base + 0.2),  # clearly worse
        "percentile 99.999": cand(("percentile", 99.999), base + 0.01),  # measurably worse
        "percentile 99.995": cand(("percentile", 99.995), base + rng.normal(0, 0.01, 150)),
        "percentile 99.98": cand(("percentile", 99.98), base),
    }
    assert widest_within_noise(tried, "percentile 99.98") == "percentile 99.995"
    tried["percentile 99.995"] = cand(("percentile", 99.995), base + 0.01)
    assert widest_within_noise(tried, "percentile 99.98") == "percentile 99.98"
    tried["entropy"] = cand(("entropy", 99.999), base - 0.001)
    assert widest_within_noise(tried, "entropy") == "entropy"  # not ordered by clipping


def test_finalists_keep_the_least_drop_after_bias_correction(tiny, tmp_path, monkeypatch):
    """Of the candidates agreeing best with float, each is bias-corrected and the one whose
    corrected all-int8 model loses least on the budget metric is kept, whichever agreed
    best; the report gives each finalist's drop."""
    import xcompress.quantize.stages as stages
    from xcompress.quantize import quantize

    art, calib = tiny
    label_of, keep = {}, []  # models are kept alive so that their ids stay theirs
    real_bias, real_with_float = stages.bias_stage, stages.PlanQuantizer.with_float
    real_drop_of = stages.QuantizeContext.drop_of

    def bias_spy(ctx, name, pq, q_full, cal):
        q, bc = real_bias(ctx, name, pq, q_full, cal)
        label_of[id(q)] = cal.label
        keep.append(q)
        return q, bc

    def with_float_spy(self, q_full, float_layers):
        m = real_with_float(self, q_full, float_layers)
        if id(q_full) in label_of:
            label_of[id(m)] = label_of[id(q_full)]
            keep.append(m)
        return m

    drops = {}

    def drop_spy(self, model, fp):
        d, got = real_drop_of(self, model, fp)
        return drops.get(label_of.get(id(model)), d), got

    monkeypatch.setattr(stages, "bias_stage", bias_spy)
    monkeypatch.setattr(stages.PlanQuantizer, "with_float", with_float_spy)
    monkeypatch.setattr(stages.QuantizeContext, "drop_of", drop_spy)
    resolved = {"value": True}  # the smaller drop beyond the check's noise, or not
    monkeypatch.setattr(stages, "_resolved_better", lambda *a: resolved["value"])
    cfg = dict(FAST, auto_methods=("minmax", "percentile:99.9"), range_search=(), max_drop=1.0)
    for best, other in (("percentile 99.9", "minmax"), ("minmax", "percentile 99.9")):
        drops.clear()
        drops.update({best: 0.001, other: 0.004})
        out = tmp_path / best.replace(" ", "-")
        res = quantize(art, calib, out, QuantizeConfig(**cfg), progress=False)
        cal = res.report["calibration"]
        assert stages.method_label(cal["method"], cal["percentile"]) == best
        assert cal["finalists"] == pytest.approx({best: 0.001, other: 0.004})
        assert "after bias correction" in cal["chosen_by"]
        assert f"{best} drop 0.10 pt" in (out / "report.md").read_text()
    # unresolved: whichever finalist has the smaller drop, the one agreeing best is kept
    resolved["value"] = False
    kept, rules = set(), []
    for best, other in (("percentile 99.9", "minmax"), ("minmax", "percentile 99.9")):
        drops.clear()
        drops.update({best: 0.001, other: 0.004})
        cal = quantize(art, calib, tmp_path / f"noise-{best.replace(' ', '-')}",
                       QuantizeConfig(**cfg), progress=False).report["calibration"]
        kept.add(stages.method_label(cal["method"], cal["percentile"]))
        rules.append(cal["chosen_by"])
    assert len(kept) == 1
    assert sum("drop was within the check's noise" in r for r in rules) == 1
    res = quantize(art, calib, tmp_path / "one", QuantizeConfig(**cfg, finalists=1),
                   progress=False)
    assert res.report["calibration"]["finalists"] == {}


def test_range_search_only_repairs_an_all_int8_model_that_misses_the_budget(
        tiny, tmp_path, monkeypatch):
    """The per-group range search runs only when the chosen all-int8 model misses the
    budget, and its model is kept only when its drop is smaller."""
    from xcompress.quantize import quantize, stages

    art, calib = tiny
    calls, searched_ids, keep = [], set(), []
    real_search, real_bias = stages.range_search, stages.bias_stage
    real_with_float, real_drop_of = stages.PlanQuantizer.with_float, stages.QuantizeContext.drop_of

    def search_spy(*a, **k):
        ranges, _, dis = real_search(*a, **k)
        calls.append(1)
        return ranges, {"Conv": "minmax"}, dis

    def bias_spy(ctx, name, pq, q_full, cal):
        q, bc = real_bias(ctx, name, pq, q_full, cal)
        if cal.groups:
            searched_ids.add(id(q))
            keep.append(q)
        return q, bc

    def with_float_spy(self, q_full, float_layers):
        m = real_with_float(self, q_full, float_layers)
        if id(q_full) in searched_ids:
            searched_ids.add(id(m))
            keep.append(m)
        return m

    after = {"drop": 0.001}

    def drop_spy(self, model, fp):
        d, got = real_drop_of(self, model, fp)
        return (after["drop"] if id(model) in searched_ids else 0.02), got

    monkeypatch.setattr(stages, "range_search", search_spy)
    monkeypatch.setattr(stages, "bias_stage", bias_spy)
    monkeypatch.setattr(stages.PlanQuantizer, "with_float", with_float_spy)
    cfg = dict(FAST, auto_methods=("minmax", "percentile:99.9"), range_search=("minmax",))
    res = quantize(art, calib, tmp_path / "met", QuantizeConfig(**cfg, max_drop=0.05),
                   progress=False)
    assert calls == [] and res.report["calibration"]["tensor_groups"] == {}
    monkeypatch.setattr(stages.QuantizeContext, "drop_of", drop_spy)
    res = quantize(art, calib, tmp_path / "repaired", QuantizeConfig(**cfg, max_drop=0.01),
                   progress=False)
    cal = res.report["calibration"]
    assert calls == [1] and cal["tensor_groups"] == {"Conv": "minmax"}
    assert "missed the budget" in cal["chosen_by"]
    after["drop"] = 0.03  # the search made it worse: the finalist (2 pt) goes to the fallback
    from xcompress.errors import BudgetError

    with pytest.raises(BudgetError, match="best 2.00 pt"):
        quantize(art, calib, tmp_path / "kept", QuantizeConfig(**cfg, max_drop=0.01),
                 progress=False)
    assert len(calls) == 2 and not (tmp_path / "kept").exists()


def test_finalists_default_is_per_task():
    assert [QuantizeConfig().finalists_for(t) for t in ("rec", "cls", "det")] == [2, 1, 1]
    assert QuantizeConfig(finalists=3).finalists_for("det") == 3


def test_candidates_and_synthetic_mix_default_per_task():
    cfg = QuantizeConfig()
    assert cfg.auto_methods_for("rec") == ("percentile:99.999", "percentile:99.995")
    assert cfg.auto_methods_for("det") == ("minmax", "percentile:99.999", "percentile:99.995",
                                           "percentile:99.99", "percentile:99.98")
    assert QuantizeConfig(auto_methods=("mse",)).auto_methods_for("rec") == ("mse",)
    assert [cfg.synth_mix_for(t) for t in ("rec", "cls", "det")] == [0.5, 0.0, 0.0]
    assert QuantizeConfig(synth_mix=0.0).synth_mix_for("rec") == 0.0


def test_own_calibration_lines_are_mixed_with_synthetic_ones_but_checked_alone(tiny, tmp_path):
    from xcompress.quantize import quantize

    art, calib = tiny  # 12 own lines: 6 held out, 6 calibrate
    cfg = QuantizeConfig(max_drop=1.0, **{**FAST, "synth_mix": 0.25})
    res = quantize(art, calib, tmp_path / "out", cfg, progress=False)
    cal, acc = res.report["calibration"], res.report["accuracy"]["calib-holdout"]
    # 2 synthetic lines beside the 6 own ones make a quarter; the budget is the own 6 alone
    assert (cal["samples"], cal["synthetic_samples"]) == (8, 2)
    assert acc["n"] == 6 and acc["data"] == "given"
    assert "(2 of them from the built-in synthetic set)" in (
        tmp_path / "out" / "report.md").read_text()
    assert not any("synthetic" in w for w in res.report["warnings"])


def _stem_graph(reader_group: int):
    """x -> stem Conv -> HardSwish -> 3x3 Conv (``reader_group`` groups) -> 1x1 Conv."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {"w0": rng.standard_normal((8, 3, 3, 3)),
         "w1": rng.standard_normal((8, 8 // reader_group, 3, 3)),
         "w2": rng.standard_normal((16, 8, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="stem", pads=[1] * 4),
             helper.make_node("HardSwish", ["a"], ["b"], name="act"),
             helper.make_node("Conv", ["b", "w1"], ["c"], name="reader", group=reader_group,
                              pads=[1] * 4),
             helper.make_node("Conv", ["c", "w2"], ["y"], name="pw")]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    return onnx.helper.make_model(g)


def test_the_stems_depthwise_reader_stays_float_too():
    """The stem's output is quantized wherever its reader is int8, so a depthwise reader
    joins the float stem; a dense reader (a large share of the MACs) stays int8."""
    from xcompress.quantize.qdq import layer_groups, stem_layers

    dw = _stem_graph(reader_group=8)
    assert stem_layers(dw, layer_groups(dw, ("Conv",))) == ["stem", "reader"]
    dense = _stem_graph(reader_group=1)
    assert stem_layers(dense, layer_groups(dense, ("Conv",))) == ["stem"]


def test_synthetic_calibration_warns_only_where_the_budget_was_checked_on_it(
        tiny, tmp_path, monkeypatch):
    from xcompress.quantize import inputs, quantize

    art, own = tiny
    monkeypatch.setitem(inputs.SYNTH_COUNT, "rec", 12)
    cfg = QuantizeConfig(max_drop=1.0, **FAST)
    alone = quantize(art, None, tmp_path / "a", cfg, progress=False).report
    assert alone["accuracy"]["calib-holdout"]["data"] == "built-in synthetic"
    assert any("built-in synthetic set only" in w for w in alone["warnings"])
    # synthetic ranges, the budget on the user's own set: not "synthetic only"
    checked = quantize(art, None, tmp_path / "b", cfg, eval_paths=[own], progress=False).report
    assert checked["accuracy"]["calib"]["data"] == "given"
    assert not any("synthetic" in w for w in checked["warnings"])


def test_a_budget_finer_than_its_check_can_resolve_is_warned():
    from xcompress.quantize.inputs import QuantizeData
    from xcompress.quantize.stages import coarse_budget_warning

    def data(name, synthetic):
        return QuantizeData([], [], [], [], [], {name: [None] * 257}, [320], synthetic)

    iv = {"eval": (-0.0036, 0.0052)}  # half-width 0.44 pt
    msg = coarse_budget_warning(0.001, iv, data("eval", False))
    assert msg and "0.10 pt" in msg and "eval (257 samples, drop 95% CI -0.36..+0.52 pt)" in msg
    assert coarse_budget_warning(0.005, iv, data("eval", False)) is None
    # the built-in hold-out's interval is in the synthetic-data warning already
    hold = {"calib-holdout": iv["eval"]}
    assert coarse_budget_warning(0.001, hold, data("calib-holdout", True)) is None
    assert coarse_budget_warning(0.001, hold, data("calib-holdout", False))


def test_a_finalist_wins_on_its_drop_only_where_the_difference_is_resolved():
    from types import SimpleNamespace as NS

    import numpy as np

    from xcompress.quantize.stages import _resolved_better

    ctx = NS(card=NS(task="rec"), signal=NS(metric="cer_nospace", higher_is_better=False))

    def res(errors):  # per line: (edits*, chars*, edits, chars), 10 chars a line
        e = np.asarray(errors, float)
        return {"hold": NS(counts=np.stack([e, np.full_like(e, 10), e, np.full_like(e, 10)], 1))}

    base = [1] * 40 + [0] * 160
    one_less = [0] + base[1:]  # 0.05 pt better on 200 lines: noise
    much_less = [0] * 200  # every error gone
    assert not _resolved_better(ctx, res(one_less), res(base))
    assert _resolved_better(ctx, res(much_less), res(base))
    assert not _resolved_better(ctx, res(base), res(much_less))
