"""Subnets of a trained model that inherit its weights (Once-for-All style).

The search scores many candidate architectures ("subnets") without training each one: a
candidate is built from a smaller config of the *same* architecture and every one of its
tensors is cut out of the trained parent:

* **width** -- a layer that keeps ``k`` of its parent's ``n`` output channels keeps the ``k``
  whose output filters have the largest L1 norm (OFA's rule), in their original order, and
  every consumer slices its input to the same channels;
* **depth** -- a stage keeps its first ``k`` blocks (the first carries the stride and the
  channel change), a transformer or LSTM stack its first ``k`` layers;
* **kernel** -- a smaller kernel is the centre crop of the parent's, a larger one the parent's
  zero-padded (that layer then computes exactly what the parent's did).

BatchNorm statistics of a narrower or shallower subnet no longer match its activations;
:func:`reestimate_bn` recomputes them on a few batches before the subnet is scored.

Each architecture has a :class:`Deriver` (registered with :func:`register_deriver`) that says
whether a child config fits the trained model and which parent slice feeds each child tensor.

Example:
    >>> from xcompress.models import build_model, get_arch
    >>> parent = build_model("crnn", get_arch("crnn").tiny()).eval()
    >>> child_cfg = {**parent.config_dict(), "hidden": 8}
    >>> child = derive_subnet(parent, child_cfg)
    >>> child.rnn.hidden_size, child.config.hidden, child.training
    (8, 8, False)
    >>> derive_subnet(parent, {**parent.config_dict(), "hidden": 32})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xcompress.errors.ModelError: the crnn subnet does not fit the trained model: LSTM hidden ...
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from xcompress.errors import DataError, ModelError
from xcompress.models.base import OCRModel
from xcompress.models.crnn import CRNN, CRNNConfig
from xcompress.models.det import DBBranch, PPOCRv4Det, PPOCRv4DetConfig, RSEConv
from xcompress.models.layers import ConvBN, LCNetBlock, RepConv, SqueezeExcite
from xcompress.models.lcnetv3 import LCNetV3, LCNetV3Config
from xcompress.models.rec import PPOCRv4Rec, PPOCRv4RecConfig, SVTRNeck, TransformerBlock
from xcompress.models.registry import ArchConfig, build_model, get_arch

#: 1-D int64 positions into one dimension of a parent tensor, ascending; ``None`` = all of it
Index = torch.Tensor

# ---------------------------------------------------------------------------------------------
# Ranking


def l1_scores(weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """L1 norm of each slice of ``weight`` along ``dim`` (``dim=0``: each output filter).

    Example:
        >>> l1_scores(torch.tensor([[1.0, -2.0], [0.5, 0.0]])).tolist()
        [3.0, 0.5]
    """
    return weight.detach().abs().transpose(0, dim).flatten(1).sum(1)


Scorer = Callable[[torch.Tensor, int], torch.Tensor]

#: the channel importance that ranks what a subnet keeps (L1 unless :func:`ranked_by` says)
_SCORER: contextvars.ContextVar[Scorer] = contextvars.ContextVar("scorer", default=l1_scores)


def filter_scores(weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The active importance of each slice of ``weight`` along ``dim`` (L1 by default;
    ``xcompress prune --importance`` sets FPGM or Taylor with :func:`ranked_by`)."""
    return _SCORER.get()(weight, dim)


@contextlib.contextmanager
def ranked_by(scorer: Scorer) -> Iterator[None]:
    """Rank channels with ``scorer(weight, dim) -> one score per slice`` (higher: keep)
    inside the block.

    Example:
        >>> with ranked_by(lambda w, dim: -l1_scores(w, dim)):   # keep the smallest
        ...     top_filters(torch.tensor([[1.0], [0.0], [3.0]]), 1).tolist()
        [1]
    """
    token = _SCORER.set(scorer)
    try:
        yield
    finally:
        _SCORER.reset(token)


def top_k(scores: torch.Tensor, k: int) -> Index:
    """Positions of the ``k`` largest scores, in ascending position order (ties: lower first).

    Example:
        >>> top_k(torch.tensor([0.1, 3.0, 0.0, 2.0]), 2).tolist()
        [1, 3]
    """
    if k > scores.numel():  # the fit checks run first, so this is a deriver bug
        raise RuntimeError(f"cannot keep {k} of {scores.numel()} channels")
    return torch.argsort(scores, descending=True, stable=True)[:k].sort().values


