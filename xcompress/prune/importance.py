"""Channel importance criteria for structured pruning (``--importance``).

Every criterion scores the slices of one weight tensor along a dimension (an output filter,
or an input column for layers ranked by what they read); the derivers of
:mod:`xcompress.search.derive` keep the highest-scoring slices and slice every consumer the
same way, so a criterion never needs to know the dependency graph.

* ``l1`` -- L1 norm of the filter (Li et al. 2017; Once-for-All's rule);
* ``fpgm`` -- distance to the other filters of the layer (FPGM, He et al. 2019): a filter
  close to the layer's geometric median is replaceable by the others, whatever its norm.
  PaddleSlim prunes the PP-OCR detector with it;
* ``taylor`` -- first-order Taylor estimate of the loss change when a filter is removed,
  ``|sum(w * dL/dw)|`` over the filter (Molchanov et al. 2019), with the gradients of the
  task's training loss accumulated over a few batches of the pruning data.

Example:
    >>> import torch
    >>> w = torch.tensor([[1.0, 0.0], [1.1, 0.0], [-3.0, 0.0]])
    >>> FPGM().score(w, 0).argmin().item()    # the filter closest to the others
    0
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from xcompress.errors import XCompressError
from xcompress.registry import LazyRegistry

IMPORTANCE: LazyRegistry[type[Importance]] = LazyRegistry("importance", ())


def _slices(weight: torch.Tensor, dim: int) -> torch.Tensor:
    return weight.detach().transpose(0, dim).flatten(1).float()


class Importance(ABC):
    """One criterion: :meth:`prepare` on the model (if it needs data), then :meth:`score`."""

    name: ClassVar[str]
    needs_data: ClassVar[bool] = False

    def prepare(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]],
                loss: Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]) -> None:  # fmt: skip
        """Look at the model on training batches before ranking (no-op by default)."""
        return None

    @abstractmethod
    def score(self, weight: torch.Tensor, dim: int) -> torch.Tensor:
        """One non-negative score per slice of ``weight`` along ``dim``; higher: keep."""

    def __call__(self, weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
        return self.score(weight, dim)


@IMPORTANCE.register
class L1(Importance):
    name = "l1"

    def score(self, weight: torch.Tensor, dim: int) -> torch.Tensor:
        return _slices(weight, dim).abs().sum(1)


@IMPORTANCE.register
class FPGM(Importance):
    name = "fpgm"

    def score(self, weight: torch.Tensor, dim: int) -> torch.Tensor:
        # the sum of Euclidean distances to all other filters is FPGM's own approximation of
        # the distance to the geometric median (which has no closed form)
        w = _slices(weight, dim)
        return torch.cdist(w[None], w[None])[0].sum(1)


@IMPORTANCE.register
class Taylor(Importance):
    name = "taylor"
    needs_data = True

    def __init__(self) -> None:
        self.grads: dict[int, torch.Tensor] = {}

    def prepare(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]],
                loss: Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]) -> None:  # fmt: skip
        params = [p for p in model.parameters() if p.dtype.is_floating_point]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        was_training = model.training
        model.eval()  # BatchNorm statistics stay the trained ones
        try:
            for x, target in batches:
                loss(model, x, target).backward()
            self.grads = {id(p): p.grad.detach().clone() for p in params if p.grad is not None}
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.grad = None
                p.requires_grad_(flag)
            model.train(was_training)

    def score(self, weight: torch.Tensor, dim: int) -> torch.Tensor:
        grad = self.grads.get(id(weight))
        if grad is None:
            raise XCompressError(
                "taylor importance has no gradient for a weight being ranked: it needs "
                "training data (--data) and prepare() on the model being pruned"
            )
        return (_slices(weight, dim) * _slices(grad, dim)).sum(1).abs()


def make_importance(name: str) -> Importance:
    """The criterion registered as ``name`` (one line listing the choices otherwise)."""
    cls = IMPORTANCE.lookup(name)
    if cls is None:
        raise XCompressError(f"--importance {name}: unknown criterion (choose one of "
                             f"{', '.join(IMPORTANCE.names())})")
    return cls()
