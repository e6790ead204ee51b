"""Layer-wise reconstruction of a derived subnet: refit each narrowed layer on real data.

Once-for-All's subnets inherit weights from a *supernet trained so that its subnets work*.
A trained PP-OCR model was never trained that way: its backbone has no BatchNorm to
re-estimate (it is exported folded) and no residual paths, so dropping channels or blocks
shifts every later activation and the candidate reads nothing (measured on ppocr-v4-rec:
a stage-4 width of 0.875 alone gives CER 100% before fine-tuning, and 60 distillation steps
do not bring it back). Channel-pruning work recovers such layers by least squares
(He et al. 2017, "Channel Pruning for Accelerating Very Deep Neural Networks"; ThiNet): the
layer after a removed channel is refitted so that, on calibration inputs, its output
reproduces the parent's. Here that is done for every dense layer (Conv2d with groups 1,
Linear) whose input the derivation narrowed, or that stands in for dropped blocks, in
forward order: each fit sees the child's real input, with every earlier layer already
refitted, so errors do not pile up.

Each fit is a ridge regression towards the inherited weights (``lambda`` relative to the
input energy), on at most ``max_rows`` sampled positions. No library does this: it needs the
child/parent layer pairs and kept output positions that :func:`~xcompress.search.derive.
derive_with_sources` records.

Example:
    >>> child, sources = derive_with_sources(parent, cfg)                   # doctest: +SKIP
    >>> reconstruct(child, parent, sources, batches)                          # doctest: +SKIP
    37
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

Sources = dict[nn.Module, tuple[nn.Module, torch.Tensor | None]]


class _Stop(Exception):
    """Raised from a hook once the wanted input is captured (skips the rest of the pass)."""


def _dense(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def _in_features(m: nn.Module) -> int:
    return m.in_features if isinstance(m, nn.Linear) else m.in_channels


def _depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels > 1


def needs_fit(child_layer: nn.Module, parent_layer: nn.Module, stand_in: bool = False) -> bool:
    """A dense layer whose input was narrowed or that stands in for dropped blocks, or a
    depthwise conv whose kernel was cropped."""
    if _depthwise(child_layer):
        return child_layer.weight.shape[2:] != parent_layer.weight.shape[2:]
    if not _dense(child_layer):
        return False
    return stand_in or child_layer.weight.shape[1:] != parent_layer.weight.shape[1:]


def _rows(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as a design matrix ``[positions, fan_in]``."""
    if isinstance(m, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    cols = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # [N, Cin*k*k, L]
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _targets(m: nn.Module, y: torch.Tensor) -> torch.Tensor:
    if isinstance(m, nn.Linear):
        return y.reshape(-1, y.shape[-1])
    return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])


def _capture(model: nn.Module, layer: nn.Module, batch: torch.Tensor, output: bool) -> torch.Tensor:
    box: list[torch.Tensor] = []

    def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        box.append((out if output else args[0]).detach())
        raise _Stop

    h = layer.register_forward_hook(hook)
    try:
        model(batch)
    except _Stop:
        pass
    finally:
        h.remove()
    if not box:
        raise RuntimeError("the layer did not run in the forward pass")
    return box[0]


def _ran(model: nn.Module, layers: list[nn.Module], batch: torch.Tensor) -> set[nn.Module]:
    """Which of ``layers`` run in one forward pass of ``model`` on ``batch``."""
    seen: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda mod, *_: seen.add(mod)) for m in layers]
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
    return seen


