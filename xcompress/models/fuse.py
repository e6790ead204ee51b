"""Inference folding of a native model: BatchNorm and PP-LCNetV3's affines into the convs.

Training keeps them apart (they are what distillation and pruning adjust); a deployed model
should not: every separate elementwise op costs time, and in an int8 model it is one more
requantization point. PP-OCRv4 rec as full-int8 TFLite: 5.96 -> 5.62 MB with folding. Its
accuracy moved within noise (held-out CER*, one calibration each: en +0.22 -> +0.08 pt, zh
+1.09 -> +1.39 pt); what fixed zh was exact ranges in the SVTR neck (see
``OCRModel.exact_range_modules``).

What is folded, exactly (outputs equal up to float rounding):

* BatchNorm into the conv before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``): in
  ``ConvBN``, ``RepConv``, the DB head's deconvolution, and ``Conv2d, BatchNorm2d`` pairs in
  an ``nn.Sequential`` (the CRNN);
* ``RepConv``: the post-conv affine ``a * conv(x) + b`` into the conv;
* ``LCNetBlock`` without squeeze-excite: the depthwise unit's post-activation affine into the
  pointwise conv that reads it (a 1x1 conv without padding, so the bias is exact everywhere).
  An affine in front of a padded k×k conv is *not* folded: the padding zeros would become
  ``b`` at the borders.

Example:
    >>> deployed = fold_for_inference(model)          # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from xcompress.models.det import DBBranch
from xcompress.models.layers import ConvBN, LCNetBlock, LearnableAffine, RepConv

#: (module type, conv attribute, BatchNorm attribute, transposed conv) pairs folded in place
_CONV_BN = (
    (ConvBN, "conv", "bn", False),
    (RepConv, "conv", "bn", False),
    (DBBranch, "up1", "bn1", True),
)


def _with_bias(conv: nn.Conv2d) -> nn.Conv2d:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
    return conv


@torch.no_grad()
def _affine_after(conv: nn.Conv2d, affine: LearnableAffine) -> None:
    """``a * conv(x) + b`` -> one conv."""
    conv = _with_bias(conv)
    a, b = affine.scale.reshape(()), affine.bias.reshape(())
    conv.weight.mul_(a)
    conv.bias.mul_(a).add_(b)


@torch.no_grad()
def _affine_before(conv: nn.Conv2d, affine: LearnableAffine) -> None:
    """``conv(a * x + b)`` -> one conv; only exact for a conv without padding."""
    assert all(p == 0 for p in conv.padding) and conv.groups == 1, "padded conv: not exact"
    conv = _with_bias(conv)
    a, b = affine.scale.reshape(()), affine.bias.reshape(())
    conv.bias.add_(b * conv.weight.sum(dim=(1, 2, 3)))
    conv.weight.mul_(a)


def fold_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with BatchNorms and foldable affines folded.

    The original is untouched; the copy computes the same function and is meant for
    conversion (TFLite, ONNX) only, not for further training.
    """
    out = copy.deepcopy(model).eval()
    for sub in list(out.modules()):
        for kind, conv_attr, bn_attr, transpose in _CONV_BN:
            bn = getattr(sub, bn_attr, None) if isinstance(sub, kind) else None
            if isinstance(bn, nn.BatchNorm2d):
                conv = getattr(sub, conv_attr)
                setattr(sub, conv_attr, fuse_conv_bn_eval(conv, bn, transpose=transpose))
                # RepConv tests `bn is None`; elsewhere the BatchNorm is called
                setattr(sub, bn_attr, None if isinstance(sub, RepConv) else nn.Identity())
        if isinstance(sub, nn.Sequential):
            mods = list(sub)
            for i in range(len(mods) - 1):
                if type(mods[i]) is nn.Conv2d and isinstance(mods[i + 1], nn.BatchNorm2d):
                    sub[i] = fuse_conv_bn_eval(mods[i], mods[i + 1])
                    sub[i + 1] = nn.Identity()
        if isinstance(sub, RepConv) and isinstance(sub.affine, LearnableAffine):
            _affine_after(sub.conv, sub.affine)
            sub.affine = nn.Identity()
    for sub in out.modules():
        if (isinstance(sub, LCNetBlock) and sub.se is None
                and isinstance(sub.dw.act_affine, LearnableAffine)
                and all(p == 0 for p in sub.pw.conv.padding) and sub.pw.conv.groups == 1):
            _affine_before(sub.pw.conv, sub.dw.act_affine)
            sub.dw.act_affine = nn.Identity()
    return out
