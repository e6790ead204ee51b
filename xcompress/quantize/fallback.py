"""Accuracy-aware fallback: keep the most sensitive layers in float until the budget holds.

The search is a pure function of two callbacks, so its logic is tested with synthetic
signals (see ``tests/test_quantize_fallback.py``) and used unchanged on real models:

* ``sensitivity``: one number per layer, larger = quantizing that layer alone hurts more;
* ``check(float_layers)``: the accuracy drop of the model with those layers kept in float.

Layers are tried in order of decreasing sensitivity, one at a time: a layer joins the float
set only if the drop with it is smaller than without it (measured on PP-OCRv4 rec: adding
layers blindly made the drop go up and down, 0.54, 0.77, 0.89, 0.54, 1.19 ... points, because
layers interact and the budget sets are a few hundred lines), and the first set within
``max_drop`` wins. It stops at ``max_float`` layers or ``max_checks`` trials: keeping most of a
network in float would give neither size nor speed, so it is reported as a budget that cannot
be met, with the best drop reached.

Example:
    >>> sens = {"a": 0.1, "b": 0.9, "c": 0.0}
    >>> res = choose_float_layers(sens, lambda f: 0.0 if "b" in f else 0.02, 0.005, 2)
    >>> res.float_layers, res.met
    (['b'], True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FallbackStep:
    """One checked float set."""

    float_layers: tuple[str, ...]
    drop: float
    kept: bool = True  # False: the last layer made it worse and was dropped again


@dataclass(frozen=True)
class FallbackResult:
    """The chosen float layers and every step tried."""

    float_layers: list[str]
    drop: float
    met: bool
    steps: list[FallbackStep] = field(default_factory=list)

    @property
    def best(self) -> FallbackStep:
        """The step with the smallest drop (what is reported when the budget is not met)."""
        return min(self.steps, key=lambda s: s.drop)


def choose_float_layers(
    sensitivity: Mapping[str, float],
    check: Callable[[list[str]], float],
    max_drop: float,
    max_float: int,
    on_step: Callable[[FallbackStep], None] | None = None,
    max_checks: int | None = None,
) -> FallbackResult:
    """Greedy float fallback in order of sensitivity, keeping only layers that help.

    Args:
        sensitivity: ``{layer: score}``; ties keep the mapping's order.
        check: drop of the model with the given layers in float (positive = worse).
        max_drop: the budget.
        max_float: most layers that may stay in float.
        on_step: called after each check (progress).
        max_checks: most candidate sets checked after the all-int8 one (None: no limit).

    Returns:
        :class:`FallbackResult`; ``met`` False when no set of up to ``max_float`` layers met it.
    """
    order = sorted(sensitivity, key=lambda k: -sensitivity[k])
    steps: list[FallbackStep] = []
    chosen: list[str] = []
    drop = check([])
    steps.append(FallbackStep((), drop))
    if on_step is not None:
        on_step(steps[-1])
    for layer in order:
        if drop <= max_drop or len(chosen) >= max_float:
            break
        if max_checks is not None and len(steps) > max_checks:
            break
        trial = [*chosen, layer]
        d = check(trial)
        kept = d < drop
        steps.append(FallbackStep(tuple(trial), d, kept))
        if kept:
            chosen, drop = trial, d
        if on_step is not None:
            on_step(steps[-1])
    met = drop <= max_drop
    return FallbackResult(list(chosen) if met else [], drop, met, steps)
