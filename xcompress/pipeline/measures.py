"""The built-in measures: ``eval`` (accuracy on a data set) and ``profile`` (latency against
the original, timed alternately in one run).

The recipe's ``report`` section is shorthand for them: every artifact is measured by one
``eval`` per ``report.eval`` set and by one ``profile`` with the report's threads, shape, runs
and target (:func:`report_measures`). Either may also be listed among the steps, where it
measures the artifact the steps before it made (``report.json`` ``measurements``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xcompress.artifact import Artifact
from xcompress.pipeline.recipe import Recipe, StepSpec
from xcompress.pipeline.steps import Measure, Measurement, register_step

#: metrics kept in the run report (the evaluator's others: mean score, NED ...)
REPORTED_METRICS = ("line_accuracy", "line_accuracy_nospace", "cer", "cer_nospace",
                    "precision", "recall", "hmean", "accuracy")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EvalStepConfig(_Frozen):
    """Settings of the ``eval`` measure (see :class:`xcompress.eval.EvalConfig`)."""

    threads: int | None = Field(default=2, ge=1)
    batch_size: int = Field(default=1, ge=1)
    limit: int | None = Field(default=None, ge=1)


@register_step
class EvalStep(Measure):
    """Accuracy of an artifact on the data set of role ``eval``
    (:func:`xcompress.eval.evaluate`, the same as ``xcompress eval``)."""

    name = "eval"
    roles = ("eval",)

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        return EvalStepConfig

    def describe(self, label: str, config: BaseModel, data: Mapping[str, str]) -> str:
        return f"evaluating {label} on '{data['eval']}'"

    def measure(self, artifact: Artifact, config: BaseModel, data: Mapping[str, Path],
                baseline: Artifact) -> Measurement:
        from xcompress.eval import EvalConfig, evaluate

        assert isinstance(config, EvalStepConfig)
        ecfg = EvalConfig(threads=config.threads, batch_size=config.batch_size,
                          limit=config.limit, progress=False)
        rep = evaluate(artifact, data["eval"], ecfg)
        values = {k: float(v) for k, v in rep.metrics.items() if k in REPORTED_METRICS}
        return Measurement(self.name, str(data["eval"]), values)


class ProfileStepConfig(_Frozen):
    """Settings of the ``profile`` measure.

    Attributes:
        target: any ``--target`` form (:func:`xcompress.profile.run.open_profiler`).
        shape: timing shape; None: the baseline's default
            (:func:`~xcompress.profile.run.default_shape`).
    """

    target: str = "host"
    threads: int = Field(default=2, ge=1)
    shape: tuple[int, ...] | None = None
    runs: int = Field(default=30, ge=3)
    warmup: int = Field(default=5, ge=0)


@register_step
class ProfileStep(Measure):
    """Latency of an artifact against the baseline, timed alternately in one run
    (``Profiler.compare``: a ratio, never two absolute times from different runs)."""

    name = "profile"
    relative = True

    def __init__(self) -> None:
        self._profilers: dict[str, Any] = {}

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        return ProfileStepConfig

    def profiler(self, config: ProfileStepConfig) -> Any:
        """The target's profiler, opened once per target."""
        from xcompress.profile.run import open_profiler

        if config.target not in self._profilers:
            self._profilers[config.target] = open_profiler(config.target)
        return self._profilers[config.target]

    def shape(self, config: ProfileStepConfig, baseline: Artifact) -> tuple[int, ...]:
        from xcompress.profile.run import default_shape

        return tuple(config.shape) if config.shape else default_shape(baseline.card)

    def describe(self, label: str, config: BaseModel, data: Mapping[str, str]) -> str:
        assert isinstance(config, ProfileStepConfig)
        return f"timing {label} against the original, alternating, {config.runs} runs each"

    def measure(self, artifact: Artifact, config: BaseModel, data: Mapping[str, Path],
                baseline: Artifact) -> Measurement:
        from xcompress.profile import ProfileConfig

        assert isinstance(config, ProfileStepConfig)
        shape = self.shape(config, baseline)
        pcfg = ProfileConfig(shape=shape, threads=config.threads, runs=config.runs,
                             warmup=config.warmup)
        cmp = self.profiler(config).compare(baseline.path, artifact.path, pcfg)
        values = {"median_ms": cmp.b.median_ms, "p90_ms": cmp.b.p90_ms,
                  "speedup": cmp.ratio, "speedup_ci95": [cmp.ci95_low, cmp.ci95_high],
                  "original_median_ms": cmp.a.median_ms, "original_p90_ms": cmp.a.p90_ms}
        info = {"runtime": f"{cmp.a.runtime} {cmp.a.runtime_version}", "shape": list(shape)}
        return Measurement(self.name, config.target, values, info)


def report_measures(recipe: Recipe) -> list[StepSpec]:
    """The measures the recipe's ``report`` section stands for, in table order: one ``eval``
    per data set, then ``profile``."""
    rep = recipe.report
    specs = [StepSpec(step="eval", name=f"eval-{ds}", data={"eval": ds},
                      config={"threads": rep.threads}) for ds in rep.eval]
    specs.append(StepSpec(step="profile", config={
        "target": rep.target, "threads": rep.threads, "runs": rep.runs, "warmup": 5,
        "shape": list(rep.shape) if rep.shape else None}))
    return specs
