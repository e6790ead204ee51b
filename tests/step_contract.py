"""The contracts every recipe step passes, one per kind (:mod:`xcompress.pipeline.steps`).

A new step is done when a test class for it inherits the contract of its kind and passes:

    class TestQuantizeStep(StepContract):
        step_name = "quantize"

        @pytest.fixture
        def parent(self, tmp_path):
            return tiny_rec(tmp_path / "m" / "model.onnx")

        @pytest.fixture
        def data(self, tmp_path):
            return {"calib": rec_set(tmp_path / "calib")}

        @pytest.fixture
        def failing(self, parent, tmp_path):     # inputs that must fail, writing nothing
            return parent, {}, {"calib": tmp_path / "missing"}

``tests/test_steps.py`` checks that every registered step has such a class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from xcompress.artifact import Artifact, resolve_model
from xcompress.errors import XCompressError
from xcompress.fsutil import sha256_file
from xcompress.pipeline.steps import (
    PARETO_FILE,
    Candidate,
    CandidateStep,
    Measure,
    Measurement,
    RecipeStep,
    Step,
    get_step,
    run_candidates,
)


def _leftovers(folder: Path, out: Path) -> list[str]:
    """Scratch folders of an atomic write of ``out`` left beside it (``.out.*.tmp``)."""
    return [p.name for p in folder.iterdir()
            if p.name.startswith(f".{out.name}.") and p.name.endswith((".tmp", ".old"))]


class _KindContract:
    """What every kind shares: registered, a frozen typed config, one-line config errors."""

    step_name: ClassVar[str]
    kind: ClassVar[type[RecipeStep]] = RecipeStep
    #: configs the step must refuse (unknown keys are always refused)
    bad_configs: ClassVar[tuple[dict[str, Any], ...]] = ()

    @pytest.fixture
    def step(self) -> RecipeStep:
        return get_step(self.step_name)

    @pytest.fixture
    def config(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def data(self, tmp_path: Path) -> dict[str, Path]:
        return {}

    def test_registered_under_its_name(self, step):
        assert isinstance(step, self.kind)
        assert type(step).name == self.step_name
        assert not set(step.roles) & set(step.optional_roles)

    def test_config_is_frozen_and_typed(self, step, config):
        cfg = step.parse_config(config)
        assert isinstance(cfg, BaseModel)
        assert cfg.model_config.get("frozen") is True
        json.dumps(cfg.model_dump(mode="json"))  # saved beside artifacts / hashed for resume
        fields = list(type(cfg).model_fields)
        if fields:  # frozen: a config saved beside an artifact cannot change afterwards
            with pytest.raises(ValueError):
                setattr(cfg, fields[0], None)

    @pytest.mark.parametrize("extra", [{"no_such_setting": 1}])
    def test_unknown_setting_is_a_one_line_error(self, step, config, extra):
        with pytest.raises(XCompressError, match=f"step {self.step_name}") as e:
            step.parse_config({**config, **extra})
        assert "\n" not in str(e.value)

    def test_bad_configs_are_one_line_errors(self, step, config):
        for bad in self.bad_configs:
            with pytest.raises(XCompressError, match=f"step {self.step_name}") as e:
                step.parse_config({**config, **bad})
            assert "\n" not in str(e.value), bad


class StepContract(_KindContract):
    """An artifact step: ``run`` writes its folder whole or not at all and returns an
    artifact in it whose card names the parent and the step."""

    kind = Step

    @pytest.fixture
    def parent(self, tmp_path: Path) -> Artifact:
        raise NotImplementedError("a StepContract subclass must provide `parent`")

    @pytest.fixture
    def failing(self, parent: Artifact, tmp_path: Path
                ) -> tuple[Artifact, dict[str, Any], dict[str, Path]]:
        raise NotImplementedError("a StepContract subclass must provide `failing` inputs")

    @pytest.fixture
    def ran(self, step, parent, config, data, tmp_path) -> tuple[Artifact, Path]:
        out = tmp_path / "out"
        return step.run(parent, step.parse_config(config), data, out), out

    def test_run_returns_an_artifact_in_its_folder(self, ran, tmp_path):
        art, out = ran
        assert art.path.is_file()
        assert art.path.resolve().is_relative_to(out.resolve())
        assert _leftovers(tmp_path, out) == []

    def test_card_names_parent_and_step(self, ran, parent):
        art, _ = ran
        assert art.card.parent == sha256_file(parent.path)
        assert art.card.step
        assert art.card.task == parent.card.task

    def test_card_is_on_disk(self, ran):
        art, _ = ran
        again = resolve_model(art.path.parent)
        assert again.path.resolve() == art.path.resolve()
        assert again.card.parent == art.card.parent

    def test_failed_run_writes_nothing(self, step, failing, tmp_path):
        parent, config, data = failing
        out = tmp_path / "failed"
        with pytest.raises(XCompressError) as e:
            step.run(parent, step.parse_config(config), data, out)
        assert "\n" not in str(e.value)
        assert not out.exists()
        assert _leftovers(tmp_path, out) == []


class MeasureContract(_KindContract):
    """A measure: returns a JSON-serializable :class:`Measurement` and writes nothing."""

    kind = Measure

    @pytest.fixture
    def artifact(self, tmp_path: Path) -> Artifact:
        raise NotImplementedError("a MeasureContract subclass must provide `artifact`")

    @pytest.fixture
    def baseline(self, artifact: Artifact) -> Artifact:
        return artifact

    @pytest.fixture
    def data_names(self, data: dict[str, Path]) -> dict[str, str]:
        return {role: path.name for role, path in data.items()}

    def test_measure_returns_a_measurement_and_writes_nothing(self, step, artifact, baseline,
                                                              config, data, tmp_path):
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        m = step.measure(artifact, step.parse_config(config), data, baseline)
        assert isinstance(m, Measurement) and m.step == self.step_name
        assert m.values and json.dumps(m.values) and json.dumps(m.info)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

    def test_describe_is_one_line(self, step, config, data_names):
        line = step.describe("int8", step.parse_config(config), data_names)
        assert "int8" in line and "\n" not in line

    def test_accepts_its_artifact(self, step, artifact):
        assert step.accepts(artifact)


class CandidateStepContract(StepContract):
    """A candidate step (a search): driven ask/tell by ``run_candidates``, it proposes
    candidates one at a time, is told each one's measurements before the next is asked for,
    and keeps the non-dominated ones. Subclasses provide a ``measure`` fixture: a function
    artifact -> measurements that the step's objectives read."""

    kind = CandidateStep

    @pytest.fixture
    def measure(self):
        raise NotImplementedError("a CandidateStepContract subclass must provide `measure`")

    @pytest.fixture
    def driven(self, step, parent, config, data, measure, tmp_path, monkeypatch):
        events: list[tuple[str, str]] = []
        propose, tell = step.propose, step.tell

        def proposing(*args: Any, **kw: Any):
            for cand in propose(*args, **kw):
                events.append(("ask", cand.id))
                yield cand

        def telling(cand: Candidate, ms: Any) -> None:
            events.append(("tell", cand.id))
            tell(cand, ms)

        monkeypatch.setattr(step, "propose", proposing)
        monkeypatch.setattr(step, "tell", telling)
        out = tmp_path / "search"
        res = run_candidates(step, parent, step.parse_config(config), data, out,
                             lambda art: (events.append(("measure", art.path.name)),
                                          measure(art))[1])
        return res, events, out

    def test_ask_measure_tell_in_turn(self, driven):
        res, events, _ = driven
        kinds = [k for k, _ in events]
        assert kinds == ["ask", "measure", "tell"] * len(res.scored)

    def test_front_is_non_dominated_and_holds_the_choice(self, step, config, driven):
        res, _, _ = driven
        objectives = step.objectives(step.parse_config(config))

        def point(s: Any) -> list[float]:
            return [o.of(s.measurements) for o in objectives]

        front = {s.candidate.id for s in res.front}
        for s in res.scored:
            dominated = any(all(a <= b for a, b in zip(point(t), point(s), strict=True))
                            and point(t) != point(s) for t in res.scored)
            assert (s.candidate.id in front) == (not dominated)
        assert res.chosen.candidate.id in front

    def test_candidates_and_pareto_file_are_published(self, driven, parent):
        res, _, out = driven
        rec = json.loads((out / PARETO_FILE).read_text())
        assert [c["id"] for c in rec["candidates"]] == [s.candidate.id for s in res.scored]
        assert rec["chosen"] == res.chosen.candidate.id
        for s in res.scored:
            art = s.candidate.artifact
            assert art.path.is_file() and art.path.resolve().is_relative_to(out.resolve())
            assert art.card.parent == sha256_file(parent.path)

    def test_failing_measure_writes_nothing(self, step, parent, config, data, tmp_path):
        out = tmp_path / "search-failed"

        def broken(art: Artifact) -> list[Measurement]:
            raise XCompressError("measure failed")

        with pytest.raises(XCompressError, match="measure failed"):
            run_candidates(step, parent, step.parse_config(config), data, out, broken)
        assert not out.exists() and _leftovers(tmp_path, out) == []


def measurements_of(ms: Mapping[str, Any], step: str = "fake") -> list[Measurement]:
    """Measurements built from plain values (for fake measures in tests)."""
    return [Measurement(step, "fake", dict(ms))]
