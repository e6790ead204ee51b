"""PP-OCRv4 mobile detector family: PP-LCNetV3 backbone, RSE-FPN neck, DB head.

Inference graph (what the exported ONNX computes, and what :meth:`PPOCRv4Det.forward` does):

    x [B,3,H,W] (H, W multiples of 32) -> backbone stages 1, 2, 4, 6 (strides 4, 8, 16, 32)
      -> 1×1 conv (+bias) per level to ``lateral_channels``
      neck (RSE-FPN): per level 1×1 conv -> ``out_channels`` with residual squeeze-excite;
            top-down: p4 += up2(p5), p3 += up2(p4), p2 += up2(p3) (nearest);
            per level 3×3 conv -> out/4 with residual SE; upsample to stride 4; concat
      head (DB): conv 3×3 -> BN -> ReLU -> deconv 2× -> BN -> ReLU -> deconv 2× -> sigmoid
            = shrink probability map [B,1,H,W]

Training adds DB's threshold branch (same shape as the shrink branch; not in the exported
model, so it starts from fresh weights after an import) and the approximate binary map
``sigmoid(k * (shrink - thresh))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from xcompress.models.base import OCRModel
from xcompress.models.layers import ConvBN, Slot, SqueezeExcite, bn_slots, conv_slots
from xcompress.models.lcnetv3 import LCNetV3, LCNetV3Config
from xcompress.models.registry import ArchConfig, register_arch


class RSEFPNConfig(ArchConfig):
    """Neck config: lateral widths per level (search knobs) and the fused width."""

    lateral_channels: tuple[int, int, int, int] = (12, 18, 42, 360)
    out_channels: int = Field(96, gt=0, description="must be divisible by 4")
    se_reduction: int = Field(4, ge=1)
    shortcut: bool = True

    @model_validator(mode="after")
    def _div4(self) -> RSEFPNConfig:
        if self.out_channels % 4:
            raise ValueError(f"out_channels {self.out_channels} is not divisible by 4")
        return self


class RSEConv(nn.Module):
    """Conv (no bias) followed by a residual squeeze-excite (Paddle hard-sigmoid, slope 0.2)."""

    def __init__(self, cin: int, cout: int, kernel: int, reduction: int, shortcut: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.se = SqueezeExcite(cout, reduction, slope=0.2, shortcut=shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))

    def slots(self, where: str) -> list[Slot]:
        return conv_slots(self.conv, f"{where}.conv") + self.se.slots(f"{where}.se")


class RSEFPN(nn.Module):
    """Residual-SE feature pyramid; returns the fused stride-4 map ``[B, out, H/4, W/4]``."""

    def __init__(self, in_channels: list[int], cfg: RSEFPNConfig) -> None:
        super().__init__()
        c, r, s = cfg.out_channels, cfg.se_reduction, cfg.shortcut
        self.lateral = nn.ModuleList(
            nn.Conv2d(cin, lc, 1) for cin, lc in zip(in_channels, cfg.lateral_channels, strict=True)
        )
        self.ins = nn.ModuleList(RSEConv(lc, c, 1, r, s) for lc in cfg.lateral_channels)
        self.inp = nn.ModuleList(RSEConv(c, c // 4, 3, r, s) for _ in cfg.lateral_channels)
        self.out_channels = c

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        # deepest level first: the order the original graph runs them (import relies on it)
        in5, in4, in3, in2 = (self.ins[i](lat[i]) for i in (3, 2, 1, 0))
        out4 = in4 + F.interpolate(in5, scale_factor=2.0, mode="nearest")
        out3 = in3 + F.interpolate(out4, scale_factor=2.0, mode="nearest")
        out2 = in2 + F.interpolate(out3, scale_factor=2.0, mode="nearest")
        p5, p4, p3, p2 = self.inp[3](in5), self.inp[2](out4), self.inp[1](out3), self.inp[0](out2)
        p5 = F.interpolate(p5, scale_factor=8.0, mode="nearest")
        p4 = F.interpolate(p4, scale_factor=4.0, mode="nearest")
        p3 = F.interpolate(p3, scale_factor=2.0, mode="nearest")
        return torch.cat([p5, p4, p3, p2], dim=1)

    def slots(self, where: str = "neck") -> list[Slot]:
        out: list[Slot] = []
        for i, conv in enumerate(self.lateral):
            out += conv_slots(conv, f"{where}.lateral.{i}")
        for i in (3, 2, 1, 0):
            out += self.ins[i].slots(f"{where}.ins.{i}")
        for i in (3, 2, 1, 0):
            out += self.inp[i].slots(f"{where}.inp.{i}")
        return out


class DBBranch(nn.Module):
    """conv 3×3 -> BN -> ReLU -> deconv 2× -> BN -> ReLU -> deconv 2× (one output map)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        mid = cin // 4
        self.conv = ConvBN(cin, mid, 3, act=nn.ReLU)
        self.up1 = nn.ConvTranspose2d(mid, mid, 2, 2)
        self.bn1 = nn.BatchNorm2d(mid)
        self.up2 = nn.ConvTranspose2d(mid, 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the map at full resolution."""
        x = self.conv(x)
        x = torch.relu(self.bn1(self.up1(x)))
        return self.up2(x)

    def slots(self, where: str) -> list[Slot]:
        return (
            self.conv.slots(f"{where}.conv") + conv_slots(self.up1, f"{where}.up1")
            + bn_slots(self.bn1, f"{where}.bn1") + conv_slots(self.up2, f"{where}.up2")
        )  # fmt: skip


class PPOCRv4DetConfig(ArchConfig):
    """Full detector config; defaults are PP-OCRv4 mobile det."""

    backbone: LCNetV3Config = Field(default_factory=LCNetV3Config.det)
    neck: RSEFPNConfig = Field(default_factory=RSEFPNConfig)
    taps: tuple[int, int, int, int] = Field((1, 2, 4, 6), description="stages feeding the FPN")
    k: float = Field(50.0, description="DB binarization steepness")


def _tiny_det() -> PPOCRv4DetConfig:
    bb = LCNetV3Config.det(scale=0.25)
    bb = bb.model_copy(
        update={"stages": tuple(s.model_copy(update={"depth": 1}) for s in bb.stages)}
    )
    return PPOCRv4DetConfig(
        backbone=bb, neck=RSEFPNConfig(lateral_channels=(8, 8, 16, 32), out_channels=32)
    )


@register_arch("ppocrv4-det", task="det", config_cls=PPOCRv4DetConfig, tiny=_tiny_det)
class PPOCRv4Det(OCRModel):
    """PP-OCRv4 mobile detector (``forward`` -> shrink probability map ``[B, 1, H, W]``).

    Example:
        >>> model = PPOCRv4Det(PPOCRv4DetConfig()).eval()
        >>> model(torch.rand(1, 3, 640, 640)).shape
        torch.Size([1, 1, 640, 640])
    """

    arch = "ppocrv4-det"
    task = "det"

    def __init__(self, config: PPOCRv4DetConfig) -> None:
        super().__init__(config)
        self.backbone = LCNetV3(config.backbone)
        self.taps = config.taps
        chans = [self.backbone.out_channels[i] for i in config.taps]
        self.neck = RSEFPN(chans, config.neck)
        self.shrink = DBBranch(self.neck.out_channels)
        self.thresh = DBBranch(self.neck.out_channels)
        self.k = config.k

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused neck map ``[B, C, H/4, W/4]`` (the input of the DB head)."""
        stages = self.backbone(x)
        return self.neck([stages[i] for i in self.taps])

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        shrink = torch.sigmoid(self.shrink(feats))
        thresh = torch.sigmoid(self.thresh(feats))
        binary = torch.sigmoid(self.k * (shrink - thresh))
        return {"shrink": shrink, "thresh": thresh, "binary": binary, "features": feats}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.shrink(self.features(x)))

    def slots(self) -> list[Slot]:
        # The thresh branch is training-only: not in the exported graph, not imported.
        return self.backbone.slots() + self.neck.slots() + self.shrink.slots("shrink")
