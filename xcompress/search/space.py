"""Search spaces: which knobs of a trained model's architecture the search may change.

A space is a YAML file (``search_spaces/<arch>.yaml``) that loads into a frozen
:class:`SearchSpace`. It names the architecture, the per-stage knobs (width multiplier, depth,
depthwise kernel; one list of choices for all stages or one list per stage) and any other
config field by its dotted path (``neck.dims``, ``neck.depth``, ``hidden``). A sampled point
(Optuna parameters, one per knob with more than one choice) becomes a child config with
:meth:`SearchSpace.child_config`; :func:`xcompress.search.derive.derive_subnet` then builds
the child from the trained parent with inherited weights.

Code never branches on the architecture: where the stages and their rounding divisor live in
a config is data too (``stages_at``, default ``backbone.stages`` for PP-OCR, ``stages`` for
the CRNN).

Example:
    >>> space = load_space(None, "crnn")
    >>> sorted(space.param_names())[:3]
    ['hidden', 's0.depth', 's0.width']
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xcompress.errors import XCompressError

#: where the shipped spaces live (the repository's top-level ``search_spaces/``)
SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"

Choices = list[Any]


class SpaceError(XCompressError):
    """A search space that cannot be read or does not fit the model's architecture."""


class StageChoices(BaseModel):
    """Per-stage knobs: each a list (same choices for every stage) or a list per stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    width_mults: list[float] | list[list[float]] | None = None
    depths: list[int] | list[list[int]] | None = None
    kernels: list[int] | list[list[int]] | None = None


#: stage knob -> (YAML key, StageSpec / CRNNStage field, Optuna parameter suffix)
_STAGE_KNOBS = (("width_mults", "width_mult", "width"), ("depths", "depth", "depth"),
                ("kernels", "kernel", "kernel"))  # fmt: skip


class SearchSpace(BaseModel):
    """One architecture's search space.

    Attributes:
        arch: the architecture it applies to (``xcompress models`` lists them).
        stages: how many stages the architecture has (checked against the model).
        stages_at: dotted path of the stage list in the model config.
        divisor: channel rounding of the candidates (multiples of 8/16 run fastest in int8
            kernels); set on the config holding the stages. None keeps the model's.
        choices: per-stage knobs.
        fields: other config fields by dotted path -> choices (e.g. ``neck.dims: [64, 96]``).
        width_fields: the fields that are channel widths (``xcompress prune`` narrows them;
            the others, such as a depth, it keeps as trained).
        reference: the trained model's own point, for documentation and the report.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    arch: str
    stages: int = Field(ge=1)
    stages_at: str = "backbone.stages"
    divisor: int | None = Field(None, ge=1)
    choices: StageChoices = Field(default_factory=StageChoices)
    fields: dict[str, list[Any]] = Field(default_factory=dict)
    width_fields: list[str] = Field(default_factory=list)
    reference: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _shapes(self) -> SearchSpace:
        for key, _, _ in _STAGE_KNOBS:
            values = getattr(self.choices, key)
            if values is None:
                continue
            if not values:
                raise ValueError(f"choices.{key} is empty")
            if isinstance(values[0], list) and len(values) != self.stages:
                raise ValueError(f"choices.{key} has {len(values)} lists for {self.stages} stages")
            if isinstance(values[0], list) and any(not v for v in values):
                raise ValueError(f"choices.{key} has a stage with no choices")
        for path, values in self.fields.items():
            if not values:
                raise ValueError(f"fields.{path} has no choices")
        for path in self.width_fields:
            if path not in self.fields:
                raise ValueError(f"width_fields names {path}, which is not in fields")
        return self

    # -- the knobs --------------------------------------------------------------------------

    def stage_choices(self, key: str) -> list[list[Any]] | None:
        """Per-stage choice lists of one knob (``width_mults``, ``depths``, ``kernels``)."""
        values = getattr(self.choices, key)
        if values is None:
            return None
        if isinstance(values[0], list):
            return [list(v) for v in values]
        return [list(values) for _ in range(self.stages)]

    @cached_property
    def knobs(self) -> dict[str, list[Any]]:
        """Optuna parameter name -> its choices, for every knob (fixed ones included)."""
        out: dict[str, list[Any]] = {}
        for key, _, suffix in _STAGE_KNOBS:
            per_stage = self.stage_choices(key)
            for i, values in enumerate(per_stage or []):
                out[f"s{i}.{suffix}"] = values
        out.update({path: list(v) for path, v in self.fields.items()})
        return out

    def param_names(self) -> list[str]:
        """The knobs with more than one choice: what a trial samples."""
        return [k for k, v in self.knobs.items() if len(v) > 1]

    def size(self) -> int:
        """How many distinct points the space has."""
        return math.prod(len(v) for v in self.knobs.values())

    def sample(self, suggest: Callable[[str, list[Any]], Any]) -> dict[str, Any]:
        """A point: ``suggest(name, choices)`` per knob (e.g. ``trial.suggest_categorical``);
        single-choice knobs take their one value without asking."""
        return {k: (suggest(k, v) if len(v) > 1 else v[0]) for k, v in self.knobs.items()}

    def extreme(self, pick: Callable[[list[Any]], Any] = max) -> dict[str, Any]:
        """The point taking ``pick`` (max: the largest candidate; min: the smallest) of every
        knob."""
        return {k: pick(v) for k, v in self.knobs.items()}

    def full(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` completed with the single-choice knobs (Optuna stores only sampled)."""
        return {k: params.get(k, v[0]) for k, v in self.knobs.items()}

    # -- from a point to a model config -----------------------------------------------------

    def child_config(self, parent: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """The parent's config dict with a point's knobs applied (still to be validated by the
        architecture's config class, which :func:`~xcompress.models.build_model` does)."""
        cfg = _deep_copy(parent)
        params = self.full(params)
        stages = _get(cfg, self.stages_at)
        if not isinstance(stages, list) or len(stages) != self.stages:
            n = len(stages) if isinstance(stages, list) else 0
            raise SpaceError(
                f"the search space has {self.stages} stages at {self.stages_at!r}, the "
                f"{self.arch} model has {n}: fix `stages` / `stages_at` in the space file"
            )
        for i, stage in enumerate(stages):
            for _, field, suffix in _STAGE_KNOBS:
                name = f"s{i}.{suffix}"
                if name in params:
                    stage[field] = params[name]
        if self.divisor is not None:
            holder = _get(cfg, self.stages_at.rpartition(".")[0]) if "." in self.stages_at else cfg
            holder["divisor"] = self.divisor
        for path in self.fields:
            _set(cfg, path, params[path])
        return cfg

    def check_fits(self, parent: Any) -> None:
        """Raise :class:`SpaceError` (one line) unless the space fits the trained ``parent``:
        same architecture, stage count, and both its largest and smallest points derive
        from the parent (no knob wider or deeper than what was trained)."""
        from xcompress.search.derive import derive_subnet

        if parent.arch != self.arch:
            raise SpaceError(
                f"the search space is for {self.arch}, the model is {parent.arch}: pass the "
                f"space of its architecture (search_spaces/{parent.arch}.yaml)"
            )
        parent_cfg = parent.config.model_dump(mode="json")
        for label, pick in (("largest", max), ("smallest", min)):
            point = self.extreme(pick)
            try:
                derive_subnet(parent, self.child_config(parent_cfg, point))
            except SpaceError:
                raise
            except (XCompressError, ValueError, TypeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise SpaceError(
                    f"the search space does not fit the model ({label} point): {first}"
                ) from None

    def grid(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every point (at most ``limit``; for tests and tiny spaces)."""
        names = list(self.knobs)
        out = []
        for values in itertools.product(*(self.knobs[n] for n in names)):
            out.append(dict(zip(names, values, strict=True)))
            if len(out) >= limit:
                break
        return out


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_deep_copy(v) for v in obj]
    return obj


def _get(cfg: dict[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SpaceError(f"the model config has no field {path!r}: fix the search space file")
        node = node[part]
    return node


def _set(cfg: dict[str, Any], path: str, value: Any) -> None:
    head, _, last = path.rpartition(".")
    holder = _get(cfg, head) if head else cfg
    if not isinstance(holder, dict) or last not in holder:
        raise SpaceError(f"the model config has no field {path!r}: fix the search space file")
    holder[last] = value


def default_space_path(arch: str) -> Path:
    return SPACES_DIR / f"{arch}.yaml"


def load_space(path: str | Path | None, arch: str | None = None) -> SearchSpace:
    """Load a space file; ``path=None`` takes the shipped space of ``arch``.

    Raises:
        SpaceError: no file, unreadable YAML, or fields that do not validate (one line).
    """
    if path is None:
        if arch is None:
            raise SpaceError("no search space: pass --space FILE")
        p = default_space_path(arch)
        if not p.is_file():
            known = ", ".join(sorted(q.stem for q in SPACES_DIR.glob("*.yaml")))
            raise SpaceError(
                f"no shipped search space for architecture {arch} (shipped: {known}): "
                "write one and pass --space FILE"
            )
    else:
        p = Path(path)
        if not p.is_file():
            raise SpaceError(f"search space file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpaceError(f"{p}: not a readable YAML search space ({first})") from None
    if not isinstance(data, dict):
        raise SpaceError(f"{p}: a search space is a YAML mapping (arch, stages, choices)")
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "file"
        raise SpaceError(f"{p}: {where}: {err['msg']}") from None
    if arch is not None and space.arch != arch:
        raise SpaceError(
            f"{p} is a search space for {space.arch}, the model is {arch}: pass the space of "
            f"its architecture (search_spaces/{arch}.yaml)"
        )
    return space
