"""``xcompress report``: entries keyed MODEL/STEP from real run folders, the schema'd JSON,
Markdown and plots, the regression gate (pass, fail naming the metric, improvement, missing),
and the GitHub step summary."""

from __future__ import annotations

import json

import pytest
from test_pipeline import copy_step  # noqa: F401  (the fixture registers the copy step)

from xcompress.cli.main import main
from xcompress.errors import XCompressError
from xcompress.pipeline import Recipe, run_recipe
from xcompress.report import SCHEMA_VERSION, build_report
from xcompress.report.gate import load_baseline


@pytest.fixture
def run_dir(tmp_path, copy_step, zoo_model):  # noqa: F811
    zoo_model("ppocr-v4-rec")
    recipe = Recipe.model_validate({
        "name": "t", "model": "ppocr-v4-rec",
        "data": {"ev": {"synth": {"task": "rec", "count": 4, "seed": 3, "lang": "en"}}},
        "steps": [{"step": "test-copy", "name": "copy"}],
        "report": {"eval": ["ev"], "threads": 1, "runs": 3, "shape": [1, 3, 48, 160]},
    })
    run_recipe(recipe, tmp_path / "run")
    return tmp_path / "run"


def _baseline(tmp_path, text: str):
    p = tmp_path / "baseline.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_report_entries_json_markdown_and_plots(run_dir, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    base = _baseline(tmp_path, "ppocr-v4-rec/copy:\n  size_ratio: {max: 1.0}\n"
                     "  cer_nospace_delta: {max: 0.0}\n  speedup: {min: 0.05}\n")
    res = build_report([run_dir, run_dir], base, tmp_path / "rep")
    assert [e.key for e in res.entries] == ["ppocr-v4-rec/original", "ppocr-v4-rec/copy"]
    copy = res.entries[1]
    assert copy.ratios["size_ratio"] == 1.0 and copy.deltas["cer_nospace_delta"] == 0.0
    assert copy.ratios["speedup"] > 0 and copy.shape == [1, 3, 48, 160] and copy.threads == 1
    assert copy.data["ev"]["sha256"] and len(copy.data["ev"]["sha256"]) == 64
    assert res.failed == [] and [c.status for c in res.checks] == ["ok"] * 3
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["schema_version"] == SCHEMA_VERSION and rep["gate"]["passed"]
    assert {"machine", "versions", "commit", "entries"} <= set(rep)
    assert "onnxruntime" in rep["versions"] and rep["entries"][1]["key"] == "ppocr-v4-rec/copy"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| ppocr-v4-rec/copy |" in md and "Regression gate: passed" in md
    for png in ("accuracy_latency.png", "size.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"
    assert "ppocr-v4-rec/copy" in summary.read_text() and ".png" not in summary.read_text()


def test_gate_fails_naming_the_metric_and_flags_improvements(run_dir, tmp_path, capsys):
    base = _baseline(tmp_path, "ppocr-v4-rec/copy:\n  speedup: {min: 1000}\n"
                     "  size_ratio: {max: 2.0, improve: 1.5}\nppocr-v4-rec/int8:\n"
                     "  speedup: {min: 1.8}\n")
    res = build_report([run_dir], base)
    assert [(c.metric, c.status) for c in res.checks] == [
        ("speedup", "regression"), ("size_ratio", "improvement"), ("speedup", "missing")]
    assert len(res.failed) == 2
    assert len(build_report([run_dir], base, strict=True).failed) == 3
    code = main(["report", str(run_dir), "--baseline", str(base)])
    assert code == 1
    err = capsys.readouterr().err
    assert "regression: ppocr-v4-rec/copy speedup" in err and "min 1000" in err


def test_report_mistakes_are_one_line(run_dir, tmp_path, capsys):
    with pytest.raises(XCompressError, match="not a run folder"):
        build_report([tmp_path / "nope"])
    for bad, msg in (("x: [1]\n", "expected metric"), ("x:\n  m: {}\n", "give min or max"),
                     ("x:\n  m: {min: 2, max: 1}\n", "above max"), ("x: [\n", "not valid YAML")):
        with pytest.raises(XCompressError, match=msg) as e:
            load_baseline(_baseline(tmp_path, bad))
        assert "\n" not in str(e.value)
    assert main(["report", str(run_dir), "--baseline", str(tmp_path / "none.yaml")]) == 2
    assert "baseline not found" in capsys.readouterr().err


def test_gate_thresholds_by_machine_class(run_dir, tmp_path):
    """Overrides for a class of machines replace only the metrics they name, only for entries
    whose run recorded a machine of that class; bad overrides are one-line errors."""
    text = ("ppocr-v4-rec/copy:\n  speedup: {min: 1000}\n  size_ratio: {max: 2.0}\n"
            "machines:\n  - when: {int8_dot: %s}\n    entries:\n"
            "      ppocr-v4-rec/copy:\n        speedup: {min: 0.01}\n")
    dot = json.loads((run_dir / "report.json").read_text())["machine"]["int8_dot"]
    mine, other = ("any", "none") if dot else ("none", "any")
    res = build_report([run_dir], _baseline(tmp_path, text % mine), tmp_path / "rep")
    assert [(c.metric, c.status, c.machine_class) for c in res.checks] == [
        ("speedup", "ok", f"int8_dot {mine}"), ("size_ratio", "ok", "")]
    assert f"int8_dot {mine}" in (tmp_path / "rep" / "report.md").read_text()
    res = build_report([run_dir], _baseline(tmp_path, text % other))
    assert [(c.metric, c.status, c.machine_class) for c in res.checks] == [
        ("speedup", "regression", ""), ("size_ratio", "ok", "")]
    assert "for machines with" not in res.failed[0].describe()
    for bad, msg in (("machines: {a: 1}\n", "expected a list"),
                     ("machines:\n  - {when: {int8_dot: none}}\n", "expected {when"),
                     ("machines:\n  - {when: {}, entries: {}}\n", "give int8_dot"),
                     ("machines:\n  - {when: {int8_dot: some}, entries: {}}\n", "when:"),
                     ("machines:\n  - {when: {isa: x86_64}, entries: {k: {m: {}}}}\n",
                      r"machines\[0\]: k.m: .*give min or max")):
        with pytest.raises(XCompressError, match=msg) as e:
            load_baseline(_baseline(tmp_path, bad))
        assert "\n" not in str(e.value)
