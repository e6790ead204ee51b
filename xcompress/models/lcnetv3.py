"""PP-LCNetV3-style backbone, built from per-stage knobs.

A backbone is a stride-2 stem followed by stages; a stage repeats one block
(:class:`~xcompress.models.layers.LCNetBlock`) ``depth`` times, its first block changes the
channel count and applies the stage stride. Each stage's knobs -- width (base channels ×
global scale × per-stage multiplier, rounded to ``divisor``), depth and depthwise kernel size
-- are exactly the dimensions the NAS search varies; strides are fixed by the task.

PaddleOCR's PP-LCNetV3 has 5 "block groups" whose kernels or SE flags change inside a group;
splitting those groups gives 7 uniform stages with the same layers:

====== ======= ===== ====== ============ ==== =========
stage  base C  depth kernel rec stride   SE   det stride
====== ======= ===== ====== ============ ==== =========
0      32      1     3      1×1          no   1×1
1      64      2     3      1×1          no   2×2
2      128     2     3      2×1          no   2×2
3      256     1     3      1×2          no   2×2
4      256     4     5      1×1          no   1×1
5      512     2     5      2×1          yes  2×2
6      512     2     5      2×1          no   1×1
====== ======= ===== ====== ============ ==== =========

Example:
    >>> cfg = LCNetV3Config.rec(scale=0.95)
    >>> cfg.stage_channels()
    [32, 64, 128, 240, 240, 480, 480]
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from xcompress.models.layers import ConvBN, LCNetBlock, Slot, make_divisible
from xcompress.models.registry import ArchConfig


class StageSpec(ArchConfig):
    """One stage: ``depth`` blocks, the first one with ``stride`` and the channel change."""

    channels: int = Field(gt=0, description="base output channels before any multiplier")
    depth: int = Field(ge=1)
    kernel: int = Field(ge=1, description="depthwise kernel size (odd)")
    stride: tuple[int, int] = (1, 1)
    se: bool = False
    width_mult: float = Field(1.0, gt=0, description="per-stage width multiplier (search knob)")

    @model_validator(mode="after")
    def _odd_kernel(self) -> StageSpec:
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        return self


_REC_STRIDES = [(1, 1), (1, 1), (2, 1), (1, 2), (1, 1), (2, 1), (2, 1)]
_DET_STRIDES = [(1, 1), (2, 2), (2, 2), (2, 2), (1, 1), (2, 2), (1, 1)]
_BASE = [(32, 1, 3, False), (64, 2, 3, False), (128, 2, 3, False), (256, 1, 3, False),
         (256, 4, 5, False), (512, 2, 5, True), (512, 2, 5, False)]  # fmt: skip


class LCNetV3Config(ArchConfig):
    """Backbone config. Channel counts are ``make_divisible(base*scale*width_mult, divisor)``."""

    scale: float = Field(0.95, gt=0)
    divisor: int = Field(16, ge=1)
    stem_channels: int = 16
    stages: tuple[StageSpec, ...]
    norm: bool = Field(False, description="BatchNorm in blocks (from-scratch training)")

    @classmethod
    def rec(cls, scale: float = 0.95, **kw: object) -> LCNetV3Config:
        """PP-OCRv4 rec layout (height strides 2·2·2·2 = 16, width strides 2·2 = 4)."""
        stages = tuple(
            StageSpec(channels=c, depth=d, kernel=k, stride=s, se=se)
            for (c, d, k, se), s in zip(_BASE, _REC_STRIDES, strict=True)
        )
        return cls(scale=scale, stages=stages, **kw)  # type: ignore[arg-type]

    @classmethod
    def det(cls, scale: float = 0.75, **kw: object) -> LCNetV3Config:
        """PP-OCRv4 det layout (overall stride 32)."""
        stages = tuple(
            StageSpec(channels=c, depth=d, kernel=k, stride=s, se=se)
            for (c, d, k, se), s in zip(_BASE, _DET_STRIDES, strict=True)
        )
        return cls(scale=scale, stages=stages, **kw)  # type: ignore[arg-type]

    def with_stage_knobs(
        self,
        width_mults: list[float] | tuple[float, ...] | None = None,
        depths: list[int] | tuple[int, ...] | None = None,
        kernels: list[int] | tuple[int, ...] | None = None,
    ) -> LCNetV3Config:
        """A copy with per-stage knobs replaced (None keeps a knob; lists are per stage).

        This is the search space of the NAS step: one width multiplier, depth and kernel
        per stage.

        Example:
            >>> cfg = LCNetV3Config.rec().with_stage_knobs(depths=[1, 1, 1, 1, 2, 1, 1])
            >>> [s.depth for s in cfg.stages]
            [1, 1, 1, 1, 2, 1, 1]
        """
        n = len(self.stages)
        for name, values in (
            ("width_mults", width_mults),
            ("depths", depths),
            ("kernels", kernels),
        ):
            if values is not None and len(values) != n:
                raise ValueError(f"{name} needs {n} values (one per stage), got {len(values)}")
        stages = []
        for i, st in enumerate(self.stages):
            upd: dict[str, object] = {}
            if width_mults is not None:
                upd["width_mult"] = float(width_mults[i])
            if depths is not None:
                upd["depth"] = int(depths[i])
            if kernels is not None:
                upd["kernel"] = int(kernels[i])
            # validate through the model (model_copy would skip the validators)
            stages.append(StageSpec.model_validate({**st.model_dump(), **upd}))
        return self.model_copy(update={"stages": tuple(stages)})

    def stem_width(self) -> int:
        return make_divisible(self.stem_channels * self.scale, self.divisor)

    def stage_channels(self) -> list[int]:
        """Resolved output channels of each stage."""
        return [
            make_divisible(s.channels * self.scale * s.width_mult, self.divisor)
            for s in self.stages
        ]


class LCNetV3(nn.Module):
    """The backbone; ``forward`` returns the outputs of every stage (a list)."""

    def __init__(self, cfg: LCNetV3Config) -> None:
        super().__init__()
        self.cfg = cfg
        cin = cfg.stem_width()
        self.stem = ConvBN(3, cin, 3, stride=2)
        self.stages = nn.ModuleList()
        for spec, cout in zip(cfg.stages, cfg.stage_channels(), strict=True):
            blocks = []
            for i in range(spec.depth):
                stride = spec.stride if i == 0 else (1, 1)
                blocks.append(LCNetBlock(cin, cout, spec.kernel, stride, spec.se, cfg.norm))
                cin = cout
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = cfg.stage_channels()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def slots(self, where: str = "backbone") -> list[Slot]:
        out = self.stem.slots(f"{where}.stem")
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                out += block.slots(f"{where}.stages.{i}.{j}")
        return out
