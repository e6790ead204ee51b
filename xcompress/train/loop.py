"""Training loop: CTC (rec) or DB (det) loss, optional distillation from a teacher,
checkpoints, resume after interruption, progress bar, seeds, held-out evaluation per epoch.

The task-specific parts (data, batching, losses) live in :mod:`xcompress.train.tasks`; the
held-out sets are scored by :func:`xcompress.eval.evaluate_samples` on the torch module (a
:class:`~xcompress.eval.TorchRunner`), with the card's PP-OCR pre- and post-processing and
batch 1: the numbers are the ones ``xcompress eval`` gives the exported model on the same data.

A run folder holds:

* ``train_config.json`` -- the :class:`TrainConfig` that made it;
* ``last.pt`` -- model + optimizer + step, rewritten atomically at every evaluation (resume
  point: re-running the same command continues from it);
* ``best.pt`` -- the checkpoint with the best mean **headline metric** of the task on the
  held-out sets (:func:`xcompress.eval.metrics`: rec ``cer_nospace``, the lowest wins;
  det ``hmean``, the highest wins). Runs made before this rule ranked by line accuracy; a
  resumed old run chooses its best checkpoint again from its next evaluation on;
* ``history.jsonl`` -- one line per evaluation: step, seconds, mean losses, ``val`` (the
  headline metric per held-out set) and ``val_metrics`` (every metric per set: rec both
  CERs, line accuracies and NED, as-is and ignoring spaces).

Example:
    >>> cfg = TrainConfig(model="crnn", charset="0123456789", train=["synth"],
    ...                   val=["synth"], steps=2000, out="runs/crnn_digits")
    >>> result = train(cfg)                                   # doctest: +SKIP
    >>> result.metric, result.best["synth"]                   # doctest: +SKIP
    ('cer_nospace', 0.012)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from xcompress.card import ModelCard, default_postprocess, default_preprocess
from xcompress.errors import DataError, ModelError
from xcompress.eval.metrics import TaskMetrics, format_metrics, task_metrics
from xcompress.fsutil import check_same_settings, mark_output, prepare_output_dir, write_json
from xcompress.models.base import OCRModel
from xcompress.models.checkpoint import read_checkpoint, save_checkpoint
from xcompress.models.registry import build_model, get_arch, list_archs
from xcompress.train.data import CTCCodec, RecBatchSpec
from xcompress.train.tasks import SYNTH, TASKS, TrainTask


class DistillConfig(BaseModel):
    """Distillation from a frozen teacher (U-DML terms; weights 0 switch a term off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    teacher: str = Field(description="checkpoint (.pt), zoo name or ONNX file of the teacher")
    kl_weight: float = 1.0
    feature_weight: float = 1.0
    ctc_weight: float = Field(1.0, description="weight of the task loss (CTC or DB)")
    temperature: float = 1.0
    map_weight: float = Field(1.0, description="det: shrink-map distillation weight")


class TrainConfig(BaseModel):
    """Everything a training run needs; saved as ``train_config.json`` in the run folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str = Field(description="architecture name (from scratch) or checkpoint .pt")
    arch_config: dict[str, Any] | None = None
    charset: str | list[str] | None = Field(None, description="from scratch: label characters")
    train: list[str] = Field(default_factory=lambda: [SYNTH], description="'synth' or folders")
    val: list[str] = Field(default_factory=lambda: [SYNTH])
    synth_lang: str = "en"
    val_count: int = Field(300, ge=1, description="size of the held-out synthetic set")
    steps: int = Field(1000, ge=1)
    eval_every: int = Field(200, ge=1, description="steps per 'epoch': eval + checkpoint")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 1e-4
    warmup: int = Field(50, ge=0)
    lr_hold: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of the budget at peak lr before the decay"
    )
    max_width: int = Field(320, ge=16, description="rec: widest padded line")
    det_size: int = Field(640, ge=32, description="det: square training/eval size")
    seed: int = 0
    threads: int | None = None
    max_seconds: float | None = Field(None, gt=0, description="wall-clock budget; stops early")
    freeze_norm: bool | None = Field(
        None, description="keep BatchNorm stats (default: when fine-tuning)"
    )
    freeze: list[str] = Field(
        default_factory=list, description="module name prefixes not to train, e.g. 'backbone'"
    )
    distill: DistillConfig | None = None
    out: str = "runs/train"


@dataclass
class TrainResult:
    """Final and best held-out scores per validation set on the task's headline metric.

    ``metric`` names it (rec ``cer_nospace``: lower is better; det ``hmean``: higher is
    better); ``best_step`` is the evaluation whose mean over the sets was best, the one saved
    as ``best.pt``. ``final_metrics`` / ``best_metrics`` hold every metric per set.
    """

    step: int
    final: dict[str, float]
    best: dict[str, float]
    best_step: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    task: str = ""
    metric: str = ""
    final_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    best_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- setup


@dataclass
class _Session:
    """What one run trains: the student and its card, the task's parts, the optional
    frozen teacher, the optimizer over the trainable parameters."""

    model: OCRModel
    card: ModelCard
    task: TrainTask
    teacher: OCRModel | None
    opt: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    freeze_norm: bool
    metrics: TaskMetrics


@dataclass
class _Progress:
    """Where a run stands; saved in ``last.pt`` and restored on resume."""

    step: int = 0
    best_score: float = -float("inf")  # mean headline "goodness" (larger is better)
    best_step: int = 0
    best: dict[str, dict[str, float]] = field(default_factory=dict)  # every metric per set
    history: list[dict[str, Any]] = field(default_factory=list)


def _init_model(cfg: TrainConfig) -> tuple[OCRModel, ModelCard, bool]:
    """(model, card, is_finetune): an architecture name builds a new model; anything else
    is a model to fine-tune, resolved by :func:`~xcompress.artifact.resolve_model` (zoo
    name, folder with card, ONNX file, ``.pt`` checkpoint)."""
    if cfg.model in list_archs():
        return (*_scratch_model(cfg), False)
    from xcompress import zoo
    from xcompress.artifact import MODEL_SUFFIXES
    from xcompress.export import load_source

    p = Path(cfg.model)
    if not (p.exists() or p.suffix.lower() in MODEL_SUFFIXES or zoo.is_zoo_name(cfg.model)):
        raise ModelError(
            f"unknown model {cfg.model!r}: not an architecture ({', '.join(list_archs())}), "
            "a zoo name, a model file or a folder"
        )
    source = load_source(cfg.model)
    return source.module, source.card, True


def _scratch_model(cfg: TrainConfig) -> tuple[OCRModel, ModelCard]:
    """A new model of architecture ``cfg.model`` and its card (PP-OCR processing)."""
    entry = get_arch(cfg.model)
    arch_cfg = dict(cfg.arch_config or {})
    charset = None
    if entry.task == "rec":
        if not cfg.charset:
            raise DataError("training a recognizer from scratch needs --charset (e.g. digits)")
        charset = list(cfg.charset)
        arch_cfg["num_classes"] = len(charset) + 1
    model = build_model(cfg.model, arch_cfg)
    pre = default_preprocess(entry.task)
    if entry.task == "rec":
        pre = pre.model_copy(update={"image_shape": (3, model.input_height, cfg.max_width)})
    card = ModelCard(
        name=f"{cfg.model}-scratch", task=entry.task, file="model.pt", format="torch",
        preprocess=pre, postprocess=default_postprocess(entry.task), charset=charset,
    )  # fmt: skip
    return model, card


def new_checkpoint(arch: str, arch_config: dict[str, Any] | None, charset: str | None,
                   max_width: int, path: str | Path) -> Path:
    """Write an untrained model of ``arch`` (PP-OCR processing, the card ``_scratch_model``
    gives) as a checkpoint: the parent a recipe trains from scratch. ``charset`` may name a
    set (``digits``, ``alnum``, ``ascii``) or a dict file."""
    from xcompress.models.checkpoint import save_checkpoint
    from xcompress.prune.charset import KEEP_SETS, resolve_keep

    chars = resolve_keep(charset) if charset and (charset in KEEP_SETS or Path(charset).is_file()) \
        else charset
    cfg = TrainConfig(model=arch, arch_config=arch_config, charset=chars, max_width=max_width)
    model, card = _scratch_model(cfg)
    return save_checkpoint(path, model.eval(), card)


def _open_session(cfg: TrainConfig) -> _Session:
    """Student, teacher and optimizer, every input checked (nothing is written yet)."""
    from xcompress.export import load_source

    model, card, finetune = _init_model(cfg)
    task = TASKS[model.task](cfg, model, card)
    freeze_norm = finetune if cfg.freeze_norm is None else cfg.freeze_norm
    teacher = None
    if cfg.distill is not None:
        source = load_source(cfg.distill.teacher)
        task.check_teacher(source.card)
        teacher = source.module.eval().requires_grad_(False)
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in cfg.freeze):
            p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise DataError(f"--freeze {cfg.freeze} leaves nothing to train")
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _Session(model, card, task, teacher, opt, trainable, freeze_norm,
                    task_metrics(model.task))  # fmt: skip


def _mixed_stream(sources: list[Any], seed: int, start: int) -> Iterator[Any]:
    """Round-robin over the sources; position ``start`` is reproducible (resume)."""
    n = len(sources)
    streams = [src.stream(seed + 7919 * k, start // n + (k < start % n))
               for k, src in enumerate(sources)]  # fmt: skip
    i = start
    while True:
        yield next(streams[i % n])
        i += 1


# ----------------------------------------------------------------------------- evaluation


def evaluate_lines(
    model: OCRModel,
    codec: CTCCodec,
    items: list[tuple[np.ndarray, str]],
    spec: RecBatchSpec,
    batch_size: int = 32,
) -> dict[str, float]:
    """Recognition metrics of ``model`` on in-memory ``(bgr image, text)`` lines.

    A thin wrapper over :func:`xcompress.eval.evaluate_samples` for scripts: a card with
    ``codec``'s charset and PP-OCR preprocessing at ``spec.height`` (minimum padded width
    ``spec.max_width``), lines sorted by aspect ratio and batched as PaddleOCR does.

    Returns:
        ``line_accuracy``, ``cer``, ``ned`` and their ``*_nospace`` views, ``mean_score``.
    """
    from xcompress.data.labels import RecSample
    from xcompress.eval import TorchRunner, evaluate_samples

    pre = default_preprocess("rec").model_copy(
        update={"image_shape": (3, spec.height, spec.max_width)}
    )
    card = ModelCard(name=model.arch, task="rec", format="torch", preprocess=pre,
                     charset=list(codec.charset))  # fmt: skip
    samples = [RecSample(image=im, text=t) for im, t in items]  # type: ignore[arg-type]
    was_training = model.training
    model.eval()
    try:
        return evaluate_samples(TorchRunner(model, card), card, samples, batch_size).metrics
    finally:
        model.train(was_training)


def _evaluate(s: _Session, val_sets: dict[str, list[Any]]) -> dict[str, dict[str, float]]:
    """Every metric per held-out set, by :mod:`xcompress.eval`'s evaluators (batch 1, as
    ``xcompress eval``) on the module in eval mode; its training mode is restored after."""
    from xcompress.eval import TorchRunner, evaluate_samples

    s.model.eval()
    runner = TorchRunner(s.model, s.card)
    try:
        return {name: evaluate_samples(runner, s.card, samples).metrics
                for name, samples in val_sets.items()}  # fmt: skip
    finally:
        s.model.train()
        if s.freeze_norm:
            _set_norm_eval(s.model)


# ----------------------------------------------------------------------------- training


def _set_norm_eval(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


#: what a run folder holds (its output mark lists these, so a re-run may replace them)
RUN_FILES = ("train_config.json", "last.pt", "best.pt", "history.jsonl")
#: settings a resumed run may change: budgets and machine settings, not what is learned
RESUMABLE_CHANGES = frozenset({"steps", "max_seconds", "eval_every", "threads", "out"})


def _check_resume(out: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a run folder whose saved config differs in what is learned."""
    if (out / "last.pt").is_file():
        check_same_settings(out / "train_config.json", cfg.model_dump(mode="json"),
                            RESUMABLE_CHANGES)  # fmt: skip


