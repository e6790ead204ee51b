"""Pipeline steps: each maps an artifact to a new artifact in its own folder.

A step declares the typed config it takes; the registry maps the names used in recipes to
step classes, so the runner never branches on the step kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from xcompress.artifact import Artifact
from xcompress.errors import XCompressError


class Step(ABC):
    """One stage of a recipe.

    Subclasses set :attr:`name`, :attr:`roles` (the data sets they read, e.g. ``calib``) and
    implement :meth:`config_type` and :meth:`run`.
    """

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]] = ()
    optional_roles: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def config_type(cls) -> type[BaseModel]:
        """The frozen pydantic config class of this step."""

    @abstractmethod
    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        """Make the new artifact in ``out_dir`` (written whole or not at all) and return it."""

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any]) -> BaseModel:
        """Validate a recipe's config dict into the step's typed config."""
        try:
            return cls.config_type().model_validate(dict(raw))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise XCompressError(f"step {cls.name}: config {where}: {err['msg']}") from e


_STEPS: dict[str, type[Step]] = {}


def register_step(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step usable in recipes under ``cls.name``."""
    _STEPS[cls.name] = cls
    return cls


def step_names() -> list[str]:
    return sorted(_STEPS)


def get_step(name: str) -> Step:
    """A new instance of the step registered as ``name``."""
    if name not in _STEPS:
        raise XCompressError(f"unknown step '{name}': choose one of {', '.join(step_names())}")
    return _STEPS[name]()


@register_step
class QuantizeStep(Step):
    """Accuracy-aware int8 PTQ (:func:`xcompress.quantize.quantize`)."""

    name = "quantize"
    roles = ("calib",)
    optional_roles = ("eval",)

    @classmethod
    def config_type(cls) -> type[BaseModel]:
        from xcompress.quantize.config import QuantizeConfig

        return QuantizeConfig

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        from xcompress.quantize import quantize

        evals = [data["eval"]] if "eval" in data else []
        res = quantize(parent, data["calib"], out_dir, config, eval_paths=evals)  # type: ignore[arg-type]
        return Artifact(res.model_path, res.card)

