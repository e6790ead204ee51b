"""Synthetic OCR data: deterministic recognition crops and detection scenes.

Example:
    >>> from xcompress.data.synth import SynthConfig, generate
    >>> cfg = SynthConfig(task="rec", count=300, seed=0)
    >>> ds = generate(cfg, "data/rec_synth")  # doctest: +SKIP
"""

from xcompress.data.synth.augment import AugmentConfig
from xcompress.data.synth.generator import (
    DetScene,
    SynthConfig,
    TextPicker,
    generate,
    make_det_scene,
    make_rec_sample,
)

__all__ = [
    "AugmentConfig",
    "DetScene",
    "SynthConfig",
    "TextPicker",
    "generate",
    "make_det_scene",
    "make_rec_sample",
]
