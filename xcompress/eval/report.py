"""Evaluation settings and the report every evaluation returns (and ``--json`` writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xcompress.card import Task
from xcompress.fsutil import write_json


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EvalConfig(_Frozen):
    """How to evaluate.

    Args:
        threads: intra-op threads of the runtime (None: the runtime's default).
        batch_size: lines per recognizer / classifier call (detection always runs one page at
            a time, as PaddleOCR does). Lines are sorted by aspect ratio and each batch is padded
            to its widest line, as PaddleOCR's TextRecognizer does. The default is 1 because
            padding changes CTC outputs: on 300 noisy synthetic lines (PP-OCRv4 rec), batch 6
            changed 23 lines' text versus batch 1 and moved line accuracy by up to 0.3 point,
            so results with batches depend on which lines share a batch.
        limit: evaluate only the first ``limit`` samples of the label file.
        failures: how many of the worst samples to keep in the report.
        task: expected task; checked against the model card and the data set.
        progress: show a progress bar on stderr.
        skip_bad: leave out images that cannot be used (missing, empty, truncated, not an
            image) and list them in the report; by default the first one fails the run,
            before any inference.
    """

    threads: int | None = None
    batch_size: int = Field(default=1, ge=1)
    limit: int | None = Field(default=None, ge=1)
    failures: int = Field(default=10, ge=0)
    task: Task | None = None
    progress: bool = True
    skip_bad: bool = False


class Failure(_Frozen):
    """One poorly handled sample: what was expected, what came out, and how wrong it is."""

    image: str
    expected: str
    got: str
    cer: float | None = None  # rec: ED / label length
    hmean: float | None = None  # det: this page's Hmean
    score: float | None = None  # model confidence (rec / cls)


class ModelInfo(_Frozen):
    name: str
    path: str
    sha256: str
    format: str


class SkippedImage(_Frozen):
    """An image left out of the evaluation (``EvalConfig.skip_bad``), and why."""

    image: str
    reason: str


class DataInfo(_Frozen):
    path: str
    count: int  # samples evaluated
    total: int  # samples in the label file
    skipped: list[SkippedImage] = Field(default_factory=list)  # unusable images left out


class CharsetMismatch(_Frozen):
    """Label characters the recognizer can never output (they cap the reachable accuracy)."""

    lines_affected: int
    occurrences: int
    missing: dict[str, int]


class Settings(_Frozen):
    threads: int | None
    batch_size: int
    preprocess: dict[str, Any]
    postprocess: dict[str, Any]
    runtime: str
    runtime_version: str
    cpu: str
    cores: int
    seconds: float


class EvalReport(_Frozen):
    """What :func:`xcompress.eval.evaluate` measured and under which settings.

    ``to_dict()`` puts the metrics at the top level too (``line_accuracy``, ``cer``, ...), so
    scripts can read ``report["cer"]`` without knowing the layout.
    """

    task: Task
    metrics: dict[str, float]
    n_samples: int
    model: ModelInfo
    data: DataInfo
    settings: Settings
    failures: list[Failure] = Field(default_factory=list)
    charset_mismatch: CharsetMismatch | None = None

    def to_dict(self) -> dict[str, Any]:
        body = self.model_dump(mode="json")
        return {**self.metrics, **body}

    def save(self, path: str | Path) -> None:
        """Write the report as JSON, atomically."""
        write_json(path, self.to_dict())
