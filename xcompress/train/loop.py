"""Training loop: CTC (rec) or DB (det) loss, optional distillation from a teacher,
checkpoints, resume after interruption, progress bar, seeds, held-out evaluation per epoch.

The task-specific parts (data, batching, losses, metric) live in :mod:`xcompress.train.tasks`.

A run folder holds:

* ``train_config.json`` -- the :class:`TrainConfig` that made it;
* ``last.pt`` -- model + optimizer + step, rewritten atomically at every evaluation (resume
  point: re-running the same command continues from it);
* ``best.pt`` -- the checkpoint with the best mean line accuracy on the held-out sets;
* ``history.jsonl`` -- one line per evaluation (step, losses, accuracies, seconds).

Example:
    >>> cfg = TrainConfig(model="crnn", charset="0123456789", train=["synth"],
    ...                   val=["synth"], steps=2000, out="runs/crnn_digits")
    >>> result = train(cfg)                                   # doctest: +SKIP
    >>> result.best["synth"]                                  # doctest: +SKIP
    0.97
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
from xcompress.errors import DataError
from xcompress.fsutil import mark_output, prepare_output_dir, write_json
from xcompress.models.base import OCRModel
from xcompress.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from xcompress.models.registry import build_model, get_arch
from xcompress.train.data import CTCCodec, RecBatchSpec, collate
from xcompress.train.tasks import SYNTH, TASKS


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
    """Final and best held-out scores per validation set (rec: line accuracy; det: Hmean)."""

    step: int
    final: dict[str, float]
    best: dict[str, float]
    best_step: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- setup


def _load_any(spec: str) -> tuple[OCRModel, ModelCard]:
    """A checkpoint, or an ONNX model / zoo name imported on the fly."""
    if spec.endswith(".pt"):
        return load_checkpoint(spec)
    from xcompress.models.importers import import_onnx

    return import_onnx(spec)


def _is_zoo(name: str) -> bool:
    from xcompress import zoo

    return zoo.is_zoo_name(name)


def _init_model(cfg: TrainConfig) -> tuple[OCRModel, ModelCard, bool]:
    """(model, card, is_finetune)."""
    if cfg.model.endswith(".pt") or Path(cfg.model).suffix == ".onnx" or _is_zoo(cfg.model):
        model, card = _load_any(cfg.model)
        return model, card, True
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
    return model, card, False


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


@torch.no_grad()
def evaluate_lines(
    model: OCRModel,
    codec: CTCCodec,
    items: list[tuple[np.ndarray, str]],
    spec: RecBatchSpec,
    batch_size: int = 32,
) -> dict[str, float]:
    """Line accuracy (as-is and ignoring spaces) of greedy CTC decoding on ``items``."""
    was_training = model.training
    model.eval()
    exact = nospace = 0
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        x, _ = collate([im for im, _ in chunk], spec)
        ids = model.forward_train(x)["logits"].argmax(-1).numpy()
        for row, (_, text) in zip(ids, chunk, strict=True):
            pred = codec.decode_greedy(row)
            exact += pred == text
            nospace += pred.replace(" ", "") == text.replace(" ", "")
    model.train(was_training)
    n = max(len(items), 1)
    return {"line_accuracy": exact / n, "line_accuracy_nospace": nospace / n}


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
    saved_path = out / "train_config.json"
    if not (out / "last.pt").is_file() or not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(f"{saved_path} is unreadable: use a new --out") from None
    now = cfg.model_dump(mode="json")
    differ = sorted(k for k in set(saved) | set(now)
                    if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if differ:
        raise DataError(
            f"{out} holds a run with other settings ({', '.join(differ)} differ): re-run with "
            "the same options to resume it, or choose a new --out"
        )


def train(cfg: TrainConfig, progress: bool = True, force: bool = False) -> TrainResult:
    """Train or fine-tune the model ``cfg`` names; resumes from ``out/last.pt`` if present.

    Args:
        cfg: the run's configuration (saved as ``out/train_config.json`` once every input
            has been checked; a resumed run must have the same settings but for
            :data:`RESUMABLE_CHANGES`).
        progress: show a progress bar.
        force: train into a non-empty ``out`` that is not a run folder (its files are kept).

    Returns:
        A :class:`TrainResult` with the held-out scores (final and best).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    t0 = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = prepare_output_dir(cfg.out, "train", force=force)
    _check_resume(out, cfg)

    # every input is checked before anything is written to the run folder
    model, card, finetune = _init_model(cfg)
    task = TASKS[model.task](cfg, model, card)
    freeze_norm = finetune if cfg.freeze_norm is None else cfg.freeze_norm

    teacher = None
    if cfg.distill is not None:
        teacher, tcard = _load_any(cfg.distill.teacher)
        task.check_teacher(tcard)
        teacher.eval().requires_grad_(False)

    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in cfg.freeze):
            p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise DataError(f"--freeze {cfg.freeze} leaves nothing to train")
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        """Linear warm-up, a hold at the peak for ``lr_hold`` of the budget, then cosine
        decay over the rest of the step budget -- or of the time budget when that runs out
        first, so a time-limited run still ends at a low rate."""
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.max_seconds:
            p = max(p, (time.monotonic() - t0) / cfg.max_seconds)
        p = max(0.0, (p - cfg.lr_hold) / (1.0 - cfg.lr_hold))  # hold the peak, then decay
        return float(cfg.lr * 0.5 * (1 + np.cos(np.pi * min(p, 1.0))))

    step, best_score, best_step = 0, -float("inf"), 0
    best: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    last = out / "last.pt"
    if last.is_file():  # resume where the interrupted run last saved
        ckpt = read_checkpoint(last)
        state = ckpt.get("train_state", {})
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(state["optimizer"])
        step, best_score, best_step = state["step"], state["best_score"], state["best_step"]
        best = state.get("best", {})
        hist = out / "history.jsonl"
        history = [json.loads(x) for x in hist.read_text().splitlines()] if hist.is_file() else []
        torch.manual_seed(cfg.seed + step)

    val_sets = task.val_sets()
    sources = task.sources()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train_config.json", cfg.model_dump(mode="json"))
    mark_output(out, "train", RUN_FILES)
    stream = _mixed_stream(sources, cfg.seed, step * cfg.batch_size)
    model.train()
    if freeze_norm:
        _set_norm_eval(model)
    running: dict[str, float] = {}
    n_running = 0
    with Progress(
        TextColumn(f"[bold]train {model.arch}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not progress,
    ) as bar:  # fmt: skip
        bar_id = bar.add_task("train", total=cfg.steps, completed=step, info="")
        while step < cfg.steps:
            x, target = task.batch([next(stream) for _ in range(cfg.batch_size)])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            outs = model.forward_train(x)
            touts = None
            if teacher is not None:
                with torch.no_grad():
                    touts = teacher.forward_train(x)
            losses = task.losses(outs, target, touts)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            torch.nn.utils.clip_grad_norm_(trainable, 5.0)
            opt.step()
            step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            n_running += 1
            bar.update(bar_id, completed=step, info=f"loss {float(loss.detach()):.3f}")  # type: ignore[union-attr]
            out_of_time = cfg.max_seconds is not None and time.monotonic() - t0 > cfg.max_seconds
            if step % cfg.eval_every and step != cfg.steps and not out_of_time:
                continue
            scores = {name: task.evaluate(model, items) for name, items in val_sets.items()}
            if freeze_norm:
                _set_norm_eval(model)
            record = {
                "step": step, "seconds": round(time.monotonic() - t0, 1),
                "loss": {k: v / n_running for k, v in running.items()}, "val": scores,
            }  # fmt: skip
            running, n_running = {}, 0
            history.append(record)
            with open(out / "history.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            score = (
                float(np.mean(list(scores.values()))) if scores else -sum(record["loss"].values())
            )
            new_card = card.derive(
                step="train", step_config=cfg.model_dump(mode="json"),
                notes={**card.notes, "train_step": step, "val_scores": scores},
            )  # fmt: skip
            if score > best_score:
                best_score, best_step, best = score, step, scores
                save_checkpoint(out / "best.pt", model, new_card)
            save_checkpoint(last, model, new_card, extra={"train_state": {
                "step": step, "optimizer": opt.state_dict(), "best_score": best_score,
                "best_step": best_step, "best": best}})  # fmt: skip
            bar.console.print(
                f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in record["loss"].items())
                + " | " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
            )  # fmt: skip
            if out_of_time:
                break
    final = history[-1]["val"] if history else {}
    return TrainResult(step, final, best, best_step, time.monotonic() - t0, history)