def top_filters(weight: torch.Tensor, k: int, dim: int = 0) -> Index:
    """The ``k`` slices of ``weight`` along ``dim`` of highest importance (by default the
    largest L1 norm, OFA's rule).

    Example:
        >>> top_filters(torch.tensor([[1.0, -1.0], [0.0, 0.0], [3.0, 0.0]]), 2).tolist()
        [0, 2]
    """
    return top_k(filter_scores(weight, dim), k)


# ---------------------------------------------------------------------------------------------
# Copying slices


def fit_kernel(weight: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Centre-crop or zero-pad the two trailing (kernel) axes of ``weight`` to ``size``.

    Zero-padding keeps the layer's function: a conv pads its input by ``kernel // 2``, so the
    extra taps only ever meet input positions whose weights are zero.

    Example:
        >>> w = torch.arange(9.0).reshape(1, 1, 3, 3)
        >>> fit_kernel(w, (1, 1)).flatten().tolist()
        [4.0]
        >>> fit_kernel(w, (3, 5))[0, 0, 0].tolist()
        [0.0, 0.0, 1.0, 2.0, 0.0]
    """
    for axis, want in zip((-2, -1), size, strict=True):
        have = weight.shape[axis]
        if want < have:
            weight = weight.narrow(axis, (have - want) // 2, want)
        elif want > have:
            pad = (want - have) // 2
            weight = F.pad(weight, (pad, pad, 0, 0) if axis == -1 else (0, 0, pad, pad))
    return weight


class Copier:
    """Writes a child's tensors from slices of the parent's, and remembers what it wrote.

    Each ``out``/``inp`` argument lists the parent positions kept along that axis (``None``
    keeps the axis whole); kernel axes that still differ go through :func:`fit_kernel`.
    :func:`derive_subnet` checks afterwards that every parameter and buffer of the child was
    written, so a deriver that forgets a layer fails loudly instead of leaving random weights
    in a candidate whose score would then be meaningless.
    """

    def __init__(self) -> None:
        self._written: set[int] = set()
        #: child layer -> (parent layer it reproduces, kept parent output positions or None)
        self.sources: dict[nn.Module, tuple[nn.Module, Index | None]] = {}
        #: child layers standing in for a deeper parent layer (see :func:`_stand_in`)
        self.stand_ins: set[nn.Module] = set()

    def put(self, dst: torch.Tensor, src: torch.Tensor, *idx: Index | None) -> None:
        """``dst <- src`` restricted to ``idx`` (one entry per leading axis of ``src``)."""
        src = src.detach()
        for axis, keep in enumerate(idx):
            if keep is not None:
                src = src.index_select(axis, keep.to(src.device))
        if src.dim() == 4 and src.shape[2:] != dst.shape[2:]:
            src = fit_kernel(src, dst.shape[2:])
        if src.shape != dst.shape:
            raise RuntimeError(f"derived slice {tuple(src.shape)} != child {tuple(dst.shape)}")
        with torch.no_grad():
            dst.copy_(src)
        self._written.add(id(dst))

    def layer(self, dst: nn.Module, src: nn.Module, out: Index | None, inp: Index | None) -> None:
        """A Conv2d or Linear: weight ``[out, in, ...]``, bias ``[out]``."""
        self.sources[dst] = (src, out)
        self.put(dst.weight, src.weight, out, inp)
        if src.bias is not None:
            self.put(dst.bias, src.bias, out)

    def conv_transpose(
        self, dst: nn.ConvTranspose2d, src: nn.ConvTranspose2d, out: Index | None, inp: Index | None
    ) -> None:
        """A ConvTranspose2d: its weight is laid out ``[in, out, kh, kw]``."""
        self.put(dst.weight, src.weight, inp, out)
        if src.bias is not None:
            self.put(dst.bias, src.bias, out)

    def norm(self, dst: nn.Module, src: nn.Module, keep: Index | None) -> None:
        """BatchNorm (affine + running stats) or LayerNorm, on the kept channels."""
        targets = dst.state_dict(keep_vars=True)
        for name, tensor in src.state_dict(keep_vars=True).items():
            # num_batches_tracked is a scalar count, the rest is per channel
            self.put(targets[name], tensor, *([keep] if tensor.dim() else []))

    def whole(self, dst: nn.Module, src: nn.Module) -> None:
        """Every tensor unchanged (same shapes), e.g. a :class:`LearnableAffine`'s scalars."""
        targets = dst.state_dict(keep_vars=True)
        for name, tensor in src.state_dict(keep_vars=True).items():
            self.put(targets[name], tensor)

    def missing(self, model: nn.Module) -> list[str]:
        """Names of ``model``'s parameters and buffers that were never written."""
        return [
            n for n, t in model.state_dict(keep_vars=True).items() if id(t) not in self._written
        ]


def _conv_bn(cp: Copier, dst: ConvBN, src: ConvBN, out: Index | None, inp: Index | None) -> None:
    cp.layer(dst.conv, src.conv, out, inp)
    cp.norm(dst.bn, src.bn, out)


def _rep_conv(cp: Copier, dst: RepConv, src: RepConv, out: Index, inp: Index | None) -> None:
    cp.layer(dst.conv, src.conv, out, inp)
    if src.bn is not None and dst.bn is not None:
        cp.norm(dst.bn, src.bn, out)
    cp.whole(dst.affine, src.affine)
    if src.act_affine is not None and dst.act_affine is not None:
        cp.whole(dst.act_affine, src.act_affine)


def _squeeze_excite(cp: Copier, dst: SqueezeExcite, src: SqueezeExcite, chans: Index) -> None:
    # the squeeze width is channels // reduction: keep its strongest reduce filters
    mid = top_filters(src.reduce.weight, dst.reduce.out_channels)
    cp.layer(dst.reduce, src.reduce, mid, chans)
    cp.layer(dst.expand, src.expand, chans, mid)


def _lcnet_block(cp: Copier, dst: LCNetBlock, src: LCNetBlock, cin: Index) -> Index:
    """Fill one block reading the parent channels ``cin``; returns its kept output channels."""
    # depthwise: output channel i only reads input i, so it keeps exactly the input's set
    _rep_conv(cp, dst.dw, src.dw, cin, None)
    if src.se is not None and dst.se is not None:
        _squeeze_excite(cp, dst.se, src.se, cin)
    out = top_filters(src.pw.conv.weight, dst.pw.conv.out_channels)
    _rep_conv(cp, dst.pw, src.pw, out, cin)
    return out


def _lcnet(cp: Copier, dst: LCNetV3, src: LCNetV3) -> list[Index]:
    """Fill a backbone; returns each stage's kept output channels (what its consumers read)."""
    prev = top_filters(src.stem.conv.weight, dst.stem.conv.out_channels)
    _conv_bn(cp, dst.stem, src.stem, prev, None)
    outs = []
    for src_stage, dst_stage in zip(src.stages, dst.stages, strict=True):
        cin = prev
        for src_block, dst_block in zip(src_stage, dst_stage, strict=False):  # first k blocks
            cin = prev
            prev = _lcnet_block(cp, dst_block, src_block, prev)
        if len(dst_stage) < len(src_stage):
            prev = _stand_in(cp, dst_stage[-1], src_stage[len(dst_stage) - 1], src_stage[-1], cin)
        outs.append(prev)
    return outs


def _stand_in(cp: Copier, dst: LCNetBlock, src: LCNetBlock, last: LCNetBlock, cin: Index) -> Index:
    """The last kept block of a shallower stage stands in for the parent's *last* block.

    With blocks dropped and no residual path, the next stage was trained on the last block's
    channels, not on those of the block kept last, so the kept block is made to speak the
    last block's channel space: its pw outputs are the last block's strongest channels
    (initialized from its own filters at those positions, with the last block's affines),
    and :func:`xcompress.search.reconstruct.reconstruct` fits that pw conv to the last
    block's output on real data. The stage's consumers then read those positions.
    """
    keep = top_filters(last.pw.conv.weight, dst.pw.conv.out_channels)
    k = min(int(keep.max()) + 1, src.pw.conv.out_channels)
    rows = torch.clamp(keep, max=k - 1)  # a narrower kept block has no row at some positions
    cp.layer(dst.pw.conv, src.pw.conv, rows, cin)
    cp.sources[dst.pw.conv] = (last.pw.conv, keep)
    cp.stand_ins.add(dst.pw.conv)
    if dst.pw.bn is not None and last.pw.bn is not None:
        cp.norm(dst.pw.bn, last.pw.bn, keep)
    cp.whole(dst.pw.affine, last.pw.affine)
    if dst.pw.act_affine is not None and last.pw.act_affine is not None:
        cp.whole(dst.pw.act_affine, last.pw.act_affine)
    return keep


# ---------------------------------------------------------------------------------------------
# Fit checks: the messages are what a user sees when a search space does not fit the model


class FitProblems(list[str]):
    """Collects one phrase per knob of a child config the trained model cannot provide."""

    def differs(self, what: str, child: object, parent: object) -> None:
        if child != parent:
            self.append(f"{what} {child} differs from the trained model's {parent}")

    def deeper(self, what: str, child: int, parent: int) -> None:
        if child > parent:
            self.append(f"{what} {child} > the trained model's {parent}")

    def wider(self, what: str, child: int, parent: int) -> None:
        if child > parent:
            self.append(f"{what} is wider ({child} channels) than the trained model ({parent})")

    def kernel(self, what: str, child: int | Sequence[int], parent: int | Sequence[int]) -> None:
        c = (child,) if isinstance(child, int) else tuple(child)
        p = (parent,) if isinstance(parent, int) else tuple(parent)
        if len(c) != len(p) or any((a - b) % 2 for a, b in zip(c, p, strict=False)):
            # a centre crop / symmetric pad only exists between sizes of the same parity
            self.append(
                f"{what} {child} cannot be centre-cut from the trained model's {parent} "
                "(their sizes must differ by an even number)"
            )


def _check_stages(fit: FitProblems, child: Any, parent: Any, fixed: str) -> None:
    """Per-stage width, depth, kernel and stride (and the ``fixed`` field, which a subnet
    cannot change) of two configs with ``stages`` and ``stage_channels()``."""
    for i, (c, p, cw, pw) in enumerate(zip(
        child.stages, parent.stages, child.stage_channels(), parent.stage_channels(),
        strict=True,
    )):  # fmt: skip
        fit.wider(f"stage {i}", cw, pw)
        fit.deeper(f"stage {i}: depth", c.depth, p.depth)
        fit.kernel(f"stage {i}: kernel", c.kernel, p.kernel)
        fit.differs(f"stage {i}: stride", tuple(c.stride), tuple(p.stride))
        a, b = getattr(c, fixed), getattr(p, fixed)
        fit.differs(f"stage {i}: {fixed}", tuple(a) if isinstance(a, tuple | list) else a,
                    tuple(b) if isinstance(b, tuple | list) else b)  # fmt: skip


def _check_lcnet(fit: FitProblems, child: LCNetV3Config, parent: LCNetV3Config) -> None:
    fit.differs("backbone norm", child.norm, parent.norm)
    fit.wider("backbone stem", child.stem_width(), parent.stem_width())
    if len(child.stages) != len(parent.stages):
        fit.append(f"backbone has {len(child.stages)} stages, the trained model "
                   f"{len(parent.stages)}")  # fmt: skip
        return
    _check_stages(fit, child, parent, "se")


# ---------------------------------------------------------------------------------------------
# Registry

M = TypeVar("M", bound=OCRModel)
C = TypeVar("C", bound=ArchConfig)


class Deriver(ABC, Generic[M, C]):
    """How subnets of one architecture inherit the trained model's weights.

    ``problems`` runs on configs alone, before anything is built; ``fill`` writes every
    tensor of the freshly built ``child`` through ``cp`` (unwritten tensors are an error).
    """

    @abstractmethod
    def problems(self, child: C, parent: C) -> FitProblems:
        """One phrase per knob of ``child`` that ``parent``'s weights cannot provide."""

    @abstractmethod
    def fill(self, cp: Copier, child: M, parent: M) -> None:
        """Write every parameter and buffer of ``child`` from slices of ``parent``'s."""


_DERIVERS: dict[str, Deriver[Any, Any]] = {}


def register_deriver(arch: str) -> Callable[[type[Deriver[Any, Any]]], type[Deriver[Any, Any]]]:
    """Class decorator: derive subnets of the architecture ``arch`` with this :class:`Deriver`.

    Example:
        >>> @register_deriver("my-rec")
        ... class MyRecDeriver(Deriver): ...                               # doctest: +SKIP
    """

    def deco(cls: type[Deriver[Any, Any]]) -> type[Deriver[Any, Any]]:
        if arch in _DERIVERS:
            raise ValueError(f"deriver for {arch!r} registered twice")
        _DERIVERS[arch] = cls()
        return cls

    return deco


def list_derivers() -> list[str]:
    """Architectures whose subnets :func:`derive_subnet` can build."""
    return sorted(_DERIVERS)


def derive_subnet(parent: OCRModel, child_config: ArchConfig | dict[str, Any]) -> OCRModel:
    """See :func:`derive_with_sources`; returns only the child."""
    return derive_with_sources(parent, child_config)[0]


def derive_with_sources(
    parent: OCRModel, child_config: ArchConfig | dict[str, Any]
) -> tuple[OCRModel, Copier]:
    """Build the child ``build_model(parent.arch, child_config)`` with the parent's weights.

    Importance-ranked channels, first-k blocks and centre-cropped kernels (see the module
    docstring); the child lands on the parent's device and dtype, in eval mode. Its
    BatchNorm statistics are the parent's for the kept channels: call :func:`reestimate_bn`
    before scoring a narrower or shallower child.

    Args:
        parent: the trained model (left unchanged).
        child_config: a config of the same architecture, or its dict form.

    Returns:
        The child, whose ``config`` is ``child_config`` (validated), and the :class:`Copier`
        that filled it: its ``sources`` (child layer -> parent layer, kept outputs) and
        ``stand_ins`` are what :func:`xcompress.search.reconstruct.reconstruct` refits.

    Raises:
        ModelError: the architecture has no deriver, or the child config asks for something
            the trained model cannot provide (wider, deeper, another stride, head count or
            class count...); the one-line message names every such knob.

    Example:
        >>> from xcompress.models import build_model, get_arch
        >>> parent = build_model("ppocrv4-rec", get_arch("ppocrv4-rec").tiny()).eval()
        >>> cfg = parent.config.model_dump()
        >>> cfg["neck"]["depth"] = 0
        >>> derive_subnet(parent, cfg).neck.blocks
        ModuleList()
    """
    deriver = _DERIVERS.get(parent.arch)
    if deriver is None:
        raise ModelError(
            f"architecture {parent.arch!r} has no subnet deriver, so it cannot be searched; "
            f"searchable: {', '.join(list_derivers())}"
        )
    entry = get_arch(parent.arch)
    if isinstance(child_config, ArchConfig) and not isinstance(child_config, entry.config_cls):
        raise ModelError(
            f"a {type(child_config).__name__} cannot configure a {parent.arch} subnet "
            f"(it needs a {entry.config_cls.__name__})"
        )
    config = entry.make_config(child_config)
    problems = deriver.problems(config, parent.config)
    if problems:
        raise ModelError(
            f"the {parent.arch} subnet does not fit the trained model: {'; '.join(problems)}"
        )
    ref = next(itertools.chain(parent.parameters(), parent.buffers()), torch.empty(0))
    child: OCRModel = build_model(parent.arch, config)
    child = child.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
    cp = Copier()
    deriver.fill(cp, child, parent)
    missing = cp.missing(child)
    if missing:  # a deriver bug, not a user error
        raise RuntimeError(f"{type(deriver).__name__} left {len(missing)} child tensors unset: "
                           f"{', '.join(missing[:5])}")  # fmt: skip
    return child.eval(), cp


# ---------------------------------------------------------------------------------------------
# PP-OCRv4 rec: LCNetV3 -> avg-pool -> SVTR neck -> Linear CTC head


def _attention_channels(block: TransformerBlock, per_head: int) -> Index:
    """Attention channels to keep: the same ``per_head`` positions within every head's slice.

    q and k of a head must keep the same channels (their dot product pairs them up) and so
    must v and proj's input; we use one set for all four, ranked by each channel's total L1
    over its q, k and v rows and its proj column, the best ``per_head`` within each head.
    """
    dims = block.proj.in_features
    rows = filter_scores(block.qkv.weight).reshape(3, dims).sum(0)
    scores = (rows + filter_scores(block.proj.weight, dim=1)).reshape(block.heads, -1)
    keep = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :per_head]
    offsets = torch.arange(block.heads, device=keep.device)[:, None] * scores.shape[1]
    return (keep.sort(dim=1).values + offsets).flatten()