def _resume(out: Path, s: _Session, cfg: TrainConfig) -> _Progress:
    """Load ``out/last.pt`` into the session if the run was interrupted; else a new start."""
    last = out / "last.pt"
    if not last.is_file():
        return _Progress()
    ckpt = read_checkpoint(last)
    state = ckpt.get("train_state", {})
    s.model.load_state_dict(ckpt["state_dict"])
    s.opt.load_state_dict(state["optimizer"])
    prog = _Progress(step=state["step"])
    # a run saved before best.pt followed the headline metric ranked by line accuracy:
    # its best score is not comparable, so the next evaluation chooses best.pt again
    if state.get("best_metric") == s.metrics.headline:
        prog.best_score, prog.best_step = state["best_score"], state["best_step"]
        prog.best = state.get("best_metrics", {})
    hist = out / "history.jsonl"
    if hist.is_file():
        prog.history = [json.loads(x) for x in hist.read_text().splitlines()]
    torch.manual_seed(cfg.seed + prog.step)
    return prog


def _lr_at(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Linear warm-up, a hold at the peak for ``lr_hold`` of the budget, then cosine decay
    over the rest of the step budget -- or of the time budget when that runs out first, so
    a time-limited run still ends at a low rate."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.max_seconds:
        p = max(p, elapsed / cfg.max_seconds)
    p = max(0.0, (p - cfg.lr_hold) / (1.0 - cfg.lr_hold))  # hold the peak, then decay
    return float(cfg.lr * 0.5 * (1 + np.cos(np.pi * min(p, 1.0))))


def _train_step(s: _Session, samples: list[Any], lr: float) -> tuple[dict[str, float], float]:
    """One optimizer step on ``samples``; returns (loss terms, total loss)."""
    x, target = s.task.batch(samples)
    for g in s.opt.param_groups:
        g["lr"] = lr
    outs = s.model.forward_train(x)
    touts = None
    if s.teacher is not None:
        with torch.no_grad():
            touts = s.teacher.forward_train(x)
    losses = s.task.losses(outs, target, touts)
    loss = sum(losses.values())
    s.opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[union-attr]
    torch.nn.utils.clip_grad_norm_(s.trainable, 5.0)
    s.opt.step()
    total = float(loss.detach())  # type: ignore[union-attr]
    return {k: float(v.detach()) for k, v in losses.items()}, total


def _checkpoint(
    out: Path, s: _Session, cfg: TrainConfig, prog: _Progress, record: dict[str, Any]
) -> None:
    """Log one evaluation to ``history.jsonl``; write ``last.pt`` and, if it is the best so
    far on the mean headline metric (the mean loss when there is no held-out set), ``best.pt``."""
    prog.history.append(record)
    with open(out / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    scores = record["val"]
    score = (float(np.mean([s.metrics.goodness(v) for v in scores.values()])) if scores
             else -sum(record["loss"].values()))  # fmt: skip
    new_card = s.card.derive(
        step="train", step_config=cfg.model_dump(mode="json"),
        notes={**s.card.notes, "train_step": prog.step, "val_scores": scores,
               "val_metric": s.metrics.headline},
    )  # fmt: skip
    if score > prog.best_score:
        prog.best_score, prog.best_step, prog.best = score, prog.step, record["val_metrics"]
        save_checkpoint(out / "best.pt", s.model, new_card)
    save_checkpoint(out / "last.pt", s.model, new_card, extra={"train_state": {
        "step": prog.step, "optimizer": s.opt.state_dict(), "best_score": prog.best_score,
        "best_step": prog.best_step, "best_metric": s.metrics.headline,
        "best": {k: m[s.metrics.headline] for k, m in prog.best.items()},
        "best_metrics": prog.best}})  # fmt: skip


def _progress_bar(arch: str, enabled: bool) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(f"[bold]train {arch}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not enabled,
    )  # fmt: skip


def _eval_line(task: str, record: dict[str, Any]) -> str:
    """``step 200: ctc 0.1234 | synth cer_nospace 0.0120, cer 0.0150, ...``"""
    losses = ", ".join(f"{k} {v:.4f}" for k, v in record["loss"].items())
    sets = "; ".join(f"{name} {format_metrics(task, m)}"
                     for name, m in record["val_metrics"].items())  # fmt: skip
    return f"step {record['step']}: {losses}" + (f" | {sets}" if sets else "")


def train(cfg: TrainConfig, progress: bool = True, force: bool = False) -> TrainResult:
    """Train or fine-tune the model ``cfg`` names; resumes from ``out/last.pt`` if present.

    Args:
        cfg: the run's configuration (saved as ``out/train_config.json`` once every input
            has been checked; a resumed run must have the same settings but for
            :data:`RESUMABLE_CHANGES`).
        progress: show a progress bar.
        force: train into a non-empty ``out`` that is not a run folder (its files are kept).

    Returns:
        A :class:`TrainResult` with the held-out scores (final and best) on the task's
        headline metric; ``best.pt`` is the evaluation with the best mean of it.
    """
    t0 = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = prepare_output_dir(cfg.out, "train", force=force)
    _check_resume(out, cfg)
    # every input is checked before anything is written to the run folder
    s = _open_session(cfg)
    prog = _resume(out, s, cfg)
    val_sets, sources = s.task.val_sets(), s.task.sources()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train_config.json", cfg.model_dump(mode="json"))
    mark_output(out, "train", RUN_FILES)
    stream = _mixed_stream(sources, cfg.seed, prog.step * cfg.batch_size)
    s.model.train()
    if s.freeze_norm:
        _set_norm_eval(s.model)
    running: dict[str, float] = {}
    n_running = 0
    with _progress_bar(s.model.arch, progress) as bar:
        bar_id = bar.add_task("train", total=cfg.steps, completed=prog.step, info="")
        while prog.step < cfg.steps:
            batch = [next(stream) for _ in range(cfg.batch_size)]
            losses, loss = _train_step(s, batch, _lr_at(cfg, prog.step, time.monotonic() - t0))
            prog.step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            n_running += 1
            bar.update(bar_id, completed=prog.step, info=f"loss {loss:.3f}")
            out_of_time = cfg.max_seconds is not None and time.monotonic() - t0 > cfg.max_seconds
            if prog.step % cfg.eval_every and prog.step != cfg.steps and not out_of_time:
                continue
            metrics = _evaluate(s, val_sets)
            record = {
                "step": prog.step, "seconds": round(time.monotonic() - t0, 1),
                "loss": {k: v / n_running for k, v in running.items()},
                "val": {k: m[s.metrics.headline] for k, m in metrics.items()},
                "val_metrics": metrics,
            }  # fmt: skip
            running, n_running = {}, 0
            _checkpoint(out, s, cfg, prog, record)
            bar.console.print(_eval_line(s.metrics.task, record))
            if out_of_time:
                break
    return _result(prog, s.metrics, time.monotonic() - t0)


def _result(prog: _Progress, tm: TaskMetrics, seconds: float) -> TrainResult:
    last = prog.history[-1] if prog.history else {}
    return TrainResult(
        step=prog.step, final=last.get("val", {}),
        best={k: m[tm.headline] for k, m in prog.best.items() if tm.headline in m},
        best_step=prog.best_step, seconds=seconds, history=prog.history, task=tm.task,
        metric=tm.headline,
        final_metrics=last.get("val_metrics", {}), best_metrics=prog.best,
    )  # fmt: skip


def finetune_module(
    model: OCRModel,
    card: ModelCard,
    cfg: TrainConfig,
    teacher: OCRModel | None = None,
    val_sets: dict[str, list[Any]] | None = None,
    on_step: Any = None,
) -> dict[str, dict[str, float]]:
    """Fine-tune an in-memory module for ``cfg.steps`` steps and score it on held-out sets.

    The same steps as :func:`train` (sources, batching, losses with optional distillation
    from ``teacher``, learning-rate schedule, evaluation), without a run folder: what a
    search trial does to a candidate. ``cfg.model`` is not read; ``val_sets`` defaults to
    the task's (pass them to score many candidates on one decoded set).

    Returns:
        Every metric per held-out set, as :func:`xcompress.eval.evaluate_samples` gives them.
    """
    t0 = time.monotonic()
    task = TASKS[model.task](cfg, model, card)
    if teacher is not None:
        teacher = teacher.eval().requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    freeze_norm = True if cfg.freeze_norm is None else cfg.freeze_norm
    s = _Session(model, card, task, teacher, opt, trainable, freeze_norm,
                 task_metrics(model.task))  # fmt: skip
    sets = val_sets if val_sets is not None else task.val_sets()
    if cfg.steps > 0:
        stream = _mixed_stream(task.sources(), cfg.seed, 0)
        model.train()
        if freeze_norm:
            _set_norm_eval(model)
        for step in range(cfg.steps):
            batch = [next(stream) for _ in range(cfg.batch_size)]
            _, loss = _train_step(s, batch, _lr_at(cfg, step, time.monotonic() - t0))
            if on_step is not None:
                on_step(step + 1, loss)
            if cfg.max_seconds is not None and time.monotonic() - t0 > cfg.max_seconds:
                break
    metrics = _evaluate(s, sets) if sets else {}
    model.eval()
    return metrics
