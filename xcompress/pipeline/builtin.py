"""The built-in artifact steps: ``quantize``, ``export``, ``train``, ``prune`` and ``search``.

Each calls the same library function as its command (``xcompress quantize`` / ``export`` /
``train``), so a recipe step and the command give the same artifact for the same config.

Example recipe steps::

    - step: quantize
      data: {calib: calib, eval: eval}
      config: {max_drop: 0.005}
    - step: export                 # any registered exporter; the rest is its config
      data: {calib: calib}         # fills the exporter's `calib` / `eval` when it has them
      config: {to: tflite, int8: true}
    - step: train                  # fine-tune the parent, distilled from it
      data: {train: lines, val: eval}
      config: {steps: 2000, batch_size: 32}
    - step: prune                  # channels to 60 % of the MACs, distilled from the parent
      data: {train: lines, val: eval}
      config: {target_macs: 0.6, steps: 400}
    - step: search                 # the most accurate subnet under a latency budget
      config: {max_latency_ratio: 0.6, trials: 12}
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, create_model

from xcompress.artifact import Artifact
from xcompress.errors import XCompressError
from xcompress.export import ExportConfig
from xcompress.pipeline.steps import Step, register_step


@register_step
class QuantizeStep(Step):
    """Accuracy-aware int8 PTQ (:func:`xcompress.quantize.quantize`). Without ``calib`` data
    it calibrates and checks the budget on the built-in synthetic set, as the command does
    without ``--calib`` (with ``eval`` data the budget is checked there)."""

    name = "quantize"
    optional_roles = ("calib", "eval")

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        from xcompress.quantize.config import QuantizeConfig

        return QuantizeConfig

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        from xcompress.quantize import quantize

        evals = [data["eval"]] if "eval" in data else []
        res = quantize(parent, data.get("calib"), out_dir, config,  # type: ignore[arg-type]
                       eval_paths=evals)
        return Artifact(res.model_path, res.card)


# --- export ----------------------------------------------------------------------------------


class ExportStepConfig(BaseModel):
    """``to`` (a registered exporter) and that exporter's own typed config.

    In a recipe the config is flat, ``{to: tflite, int8: true, ...}``: every key but ``to``
    belongs to the exporter (:meth:`ExportStep.parse_config`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str
    options: SerializeAsAny[ExportConfig]


@register_step
class ExportStep(Step):
    """Export with any registered exporter (:func:`xcompress.export.export_model`)."""

    name = "export"
    # data sets the exporter reads, by config field: given to it unless set in the config
    optional_roles = ("calib", "eval")

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        return ExportStepConfig

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any]) -> BaseModel:
        from xcompress.export import get_exporter

        rest = dict(raw)
        to = rest.pop("to", None)
        if not isinstance(to, str):
            raise XCompressError(f"step {cls.name}: config to: give the exporter, e.g. to: onnx")
        try:
            exporter = get_exporter(to)
            options = exporter.make_config(rest)
        except XCompressError as e:
            raise XCompressError(f"step {cls.name}: {e}") from e
        return ExportStepConfig(to=to, options=options)

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        from xcompress.export import export_model

        assert isinstance(config, ExportStepConfig)
        options = config.options
        fill = {role: str(data[role]) for role in self.optional_roles
                if role in data and role in type(options).model_fields
                and getattr(options, role) is None}
        if fill:
            options = options.model_copy(update=fill)
        return export_model(parent, config.to, options, out_dir)


# --- train -----------------------------------------------------------------------------------

#: TrainConfig fields a recipe sets; the model (the parent), the data (roles), the teacher
#: (the parent) and the run folder (the step's) come from the recipe itself
TRAIN_FIELDS = ("steps", "eval_every", "batch_size", "lr", "weight_decay", "warmup", "lr_hold",
                "max_width", "det_size", "seed", "threads", "max_seconds", "freeze_norm",
                "freeze", "synth_lang", "val_count")


