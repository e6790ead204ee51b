"""Which channels to prune: layer-group sensitivity and a greedy allocation to a MACs target.

A *group* is one set of channels that must shrink together (the dependency graph is in the
architecture's deriver, :mod:`xcompress.search.derive`): one backbone stage's width, or a
width-like config field the search space names in ``width_fields`` (the SVTR neck's token
width, the CRNN's LSTM units). Depths and kernels stay as trained: pruning removes channels,
never layers.

The plan (PaddleSlim's sensitivity pruning, with exact MACs):

1. **sensitivity** -- for each group and each narrower width alone, derive the subnet, refit
   its narrowed layers (:mod:`xcompress.search.reconstruct`) and measure how much the task
   loss (with distillation from the teacher) rises on held-back training batches;
2. **allocation** -- starting from the trained widths, repeatedly take the one-notch
   narrowing with the smallest loss rise per MAC saved, counting MACs exactly
   (``torch.utils.flop_counter`` on a meta-device build, the same total as the ONNX count),
   until the model is under the target. Channel counts are multiples of ``round_to``: on
   onnxruntime's CPU kernels an odd count saves MACs and no time.

Example:
    >>> space = prune_space(parent, load_space(None, parent.arch), round_to=16)  # doctest: +SKIP
    >>> [g.name for g in space.groups][:2]                                       # doctest: +SKIP
    ['s0.width', 's1.width']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from xcompress.models.base import OCRModel

#: width multipliers a stage may be pruned to (of the architecture's base widths)
WIDTH_GRID = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)


def count_macs(arch: str, config: dict[str, Any], shape: tuple[int, ...]) -> int:
    """Exact multiply-accumulates of one forward pass of ``arch`` at ``config``, per sample
    (LSTM gate matmuls included, which the ONNX count leaves out).

    Built on the meta device (no weights allocated, nothing computed), counted by torch's
    own FLOP counter: convolutions, linears and the attention matmuls. For the zoo's
    ppocr-v4-rec it gives 702.47 M, as :func:`xcompress.profile.flops.count_onnx` does on
    the exported ONNX.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from xcompress.models import build_model

    with torch.device("meta"):
        model = build_model(arch, config).eval()
        x = torch.empty(1, *shape[1:])
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    return int(counter.get_total_flops() // 2)


@dataclass(frozen=True)
class Group:
    """One prunable group: its knob name and the values it may take (trained value first)."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class PruneSpace:
    """The widths a model may be pruned to: a search space with depths and kernels pinned."""

    space: Any  # SearchSpace
    groups: tuple[Group, ...]
    base: dict[str, Any]  # every knob at the trained model's value

    def point(self, state: dict[str, int]) -> dict[str, Any]:
        """Knob values of a state (group name -> index into its choices)."""
        pt = dict(self.base)
        for g in self.groups:
            pt[g.name] = g.choices[state.get(g.name, 0)]
        return pt

    def config(self, root: dict[str, Any], state: dict[str, int]) -> dict[str, Any]:
        """The model config of a state (``root``: the config the space's widths refer to)."""
        return self.space.child_config(root, self.point(state))

    def smallest(self) -> dict[str, int]:
        return {g.name: len(g.choices) - 1 for g in self.groups}


def _get(cfg: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


def prune_space(parent: OCRModel, space: Any, round_to: int | None = None) -> PruneSpace:
    """The prune space of ``parent``: every stage width on :data:`WIDTH_GRID` at or below its
    trained multiplier, the space's ``width_fields`` at its choices at or below the trained
    value; depths, kernels and other fields pinned to the trained model's."""
    from xcompress.search.space import StageChoices

    cfg = parent.config.model_dump(mode="json")
    stages = _get(cfg, space.stages_at)
    mults = [float(s.get("width_mult", 1.0)) for s in stages]
    pinned = StageChoices(
        width_mults=[[m, *[w for w in WIDTH_GRID if w < m - 1e-9]] for m in mults],
        depths=[[int(s["depth"])] for s in stages] if "depth" in stages[0] else None,
        kernels=[[s["kernel"]] for s in stages] if "kernel" in stages[0] else None,
    )
    fields: dict[str, list[Any]] = {}
    for path in space.fields:
        now = _get(cfg, path)
        if path in space.width_fields:
            fields[path] = [now, *sorted((v for v in space.fields[path] if v < now), reverse=True)]
        else:
            fields[path] = [now]
    divisor = round_to if round_to is not None else space.divisor
    # validated anew (model_copy would carry the source space's cached knobs over)
    pspace = type(space).model_validate({**space.model_dump(), "choices": pinned.model_dump(),
                                         "fields": fields, "divisor": divisor})
    groups = tuple(Group(name, tuple(values)) for name, values in pspace.knobs.items()
                   if len(values) > 1)  # fmt: skip
    base = {name: values[0] for name, values in pspace.knobs.items()}
    return PruneSpace(pspace, groups, base)


class Sensitivity:
    """Loss rise of a group at one of its narrower choices, measured on demand and cached:
    the allocation asks only for the next notch of each group, so a 70% target costs about
    one probe per group plus one per step taken, not the whole table."""

    def __init__(self, probe: Callable[[str, int], float], base: dict[str, int],
                 on_probe: Any = None, known: dict[tuple[str, int], float] | None = None
                 ) -> None:  # fmt: skip
        self._probe = probe  # (group, choice index) -> loss rise vs the model at ``base``
        self.base = dict(base)
        self._on_probe = on_probe
        # rises measured before (a resumed run), not probed again
        self.rise: dict[tuple[str, int], float] = dict(known or {})

    def __call__(self, group: str, index: int) -> float:
        """The rise at ``index``, never below a wider choice's measured rise.

        A probe is a refit on a few batches, so its rise is noisy, and a narrower width that
        happens to measure *lower* than a wider one would be free to the allocation: on
        ppocr-v4-det, s5 measured +0.019 at width 0.375 and +0.004 at 0.25, and the plan cut
        two stages to 0.25. Fewer channels cannot cost less, so the rise is taken as the
        running maximum over the measured wider choices.
        """
        start = self.base.get(group, 0)
        if index <= start:
            return 0.0
        key = (group, index)
        if key not in self.rise:
            self.rise[key] = float(self._probe(group, index))
            if self._on_probe is not None:
                self._on_probe(group, index, self.rise[key])
        wider = [r for (g, i), r in self.rise.items() if g == group and start < i < index]
        return max([self.rise[key], *wider])

    def table(self, pspace: PruneSpace) -> list[dict[str, Any]]:
        """Every measured probe as a row: group, width, loss rise."""
        choices = {g.name: g.choices for g in pspace.groups}
        return [{"group": g, "width": choices[g][i], "rise": r}
                for (g, i), r in sorted(self.rise.items())]  # fmt: skip


def allocate(
    pspace: PruneSpace,
    rise: Callable[[str, int], float],
    macs_of: Callable[[dict[str, int]], int],
    done: Callable[[dict[str, int], int], bool],
    start: dict[str, int] | None = None,
) -> list[tuple[dict[str, int], int]]:
    """The greedy path from ``start`` (default: the trained widths) until ``done(state,
    macs)``: each step narrows the group whose next notch costs the least loss rise
    (``rise(group, choice index)``, 0 at ``start``) per MAC saved.

    Returns every state on the path with its MACs (the last one is the plan); the path
    ends at the smallest state when nothing meets ``done``.
    """
    base = dict(start or {g.name: 0 for g in pspace.groups})
    state = dict(base)
    macs = macs_of(state)
    path = [(dict(state), macs)]
    while not done(state, macs):
        best: tuple[float, int, str, int, int] | None = None
        for g in pspace.groups:
            i = state[g.name]
            # the next notch that really removes channels (after rounding to the divisor
            # 0.875 of 16 channels is still 16)
            j, saved = i + 1, 0
            while j < len(g.choices):
                saved = macs - macs_of({**state, g.name: j})
                if saved > 0:
                    break
                j += 1
            if saved <= 0 or j >= len(g.choices):
                continue
            cost = max(rise(g.name, j) - rise(g.name, i), 0.0) + 1e-9
            if best is None or (cost / saved, -saved) < best[:2]:
                best = (cost / saved, -saved, g.name, j, macs - saved)
        if best is None:
            break
        state[best[2]] = best[3]
        macs = best[4]
        path.append((dict(state), macs))
    return path
