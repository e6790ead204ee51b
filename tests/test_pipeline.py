"""Recipes: validation, the step registry, and a small end-to-end run with a test step."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from xcompress.artifact import Artifact, resolve_model
from xcompress.cli.main import main
from xcompress.errors import XCompressError
from xcompress.pipeline import Recipe, Step, load_recipe, register_step, run_recipe, step_names
from xcompress.pipeline.steps import _STEPS

REPO = Path(__file__).resolve().parents[1]


class CopyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    tag: str = "x"


class CopyStep(Step):
    """A step that copies its parent (to test the runner without a slow real step)."""

    name = "test-copy"
    calls = 0

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        return CopyConfig

    def run(self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path):
        CopyStep.calls += 1
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(parent.path, out_dir / "model.onnx")
        parent.card.derive(step="test-copy", parent=parent.card.sha256).save(out_dir)
        return resolve_model(out_dir)


@pytest.fixture()
def copy_step():
    register_step(CopyStep)
    yield CopyStep
    _STEPS.pop(CopyStep.name, None)


def test_builtin_recipes_validate():
    import yaml

    from xcompress.pipeline.system import is_system_recipe, load_system_recipe

    for path in sorted((REPO / "recipes").glob("*.yaml")):
        if is_system_recipe(yaml.safe_load(path.read_text())):
            steps = [s for m in load_system_recipe(path).members.values() for s in m.steps]
        else:
            steps = load_recipe(path).steps
        for s in steps:
            assert s.step in step_names()
            from xcompress.pipeline import get_step

            get_step(s.step).parse_config(s.config)  # every config is valid


def test_recipe_errors_are_one_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: r\nmodel: m\nsteps: [{step: quantize, data: {calib: nope}}]\n")
    with pytest.raises(XCompressError, match="data 'nope'") as e:
        load_recipe(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(XCompressError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad.write_text("name: [\n")
    with pytest.raises(XCompressError, match="not valid YAML"):
        load_recipe(bad)


def test_step_config_is_typed():
    from xcompress.pipeline import get_step

    step = get_step("quantize")
    with pytest.raises(XCompressError, match="max_drop"):
        step.parse_config({"max_drop": -1})
    with pytest.raises(XCompressError, match="unknown step"):
        get_step("nope")


def test_run_recipe_end_to_end_and_resume(tmp_path, copy_step, zoo_model):
    zoo_model("ppocr-v4-rec")
    recipe = Recipe.model_validate({
        "name": "t",
        "model": "ppocr-v4-rec",
        "data": {"ev": {"synth": {"task": "rec", "count": 4, "seed": 3, "lang": "en"}}},
        "steps": [{"step": "test-copy", "name": "copy"}],
        "report": {"eval": ["ev"], "threads": 1, "runs": 3, "shape": [1, 3, 48, 160]},
    })
    summary = run_recipe(recipe, tmp_path / "run")
    rows = summary.report["rows"]
    assert [r["artifact"] for r in rows] == ["original", "copy"]
    # the copy reads exactly what the original reads
    assert rows[0]["metrics"] == rows[1]["metrics"]
    assert rows[0]["size_bytes"] == rows[1]["size_bytes"]
    assert rows[1]["latency"]["speedup"] > 0
    for key in ("model", "data", "shape", "threads", "runtime", "machine"):
        assert summary.report[key]
    assert summary.report["data"]["ev"]["samples"] == 4
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| original |" in md and "1x3x48x160" in md
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["artifacts"][1]["parent"] == manifest["artifacts"][0]["sha256"]
    # a second run reuses the data and the finished step
    calls = CopyStep.calls
    run_recipe(recipe, tmp_path / "run")
    assert CopyStep.calls == calls


def test_cli_run_missing_recipe(capsys, tmp_path):
    rc = main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    assert rc != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1


def test_system_recipe_end_to_end_and_resume(tmp_path, copy_step, zoo_model):
    from xcompress.pipeline.system import SystemRecipe, run_system_recipe

    for n in ("ppocr-v4-det", "ppocr-v4-cls", "ppocr-v4-rec"):
        zoo_model(n)
    raw = {
        "name": "sys",
        "data": {"pages": {"synth": {"task": "det", "count": 2, "seed": 4, "lang": "en"}}},
        "members": {
            "det": {"model": "ppocr-v4-det", "steps": [{"step": "test-copy", "name": "copy"}],
                    "report": {"threads": 1, "runs": 3, "shape": [1, 3, 320, 320]}},
            "cls": {"model": "ppocr-v4-cls"},
            "rec": {"model": "ppocr-v4-rec", "steps": [{"step": "test-copy", "name": "copy"}],
                    "report": {"threads": 1, "runs": 3, "shape": [1, 3, 48, 160]}},
        },
        "system": {"eval": ["pages"], "threads": 1},
    }
    rep = run_system_recipe(SystemRecipe.model_validate(raw), tmp_path / "run").report
    assert [m["role"] for m in rep["members"]] == ["det", "cls", "rec"]
    assert [m["artifact"] for m in rep["members"]] == ["copy", "original", "copy"]
    s = rep["sets"]["pages"]
    # copies read exactly what the originals read
    assert s["compressed"]["e2e_hmean"] == s["original"]["e2e_hmean"]
    assert s["e2e_hmean_delta"] == 0 and s["e2e_hmean_delta_ci95"] == [0.0, 0.0]
    assert s["speedup"] > 0 and rep["size"]["bytes"] == rep["size"]["original_bytes"]
    md = (tmp_path / "run" / "report.md").read_text()
    assert "original system, pages" in md and "ms / page" in md and "int8 dot: " in md
    assert isinstance(rep["machine"]["int8_dot"], (list, tuple))  # the gate's machine class
    assert (tmp_path / "run" / "members" / "det" / "steps" / "copy").is_dir()
    calls = CopyStep.calls
    run_system_recipe(SystemRecipe.model_validate(raw), tmp_path / "run")  # resumes
    assert CopyStep.calls == calls


def test_system_recipe_mistakes_are_one_line(tmp_path):
    from xcompress.pipeline.system import load_system_recipe

    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\nmembers: {det: {model: m}}\nsystem: {eval: [p]}\n")
    with pytest.raises(XCompressError, match="rec member") as e:
        load_system_recipe(bad)
    assert "\n" not in str(e.value)
    bad.write_text("name: s\nmembers: {det: {model: m}, rec: {model: r, use: nope}}\n"
                   "data: {p: {path: x}}\nsystem: {eval: [p]}\n")
    with pytest.raises(XCompressError, match="no step is named 'nope'"):
        load_system_recipe(bad)
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_recipe_trains_a_new_model_from_scratch(tmp_path):
    pytest.importorskip("torch")
    recipe = Recipe.model_validate({
        "name": "scratch",
        "model": {"arch": "crnn", "charset": "digits", "max_width": 96,
                  "arch_config": {"stages": [{"channels": 8}, {"channels": 16}], "hidden": 16}},
        "data": {"ev": {"synth": {"task": "rec", "count": 4, "seed": 3, "lang": "en"}}},
        "steps": [
            {"step": "train", "name": "trained", "data": {"val": "ev"},
             "config": {"steps": 2, "eval_every": 2, "batch_size": 2, "max_width": 96,
                        "threads": 1, "warmup": 0, "freeze_norm": False, "distill": None}},
            {"step": "export", "name": "onnx", "config": {"to": "onnx"}},
        ],
        "report": {"eval": ["ev"], "threads": 1, "runs": 3, "shape": [1, 3, 32, 96]},
    })
    rep = run_recipe(recipe, tmp_path / "run").report
    assert [r["artifact"] for r in rep["rows"]] == ["original", "trained", "onnx"]
    assert rep["model"]["name"] == "crnn-scratch"
    # the untrained start has no digest in its card (it is inside the file): the file's own
    from xcompress.fsutil import sha256_file

    first = tmp_path / "run" / "original" / "model.pt"
    assert rep["model"]["sha256"] == sha256_file(first)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["sha256"] == sha256_file(first)
    ev = load_dataset_texts(tmp_path / "run" / "data" / "ev")
    assert ev and all(set(t) <= set("0123456789 ") for t in ev)  # the charset's digits
    assert rep["rows"][2]["metrics"] and not rep["rows"][1]["metrics"]  # a .pt: once exported


def load_dataset_texts(folder):
    from xcompress.data import load_dataset

    return [s.text for s in load_dataset(folder).samples]