class DistillWeights(BaseModel):
    """Distillation from the parent (the teacher is always the parent in a recipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kl_weight: float = 1.0
    feature_weight: float = 1.0
    ctc_weight: float = 1.0
    temperature: float = 1.0
    map_weight: float = 1.0


def _fields(source: type[BaseModel], names: tuple[str, ...] | None = None,
            leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """``source``'s fields (``names``, or all but ``leave_out``) with their types, defaults
    and checks, for a recipe step's config built from a command's (one source of truth)."""
    keep = names or tuple(k for k in source.model_fields if k not in leave_out)
    return {k: (source.model_fields[k].annotation, source.model_fields[k]) for k in keep}


def _step_config(name: str, doc: str, **fields: Any) -> type[BaseModel]:
    return create_model(  # type: ignore[call-overload]
        name, __config__=ConfigDict(frozen=True, extra="forbid"), __doc__=doc, **fields)


def _train_step_config() -> type[BaseModel]:
    """TrainStepConfig: the :data:`TRAIN_FIELDS` of TrainConfig, plus ``distill`` (None:
    plain fine-tuning)."""
    from xcompress.train.loop import TrainConfig

    return _step_config(
        "TrainStepConfig", "Settings of the recipe step ``train`` (see TrainConfig).",
        distill=(DistillWeights | None, Field(default_factory=DistillWeights)),
        **_fields(TrainConfig, TRAIN_FIELDS))


@register_step
class TrainStep(Step):
    """Fine-tune the parent with distillation from it (:func:`xcompress.train.train`).

    Trains in a hidden folder beside ``out_dir`` (an interrupted run resumes there), then
    publishes ``model.pt`` (the best checkpoint), its card, the history and the config in
    one rename, and removes the training folder.
    """

    name = "train"
    optional_roles = ("train", "val")  # default: synthetic data ('synth')
    _config: type[BaseModel] | None = None

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        if TrainStep._config is None:  # built once: importing train loads torch
            TrainStep._config = _train_step_config()
        return TrainStep._config

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        from xcompress.fsutil import prepare_output_dir, sha256_file
        from xcompress.train import DistillConfig, TrainConfig, train

        prepare_output_dir(out_dir, "step-train")
        work = out_dir.parent / f".{out_dir.name}.train"
        opts = config.model_dump()
        weights = opts.pop("distill")
        cfg = TrainConfig(
            model=str(parent.path), out=str(work), **opts,
            train=[str(data["train"])] if "train" in data else ["synth"],
            val=[str(data["val"])] if "val" in data else ["synth"],
            distill=DistillConfig(teacher=str(parent.path), **weights) if weights else None,
        )
        train(cfg, progress=False)
        return _publish_checkpoint(work, out_dir, parent, sha256_file(parent.path))


def _publish_checkpoint(work: Path, out_dir: Path, parent: Artifact, parent_sha: str
                        ) -> Artifact:
    """``work/best.pt`` as ``out_dir/model.pt`` with a card naming the parent."""
    from xcompress.artifact import resolve_model
    from xcompress.fsutil import atomic_dir, sha256_file

    best = resolve_model(work / "best.pt")
    with atomic_dir(out_dir, command="step-train") as tmp:
        shutil.copy2(work / "best.pt", tmp / "model.pt")
        for extra in ("history.jsonl", "train_config.json"):
            if (work / extra).is_file():
                shutil.copy2(work / extra, tmp / extra)
        card = best.card.derive(name=f"{parent.card.name}-ft", file="model.pt",
                                format="torch", parent=parent_sha,
                                sha256=sha256_file(tmp / "model.pt"))
        card.save(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return resolve_model(out_dir)


# --- prune and search ------------------------------------------------------------------------

#: fields of the commands' configs a recipe does not set: the model is the parent, the data
#: come from the step's roles and the output folder is the step's
_FROM_RECIPE = ("model", "out", "data", "val")


def _sources(data: Mapping[str, Path]) -> dict[str, list[str]]:
    """The step's ``train`` / ``val`` data sets as the commands' ``data`` / ``val`` lists
    (default: synthetic data, as the commands)."""
    return {"data": [str(data["train"])] if "train" in data else ["synth"],
            "val": [str(data["val"])] if "val" in data else ["synth"]}


@register_step
class PruneStep(Step):
    """Structured pruning / charset slimming, distilled from the parent
    (:func:`xcompress.prune.runner.run_prune`, the same as ``xcompress prune``). A run
    interrupted mid-way resumes from its work folder."""

    name = "prune"
    optional_roles = ("train", "val")
    _config: type[BaseModel] | None = None

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        if PruneStep._config is None:
            from xcompress.prune.runner import PruneConfig

            PruneStep._config = _step_config(
                "PruneStepConfig", "Settings of the recipe step ``prune`` (see PruneConfig).",
                **_fields(PruneConfig, leave_out=_FROM_RECIPE))
        return PruneStep._config

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        from xcompress.artifact import resolve_model
        from xcompress.prune.runner import PruneConfig, run_prune

        cfg = PruneConfig(model=str(parent.path), out=str(out_dir), **_sources(data),
                          **config.model_dump())
        cfg.check()
        run_prune(cfg, log=_log)
        return resolve_model(out_dir / "model.onnx")


@register_step
class SearchStep(Step):
    """Hardware-aware architecture search from the parent (:func:`xcompress.search.runner.
    run_search`, the same as ``xcompress search``); continues from the best feasible
    candidate after its final fine-tune (``best/``). Resumes through the study storage."""

    name = "search"
    optional_roles = ("train", "val")
    _config: type[BaseModel] | None = None

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        if SearchStep._config is None:
            from xcompress.search.runner import SearchConfig

            SearchStep._config = _step_config(
                "SearchStepConfig", "Settings of the recipe step ``search`` (see "
                "SearchConfig).", **_fields(SearchConfig, leave_out=_FROM_RECIPE))
        return SearchStep._config

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        from xcompress.artifact import resolve_model
        from xcompress.errors import BudgetError
        from xcompress.search.runner import SearchConfig, run_search

        cfg = SearchConfig(model=str(parent.path), out=str(out_dir), **_sources(data),
                           **config.model_dump())
        res = run_search(cfg, log=_log)
        if res.best is None:
            raise BudgetError(f"step search: no candidate met the budgets; see {res.report}")
        return resolve_model(out_dir / "best" / "model.onnx")


def _log(msg: str) -> None:
    from xcompress.search.runner import default_log

    default_log()(msg)
