"""``evaluate``: accuracy of one model on one PaddleOCR-format data set, with its settings."""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from xcompress.artifact import Artifact, resolve_model
from xcompress.errors import DataError, ModelError
from xcompress.eval.report import (
    CharsetMismatch,
    DataInfo,
    EvalConfig,
    EvalReport,
    ModelInfo,
    Settings,
    SkippedImage,
)
from xcompress.eval.tasks import evaluate_samples
from xcompress.fsutil import sha256_file
from xcompress.runtime import runner_packages

if TYPE_CHECKING:
    from xcompress.data import Dataset, Sample

log = logging.getLogger("xcompress.eval")

# Runner module -> the distribution whose version the report records (the runtime layer's).
_RUNTIME_PACKAGES = runner_packages()


def runtime_info(runner) -> tuple[str, str]:
    """(runtime name, version) of a runner, for the report."""
    if hasattr(runner, "runtime_info"):  # a runner may describe itself
        return tuple(runner.runtime_info)  # type: ignore[return-value]
    name = _RUNTIME_PACKAGES.get(type(runner).__module__, type(runner).__name__)
    try:
        return name, metadata.version(name)
    except metadata.PackageNotFoundError:
        return name, "unknown"


def cpu_model() -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextmanager
def _progress(total: int, label: str, enabled: bool):
    """Yield ``advance(n)``; a transient rich bar on stderr when enabled and a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        t = bar.add_task(label, total=total)
        yield lambda n: bar.advance(t, n)


def _charset_check(dataset, artifact: Artifact) -> CharsetMismatch | None:
    if artifact.card.task != "rec" or not artifact.card.charset:
        return None
    from xcompress.data import check_charset

    rep = check_charset(dataset, artifact.card.charset)
    if rep.ok:
        return None
    # A mismatch caps the reachable accuracy but is not an error: users evaluate models on
    # sets with a few exotic characters all the time, so warn and record it.
    log.warning("%s", rep.summary())
    return CharsetMismatch(
        lines_affected=rep.lines_affected,
        occurrences=sum(rep.missing.values()),
        missing=dict(list(rep.missing.items())[:50]),
    )


def _load(data: str | Path, task: str, artifact: Artifact) -> Dataset:
    """The data set read as ``task``; labels of another task are refused, naming the model."""
    from xcompress.data import TaskMismatchError, load_dataset

    try:
        # Images are checked (decoded) by _usable, so missing ones can be skipped too.
        return load_dataset(data, task=task, check_images=False)  # type: ignore[arg-type]
    except TaskMismatchError as e:
        raise DataError(
            f"{data} looks like a {e.looks} set ({e.evidence}) but {artifact.path} is a "
            f"{task} model: pass a {task} data set, or a {e.looks} model"
        ) from None


def _usable(
    samples: list[Sample], dataset: Dataset, config: EvalConfig
) -> tuple[list[Sample], list[SkippedImage]]:
    """Decode every image before any inference: fail on the first bad one, or skip them all.

    A bad image fails in seconds rather than after part of the run, and a truncated JPEG
    (which OpenCV may decode with grey rows) is caught instead of scored.
    """
    from xcompress.data import find_bad_images

    with _progress(len(samples), "check images", config.progress) as advance:
        bad = find_bad_images([s.image for s in samples], advance=advance)
    if not bad:
        return samples, []
    first = bad[0]
    where = f"; paths are relative to {dataset.root}" if first.reason == "missing" else ""
    if not config.skip_bad:
        raise DataError(
            f"{len(bad)} of {len(samples)} images cannot be used; first {first.image}: "
            f"{first.reason}{where}; replace them or remove their lines, or pass --skip-bad "
            "to evaluate the others"
        )
    dropped = {b.image for b in bad}
    kept = [s for s in samples if s.image not in dropped]
    if not kept:
        raise DataError(
            f"none of the {len(samples)} images can be used; first {first.image}: "
            f"{first.reason}{where}; list them all with `xcompress data check`"
        )
    log.info("skipped %d of %d images that cannot be used", len(bad), len(samples))
    return kept, [SkippedImage(image=str(b.image), reason=b.reason) for b in bad]


def evaluate(
    model: str | Path | Artifact, data: str | Path, config: EvalConfig | None = None
) -> EvalReport:
    """Measure a model's accuracy on a PaddleOCR-format data set.

    Args:
        model: zoo name, model folder, model file, or an :class:`Artifact`.
        data: folder with ``label.txt`` (rec, det or cls format) or the label file.
        config: threads, batch size, limit, failures to keep, task override, whether to
            skip unusable images.

    Returns:
        :class:`EvalReport`: ``metrics`` (rec: ``line_accuracy``, ``cer``, ``ned`` and their
        ``*_nospace`` views, ``mean_score``; det: ``precision``, ``recall``, ``hmean``; cls:
        ``accuracy``), the worst samples, and every setting that produced the numbers.

    Raises:
        ModelError / DataError: unusable model, data set (labels of another task, an image
            that cannot be used without ``skip_bad``), or a task mismatch.

    Example:
        >>> rep = evaluate("ppocr-v4-rec", "data/rec_val", EvalConfig(threads=2))  # doctest: +SKIP
        >>> round(rep.metrics["cer"], 4)                                            # doctest: +SKIP
        0.0123
    """
    from xcompress.runtime import open_runner

    config = config or EvalConfig()
    artifact = model if isinstance(model, Artifact) else resolve_model(model, task=config.task)
    task = artifact.card.task
    if config.task is not None and config.task != task:
        raise ModelError(f"{artifact.path} is a {task} model, not {config.task}")
    dataset = _load(data, task, artifact)
    samples = list(dataset.samples[: config.limit] if config.limit else dataset.samples)
    if not samples:
        raise DataError(f"{data} has no samples to evaluate")
    samples, skipped = _usable(samples, dataset, config)
    mismatch = _charset_check(dataset, artifact)

    runner = open_runner(artifact.path, threads=config.threads)
    t0 = time.perf_counter()
    with _progress(len(samples), f"eval {task}", config.progress) as advance:
        result = evaluate_samples(runner, artifact.card, samples, config.batch_size, advance)
    seconds = time.perf_counter() - t0

    rt_name, rt_version = runtime_info(runner)
    card = artifact.card
    return EvalReport(
        task=task,
        metrics=result.metrics,
        n_samples=len(samples),
        model=ModelInfo(
            name=card.name,
            path=str(artifact.path),
            sha256=sha256_file(artifact.path),
            format=card.format,
        ),
        data=DataInfo(
            path=str(data), count=len(samples), total=len(dataset.samples), skipped=skipped
        ),
        settings=Settings(
            threads=config.threads,
            batch_size=config.batch_size if task != "det" else 1,
            preprocess=card.resolved_preprocess().model_dump(mode="json", exclude_none=True),
            postprocess=card.resolved_postprocess().model_dump(mode="json", exclude_none=True),
            runtime=rt_name,
            runtime_version=rt_version,
            cpu=cpu_model(),
            cores=os.cpu_count() or 1,
            seconds=round(seconds, 3),
        ),
        failures=result.failures[: config.failures],
        charset_mismatch=mismatch,
    )
