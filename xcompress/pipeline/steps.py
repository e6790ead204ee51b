"""Recipe steps: the three shapes a stage of a recipe can have, and their registry.

* :class:`Step` maps an artifact to a new artifact in its own folder (quantize, export,
  train): Olive's ``_run_for_config(model, config, output_path)``.
* :class:`Measure` maps an artifact to a :class:`Measurement` and writes nothing (eval,
  profile): the before/after table is every measure applied to every artifact.
* :class:`CandidateStep` is a :class:`Step` that proposes many candidate artifacts (a
  search): each is measured, told back, and the step keeps the Pareto set of them. It is
  driven ask/tell style by :func:`run_candidates`, so a sampler (Optuna's
  ``study.ask()`` / ``study.tell()``) never needs to know how a candidate is measured.

Every kind declares a typed, frozen config and the data roles it reads; the registry maps
the names used in recipes to classes, so the runner never branches on a step's name. A new
step is done when it passes the shared contract (``tests/step_contract.py``).

Example:
    >>> step = get_step("quantize")
    >>> step.parse_config({"max_drop": 0.01}).max_drop
    0.01
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError

from xcompress.artifact import Artifact
from xcompress.errors import XCompressError
from xcompress.registry import LazyRegistry


class RecipeStep(ABC):
    """What every kind of step shares: a name, data roles and a typed config.

    Subclasses set :attr:`name`, :attr:`roles` (data sets they must get, e.g. ``calib``),
    :attr:`optional_roles`, and implement :meth:`config_type`.
    """

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]] = ()
    optional_roles: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def config_type(cls) -> type[BaseModel]:
        """The frozen pydantic config class of this step."""

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any]) -> BaseModel:
        """Validate a recipe's config dict into the step's typed config.

        Raises:
            XCompressError: one line, ``step NAME: config FIELD: reason``.
        """
        try:
            return cls.config_type().model_validate(dict(raw))
        except ValidationError as e:
            raise config_error(cls.name, e) from e


def config_error(step: str, e: ValidationError) -> XCompressError:
    """The one-line error for an invalid step config (its first problem)."""
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "config"
    return XCompressError(f"step {step}: config {where}: {err['msg']}")


class Step(RecipeStep):
    """A stage that makes a new artifact from its parent."""

    @abstractmethod
    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        """Make the new artifact in ``out_dir`` and return it.

        Contract: ``out_dir`` is written whole or not at all (``fsutil.atomic_dir``); the
        returned artifact lies in ``out_dir`` and its card names the parent (``parent`` =
        sha256 of the parent's model file) and this step (``step``); user mistakes raise
        :class:`~xcompress.errors.XCompressError` with one-line messages.
        """


# --- measures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """What a :class:`Measure` found about one artifact.

    Attributes:
        step: the measure's registered name (``eval``, ``profile``).
        key: what it was measured on (the data set name, the target).
        values: the numbers (``cer_nospace``, ``median_ms`` ...), JSON-serializable.
        info: context of the numbers (runtime, shape), not compared between artifacts.
    """

    step: str
    key: str
    values: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class Measure(RecipeStep):
    """A stage that measures an artifact instead of making one; it writes nothing.

    ``relative`` measures compare the artifact with a baseline (the recipe's original
    model, timed alternately in one run); the baseline's own row takes the baseline side of
    the first comparison instead of a separate run.
    """

    relative: ClassVar[bool] = False

    def accepts(self, artifact: Artifact) -> bool:
        """Whether this measure can measure ``artifact``: by default, any format a registered
        runtime can run (a ``.pt`` checkpoint cannot be timed or evaluated until exported)."""
        from xcompress.runtime import list_runtimes

        return artifact.card.format in {r.format for r in list_runtimes(runnable_only=True)}

    @abstractmethod
    def describe(self, label: str, config: BaseModel, data: Mapping[str, str]) -> str:
        """The progress line before measuring ``label`` (``data``: role -> data set name)."""

    @abstractmethod
    def measure(self, artifact: Artifact, config: BaseModel, data: Mapping[str, Path],
                baseline: Artifact) -> Measurement:
        """Measure ``artifact`` (``key`` of the result: what it was measured on)."""


# --- candidate steps -------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One proposal of a :class:`CandidateStep`: an artifact and the parameters that made it
    (an Optuna trial's params). ``id`` names its folder below ``out_dir/candidates``."""

    id: str
    artifact: Artifact
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Objective:
    """One axis of the Pareto set: ``values[value]`` of the measurement of ``step`` (and
    ``key``, when several are taken, e.g. two eval sets), minimized or maximized."""

    step: str
    value: str
    direction: Literal["min", "max"] = "min"
    key: str | None = None

    def of(self, measurements: Sequence[Measurement]) -> float:
        for m in measurements:
            if m.step == self.step and (self.key is None or m.key == self.key):
                v = float(m.values[self.value])
                return v if self.direction == "min" else -v
        raise XCompressError(f"objective {self.step}.{self.value}: no such measurement "
                             "(add the measure to the recipe's report)")


@dataclass(frozen=True)
class Scored:
    """A candidate with its measurements."""

    candidate: Candidate
    measurements: list[Measurement]


@dataclass(frozen=True)
class CandidateResult:
    """What :func:`run_candidates` found: every candidate, the Pareto set, and the one the
    recipe continues from."""

    scored: list[Scored]
    front: list[Scored]
    chosen: Scored


class CandidateStep(Step):
    """A step that proposes many candidates, each measured and told back (ask/tell).

    :meth:`propose` is a generator: the driver takes one candidate, measures it, calls
    :meth:`tell` and only then asks for the next, so a proposal can depend on every result
    told so far (``study.ask()`` inside the loop, ``study.tell()`` in :meth:`tell`).
    Candidates are written below the ``out_dir`` handed to :meth:`propose` (a scratch
    folder: the driver publishes the whole step folder in one rename, or nothing).

    As a plain :class:`Step` (no measures given) it measures nothing and keeps the first
    candidate; recipes drive it through :func:`run_candidates` with the report's measures.
    """

    @abstractmethod
    def propose(self, parent: Artifact, config: BaseModel, data: Mapping[str, Path],
                out_dir: Path) -> Iterator[Candidate]:
        """Yield candidates, each written whole in its own folder below ``out_dir``."""

    @abstractmethod
    def tell(self, candidate: Candidate, measurements: Sequence[Measurement]) -> None:
        """Receive one candidate's measurements (a sampler updates itself here)."""

    @abstractmethod
    def objectives(self, config: BaseModel) -> list[Objective]:
        """The axes of the Pareto set; the first one picks :attr:`CandidateResult.chosen`."""

    def run(
        self, parent: Artifact, config: BaseModel, data: Mapping[str, Path], out_dir: Path
    ) -> Artifact:
        return run_candidates(self, parent, config, data, out_dir, None).chosen.candidate.artifact


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (all axes minimized), in input order.

    Example:
        >>> pareto_front([(1, 5), (2, 2), (3, 3), (5, 1)])
        [0, 1, 3]
    """
    def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(
            x < y for x, y in zip(a, b, strict=True))

    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


MeasureFn = Callable[[Artifact], list[Measurement]]
CANDIDATES = "candidates"
PARETO_FILE = "pareto.json"


def run_candidates(step: CandidateStep, parent: Artifact, config: BaseModel,
                   data: Mapping[str, Path], out_dir: Path, measure: MeasureFn | None
                   ) -> CandidateResult:
    """Drive ``step`` ask/tell: propose, measure, tell, until it stops; keep the Pareto set.

    Writes ``out_dir/candidates/<id>/`` per candidate and ``out_dir/pareto.json`` in one
    rename: a failure anywhere leaves ``out_dir`` as it was. Without ``measure`` nothing is
    measured and the first candidate is chosen.
    """
    from xcompress.artifact import resolve_model
    from xcompress.fsutil import atomic_dir, write_json

    with atomic_dir(out_dir, command=f"step-{step.name}") as tmp:
        told: list[tuple[Candidate, list[Measurement]]] = []
        for cand in step.propose(parent, config, data, tmp / CANDIDATES):
            ms = measure(cand.artifact) if measure is not None else []
            step.tell(cand, ms)
            told.append((cand, ms))
        if not told:
            raise XCompressError(f"step {step.name}: proposed no candidate")
        objectives = step.objectives(config) if measure is not None else []
        front = pareto_front([[o.of(ms) for o in objectives] for _, ms in told])
        best = min(front, key=lambda i: [o.of(told[i][1]) for o in objectives[:1]] or [i])
        write_json(tmp / PARETO_FILE, {
            "objectives": [asdict(o) for o in objectives],
            "candidates": [{"id": c.id, "params": c.params, "pareto": i in front,
                            "measurements": [asdict(m) for m in ms]}
                           for i, (c, ms) in enumerate(told)],
            "chosen": told[best][0].id,
        })
        rel = {c.id: c.artifact.path.relative_to(tmp) for c, _ in told}
    # the candidates moved with the rename: re-read them where they are now
    scored = [Scored(Candidate(c.id, resolve_model(out_dir / rel[c.id]), c.params), ms)
              for c, ms in told]
    return CandidateResult(scored, [scored[i] for i in front], scored[best])


# --- registry --------------------------------------------------------------------------------

# Built-in steps, imported on first lookup so `import xcompress.pipeline` stays lean.
_STEPS: LazyRegistry[type[RecipeStep]] = LazyRegistry(
    "step", ("xcompress.pipeline.builtin", "xcompress.pipeline.measures"))


def register_step(cls: type[RecipeStep]) -> type[RecipeStep]:
    """Class decorator: make a step (of any kind) usable in recipes under ``cls.name``."""
    return _STEPS.register(cls)


def step_names() -> list[str]:
    """Names usable as ``step:`` in a recipe."""
    return _STEPS.names()


def get_step(name: str) -> RecipeStep:
    """A new instance of the step registered as ``name``."""
    cls = _STEPS.lookup(name)
    if cls is None:
        raise XCompressError(f"unknown step '{name}': choose one of {', '.join(step_names())}")
    return cls()
