"""Recipe schema: typed, frozen, loaded from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xcompress.errors import XCompressError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SynthSpec(_Frozen):
    """Arguments of ``xcompress data synth`` (the charset comes from the recipe's model)."""

    task: Literal["rec", "det", "cls"]
    count: int = Field(ge=1)
    seed: int = 0
    lang: Literal["en", "zh", "zh-wide", "mix"] = "mix"
    #: damage preset (``xcompress data synth --augment``); ``photo``: as photos and scans
    augment: Literal["default", "photo", "none"] = "default"


class CropsSpec(_Frozen):
    """Recognition lines cut from detection pages by a detector's boxes, as the OCR system
    cuts them (:func:`xcompress.data.crops.cut_crops`): the data a recognizer in a system
    really reads. ``pages``: a detection set folder or synthetic pages; ``det``: the
    detector (zoo name or path)."""

    det: str
    pages: str | SynthSpec
    iou: float = Field(default=0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _det_pages(self) -> CropsSpec:
        if isinstance(self.pages, SynthSpec) and self.pages.task != "det":
            raise ValueError("crops are cut from detection pages: pages.task must be det")
        return self


class DataSpec(_Frozen):
    """A data set: an existing PaddleOCR-format folder, one generated on first use, or
    recognition lines cut from detection pages (``crops``)."""

    path: str | None = None
    synth: SynthSpec | None = None
    crops: CropsSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if sum(x is not None for x in (self.path, self.synth, self.crops)) != 1:
            raise ValueError("give exactly one of 'path', 'synth' or 'crops'")
        return self


class StepSpec(_Frozen):
    """One step: its registered name, its config (the step's own typed config) and inputs."""

    step: str
    name: str | None = None  # folder name; defaults to the step name
    config: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, str] = Field(default_factory=dict)  # role (e.g. 'calib') -> data set name
    #: the artifact this step starts from: ``original`` or an earlier step's folder name;
    #: None: the one the step before made (e.g. an int8 TFLite export of the fp32 original
    #: after an int8 ONNX quantize step)
    input: str | None = None

    @property
    def folder(self) -> str:
        return self.name or self.step


class ReportSpec(_Frozen):
    """How the final table is measured."""

    eval: list[str] = Field(default_factory=list)  # data set names to evaluate every artifact on
    threads: int = Field(default=2, ge=1)
    shape: tuple[int, ...] | None = None  # timing shape; None: the task's default
    runs: int = Field(default=30, ge=3)
    target: str = "host"


class ScratchSpec(_Frozen):
    """A new, untrained model of a native architecture: the start of a recipe that trains
    from scratch (``train`` with ``distill: null``). ``charset``: for a recognizer, its
    characters, a dict file or a named set (``digits``, ``alnum``, ``ascii``)."""

    arch: str
    arch_config: dict[str, Any] = Field(default_factory=dict)
    charset: str | None = None
    max_width: int = Field(default=320, ge=16)  # a recognizer's input width


class Recipe(_Frozen):
    """A model, named data sets, steps applied in order, and the report to make."""

    name: str
    model: str | ScratchSpec  # zoo name, model folder or file; or a new model to train
    data: dict[str, DataSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _known_data(self) -> Recipe:
        names = set(self.data)
        for s in self.steps:
            for role, ds in s.data.items():
                if ds not in names:
                    raise ValueError(f"step {s.folder}: data '{ds}' for '{role}' is not defined")
        for ds in self.report.eval:
            if ds not in names:
                raise ValueError(f"report: eval data '{ds}' is not defined")
        folders = [s.folder for s in self.steps]
        for i, s in enumerate(self.steps):
            if s.input is not None and s.input != "original" and s.input not in folders[:i]:
                raise ValueError(f"step {s.folder}: input '{s.input}' is not 'original' or an "
                                 "earlier step's name")
        if len(set(folders)) != len(folders):
            raise ValueError("two steps share a folder name: give one of them a 'name'")
        return self


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file."""
    p = Path(path)
    if not p.is_file():
        raise XCompressError(f"recipe not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        return Recipe.model_validate(raw)
    except yaml.YAMLError as e:
        raise XCompressError(f"recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "recipe"
        raise XCompressError(f"recipe {p}: {where}: {err['msg']}") from e
