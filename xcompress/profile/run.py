"""The ``xcompress profile`` job: resolve a model, count its cost, time it on a target.

The CLI, recipes and benchmarks call :func:`profile_model`; it returns one
:class:`ProfileReport` holding everything that is printed or written as JSON.

Example:
    >>> rep = profile_model("ppocr-v4-rec", vs="rec-int8/", runs=50)   # doctest: +SKIP
    >>> rep.comparison.ratio  # A / B median latency, alternately  # doctest: +SKIP
    1.38
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from xcompress.card import CARD_NAME, ModelCard
from xcompress.errors import ModelError, XCompressError
from xcompress.profile.base import Comparison, LatencyResult, ProfileConfig, get_profiler
from xcompress.profile.flops import CostReport, model_cost
from xcompress.targets import Target, get_target

_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")


class ProfileReport(BaseModel):
    """Result of :func:`profile_model`: cost and latency of a model (and of ``vs``)."""

    model_config = ConfigDict(frozen=True)

    model: str
    path: str
    task: str | None
    shape: tuple[int, ...]
    target: Target
    config: ProfileConfig
    cost: CostReport | None = None
    result: LatencyResult | None = None  # without ``vs``
    vs: str | None = None
    vs_path: str | None = None
    vs_cost: CostReport | None = None
    comparison: Comparison | None = None  # with ``vs``: A = model, B = vs


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``1x3x48x320`` into ``(1, 3, 48, 320)``.

    Raises:
        XCompressError: anything but positive integers joined by ``x``.
    """
    t = text.strip().lower()
    dims = tuple(int(d) for d in t.split("x")) if _SHAPE_RE.match(t) else ()
    if not dims or min(dims) < 1:
        raise XCompressError(
            f"bad shape {text!r}: give positive dims joined by 'x', e.g. 1x3x48x320"
        )
    return dims


def format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def default_shape(card: ModelCard) -> tuple[int, ...]:
    """The shape a model is profiled at by default, from its card.

    Recognizers and classifiers: ``1 x image_shape`` of their preprocessing (PP-OCR's
    1x3x48x320 and 1x3x48x192); detectors: a square of ``limit_side_len`` (1x3x960x960).
    Dims fixed in the card's input spec win.
    """
    pre = card.resolved_preprocess()
    if pre.image_shape is not None:
        c, h, w = pre.image_shape
    elif pre.limit_side_len is not None:
        c, h, w = card.input.channels, pre.limit_side_len, pre.limit_side_len
    else:
        raise ModelError(f"card of {card.name} gives no input size: pass --shape")
    return (1, c, card.input.height or h, card.input.width or w)


def _card_beside(path: Path) -> ModelCard | None:
    card_path = path.parent / CARD_NAME
    if not card_path.is_file():
        return None
    card = ModelCard.load(card_path)
    return card if card.file == path.name else None


def resolve_for_profile(
    spec: str | Path, shape: tuple[int, ...] | None
) -> tuple[Path, ModelCard | None]:
    """Model file (and card, if any) for ``spec``; a bare file without a card needs ``shape``.

    Raises:
        ModelError: no such model, or a bare file and no shape.
    """
    p = Path(spec)
    if p.is_file() and _card_beside(p) is None:
        if shape is None:
            raise ModelError(f"{p.name} has no model card beside it: pass --shape, e.g. 1x3x48x320")
        return p, None
    from xcompress.artifact import resolve_model

    art = resolve_model(spec)
    return art.path, art.card


def profile_model(
    model: str | Path,
    *,
    vs: str | Path | None = None,
    target: str | Path | Target = "host",
    shape: tuple[int, ...] | None = None,
    threads: int | None = None,
    runs: int = 30,
    warmup: int = 5,
    min_time_s: float | None = None,
    seed: int = 0,
) -> ProfileReport:
    """Count the cost of ``model`` and time it on ``target`` (alternately with ``vs``).

    Args:
        model: zoo name, folder with a card, or model file.
        vs: a second model to time alternately with the first in the same run.
        target: target name, target YAML file, or :class:`Target`.
        shape: input shape; default from the model's card (see :func:`default_shape`).
        threads, runs, warmup, min_time_s, seed: see :class:`ProfileConfig`.

    Returns:
        A :class:`ProfileReport`; ``result`` is set without ``vs``, ``comparison`` with it.
    """
    tgt = target if isinstance(target, Target) else get_target(target)
    profiler = get_profiler(tgt)  # fail on an unsupported target before any work
    path, card = resolve_for_profile(model, shape)
    if shape is None:
        if card is None:  # unreachable: resolve_for_profile demands a shape without a card
            raise ModelError(f"{model}: pass --shape")
        shape = default_shape(card)
    vs_path = resolve_for_profile(vs, shape)[0] if vs is not None else None
    try:
        config = ProfileConfig(
            shape=shape,
            threads=threads,
            runs=runs,
            warmup=warmup,
            min_time_s=min_time_s,
            seed=seed,
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise XCompressError(f"bad profile setting {err['loc'][0]}: {err['msg']}") from e
    cost = model_cost(path, shape)
    fields = dict(
        model=str(model),
        path=str(path),
        task=card.task if card else None,
        shape=shape,
        target=tgt,
        config=config,
        cost=cost,
    )
    if vs_path is None:
        return ProfileReport(**fields, result=profiler.profile(path, config))
    return ProfileReport(
        **fields,
        vs=str(vs),
        vs_path=str(vs_path),
        vs_cost=model_cost(vs_path, shape),
        comparison=profiler.compare(path, vs_path, config),
    )
