"""``evaluate_system``: a whole OCR system (detector, angle classifier, recognizer) scored end
to end on detection pages, with the latency of the whole pipeline per page.

Compressing the detector changes the crops the recognizer reads, so a system's accuracy is
not the members' accuracies combined: this runs the pipeline (:class:`~xcompress.ocr.system.
OcrSystem`) on every page of a PaddleOCR detection set and scores what it read against the
transcriptions (:func:`~xcompress.ocr.metrics.e2e_page`, PaddleOCR's end-to-end protocol).

Example:
    >>> rep = evaluate_system("ppocr-v4-det", "ppocr-v4-cls", "ppocr-v4-rec",   # doctest: +SKIP
    ...                       "data/pages", SystemEvalConfig(threads=2))
    >>> round(rep.metrics["e2e_hmean"], 3)                                      # doctest: +SKIP
    0.68
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xcompress.fsutil import write_json
from xcompress.ocr import system_defaults as defaults

if TYPE_CHECKING:
    from xcompress.artifact import Artifact


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SystemEvalConfig(_Frozen):
    """How to evaluate a system (PaddleOCR's ``TextSystem`` defaults).

    Attributes:
        threads: intra-op threads of every member's runtime (None: the runtime's default).
        limit: evaluate the first ``limit`` pages only.
        drop_score, cls_thresh, rec_batch: see :class:`~xcompress.ocr.system.SystemConfig`.
        iou: a read line matches a ground truth at polygon IoU >= ``iou``.
        warmup: pages run once before timing starts (first-call allocations are not latency).
        progress: a progress bar on stderr when it is a terminal.
        failures: pages kept in the report, worst end-to-end Hmean first.
    """

    threads: int | None = Field(default=None, ge=1)
    limit: int | None = Field(default=None, ge=1)
    drop_score: float = Field(default=defaults.DROP_SCORE, ge=0, le=1)
    cls_thresh: float = Field(default=defaults.CLS_THRESH, ge=0, le=1)
    rec_batch: int = Field(default=defaults.REC_BATCH, ge=1)
    iou: float = Field(default=0.5, gt=0, le=1)
    warmup: int = Field(default=1, ge=0)
    progress: bool = True
    failures: int = Field(default=10, ge=0)


class MemberInfo(_Frozen):
    role: str
    name: str
    path: str
    sha256: str
    format: str
    size_bytes: int
    runtime: str
    runtime_version: str


class PageFailure(_Frozen):
    image: str
    n_gt: int
    hits: int
    n_read: int
    e2e_hmean: float
    missed: list[str] = Field(default_factory=list)  # ground-truth texts not read exactly


class SystemReport(_Frozen):
    """What :func:`evaluate_system` measured, and the settings behind it.

    ``metrics``: ``e2e_precision`` / ``e2e_recall`` / ``e2e_hmean`` (ignoring spaces,
    PaddleOCR's default) and their ``*_asis`` views, ``matched_cer_nospace`` /
    ``matched_cer`` (lines found and matched), ``det_precision`` / ``det_recall`` /
    ``det_hmean`` (the detector's boxes alone), ``page_ms_mean`` / ``page_ms_median`` /
    ``page_ms_p90`` (whole pipeline per page) and ``<member>_ms_mean``.
    """

    metrics: dict[str, float]
    members: list[MemberInfo]
    data: dict[str, Any]
    settings: dict[str, Any]
    failures: list[PageFailure] = Field(default_factory=list)
    #: per-page :data:`~xcompress.ocr.metrics.E2E_COLUMNS` counts (paired intervals between
    #: two systems on the same pages)
    page_counts: list[list[float]] = Field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return sum(m.size_bytes for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics, "size_bytes": self.size_bytes, **self.model_dump(mode="json")}

    def save(self, path: str | Path) -> None:
        """Write the report as JSON, atomically."""
        write_json(path, self.to_dict())


def _member_info(role: str, member) -> MemberInfo:
    from xcompress.eval.evaluate import runtime_info
    from xcompress.fsutil import sha256_file

    art = member.artifact
    rt, ver = runtime_info(member.runner)
    return MemberInfo(role=role, name=member.card.name, path=str(art.path),
                      sha256=sha256_file(art.path), format=member.card.format,
                      size_bytes=art.path.stat().st_size, runtime=rt, runtime_version=ver)


def evaluate_system(det: str | Path | Artifact, cls: str | Path | Artifact | None,
                    rec: str | Path | Artifact, data: str | Path,
                    config: SystemEvalConfig | None = None) -> SystemReport:
    """Run the OCR system on every page of a detection set and score it end to end.

    Args:
        det, cls, rec: the members (zoo name, folder, file or artifact); ``cls`` None skips
            direction classification. Any mix of formats a registered runtime runs.
        data: a PaddleOCR detection set (``label.txt`` with ``points`` and
            ``transcription``).
        config: :class:`SystemEvalConfig`.

    Raises:
        DataError: not a detection set, no pages, an unreadable image, or no transcriptions.
        ModelError: a member of the wrong task.
    """
    return evaluate_systems({"system": (det, cls, rec)}, data, config)["system"]


def evaluate_systems(systems: Mapping[str, tuple], data: str | Path,
                     config: SystemEvalConfig | None = None) -> dict[str, SystemReport]:
    """Several systems (label -> (det, cls, rec)) on the same pages, page by page in turn
    (the order flipped every page), so their latencies are measured alternately in one run
    and a slow spell of a shared machine hits all of them alike."""
    from xcompress.eval.evaluate import _progress
    from xcompress.eval.tasks import _pixels
    from xcompress.ocr.system import OcrSystem, SystemConfig

    config = config or SystemEvalConfig()
    sc = SystemConfig(config.drop_score, config.cls_thresh, rec_batch=config.rec_batch)
    opened = {k: OcrSystem.open(*m, threads=config.threads, config=sc)
              for k, m in systems.items()}
    samples = _pages(data, config.limit)
    pages = [_pixels(s.image) for s in samples]  # decoded up front: reading is not latency
    for system in opened.values():
        for page in pages[: config.warmup]:
            system(page)
    runs = {k: _Tally() for k in opened}
    order = list(opened)
    with _progress(len(pages) * len(order), "eval system", config.progress) as advance:
        for i, (s, page) in enumerate(zip(samples, pages, strict=True)):
            for k in order if i % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                res = opened[k](page)
                runs[k].add(s, res, time.perf_counter() - t, config.iou)
                advance(1)
    return {k: runs[k].report(opened[k], samples, data, config) for k in order}


class _Tally:
    """One system's per-page results while the pages are run."""

    def __init__(self) -> None:
        self.counts: list[np.ndarray] = []
        self.det_boxes: list[list[np.ndarray]] = []
        self.latencies: list[float] = []
        self.member_s: dict[str, list[float]] = {"det": [], "cls": [], "rec": []}
        self.failures: list[PageFailure] = []

    def add(self, sample, res, seconds: float, iou: float) -> None:
        from xcompress.ocr.metrics import e2e_page

        self.latencies.append(seconds)
        for k, v in self.member_s.items():
            v.append(res.seconds.get(k, 0.0))
        self.det_boxes.append(res.detected)
        row = e2e_page([(ln.box, ln.text) for ln in res.lines], sample.boxes, iou)
        self.counts.append(row)
        self.failures.append(_failure(sample, res, row))

    def report(self, system, samples: list, data: str | Path, config: SystemEvalConfig
               ) -> SystemReport:
        from xcompress.eval.evaluate import cpu_model
        from xcompress.ocr.metrics import E2E_COLUMNS, det_metrics, e2e_metrics

        counts = np.asarray(self.counts).reshape(-1, len(E2E_COLUMNS))
        metrics = e2e_metrics(counts)
        dm = det_metrics(self.det_boxes, [list(s.boxes) for s in samples], iou=config.iou)
        metrics.update(det_precision=dm.precision, det_recall=dm.recall, det_hmean=dm.hmean)
        ms = np.asarray(self.latencies) * 1e3
        metrics.update(page_ms_mean=float(ms.mean()), page_ms_median=float(np.median(ms)),
                       page_ms_p90=float(np.percentile(ms, 90)))
        for k, v in self.member_s.items():
            if system.cls is not None or k != "cls":
                metrics[f"{k}_ms_mean"] = float(np.mean(v) * 1e3)
        members = [("det", system.det), ("cls", system.cls), ("rec", system.rec)]
        worst = sorted((f for f in self.failures if f.e2e_hmean < 1.0),
                       key=lambda f: f.e2e_hmean)
        return SystemReport(
            metrics={k: float(v) for k, v in metrics.items()},
            members=[_member_info(r, m) for r, m in members if m is not None],
            data={"path": str(data), "pages": len(samples), "lines": int(counts[:, 3].sum()),
                  "sha256": _label_sha(data)},
            settings={"threads": config.threads, "drop_score": config.drop_score,
                      "cls_thresh": config.cls_thresh, "iou": config.iou,
                      "rec_batch": config.rec_batch,
                      "cls": system.cls is not None, "warmup": config.warmup,
                      "cpu": cpu_model(), "cores": os.cpu_count() or 1,
                      "seconds": round(float(ms.sum()) / 1e3, 3)},
            failures=worst[: config.failures],
            page_counts=counts.tolist(),
        )


def _pages(data: str | Path, limit: int | None) -> list:
    """The detection samples of ``data``, checked: a det set with transcriptions."""
    from xcompress.data import TaskMismatchError, find_bad_images, load_dataset
    from xcompress.errors import DataError

    try:
        ds = load_dataset(data, task="det", check_images=False)
    except TaskMismatchError as e:
        raise DataError(f"{data} looks like a {e.looks} set ({e.evidence}): a system is "
                        "evaluated on detection pages with transcriptions") from None
    samples = list(ds.samples[:limit] if limit else ds.samples)
    if not samples:
        raise DataError(f"{data} has no pages to evaluate")
    if not any(b.text and not b.ignore and b.text != "###" for s in samples for b in s.boxes):
        raise DataError(f"{data} has no transcriptions: end-to-end scoring needs the text of "
                        "each box in label.txt ('transcription')")
    bad = find_bad_images([s.image for s in samples])
    if bad:
        raise DataError(f"{len(bad)} of {len(samples)} pages cannot be used; first "
                        f"{bad[0].image}: {bad[0].reason}; check them with `xcompress data "
                        "check`")
    return samples


def _label_sha(data: str | Path) -> str:
    from xcompress.fsutil import sha256_file

    p = Path(data)
    return sha256_file(p / "label.txt" if p.is_dir() else p)


def _failure(sample, res, row: np.ndarray) -> PageFailure:
    from xcompress.ocr.metrics import E2E_COLUMNS, e2e_metrics

    c = dict(zip(E2E_COLUMNS, row, strict=True))
    read = {ln.text.replace(" ", "") for ln in res.lines}
    missed = [b.text for b in sample.boxes
              if not b.ignore and b.text != "###" and b.text.replace(" ", "") not in read]
    return PageFailure(image=str(sample.image), n_gt=int(c["n_gt"]), hits=int(c["hit_nospace"]),
                       n_read=int(c["n_dt"]), e2e_hmean=e2e_metrics(row)["e2e_hmean"],
                       missed=missed[:10])
