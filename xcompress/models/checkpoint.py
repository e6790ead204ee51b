"""Checkpoints: ``{"arch", "config", "state_dict", "card"}`` saved with ``torch.save``.

Everything but the tensors is plain JSON-like data, so checkpoints load with
``torch.load(weights_only=True)``: no pickled classes, nothing executes on load.

Example:
    >>> save_checkpoint("model.pt", model, card)        # doctest: +SKIP
    >>> model, card = load_checkpoint("model.pt")       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xcompress.card import ModelCard
from xcompress.errors import ModelError
from xcompress.fsutil import atomic_path
from xcompress.models.base import OCRModel
from xcompress.models.registry import build_model

CHECKPOINT_VERSION = 1


def checkpoint_dict(model: OCRModel, card: ModelCard, extra: dict[str, Any] | None = None) -> dict:
    """The dict :func:`save_checkpoint` writes (training adds optimizer state via ``extra``)."""
    return {
        "format": "xcompress-checkpoint",
        "version": CHECKPOINT_VERSION,
        "arch": model.arch,
        "config": model.config_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "card": card.model_dump(mode="json", exclude_none=True),
        **(extra or {}),
    }


def save_checkpoint(
    path: str | Path, model: OCRModel, card: ModelCard, extra: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint atomically (a crash never leaves a half-written file)."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint_dict(model, card, extra), tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        # Never pass on torch's advice to retry with weights_only=False: that runs
        # whatever code the file pickled. An xcompress checkpoint never needs it.
        raise ModelError(
            f"{path} is not an xcompress checkpoint (torch cannot read it safely: "
            f"{type(e).__name__}): make one with `xcompress import` or `xcompress train`"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "xcompress-checkpoint":
        raise ModelError(f"{path} is not an xcompress checkpoint: make one with `xcompress import`")
    for key in ("arch", "config", "state_dict", "card"):
        if key not in ckpt:
            raise ModelError(f"{path}: checkpoint has no {key!r}; re-create it")
    return ckpt


def load_checkpoint(path: str | Path) -> tuple[OCRModel, ModelCard]:
    """Rebuild the module from a checkpoint and load its weights; returns (model, card)."""
    ckpt = read_checkpoint(path)
    try:
        model = build_model(ckpt["arch"], ckpt["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: cannot rebuild its {ckpt['arch']!r} model ({e}); "
                         "re-create the checkpoint") from None
    try:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:  # size mismatch
        first = str(e).strip().splitlines()[-1].strip()[:160]
        raise ModelError(f"{path}: weights do not fit {ckpt['arch']} ({first})") from None
    if missing or unexpected:
        raise ModelError(
            f"{path}: weights do not fit {ckpt['arch']} (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    card = ModelCard.model_validate(ckpt["card"])
    return model.eval(), card
