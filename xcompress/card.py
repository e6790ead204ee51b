"""The model card: a small JSON file (``xcompress.json``) beside every model artifact.

It records everything needed to use the model without its original package: the task, the
input contract, preprocessing and post-processing settings, the charset (recognizers), the
provenance (source package, parent artifact, step and config that made it) and a sha256 of
the model file.

Example:
    >>> card = ModelCard(name="ppocr-v4-rec", task="rec", file="model.onnx",
    ...                  input=InputSpec(name="x", height=48), charset=["a", "b", " "])
    >>> card.num_classes
    4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xcompress.errors import ModelError
from xcompress.fsutil import write_json

CARD_NAME = "xcompress.json"
SCHEMA_VERSION = 1

Task = Literal["rec", "det", "cls"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """The model's input tensor: NCHW float32, BGR, normalized as in :class:`Preprocess`."""

    name: str = "x"
    layout: Literal["NCHW"] = "NCHW"
    channels: int = 3
    height: int | None = None  # fixed height (48 for PP-OCR recognizers), None if dynamic
    width: int | None = None  # fixed width, None if dynamic
    dynamic_axes: dict[int, str] = Field(default_factory=dict)  # axis -> symbolic name


class Preprocess(_Frozen):
    """PP-OCR preprocessing. ``kind`` picks the resize rule; the rest are its parameters."""

    kind: Literal["rec", "det", "cls"]
    color: Literal["BGR", "RGB"] = "BGR"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # rec / cls: (C, H, W) as in PaddleOCR's rec_image_shape / cls_image_shape; W is the
    # minimum padded width (rec) or the fixed width (cls).
    image_shape: tuple[int, int, int] | None = None
    # det: resize so the chosen side is at most/least ``limit_side_len``, multiple of 32.
    limit_side_len: int | None = None
    limit_type: Literal["max", "min"] | None = None


class Postprocess(_Frozen):
    """Post-processing: CTC greedy decoding (rec), DB boxes (det), argmax labels (cls)."""

    kind: Literal["ctc", "db", "cls"]
    # DB, PaddleOCR defaults
    thresh: float | None = None
    box_thresh: float | None = None
    unclip_ratio: float | None = None
    max_candidates: int | None = None
    use_dilation: bool | None = None
    score_mode: Literal["fast", "slow"] | None = None
    # cls
    labels: list[str] | None = None
    cls_thresh: float | None = None


class Source(_Frozen):
    """Where a zoo model came from."""

    package: str
    version: str
    member: str  # path of the model inside the wheel
    wheel: str | None = None  # wheel file name


class ModelCard(_Frozen):
    """Everything needed to use one model artifact; saved as ``xcompress.json`` beside it."""

    schema_version: int = SCHEMA_VERSION
    name: str
    task: Task
    file: str = "model.onnx"
    format: Literal["onnx", "tflite", "torch"] = "onnx"
    input: InputSpec = Field(default_factory=InputSpec)
    output_name: str | None = None
    preprocess: Preprocess | None = None
    postprocess: Postprocess | None = None
    # rec: class i (i >= 1) decodes to charset[i - 1]; class 0 is the CTC blank.
    charset: list[str] | None = None
    source: Source | None = None
    license: str | None = None
    sha256: str | None = None
    # provenance of derived artifacts
    parent: str | None = None  # sha256 of the parent model file
    step: str | None = None
    step_config: dict[str, Any] | None = None
    notes: dict[str, Any] = Field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        """Number of output classes of a recognizer (blank + charset)."""
        return None if self.charset is None else len(self.charset) + 1

    def resolved_preprocess(self) -> Preprocess:
        """The card's preprocessing, or PP-OCR's default for the task."""
        return self.preprocess or default_preprocess(self.task)

    def resolved_postprocess(self) -> Postprocess:
        """The card's post-processing, or PP-OCR's default for the task."""
        return self.postprocess or default_postprocess(self.task)

    def derive(self, **changes: Any) -> ModelCard:
        """A copy with ``changes`` applied (for the card of a derived artifact)."""
        return self.model_copy(update=changes)

    def save(self, folder: str | Path) -> Path:
        """Write the card as ``folder/xcompress.json`` (atomically) and return its path."""
        path = Path(folder) / CARD_NAME
        write_json(path, self.model_dump(mode="json", exclude_none=True))
        return path

    @classmethod
    def load(cls, folder_or_file: str | Path) -> ModelCard:
        """Read a card from a folder (its ``xcompress.json``) or a card file."""
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / CARD_NAME
        if not path.is_file():
            raise ModelError(f"no model card at {path}: pass a folder made by xcompress or --task")
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as e:
            first = str(e).splitlines()[0]
            raise ModelError(f"model card {path} is invalid ({first}); re-create it") from e


def default_preprocess(task: Task) -> Preprocess:
    """PP-OCR's preprocessing per task (see DESIGN.md)."""
    if task == "rec":
        return Preprocess(kind="rec", image_shape=(3, 48, 320))
    if task == "cls":
        return Preprocess(kind="cls", image_shape=(3, 48, 192))
    return Preprocess(
        kind="det",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        limit_side_len=960,
        limit_type="max",
    )


def default_postprocess(task: Task) -> Postprocess:
    """PP-OCR's post-processing per task (DB at PaddleOCR's defaults)."""
    if task == "rec":
        return Postprocess(kind="ctc")
    if task == "cls":
        return Postprocess(kind="cls", labels=["0", "180"], cls_thresh=0.9)
    return Postprocess(
        kind="db",
        thresh=0.3,
        box_thresh=0.6,
        unclip_ratio=1.5,
        max_candidates=1000,
        use_dilation=False,
        score_mode="fast",
    )
