"""Building blocks shared by the architectures.

Naming follows what the blocks compute, not PaddleOCR's class names. The PP-OCRv4 blocks are
kept in their *inference* form: PaddleOCR trains PP-LCNetV3 with several parallel conv
branches plus BatchNorm ("reparameterizable" layers) and folds them into one conv with a bias
at export. We import that folded conv directly, so a block is
``conv(+bias) -> learnable affine -> hard-swish -> learnable affine``; ``norm=True`` puts a
BatchNorm after the conv instead of the bias, for training from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (never below 90% of ``value``).

    Hardware kernels (int8 GEMM, NEON, VNNI) run best on channel counts that are multiples
    of 8 or 16; this is the rounding MobileNet-family width multipliers use.

    Example:
        >>> make_divisible(128 * 0.95, 16)
        128
        >>> make_divisible(256 * 0.95, 16)
        240
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


SlotKind = Literal["same", "transpose", "squeeze"]


@dataclass(frozen=True)
class Slot:
    """One tensor of a module that an imported weight goes into.

    ``kind`` says how the source array maps onto it: ``same`` (identical shape),
    ``transpose`` (2-D, MatMul ``[in, out]`` -> Linear ``[out, in]``), ``squeeze`` (equal
    shapes up to size-1 axes, e.g. a bias stored as ``[1, C, 1, 1]``).
    """

    tensor: torch.Tensor
    kind: SlotKind = "same"
    where: str = ""


def conv_slots(conv: nn.Conv2d | nn.ConvTranspose2d, where: str) -> list[Slot]:
    out = [Slot(conv.weight, where=f"{where}.weight")]
    if conv.bias is not None:
        out.append(Slot(conv.bias, "squeeze", f"{where}.bias"))
    return out


def bn_slots(bn: nn.BatchNorm2d, where: str) -> list[Slot]:
    # ONNX BatchNormalization inputs: scale, bias, mean, var (in that order).
    return [
        Slot(bn.weight, where=f"{where}.weight"),
        Slot(bn.bias, where=f"{where}.bias"),
        Slot(bn.running_mean, where=f"{where}.running_mean"),
        Slot(bn.running_var, where=f"{where}.running_var"),
    ]


class LearnableAffine(nn.Module):
    """``y = scale * x + bias`` with two learnable scalars (PP-LCNetV3's affine block)."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale]))
        self.bias = nn.Parameter(torch.tensor([bias]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias

    def slots(self, where: str) -> list[Slot]:
        return [Slot(self.scale, where=f"{where}.scale"), Slot(self.bias, where=f"{where}.bias")]


class HardSigmoid(nn.Module):
    """``clip(slope * x + 0.5, 0, 1)``; Paddle's default slope is 0.2, torch's is 1/6."""

    def __init__(self, slope: float = 1.0 / 6.0) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x * self.slope + 0.5, 0.0, 1.0)


class ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm + optional activation."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        groups: int = 1,
        act: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        pad = (k[0] // 2, k[1] // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def slots(self, where: str) -> list[Slot]:
        return conv_slots(self.conv, f"{where}.conv") + bn_slots(self.bn, f"{where}.bn")


class SqueezeExcite(nn.Module):
    """Channel attention: ``x * gate(fc(relu(fc(mean(x)))))``, optionally ``x + that``."""

    def __init__(
        self, channels: int, reduction: int = 4, slope: float = 1.0 / 6.0, shortcut: bool = False
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = HardSigmoid(slope)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.gate(self.expand(torch.relu(self.reduce(s))))
        return x + x * s if self.shortcut else x * s

    def slots(self, where: str) -> list[Slot]:
        return conv_slots(self.reduce, f"{where}.reduce") + conv_slots(
            self.expand, f"{where}.expand"
        )


class RepConv(nn.Module):
    """PP-LCNetV3's conv unit in folded form: conv -> affine -> [hard-swish -> affine].

    PaddleOCR skips the activation after a stride-2 (both axes) conv; ``act=False`` does that.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: tuple[int, int] = (1, 1),
        groups: int = 1,
        act: bool = True,
        norm: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not norm)
        self.bn = nn.BatchNorm2d(cout) if norm else None
        self.affine = LearnableAffine()
        self.act = nn.Hardswish() if act else None
        self.act_affine = LearnableAffine() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        x = self.affine(x)
        if self.act is not None:
            x = self.act_affine(self.act(x))
        return x

    def slots(self, where: str) -> list[Slot]:
        out = conv_slots(self.conv, f"{where}.conv")
        if self.bn is not None:
            out += bn_slots(self.bn, f"{where}.bn")
        out += self.affine.slots(f"{where}.affine")
        if self.act_affine is not None:
            out += self.act_affine.slots(f"{where}.act_affine")
        return out


class LCNetBlock(nn.Module):
    """Depthwise k×k RepConv (stride) -> optional squeeze-excite -> pointwise RepConv."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: tuple[int, int],
        se: bool,
        norm: bool = False,
    ) -> None:
        super().__init__()
        skip_act = tuple(stride) == (2, 2)  # PaddleOCR: no activation after a 2×2-stride dw conv
        self.dw = RepConv(cin, cin, kernel, stride, groups=cin, act=not skip_act, norm=norm)
        self.se = SqueezeExcite(cin) if se else None
        self.pw = RepConv(cin, cout, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw(x)

    def slots(self, where: str) -> list[Slot]:
        out = self.dw.slots(f"{where}.dw")
        if self.se is not None:
            out += self.se.slots(f"{where}.se")
        return out + self.pw.slots(f"{where}.pw")
