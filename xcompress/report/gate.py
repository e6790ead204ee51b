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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


def load_baseline(path: str | Path) -> dict[str, dict[str, Threshold]]:
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
    out: dict[str, dict[str, Threshold]] = {}
    for key, metrics in raw.items():
        if not isinstance(metrics, dict):
            raise XCompressError(f"baseline {p}: {key}: expected metric: {{min|max: ..}}")
        out[key] = {}
        for metric, spec in metrics.items():
            try:
                out[key][metric] = Threshold.model_validate(spec)
            except ValidationError as e:
                msg = e.errors()[0]["msg"]
                raise XCompressError(f"baseline {p}: {key}.{metric}: {msg}") from None
    return out


@dataclass(frozen=True)
class Check:
    key: str
    metric: str
    value: float | None
    threshold: Threshold
    status: Literal["ok", "regression", "improvement", "missing"]

    def describe(self) -> str:
        t = self.threshold
        bound = ", ".join(f"{n} {v:g}" for n, v in (("min", t.min), ("max", t.max),
                                                     ("improve", t.improve)) if v is not None)
        got = "absent" if self.value is None else f"{self.value:.4g}"
        return f"{self.key} {self.metric}: {got} ({bound}): {self.status}"


def check(entries: list[Entry], baseline: dict[str, dict[str, Threshold]]) -> list[Check]:
    """Every threshold of the baseline against the entries, in baseline order."""
    by_key = {e.key: e.values() for e in entries}
    out = []
    for key, metrics in baseline.items():
        for metric, t in metrics.items():
            v = by_key.get(key, {}).get(metric)
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
            out.append(Check(key, metric, v, t, status))  # type: ignore[arg-type]
    return out


def failed(checks: list[Check], strict: bool = False) -> list[Check]:
    """The checks that fail the gate (improvements too when ``strict``)."""
    bad = {"regression", "missing"} | ({"improvement"} if strict else set())
    return [c for c in checks if c.status in bad]
