"""The regression gate: thresholds kept in the repository, checked against report entries.

A baseline is YAML, one mapping per entry key (``MODEL/STEP``), one threshold per metric::

    ppocr-v4-rec/int8:
      speedup: {min: 1.8, improve: 2.6}   # fp32/int8, alternating, same run
      size_ratio: {max: 0.30}
      cer_nospace_delta: {max: 0.005}     # metric units: 0.005 = half a point

Thresholds are ratios and deltas, which survive a noisy shared machine where absolute
milliseconds do not. ``min`` / ``max`` bound the value: crossing one is a regression (the
gate fails, naming the metric). ``improve`` is where the value is better than the baseline
expects by so much that the baseline should be raised (NNCF's reference file does the same):
reported as an improvement, a failure only with ``strict``. A key or metric the runs do not
have is a failure too: a step that silently vanished must not pass.

Speed-ups depend on the CPU class as much as on the code: onnxruntime's int8 kernels gain
about twice as much on a CPU with an int8 dot product (VNNI, Arm dotprod) as on an AVX2-only
x86 CPU. A baseline can therefore replace thresholds for entries measured on a class of
machines, described as data in a reserved ``machines`` list (the entry's run report records
its machine)::

    machines:
      - when: {int8_dot: none}            # also: any, or isa: x86_64 / aarch64
        entries:
          ppocr-v4-rec/int8:
            speedup: {min: 1.05, improve: 1.6}

Each matching override replaces the named metrics only; the other thresholds still apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from xcompress.errors import XCompressError
from xcompress.report.entries import Entry


class Threshold(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float | None = None
    max: float | None = None
    improve: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class MachineClass(BaseModel):
    """Which machines an override is for; every given field must match the entry's machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    int8_dot: Literal["none", "any"] | None = None
    isa: str | None = None

    @model_validator(mode="after")
    def _some_field(self) -> MachineClass:
        if self.int8_dot is None and self.isa is None:
            raise ValueError("give int8_dot (none|any) or isa")
        return self

    def matches(self, machine: Mapping[str, Any]) -> bool:
        """True when ``machine`` (a run report's machine facts) is of this class. A fact the
        report does not record never matches, so old runs keep the default thresholds."""
        if self.isa is not None and machine.get("isa") != self.isa:
            return False
        if self.int8_dot is not None:
            dot = machine.get("int8_dot")
            if dot is None or bool(dot) != (self.int8_dot == "any"):
                return False
        return True

    def describe(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.model_dump(exclude_none=True).items())


Thresholds = dict[str, dict[str, Threshold]]


@dataclass(frozen=True)
class Override:
    when: MachineClass
    entries: Thresholds


@dataclass(frozen=True)
class Baseline:
    """Default thresholds per entry key, and the overrides for classes of machines."""

    entries: Thresholds
    overrides: tuple[Override, ...] = ()

    def for_machine(self, key: str, machine: Mapping[str, Any]
                    ) -> dict[str, tuple[Threshold, str]]:
        """The thresholds of ``key`` on ``machine``: metric -> (threshold, machine class or '')."""
        out = {m: (t, "") for m, t in self.entries.get(key, {}).items()}
        for o in self.overrides:
            if key in o.entries and o.when.matches(machine):
                out.update({m: (t, o.when.describe()) for m, t in o.entries[key].items()})
        return out

    def keys(self) -> list[str]:
        return list(dict.fromkeys([*self.entries, *(k for o in self.overrides
                                                     for k in o.entries)]))


def _thresholds(raw: dict[str, Any], where: str) -> Thresholds:
    out: Thresholds = {}
    for key, metrics in raw.items():
        if not isinstance(metrics, dict):
            raise XCompressError(f"{where}: {key}: expected metric: {{min|max: ..}}")
        out[key] = {}
        for metric, spec in metrics.items():
            try:
                out[key][metric] = Threshold.model_validate(spec)
            except ValidationError as e:
                msg = e.errors()[0]["msg"]
                raise XCompressError(f"{where}: {key}.{metric}: {msg}") from None
    return out


def _overrides(raw: Any, where: str) -> tuple[Override, ...]:
    if not isinstance(raw, list):
        raise XCompressError(f"{where}: machines: expected a list of {{when: .., entries: ..}}")
    out = []
    for i, o in enumerate(raw):
        if not isinstance(o, dict) or set(o) != {"when", "entries"} or \
                not isinstance(o["entries"], dict):
            raise XCompressError(f"{where}: machines[{i}]: expected {{when: {{int8_dot: none}}, "
                                 "entries: {MODEL/STEP: {metric: {min|max: ..}}}}")
        try:
            when = MachineClass.model_validate(o["when"])
        except ValidationError as e:
            raise XCompressError(f"{where}: machines[{i}].when: {e.errors()[0]['msg']}") from None
        out.append(Override(when, _thresholds(o["entries"], f"{where}: machines[{i}]")))
    return tuple(out)


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline file; one-line errors naming the entry and metric."""
    p = Path(path)
    if not p.is_file():
        raise XCompressError(f"baseline not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise XCompressError(f"baseline {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise XCompressError(f"baseline {p}: expected MODEL/STEP: {{metric: {{min|max: ..}}}}")
    machines = raw.pop("machines", [])
    return Baseline(_thresholds(raw, f"baseline {p}"), _overrides(machines, f"baseline {p}"))


@dataclass(frozen=True)
class Check:
    key: str
    metric: str
    value: float | None
    threshold: Threshold
    status: Literal["ok", "regression", "improvement", "missing"]
    machine_class: str = ""  # the override whose threshold applied ('' = the default)

    def describe(self) -> str:
        t = self.threshold
        bound = ", ".join(f"{n} {v:g}" for n, v in (("min", t.min), ("max", t.max),
                                                     ("improve", t.improve)) if v is not None)
        if self.machine_class:
            bound += f"; for machines with {self.machine_class}"
        got = "absent" if self.value is None else f"{self.value:.4g}"
        return f"{self.key} {self.metric}: {got} ({bound}): {self.status}"


def check(entries: list[Entry], baseline: Baseline) -> list[Check]:
    """Every threshold of the baseline against the entries, in baseline order; an entry is
    held to the thresholds of its own machine's class where the baseline has an override."""
    by_key = {e.key: e for e in entries}
    out = []
    for key in baseline.keys():
        entry = by_key.get(key)
        values = entry.values() if entry is not None else {}
        machine = entry.machine if entry is not None else {}
        for metric, (t, cls) in baseline.for_machine(key, machine).items():
            v = values.get(metric)
            if v is None:
                status = "missing"
            elif (t.min is not None and v < t.min) or (t.max is not None and v > t.max):
                status = "regression"
            elif t.improve is not None and (
                    (t.min is not None and v > t.improve) or
                    (t.min is None and t.max is not None and v < t.improve)):
                status = "improvement"
            else:
                status = "ok"
            out.append(Check(key, metric, v, t, status, cls))  # type: ignore[arg-type]
    return out


def failed(checks: list[Check], strict: bool = False) -> list[Check]:
    """The checks that fail the gate (improvements too when ``strict``)."""
    bad = {"regression", "missing"} | ({"improvement"} if strict else set())
    return [c for c in checks if c.status in bad]