@torch.no_grad()
def fit_layer(layer: nn.Module, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> float:
    """Least-squares fit of ``layer``'s weight and bias to map inputs ``x`` to outputs ``y``
    (rows), pulled towards its current weights; returns the relative residual."""
    w0 = layer.weight.reshape(layer.weight.shape[0], -1)  # [out, fan_in]
    has_bias = layer.bias is not None
    xd = x.double()
    if has_bias:
        xd = torch.cat([xd, torch.ones(xd.shape[0], 1, dtype=xd.dtype)], dim=1)
        w0 = torch.cat([w0, layer.bias[:, None]], dim=1)
    yd = y.double()
    gram = xd.T @ xd
    lam = ridge * gram.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    sol = torch.linalg.solve(gram + lam * eye, xd.T @ yd + lam * w0.double().T)  # [fan_in, out]
    w = sol.T.to(layer.weight.dtype)
    if has_bias:
        layer.bias.copy_(w[:, -1])
        w = w[:, :-1]
    layer.weight.copy_(w.reshape(layer.weight.shape))
    res = (xd @ sol - yd).norm() / yd.norm().clamp_min(1e-12)
    return float(res)


@torch.no_grad()
def fit_depthwise(layer: nn.Conv2d, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3,
                  max_rows: int = 16384, gen: torch.Generator | None = None) -> None:  # fmt: skip
    """Per-channel least squares of a depthwise conv's k x k kernels (and bias)."""
    n, c = x.shape[:2]
    cols = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    kk = cols.shape[1] // c
    xs = cols.reshape(n, c, kk, -1).permute(1, 0, 3, 2).reshape(c, -1, kk)  # [C, rows, kk]
    ys = y.permute(1, 0, 2, 3).reshape(c, -1)  # [C, rows]
    if xs.shape[1] > max_rows:
        pick = torch.randperm(xs.shape[1], generator=gen)[:max_rows]
        xs, ys = xs[:, pick], ys[:, pick]
    w0 = layer.weight.reshape(c, kk)
    has_bias = layer.bias is not None
    xd, yd = xs.double(), ys.double()
    if has_bias:
        xd = torch.cat([xd, torch.ones(*xd.shape[:2], 1, dtype=xd.dtype)], dim=2)
        w0 = torch.cat([w0, layer.bias[:, None]], dim=1)
    gram = xd.transpose(1, 2) @ xd  # [C, kk, kk]
    lam = ridge * gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
    eye = torch.eye(gram.shape[1], dtype=gram.dtype)
    rhs = (xd.transpose(1, 2) @ yd[:, :, None])[:, :, 0] + lam[:, None] * w0.double()
    sol = torch.linalg.solve(gram + lam[:, None, None] * eye, rhs).to(layer.weight.dtype)
    if has_bias:
        layer.bias.copy_(sol[:, -1])
        sol = sol[:, :-1]
    layer.weight.copy_(sol.reshape(layer.weight.shape))


def _parent_outputs(parent: nn.Module, layers: list[nn.Module], batch: torch.Tensor
                    ) -> dict[nn.Module, torch.Tensor]:  # fmt: skip
    """Every wanted parent layer's output on ``batch``, in one forward pass."""
    got: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out: got.setdefault(mod, out.detach()))
             for m in set(layers)]  # fmt: skip
    try:
        parent(batch)
    finally:
        for h in hooks:
            h.remove()
    return got


@torch.no_grad()
def reconstruct(
    child: nn.Module,
    parent: nn.Module,
    sources: Sources,
    batches: Iterable[torch.Tensor],
    max_rows: int = 16384,
    ridge: float = 1e-3,
    seed: int = 0,
    stand_ins: frozenset[nn.Module] | set[nn.Module] = frozenset(),
) -> int:
    """Refit, in forward order, every child layer :func:`needs_fit` says was narrowed.

    Args:
        child, parent: the derived subnet and its trained parent (the parent is unchanged).
        sources: child layer -> (parent layer, kept parent output positions) from
            :func:`~xcompress.search.derive.derive_with_sources`.
        batches: calibration inputs (a few batches of real or synthetic data).
        max_rows: positions sampled per layer for the fit.
        stand_ins: child layers that reproduce a parent layer deeper than the one they were
            copied from (the last kept block of a shallower stage): always refitted.

    Returns:
        How many layers were refitted.
    """
    data = [b for b in batches if b.numel()]  # batches may differ in width: kept apart
    if not data:
        return 0
    was = child.training, parent.training
    child.eval(), parent.eval()
    gen = torch.Generator().manual_seed(seed)
    order = [m for m in child.modules()
             if m in sources and needs_fit(m, sources[m][0], m in stand_ins)]  # fmt: skip
    try:
        # layers the deployed forward never runs (the DB head's threshold branch, a
        # training-only output) cannot be fitted to it: they keep their inherited weights
        ran = _ran(child, order, data[0])
        order = [m for m in order if m in ran]
        targets = [_parent_outputs(parent, [sources[m][0] for m in order], b) for b in data]
        for layer in order:
            src, keep = sources[layer]
            if _depthwise(layer):
                xb = torch.cat([_capture(child, layer, b, output=False) for b in data[:1]])
                yb = targets[0][src] if keep is None else targets[0][src][:, keep]
                if xb.shape[0] == yb.shape[0]:
                    fit_depthwise(layer, xb, yb, ridge, max_rows, gen)
                continue
            xs, ys = [], []
            for batch, tgt in zip(data, targets, strict=True):
                x = _rows(layer, _capture(child, layer, batch, output=False))
                y = _targets(src, tgt[src])
                if x.shape[0] == y.shape[0]:  # else another spatial size: cannot pair them
                    xs.append(x)
                    ys.append(y if keep is None else y[:, keep])
            if not xs:
                continue
            x, y = torch.cat(xs), torch.cat(ys)
            if x.shape[0] > max_rows:
                pick = torch.randperm(x.shape[0], generator=gen)[:max_rows]
                x, y = x[pick], y[pick]
            fit_layer(layer, x, y, ridge)
    finally:
        child.train(was[0])
        parent.train(was[1])
    return len(order)