def _stream_dims(src: SVTRNeck, dst: SVTRNeck) -> Index:
    """Token dims to keep: one set for the whole residual stream (conv2 -> blocks -> norm).

    Every kept block adds its proj and fc2 outputs to the stream that conv2 started, so a dim
    matters by how much all these writers put into it: we sum their output-row L1 norms, each
    divided by its own mean so that the conv (whose scale BatchNorm absorbs) and the linears
    count alike.
    """
    writers = [src.conv2.conv.weight]
    for block in list(src.blocks)[: len(dst.blocks)]:
        writers += [block.proj.weight, block.fc2.weight]
    scores = sum(s / s.mean().clamp_min(1e-12) for s in map(filter_scores, writers))
    return top_k(torch.as_tensor(scores), dst.conv2.conv.out_channels)


def _transformer_block(
    cp: Copier, dst: TransformerBlock, src: TransformerBlock, dims: Index
) -> None:
    # The child's attention scale is (its dims // heads) ** -0.5, as a model of that size
    # would have been trained with; the logits therefore change a little. That is expected.
    attn = _attention_channels(src, dst.proj.in_features // dst.heads)
    width = src.proj.in_features
    cp.norm(dst.norm1, src.norm1, dims)
    cp.layer(dst.qkv, src.qkv, torch.cat([attn, width + attn, 2 * width + attn]), dims)
    cp.layer(dst.proj, src.proj, dims, attn)
    cp.norm(dst.norm2, src.norm2, dims)
    hidden = top_filters(src.fc1.weight, dst.fc1.out_features)
    cp.layer(dst.fc1, src.fc1, hidden, dims)
    cp.layer(dst.fc2, src.fc2, dims, hidden)


def _svtr_neck(cp: Copier, dst: SVTRNeck, src: SVTRNeck, h: Index) -> Index:
    """Fill the neck reading the pooled backbone channels ``h``; returns its kept outputs."""
    mid = top_filters(src.conv1.conv.weight, dst.conv1.conv.out_channels)
    _conv_bn(cp, dst.conv1, src.conv1, mid, h)
    dims = _stream_dims(src, dst)
    _conv_bn(cp, dst.conv2, src.conv2, dims, mid)
    for src_block, dst_block in zip(src.blocks, dst.blocks, strict=False):  # first k blocks
        _transformer_block(cp, dst_block, src_block, dims)
    cp.norm(dst.norm, src.norm, dims)
    back = top_filters(src.conv3.conv.weight, dst.conv3.conv.out_channels)
    _conv_bn(cp, dst.conv3, src.conv3, back, dims)
    # conv4 reads cat([h, conv3 output]): the parent's columns [h, C + conv3's kept channels]
    mid4 = top_filters(src.conv4.conv.weight, dst.conv4.conv.out_channels)
    cat = torch.cat([h, src.conv3.conv.out_channels + back])
    _conv_bn(cp, dst.conv4, src.conv4, mid4, cat)
    out = top_filters(src.conv5.conv.weight, dst.conv5.conv.out_channels)
    _conv_bn(cp, dst.conv5, src.conv5, out, mid4)
    return out


@register_deriver("ppocrv4-rec")
class RecDeriver(Deriver[PPOCRv4Rec, PPOCRv4RecConfig]):
    def problems(self, child: PPOCRv4RecConfig, parent: PPOCRv4RecConfig) -> FitProblems:
        fit = FitProblems()
        _check_lcnet(fit, child.backbone, parent.backbone)
        c, p = child.neck, parent.neck
        fit.differs("neck num_heads", c.num_heads, p.num_heads)
        fit.wider("neck dims", c.dims, p.dims)
        fit.deeper("neck depth", c.depth, p.depth)
        fit.wider("neck MLP", int(c.dims * c.mlp_ratio), int(p.dims * p.mlp_ratio))
        fit.wider(
            "neck conv1/conv4 (last stage width // reduction)",
            child.backbone.stage_channels()[-1] // c.reduction,
            parent.backbone.stage_channels()[-1] // p.reduction,
        )
        fit.kernel("neck kernel", c.kernel, p.kernel)
        fit.wider("neck out_dims", c.out_dims, p.out_dims)
        fit.differs("num_classes", child.num_classes, parent.num_classes)
        fit.differs("input_height", child.input_height, parent.input_height)
        fit.differs("pool", tuple(child.pool), tuple(parent.pool))
        return fit

    def fill(self, cp: Copier, child: PPOCRv4Rec, parent: PPOCRv4Rec) -> None:
        stages = _lcnet(cp, child.backbone, parent.backbone)
        # the avg-pool is per channel, so the neck reads the last stage's kept channels
        out = _svtr_neck(cp, child.neck, parent.neck, stages[-1])
        cp.layer(child.head, parent.head, None, out)


# ---------------------------------------------------------------------------------------------
# PP-OCRv4 det: LCNetV3 -> RSE-FPN -> DB head


def _rse_conv(cp: Copier, dst: RSEConv, src: RSEConv, out: Index, inp: Index) -> None:
    cp.layer(dst.conv, src.conv, out, inp)
    _squeeze_excite(cp, dst.se, src.se, out)


def _db_branch(cp: Copier, dst: DBBranch, src: DBBranch, inp: Index) -> None:
    mid = top_filters(src.conv.conv.weight, dst.conv.conv.out_channels)
    _conv_bn(cp, dst.conv, src.conv, mid, inp)
    up = top_filters(src.up1.weight, dst.up1.out_channels, dim=1)  # transpose conv: [in, out, ..]
    cp.conv_transpose(dst.up1, src.up1, up, mid)
    cp.norm(dst.bn1, src.bn1, up)
    cp.conv_transpose(dst.up2, src.up2, None, up)


@register_deriver("ppocrv4-det")
class DetDeriver(Deriver[PPOCRv4Det, PPOCRv4DetConfig]):
    def problems(self, child: PPOCRv4DetConfig, parent: PPOCRv4DetConfig) -> FitProblems:
        fit = FitProblems()
        _check_lcnet(fit, child.backbone, parent.backbone)
        fit.differs("taps", tuple(child.taps), tuple(parent.taps))
        c, p = child.neck, parent.neck
        for i, (cw, pw) in enumerate(zip(c.lateral_channels, p.lateral_channels, strict=True)):
            fit.wider(f"neck lateral {i}", cw, pw)
        fit.wider("neck out_channels", c.out_channels, p.out_channels)
        fit.differs("neck se_reduction", c.se_reduction, p.se_reduction)
        fit.differs("neck shortcut", c.shortcut, p.shortcut)
        return fit

    def fill(self, cp: Copier, child: PPOCRv4Det, parent: PPOCRv4Det) -> None:
        stages = _lcnet(cp, child.backbone, parent.backbone)
        src, dst = parent.neck, child.neck
        # The top-down sums (in4 + up(in5), ...) add the levels channel by channel, so all
        # four `ins` outputs keep one common set: ranked by their summed filter norms.
        fused = top_k(
            torch.stack([filter_scores(m.conv.weight) for m in src.ins]).sum(0), dst.out_channels
        )
        levels = []
        for i, tap in enumerate(child.taps):
            lat = top_filters(src.lateral[i].weight, dst.lateral[i].out_channels)
            cp.layer(dst.lateral[i], src.lateral[i], lat, stages[tap])
            _rse_conv(cp, dst.ins[i], src.ins[i], fused, lat)
            level = top_filters(src.inp[i].conv.weight, dst.inp[i].conv.out_channels)
            _rse_conv(cp, dst.inp[i], src.inp[i], level, fused)
            levels.append(level)
        # the DB head reads cat([p5, p4, p3, p2]), each a quarter of the parent's channels
        quarter = src.out_channels // 4
        head_in = torch.cat([q * quarter + levels[i] for q, i in enumerate((3, 2, 1, 0))])
        _db_branch(cp, child.shrink, parent.shrink, head_in)
        _db_branch(cp, child.thresh, parent.thresh, head_in)


# ---------------------------------------------------------------------------------------------
# CRNN: (conv -> BN -> ReLU) stages -> BiLSTM -> Linear


def _crnn_convs(model: CRNN) -> list[list[tuple[nn.Conv2d, nn.BatchNorm2d]]]:
    """Each stage's (conv, BN) pairs, in order (``model.cnn`` is one flat Sequential)."""
    convs = [m for m in model.cnn if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.cnn if isinstance(m, nn.BatchNorm2d)]
    pairs = iter(zip(convs, bns, strict=True))
    return [[next(pairs) for _ in range(s.depth)] for s in model.config.stages]


def _lstm_units(src: nn.LSTM, suffix: str, k: int) -> Index:
    """Hidden units to keep in one layer and direction.

    A unit's "filters" are its rows in the four gates (i, f, g, o stacked in PyTorch's
    ``weight_ih``/``weight_hh``): we rank units by the L1 norm of all eight rows, OFA's
    output-filter rule applied to a recurrent unit.
    """
    hidden = src.hidden_size
    rows = filter_scores(getattr(src, f"weight_ih{suffix}")) + filter_scores(
        getattr(src, f"weight_hh{suffix}")
    )
    return top_k(rows.reshape(4, hidden).sum(0), k)


def _lstm(cp: Copier, dst: nn.LSTM, src: nn.LSTM, inp: Index) -> Index:
    """Fill the first ``dst.num_layers`` layers; returns the kept columns of the output."""
    big, small = src.hidden_size, dst.hidden_size
    for layer in range(dst.num_layers):
        kept = []
        for suffix in (f"_l{layer}", f"_l{layer}_reverse"):
            units = _lstm_units(src, suffix, small)
            rows = torch.cat([gate * big + units for gate in range(4)])  # same units, 4 gates
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for name, cols in zip(names, (inp, units, None, None), strict=True):
                if hasattr(src, name + suffix):
                    cp.put(getattr(dst, name + suffix), getattr(src, name + suffix), rows, cols)
            kept.append(units)
        # the next layer (and the head) reads [forward hidden, backward hidden]
        inp = torch.cat([kept[0], big + kept[1]])
    return inp


@register_deriver("crnn")
class CRNNDeriver(Deriver[CRNN, CRNNConfig]):
    def problems(self, child: CRNNConfig, parent: CRNNConfig) -> FitProblems:
        fit = FitProblems()
        if len(child.stages) != len(parent.stages):
            fit.append(f"{len(child.stages)} conv stages, the trained model has "
                       f"{len(parent.stages)}")  # fmt: skip
        else:
            _check_stages(fit, child, parent, "pool")
        fit.wider("LSTM hidden", child.hidden, parent.hidden)
        fit.deeper("lstm_layers", child.lstm_layers, parent.lstm_layers)
        fit.differs("num_classes", child.num_classes, parent.num_classes)
        fit.differs("input_height", child.input_height, parent.input_height)
        return fit

    def fill(self, cp: Copier, child: CRNN, parent: CRNN) -> None:
        prev: Index | None = None  # the RGB input: all of it
        for src_stage, dst_stage in zip(_crnn_convs(parent), _crnn_convs(child), strict=True):
            for (src_conv, src_bn), (dst_conv, dst_bn) in zip(src_stage, dst_stage, strict=False):
                out = top_filters(src_conv.weight, dst_conv.out_channels)
                cp.layer(dst_conv, src_conv, out, prev)
                cp.norm(dst_bn, src_bn, out)
                prev = out
        assert prev is not None  # a CRNN has at least one conv
        # mean over height is per channel: the LSTM reads the last conv's kept channels
        cols = _lstm(cp, child.rnn, parent.rnn, prev)
        cp.layer(child.head, parent.head, None, cols)


# ---------------------------------------------------------------------------------------------
# BatchNorm re-estimation

_BatchNorm = nn.modules.batchnorm._BatchNorm


def reestimate_bn(
    model: nn.Module, batches: Iterable[torch.Tensor], max_batches: int | None = None
) -> int:
    """Recompute every BatchNorm's running statistics from ``batches``.

    A subnet's channels see different activations than they did in the parent, so its
    inherited statistics are off; OFA re-estimates them on a few thousand images before
    scoring each subnet. Statistics are reset, then each BatchNorm accumulates the
    cumulative average (``momentum=None``) of the per-batch mean and unbiased variance, in
    train mode for the BatchNorms only (dropout etc. stay off) and without gradients.
    Afterwards every module's ``training`` flag and every BatchNorm's momentum are as before;
    BatchNorms the forward never reaches (the detector's training-only threshold branch) keep
    their statistics.

    Args:
        model: run as ``model(batch)``; moved nowhere (each batch goes to its device).
        batches: input tensors.
        max_batches: stop after this many batches (None: all of them).

    Returns:
        The number of BatchNorms updated; 0 when the model has none (then nothing runs).

    Raises:
        DataError: no batch was given (the statistics are then left as they were).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
        >>> reestimate_bn(net, [torch.randn(2, 3, 8, 8) for _ in range(3)]), net.training
        (1, False)
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    flags = [(m, m.training) for m in model.modules()]
    saved = [(bn, bn.momentum, {k: v.clone() for k, v in bn.state_dict().items()
                                if not k.endswith(("weight", "bias"))}) for bn in bns]  # fmt: skip
    reached: set[int] = set()
    hooks = [bn.register_forward_pre_hook(lambda m, _: reached.add(id(m))) for bn in bns]
    ref = next(itertools.chain(model.parameters(), model.buffers()))
    seen = 0
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for x in itertools.islice(batches, max_batches):
                model(x.to(ref.device))
                seen += 1
    except BaseException:
        reached.clear()  # a failed run leaves every BatchNorm as it was
        raise
    finally:
        for hook in hooks:
            hook.remove()
        for bn, momentum, stats in saved:
            bn.momentum = momentum
            if id(bn) not in reached or not seen:
                with torch.no_grad():
                    for name, value in stats.items():
                        getattr(bn, name).copy_(value)
        for module, flag in flags:
            module.training = flag
    if not seen:
        raise DataError("no batches to re-estimate BatchNorm statistics on: the data set is empty")
    return len(reached)
