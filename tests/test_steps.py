"""Every registered recipe step passes the contract of its kind (``tests/step_contract.py``),
a fake search shows the shape a candidate step has, and recipes chain the new steps."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

pytest.importorskip("onnxruntime")

from step_contract import (  # noqa: E402
    CandidateStepContract,
    MeasureContract,
    StepContract,
    measurements_of,
)
from tiny_models import rec_set, tiny_rec  # noqa: E402

from xcompress.artifact import Artifact, resolve_model  # noqa: E402
from xcompress.fsutil import sha256_file  # noqa: E402
from xcompress.pipeline import (  # noqa: E402
    Candidate,
    CandidateStep,
    Measurement,
    Objective,
    Recipe,
    pareto_front,
    register_step,
    run_recipe,
    step_names,
)
from xcompress.pipeline.steps import _STEPS  # noqa: E402

QUICK = {"plans": ["int8-all"], "latency_runs": 3, "threads": 1, "max_drop": 1.0,
         "allow_slower": True}  # a tiny model is never faster in int8
TINY_CRNN = {"stages": [{"channels": 8}, {"channels": 16}], "hidden": 16}
TRAIN_QUICK = {"steps": 2, "eval_every": 2, "batch_size": 2, "val_count": 4, "max_width": 96,
               "threads": 1, "warmup": 0}


@pytest.fixture(scope="module")
def crnn_pt(tmp_path_factory) -> Artifact:
    """A tiny CRNN checkpoint (digits), trained one step from scratch: a parent for export
    and train steps."""
    pytest.importorskip("torch")
    from xcompress.train import TrainConfig, train

    out = tmp_path_factory.mktemp("crnn")
    train(TrainConfig(model="crnn", arch_config=TINY_CRNN, charset="0123456789", steps=1,
                      eval_every=1, batch_size=2, val_count=4, max_width=96, threads=1,
                      warmup=0, out=str(out / "run")), progress=False)
    return resolve_model(out / "run" / "best.pt")


@pytest.fixture
def rec(tmp_path) -> Artifact:
    (tmp_path / "m").mkdir()
    return tiny_rec(tmp_path / "m" / "model.onnx")


# --- artifact steps --------------------------------------------------------------------------


class TestQuantizeStep(StepContract):
    step_name = "quantize"
    bad_configs = ({"max_drop": -1}, {"threads": 0})

    @pytest.fixture
    def parent(self, rec):
        return rec

    @pytest.fixture
    def config(self):
        return dict(QUICK)

    @pytest.fixture
    def data(self, tmp_path):
        return {"calib": rec_set(tmp_path / "calib")}

    @pytest.fixture
    def failing(self, parent, tmp_path):
        return parent, dict(QUICK), {"calib": tmp_path / "missing"}


class TestExportStep(StepContract):
    step_name = "export"
    bad_configs = ({"to": "coreml"}, {"to": "onnx", "opset": 3}, {"to": None},
                   {"to": "tflite", "int8": "maybe"})

    @pytest.fixture
    def parent(self, crnn_pt):
        return crnn_pt

    @pytest.fixture
    def config(self):
        return {"to": "onnx"}

    @pytest.fixture
    def failing(self, rec):  # a graph that imports into no native architecture
        return rec, {"to": "onnx"}, {}

    def test_data_roles_fill_the_exporter_config(self, step):
        from xcompress.pipeline.builtin import ExportStepConfig

        cfg = step.parse_config({"to": "tflite", "int8": True})
        assert isinstance(cfg, ExportStepConfig) and cfg.options.calib is None
        assert cfg.model_dump(mode="json")["options"]["int8"] is True  # hashed for resume


class TestTrainStep(StepContract):
    step_name = "train"
    bad_configs = ({"steps": 0}, {"lr": 0}, {"model": "crnn"}, {"out": "x"})

    @pytest.fixture
    def parent(self, crnn_pt):
        return crnn_pt

    @pytest.fixture
    def config(self):
        return dict(TRAIN_QUICK)

    @pytest.fixture
    def failing(self, parent, tmp_path):
        return parent, dict(TRAIN_QUICK), {"train": tmp_path / "missing"}

    def test_distilled_from_the_parent_and_resumable_folder_removed(self, ran, parent):
        art, out = ran
        saved = art.card.step_config
        assert saved["distill"]["teacher"] == str(parent.path)
        assert not (out.parent / f".{out.name}.train").exists()
        assert {p.name for p in out.iterdir()} >= {"model.pt", "xcompress.json",
                                                  "history.jsonl"}


@pytest.fixture(scope="module")
def prune_parent(tmp_path_factory) -> Artifact:
    """The tiny CRNN of the prune tests (BN statistics set) and its search space."""
    from test_prune import TINY_SPACE, parent

    folder = tmp_path_factory.mktemp("prune-parent")
    (folder / "tiny.yaml").write_text(TINY_SPACE, encoding="utf-8")
    return resolve_model(parent.__wrapped__(tmp_path_factory))


SMALL_TRAIN = {"batch_size": 4, "val_count": 6, "threads": 1, "shape": [1, 3, 32, 128]}


def _tiny_space(parent: Artifact) -> str:
    return str(next(parent.path.parents[1].glob("prune-parent*/tiny.yaml")))


class TestPruneStep(StepContract):
    step_name = "prune"
    bad_configs = ({"target_macs": 2}, {"importance": 3}, {"model": "x"}, {"data": ["synth"]})

    @pytest.fixture
    def parent(self, prune_parent):
        return prune_parent

    @pytest.fixture
    def config(self, parent):
        return {"target_macs": 0.6, "steps": 2, "space": _tiny_space(parent), **SMALL_TRAIN}

    @pytest.fixture
    def failing(self, parent, tmp_path):
        return parent, {"keep_charset": str(tmp_path / "no-such-charset.txt")}, {}

    def test_pruned_below_the_target(self, ran, parent):
        import json as _json

        art, out = ran
        rep = _json.loads((out / "prune_report.json").read_text())
        assert rep["output"]["macs"] <= 0.6 * rep["input"]["macs"]
        assert art.card.format == "onnx" and art.path.name == "model.onnx"


class TestSearchStep(StepContract):
    step_name = "search"
    bad_configs = ({"trials": 0}, {"sampler": "grid"}, {"out": "x"})

    @pytest.fixture
    def parent(self, prune_parent):
        return prune_parent

    @pytest.fixture
    def config(self, parent):
        return {"trials": 2, "finetune_steps": 1, "final_steps": 1, "runs": 3,
                "space": _tiny_space(parent), **SMALL_TRAIN}

    @pytest.fixture
    def failing(self, parent, tmp_path):
        return parent, {"max_macs": 1, "trials": 1, "space": _tiny_space(parent),
                        **SMALL_TRAIN}, {}

    def test_continues_from_the_best_candidate(self, ran):
        art, out = ran
        assert art.path.parent.name == "best" and art.card.name.endswith("-search")
        assert (out / "study.db").is_file()


# --- measures --------------------------------------------------------------------------------


class TestEvalStep(MeasureContract):
    step_name = "eval"
    bad_configs = ({"threads": 0}, {"batch_size": 0})

    @pytest.fixture
    def artifact(self, rec):
        return rec

    @pytest.fixture
    def data(self, tmp_path):
        return {"eval": rec_set(tmp_path / "ev", n=4)}

    def test_values_are_the_reported_metrics(self, step, artifact, data):
        m = step.measure(artifact, step.parse_config({}), data, artifact)
        assert {"cer", "cer_nospace", "line_accuracy"} <= set(m.values)


class TestProfileStep(MeasureContract):
    step_name = "profile"
    bad_configs = ({"runs": 1}, {"threads": 0})

    @pytest.fixture
    def config(self):
        return {"runs": 3, "threads": 1, "warmup": 0, "shape": [1, 3, 48, 64]}

    @pytest.fixture
    def baseline(self, rec):
        return rec

    @pytest.fixture
    def artifact(self, rec, tmp_path):
        (tmp_path / "copy").mkdir()
        shutil.copy(rec.path, tmp_path / "copy" / "model.onnx")
        rec.card.save(tmp_path / "copy")
        return resolve_model(tmp_path / "copy")

    def test_compares_against_the_baseline(self, step, artifact, baseline, config):
        m = step.measure(artifact, step.parse_config(config), {}, baseline)
        assert m.values["speedup"] > 0 and m.values["original_median_ms"] > 0
        assert m.info["shape"] == [1, 3, 48, 64] and m.info["runtime"]

    def test_refuses_a_checkpoint(self, step, crnn_pt):
        assert not step.accepts(crnn_pt)


# --- a candidate step: the shape the coming search fits --------------------------------------


class FakeSearchConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    points: tuple[tuple[float, float], ...] = ((4, 1), (3, 2), (5, 5), (1, 4))
    objectives: tuple[tuple[str, str], ...] = (("fake", "size"), ("fake", "err"))


class FakeSearch(CandidateStep):
    """Proposes copies of the parent tagged with made-up (size, error) points; the next
    proposal is asked for only after the previous one was told (as Optuna's ask/tell)."""

    name = "test-fake-search"

    def __init__(self) -> None:
        self.told: list[tuple[str, list[Measurement]]] = []

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        return FakeSearchConfig

    def propose(self, parent: Artifact, config: BaseModel, data: Mapping[str, Path],
                out_dir: Path) -> Iterator[Candidate]:
        assert isinstance(config, FakeSearchConfig)
        for i, (size, err) in enumerate(config.points):
            assert len(self.told) == i  # ask/tell: everything before was told
            folder = out_dir / f"c{i}"
            folder.mkdir(parents=True)
            shutil.copy(parent.path, folder / "model.onnx")
            parent.card.derive(step=self.name, parent=sha256_file(parent.path), file="model.onnx",
                               notes={"size": size, "err": err}).save(folder)
            yield Candidate(f"c{i}", resolve_model(folder), {"i": i})

    def tell(self, candidate: Candidate, measurements: Sequence[Measurement]) -> None:
        self.told.append((candidate.id, list(measurements)))

    def objectives(self, config: BaseModel) -> list[Objective]:
        assert isinstance(config, FakeSearchConfig)
        return [Objective(step, value) for step, value in config.objectives]


def fake_measure(art: Artifact) -> list[Measurement]:
    return measurements_of({k: art.card.notes[k] for k in ("size", "err")})


@pytest.fixture
def fake_search():
    register_step(FakeSearch)
    yield FakeSearch
    _STEPS.pop(FakeSearch.name, None)


class TestFakeSearch(CandidateStepContract):
    step_name = "test-fake-search"

    @pytest.fixture(autouse=True)
    def _registered(self, fake_search):
        yield

    @pytest.fixture
    def parent(self, rec):
        return rec

    @pytest.fixture
    def measure(self):
        return fake_measure

    @pytest.fixture
    def failing(self, parent):  # nothing to propose
        return parent, {"points": []}, {}

    def test_front_and_choice_of_the_fake_points(self, driven):
        res, _, _ = driven
        assert [s.candidate.id for s in res.front] == ["c0", "c1", "c3"]
        assert res.chosen.candidate.id == "c3"  # least of the first objective


def test_pareto_front_minimizes_every_axis():
    assert pareto_front([(1, 5), (2, 2), (3, 3), (5, 1)]) == [0, 1, 3]
    assert pareto_front([(1, 1), (1, 1)]) == [0, 1]  # equal points do not dominate
    assert pareto_front([]) == []


def test_objective_direction_and_missing_measure():
    from xcompress.errors import XCompressError

    ms = measurements_of({"acc": 0.9})
    assert Objective("fake", "acc", "max").of(ms) == -0.9
    with pytest.raises(XCompressError, match="no such measurement"):
        Objective("eval", "cer").of(ms)


def test_every_registered_step_has_a_contract_test():
    covered = {cls.step_name for cls in vars(sys.modules[__name__]).values()
               if isinstance(cls, type) and issubclass(cls, StepContract | MeasureContract)
               and hasattr(cls, "step_name")}
    assert set(step_names()) <= covered


# --- recipes chaining the new steps ----------------------------------------------------------


def test_recipe_search_then_measure_steps(tmp_path, fake_search, rec):
    calib = rec_set(tmp_path / "data" / "ev", n=4)
    recipe = Recipe.model_validate({
        "name": "search", "model": str(rec.path), "data": {"ev": {"path": str(calib)}},
        "steps": [{"step": "test-fake-search", "name": "search",  # measured as the report is
                   "config": {"objectives": [["eval", "cer"], ["profile", "median_ms"]]}},
                  {"step": "eval", "name": "check", "data": {"eval": "ev"}}],
        "report": {"eval": ["ev"], "threads": 1, "runs": 3, "shape": [1, 3, 48, 64]},
    })
    summary = run_recipe(recipe, tmp_path / "run")
    assert [r["artifact"] for r in summary.report["rows"]] == ["original", "search"]
    [m] = summary.report["measurements"]
    assert (m["name"], m["step"], m["artifact"]) == ("check", "eval", "search")
    assert "cer" in m["values"]
    pareto = json.loads((tmp_path / "run" / "steps" / "search" / "pareto.json").read_text())
    assert len(pareto["candidates"]) == 4 and pareto["chosen"] in {"c0", "c1", "c2", "c3"}
    assert all(len(c["measurements"]) == 2 for c in pareto["candidates"])  # eval, profile
    record = json.loads((tmp_path / "run" / "steps" / "search" / "step.json").read_text())
    assert record["artifact"] == f"candidates/{pareto['chosen']}"
    again = run_recipe(recipe, tmp_path / "run")  # resumes: the chosen candidate is reused
    assert again.report["rows"][1]["path"] == summary.report["rows"][1]["path"]


def test_recipe_train_then_export(tmp_path, crnn_pt):
    recipe = Recipe.model_validate({
        "name": "ft", "model": str(crnn_pt.path),
        "data": {"ev": {"synth": {"task": "rec", "count": 4, "seed": 3, "lang": "en"}}},
        "steps": [{"step": "train", "name": "ft", "config": TRAIN_QUICK},
                  {"step": "export", "name": "onnx", "config": {"to": "onnx"}},
                  {"step": "eval", "name": "check", "data": {"eval": "ev"}}],
        "report": {"eval": ["ev"], "threads": 1, "runs": 3, "shape": [1, 3, 32, 96]},
    })
    summary = run_recipe(recipe, tmp_path / "run")
    rows = summary.report["rows"]
    assert [r["artifact"] for r in rows] == ["original", "ft", "onnx"]
    assert rows[0]["metrics"] == {} and rows[1]["metrics"] == {}  # checkpoints: not runnable
    assert "cer" in rows[2]["metrics"]["ev"] and rows[2]["latency"] is None  # vs a .pt
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    steps = [a["step"] for a in manifest["artifacts"]]
    assert steps[1:] == ["train", "export"]
    assert manifest["artifacts"][2]["parent"] == sha256_file(rows[1]["path"])


def test_quantize_step_without_calib_data_uses_the_built_in_set(rec, tmp_path, monkeypatch):
    from xcompress.pipeline.steps import get_step
    from xcompress.quantize import inputs

    monkeypatch.setitem(inputs.SYNTH_COUNT, "rec", 12)
    step = get_step("quantize")
    art = step.run(rec, step.parse_config(dict(QUICK)), {}, tmp_path / "out")
    rep = json.loads((art.path.parent / "report.json").read_text())
    assert rep["accuracy"]["calib-holdout"]["data"] == "built-in synthetic"
