"""Base class of the native OCR modules."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xcompress.errors import ModelError
from xcompress.models.layers import Slot
from xcompress.models.registry import ArchConfig, Task


class OCRModel(nn.Module):
    """A native OCR module.

    Contract:
        * ``forward(x)`` computes what the deployed ONNX model outputs: class probabilities
          ``[B, T, C]`` (rec) or the shrink probability map ``[B, 1, H, W]`` (det).
        * ``forward_train(x)`` returns a dict with what losses need (``logits`` and
          ``features`` for rec; ``shrink``, ``thresh``, ``binary`` and ``features`` for det).
        * ``slots()`` lists the tensors that imported weights go into, in the order the
          original inference graph consumes them (see :mod:`xcompress.models.onnx_import`).
    """

    arch: ClassVar[str]
    task: ClassVar[Task]
    input_height: ClassVar[int | None] = None
    #: submodule types whose activations an int8 converter should range by their exact
    #: min/max over the calibration data rather than a smoothed estimate (see
    #: :func:`xcompress.export.tflite.quantize_int8`)
    exact_range_modules: ClassVar[tuple[type[nn.Module], ...]] = ()

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.config = config

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def slots(self) -> list[Slot]:
        raise ModelError(f"architecture {self.arch} has no ONNX importer: train it instead")

    def example_input(self, batch: int = 1, width: int = 320) -> torch.Tensor:
        """A random input of the right shape (rec: fixed height; det: square ``width``)."""
        h = self.input_height or width
        return torch.rand(batch, 3, h, width) * 2 - 1

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")
