"""A small CRNN: light CNN + BiLSTM + CTC, for digits / alphanumerics.

    x [B,3,H,W] -> stages of (conv 3×3 -> BN -> ReLU) × depth, the first conv strided, each
      stage optionally followed by a max-pool (default: strides (2,2), (2,2), pools (2,1),
      (2,1): H/16, W/4) -> mean over height -> [B, W/4, C]
      -> BiLSTM (hidden per direction) -> Linear -> softmax   => [B, W/4, num_classes]

Stage widths (× ``width_mult``, rounded to ``divisor``), depths and kernel sizes are the
same kind of knobs as the PP-OCR families', so the search can shrink it too.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from xcompress.models.base import OCRModel
from xcompress.models.layers import make_divisible
from xcompress.models.registry import ArchConfig, register_arch


class CRNNStage(ArchConfig):
    channels: int = Field(gt=0)
    depth: int = Field(1, ge=1)
    kernel: int = Field(3, ge=1)
    stride: tuple[int, int] = Field((1, 1), description="stride of the stage's first conv")
    pool: tuple[int, int] = Field((2, 2), description="max-pool after the stage; (1, 1) = none")
    width_mult: float = Field(1.0, gt=0)


class CRNNConfig(ArchConfig):
    """CRNN config; defaults suit 32-pixel-high digit / alphanumeric lines."""

    num_classes: int = Field(12, ge=2, description="CTC blank + charset")
    input_height: int = 32
    stages: tuple[CRNNStage, ...] = (
        CRNNStage(channels=16, stride=(2, 2), pool=(1, 1)),
        CRNNStage(channels=32, stride=(2, 2), pool=(1, 1)),
        CRNNStage(channels=64, pool=(2, 1)),
        CRNNStage(channels=96, pool=(2, 1)),
    )
    divisor: int = 8
    hidden: int = Field(64, gt=0, description="LSTM units per direction")
    lstm_layers: int = Field(1, ge=1)

    def stage_channels(self) -> list[int]:
        return [make_divisible(s.channels * s.width_mult, self.divisor) for s in self.stages]


@register_arch(
    "crnn", task="rec", config_cls=CRNNConfig,
    tiny=lambda: CRNNConfig(stages=(CRNNStage(channels=8), CRNNStage(channels=16)), hidden=16),
)  # fmt: skip
class CRNN(OCRModel):
    """Small CRNN recognizer (``forward`` -> probabilities ``[B, W/4, num_classes]``)."""

    arch = "crnn"
    task = "rec"

    def __init__(self, config: CRNNConfig) -> None:
        super().__init__(config)
        self.input_height = config.input_height
        layers: list[nn.Module] = []
        cin = 3
        for spec, cout in zip(config.stages, config.stage_channels(), strict=True):
            for i in range(spec.depth):
                stride = spec.stride if i == 0 else (1, 1)
                layers += [
                    nn.Conv2d(cin, cout, spec.kernel, stride, spec.kernel // 2, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
                cin = cout
            if tuple(spec.pool) != (1, 1):
                layers.append(nn.MaxPool2d(spec.pool, spec.pool))
        self.cnn = nn.Sequential(*layers)
        self.rnn = nn.LSTM(
            cin, config.hidden, num_layers=config.lstm_layers, bidirectional=True,
            batch_first=True,
        )  # fmt: skip
        self.head = nn.Linear(2 * config.hidden, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Sequence features ``[B, T, 2*hidden]``."""
        x = self.cnn(x).mean(dim=2).transpose(1, 2)
        return self.rnn(x)[0]

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        return {"logits": self.head(feats), "features": feats}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.features(x)), dim=2)
