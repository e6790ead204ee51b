"""Training and distillation of the native models (imports torch).

Example:
    >>> from xcompress.train import TrainConfig, train
    >>> result = train(TrainConfig(model="crnn", charset="0123456789", steps=1500,
    ...                            out="runs/crnn"))                # doctest: +SKIP
"""

from xcompress.train.loop import (
    DistillConfig,
    TrainConfig,
    TrainResult,
    evaluate_lines,
    finetune_module,
    train,
)

__all__ = [
    "DistillConfig", "TrainConfig", "TrainResult", "evaluate_lines", "finetune_module", "train",
]
