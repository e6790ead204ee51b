"""``xcompress prune``: structured channel pruning to a MACs or latency target, recovered by
distillation from the trained model; optionally the CTC classifier slimmed to a charset.

One run, in order (each round resumable: re-running the same command continues after the
last finished round):

1. load the model; ``--keep-charset``: slim the classifier (exact row slice, see
   :mod:`xcompress.prune.charset`); the slimmed model is the teacher from here on;
2. check the target against the smallest model the prune space allows (one line, exit 3,
   before any work);
3. per round: the sensitivity-guided plan (:mod:`xcompress.prune.plan`) to this round's
   share of the target, the subnet derived with the chosen importance, its narrowed layers
   refitted to the teacher's outputs, then fine-tuned with distillation from the teacher;
4. ``--out``: ``model.pt`` + ``model.onnx`` + card (a drop-in for quantize / export /
   profile / eval / search), ``prune_report.json`` and ``report.md`` with the sensitivity
   table, MACs, parameters, size, val metrics and the latency measured on the target.

Example:
    xcompress prune ppocr-v4-rec --target-macs 0.7 --minutes 25 --out runs/prune-rec
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xcompress.errors import BudgetError, XCompressError

#: settings a re-run may change without restarting the rounds already done
RESUMABLE = frozenset({"out", "minutes", "threads", "runs", "target"})


class PruneConfig(BaseModel):
    """Everything one prune run needs; saved beside the work files for resuming."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str = Field(description="zoo name, model folder, ONNX file or .pt checkpoint")
    out: str = "runs/prune"
    target_macs: float | None = Field(None, gt=0, le=1, description="MACs / the input's")
    target_latency_ratio: float | None = Field(None, gt=0, le=1,
                                               description="latency / the input's, on --target")
    target: str = "host"
    importance: str = "l1"
    keep_charset: str | None = None
    space: str | None = None
    round_to: int | None = Field(None, ge=1, description="channel multiple (default: space's)")
    data: list[str] = Field(default_factory=lambda: ["synth"])
    val: list[str] = Field(default_factory=lambda: ["synth"])
    val_count: int = Field(200, ge=1)
    lang: str = "en"
    steps: int = Field(600, ge=0, description="distillation steps in all rounds")
    minutes: float | None = Field(None, gt=0, description="fine-tune wall-clock budget")
    rounds: int = Field(1, ge=1, description="prune -> distill rounds")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(5e-4, gt=0)
    ctc_weight: float = Field(1.0, ge=0, description="weight of the task loss on the labels "
                              "(0: distillation from the teacher alone)")
    refit_batches: int = Field(4, ge=0, description="batches to refit narrowed layers on")
    probe_batches: int = Field(4, ge=1, description="batches each sensitivity probe is scored on")
    seed: int = 0
    shape: tuple[int, ...] | None = None
    threads: int | None = Field(None, ge=1)
    runs: int = Field(30, ge=3, description="timed runs per model for the latency ratio")

    def check(self) -> None:
        """One line for options that contradict each other."""
        if self.target_macs is not None and self.target_latency_ratio is not None:
            raise XCompressError("give --target-macs or --target-latency-ratio, not both")
        if not self.prunes and not self.keep_charset:
            raise XCompressError("nothing to do: give --target-macs, --target-latency-ratio "
                                 "or --keep-charset")  # fmt: skip

    @property
    def prunes(self) -> bool:
        return self.target_macs is not None or self.target_latency_ratio is not None


@dataclass
class PruneResult:
    out: Path
    report: dict[str, Any]


# ----------------------------------------------------------------------------- pieces


def _train_config(cfg: PruneConfig, data: list[str], val: list[str], steps: int, seed: int,
                  width: int, seconds: float | None) -> Any:  # fmt: skip
    from xcompress.train import DistillConfig, TrainConfig

    return TrainConfig(
        model=cfg.model, train=data, val=val, synth_lang=cfg.lang,
        val_count=cfg.val_count, steps=max(steps, 1), eval_every=max(steps, 1),
        batch_size=cfg.batch_size, lr=cfg.lr, warmup=min(20, max(steps // 10, 0)), seed=seed,
        freeze_norm=True, max_width=width, out=".", max_seconds=seconds,
        distill=DistillConfig(teacher=cfg.model, ctc_weight=cfg.ctc_weight),
    )  # fmt: skip


def slim(model: Any, card: Any, spec: str, log: Any = print) -> tuple[Any, Any, dict[str, Any]]:
    """``--keep-charset``: the model with its classifier cut to ``spec``'s characters."""
    from xcompress.prune.charset import plan_slim, resolve_keep, slim_card, slim_classifier

    if model.task != "rec" or not card.charset:
        raise XCompressError(f"--keep-charset applies to recognizers; this model is "
                             f"{model.task}")  # fmt: skip
    source = spec if Path(spec).is_file() else None
    plan = plan_slim(list(card.charset), resolve_keep(spec), source=source)
    new = slim_classifier(model, list(card.charset), plan)
    info = {"keep": spec, "classes_before": len(card.charset) + 1,
            "classes_after": len(plan.kept) + 1, "missing": len(plan.missing)}  # fmt: skip
    log(f"classifier: {info['classes_before']} -> {info['classes_after']} classes "
        f"({spec}; {len(plan.missing)} requested characters the model cannot output)")
    return new, slim_card(card, plan), info


class _Loss:
    """Task loss (with distillation from the teacher) of a model on fixed held-back batches."""

    def __init__(self, task: Any, teacher: Any, count: int, batch_size: int, seed: int) -> None:
        import torch

        from xcompress.train.loop import _mixed_stream

        stream = _mixed_stream(task.sources(), seed, 0)
        self.task = task
        self.batches = [task.batch([next(stream) for _ in range(batch_size)])
                        for _ in range(count)]  # fmt: skip
        with torch.no_grad():
            self.teacher_out = [teacher.eval().forward_train(x) for x, _ in self.batches]

    def __call__(self, model: Any) -> float:
        import torch

        model.eval()
        total = 0.0
        with torch.no_grad():
            for (x, target), tout in zip(self.batches, self.teacher_out, strict=True):
                total += float(sum(self.task.losses(model.forward_train(x), target, tout).values()))
        return total / len(self.batches)


def _evaluate(model: Any, card: Any, val_sets: dict[str, list[Any]]) -> dict[str, Any]:
    from xcompress.eval import TorchRunner, evaluate_samples

    runner = TorchRunner(model.eval(), card)
    return {n: evaluate_samples(runner, card, s).metrics for n, s in val_sets.items()}


def _runtime() -> str:
    from importlib.metadata import version

    return f"onnxruntime {version('onnxruntime')}, torch {version('torch')}"


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


# ----------------------------------------------------------------------------- the run


class _Run:
    """State of one prune run (loaded and checked before anything is written)."""

    def __init__(self, cfg: PruneConfig, log: Any) -> None:
        import torch

        from xcompress.export import load_source
        from xcompress.profile.run import default_shape
        from xcompress.prune.importance import make_importance
        from xcompress.prune.plan import count_macs, prune_space
        from xcompress.search.runner import _check_val_charset
        from xcompress.search.space import load_space
        from xcompress.train.tasks import TASKS, expand_synth

        self.cfg, self.log = cfg, log
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.importance = make_importance(cfg.importance)
        source = load_source(cfg.model)
        self.original, self.original_card = source.module.eval(), source.card
        self.shape = tuple(cfg.shape) if cfg.shape else default_shape(self.original_card)
        self.arch = self.original.arch
        self.input_macs = count_macs(self.arch, self.original.config.model_dump(mode="json"),
                                     self.shape)  # fmt: skip
        self.teacher, self.card, self.slim_info = self.original, self.original_card, None
        if cfg.keep_charset:
            self.teacher, self.card, self.slim_info = slim(self.original, self.original_card,
                                                           cfg.keep_charset, log)  # fmt: skip
        self.teacher.eval()
        self.root = self.teacher.config.model_dump(mode="json")
        self.width = self.shape[-1] if self.teacher.task == "rec" else 320
        # a bare `synth` covers every script of the charset (a bilingual model: en + zh)
        self.data = expand_synth(list(cfg.data), self.card.charset)
        self.val = expand_synth(list(cfg.val), self.card.charset)
        tcfg = _train_config(cfg, self.data, self.val, cfg.steps, cfg.seed, self.width, None)
        self.task = TASKS[self.teacher.task](tcfg, self.teacher, self.card)
        _check_val_charset(self.task, self.val)
        self.val_sets = self.task.val_sets()
        for name, samples in self.val_sets.items():
            if not samples:
                raise XCompressError(f"validation set {name} is empty: pass --val with "
                                     "labelled data")  # fmt: skip
        self.pspace = None
        self._macs: dict[tuple[int, ...], int] = {}
        if cfg.prunes:
            space = load_space(cfg.space, self.arch)
            self.pspace = prune_space(self.teacher, space, cfg.round_to)
            if not self.pspace.groups:
                raise BudgetError(f"the prune space of {self.arch} has no width left to "
                                  "narrow: pass a --space with smaller widths")  # fmt: skip
            self.teacher_macs = self.macs_of({g.name: 0 for g in self.pspace.groups})

    # MACs of a prune state, cached (the allocation asks for the same states many times)
    def macs_of(self, state: dict[str, int]) -> int:
        from xcompress.prune.plan import count_macs

        assert self.pspace is not None
        key = tuple(state[g.name] for g in self.pspace.groups)
        if key not in self._macs:
            self._macs[key] = count_macs(self.arch, self.pspace.config(self.root, state),
                                         self.shape)  # fmt: skip
        return self._macs[key]

    def task_loss(self, model: Any, x: Any, target: Any) -> Any:
        """The task's own loss (CTC, DB) of ``model`` on one batch, for gradients."""
        return sum(self.task.losses(model.forward_train(x), target, None).values())

    def derive(self, current: Any, state: dict[str, int]) -> tuple[Any, Any]:
        """The subnet of ``current`` at ``state``, channels ranked by the importance."""
        from xcompress.search.candidates import derive_point
        from xcompress.search.derive import ranked_by

        assert self.pspace is not None
        with ranked_by(self.importance):
            return derive_point(current, self.pspace.space, self.pspace.point(state))

    def subnet(self, current: Any, state: dict[str, int]) -> Any:
        return self.derive(current, state)[0]

    def check_target(self) -> None:
        """Refuse a MACs target below the smallest model the space allows (exit 3)."""
        cfg, ps = self.cfg, self.pspace
        if cfg.target_macs is None or ps is None:
            return
        small = self.macs_of(ps.smallest())
        if small > cfg.target_macs * self.input_macs:
            raise BudgetError(
                f"--target-macs {cfg.target_macs:g}: the smallest model the prune space allows "
                f"has {small / self.input_macs:.3f}x the MACs ({small / 1e6:.1f} M of "
                f"{self.input_macs / 1e6:.1f} M): raise the target or pass a --space with "
                "smaller widths"
            )


def _probe(run: _Run, current: Any, state: dict[str, int], loss: _Loss, base_loss: float
           ) -> Any:  # fmt: skip
    """(group, choice index) -> loss rise of narrowing that group alone to that choice."""
    from xcompress.search.candidates import inherit

    def probe(group: str, index: int) -> float:
        child, copier = run.derive(current, {**state, group: index})
        inherit(current, child, copier, run.task, run.cfg.refit_batches, run.cfg.batch_size,
                run.cfg.seed)  # fmt: skip
        return loss(child) - base_loss

    return probe


def _latency_ratio(run: _Run, child: Any, work: Path, name: str, meter: Any,
                   parent_onnx: Path) -> float:  # fmt: skip
    from xcompress.search.candidates import export_candidate

    path = export_candidate(child, run.card, work / name)
    return meter.measure(path, parent_onnx).ratio


def _plan_round(run: _Run, current: Any, state: dict[str, int], goal_macs: float | None,
                work: Path, meter: Any, parent_onnx: Path | None
                ) -> tuple[dict[str, int], Any]:  # fmt: skip
    """This round's prune state and its sensitivity table (measured on ``current``)."""
    from xcompress.prune.plan import Sensitivity, allocate

    assert run.pspace is not None
    cfg, log = run.cfg, run.log
    loss = _Loss(run.task, run.teacher, cfg.probe_batches, cfg.batch_size, cfg.seed + 101)
    base_loss = loss(current)
    choices = {g.name: g.choices for g in run.pspace.groups}

    # probes measured before an interruption are kept (on ppocr-v4-det at 960x960 each
    # takes about a minute): a re-run of the same command measures only the missing ones
    cache = work / f"sensitivity-{run.macs_of(state)}.json"
    rows = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else []
    measured = {(g, int(i)): float(r) for g, i, r in rows}

    def on_probe(group: str, index: int, rise: float) -> None:
        measured[(group, index)] = rise
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps([[g, i, r] for (g, i), r in measured.items()]),
                       encoding="utf-8")
        tmp.replace(cache)
        log(f"  sensitivity {group} -> {choices[group][index]}: loss {rise:+.4f}")

    sens = Sensitivity(_probe(run, current, state, loss, base_loss), state, on_probe,
                       measured)  # fmt: skip
    if measured:
        log(f"  {len(measured)} sensitivity probe(s) measured before, resumed")
    if goal_macs is not None:
        path = allocate(run.pspace, sens, run.macs_of, lambda s, m: m <= goal_macs, state)
        return path[-1][0], sens
    # latency target: the whole greedy path, then the first state measured under the ratio
    # (bisection: latency falls along the path as MACs do, up to timing noise)
    assert meter is not None and parent_onnx is not None and cfg.target_latency_ratio
    path = allocate(run.pspace, sens, run.macs_of, lambda s, m: False, state)
    lo, hi = 0, len(path) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        ratio = _latency_ratio(run, run.subnet(current, path[mid][0]), work, f"lat-{mid}",
                               meter, parent_onnx)  # fmt: skip
        log(f"  latency of plan step {mid}/{len(path) - 1} ({path[mid][1] / 1e6:.1f} MMACs): "
            f"{ratio:.3f}x")
        if ratio <= cfg.target_latency_ratio:
            hi = mid
        else:
            lo = mid + 1
    return path[lo][0], sens


def _round_goal(run: _Run, r: int, final_macs: float) -> float:
    """MACs after round ``r`` of ``rounds``: an equal share of the cut each round."""
    return run.teacher_macs - (run.teacher_macs - final_macs) * r / run.cfg.rounds


def _prune_rounds(run: _Run, work: Path, meter: Any, parent_onnx: Path | None
                  ) -> tuple[Any, dict[str, int], list[dict[str, Any]]]:  # fmt: skip
    """All rounds (resuming after the last finished one); returns the model, state, rounds."""
    from xcompress.models.checkpoint import load_checkpoint, save_checkpoint
    from xcompress.prune.plan import allocate
    from xcompress.search.candidates import inherit
    from xcompress.train import finetune_module

    assert run.pspace is not None
    cfg, log = run.cfg, run.log
    current, state = run.teacher, {g.name: 0 for g in run.pspace.groups}
    rounds: list[dict[str, Any]] = []
    final_macs = cfg.target_macs * run.input_macs if cfg.target_macs is not None else None
    t0 = time.monotonic()
    # --minutes bounds the distillation, not the sensitivity probes: on ppocr-v4-det at
    # 960x960 the probes alone took 20 minutes, which left a whole-run budget 1 s to distil
    distilled = 0.0
    for r in range(1, cfg.rounds + 1):
        done = work / f"round-{r}.json"
        if done.is_file():
            rec = json.loads(done.read_text(encoding="utf-8"))
            current, _ = load_checkpoint(work / f"round-{r}.pt")
            state, final_macs = rec["state"], rec["final_macs"]
            distilled += float(rec.get("distill_seconds", 0.0))
            rounds.append(rec)
            log(f"round {r}/{cfg.rounds}: done before ({rec['macs'] / 1e6:.1f} MMACs), resumed")
            continue
        log(f"round {r}/{cfg.rounds}: sensitivity on {cfg.probe_batches} batches "
            f"(importance {cfg.importance})")
        goal = _round_goal(run, r, final_macs) if final_macs is not None else None
        if run.importance.needs_data:
            grad_batches = _Loss(run.task, run.teacher, cfg.probe_batches, cfg.batch_size,
                                 cfg.seed + 202 + r).batches  # fmt: skip
            run.importance.prepare(current, grad_batches, run.task_loss)
        new_state, sens = _plan_round(run, current, state, goal, work, meter, parent_onnx)
        if final_macs is None:  # latency target: round 1 found the final size
            final_macs = run.macs_of(new_state)
            if cfg.rounds > 1:
                goal = _round_goal(run, r, final_macs)
                new_state = allocate(run.pspace, sens, run.macs_of,
                                     lambda s, m, g=goal: m <= g, state)[-1][0]  # fmt: skip
        child, copier = run.derive(current, new_state)
        refit = inherit(current, child, copier, run.task, cfg.refit_batches, cfg.batch_size,
                        cfg.seed + r)  # fmt: skip
        steps = cfg.steps // cfg.rounds
        left = None
        if cfg.minutes is not None:
            left = max(cfg.minutes * 60 * r / cfg.rounds - distilled, 1.0)
        metrics: dict[str, Any] = {}
        t_distill = time.monotonic()
        ran = [0]
        if steps > 0:
            log(f"round {r}: distilling {steps} steps"
                + (f" (at most {left / 60:.1f} min)" if left else ""))
            tcfg = _train_config(cfg, run.data, run.val, steps, cfg.seed + r, run.width, left)
            metrics = finetune_module(child, run.card, tcfg, run.teacher, run.val_sets,
                                      on_step=lambda n, _loss, ran=ran: ran.__setitem__(0, n))
        spent = time.monotonic() - t_distill
        distilled += spent
        rec = {"round": r, "state": new_state, "point": run.pspace.point(new_state),
               "macs": run.macs_of(new_state), "final_macs": final_macs, "refit": refit,
               "sensitivity": sens.table(run.pspace), "val": metrics,
               "distill_seconds": round(spent, 1), "steps_run": ran[0],
               "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
        save_checkpoint(work / f"round-{r}.pt", child, run.card)
        done.write_text(json.dumps(rec, indent=1), encoding="utf-8")
        rounds.append(rec)
        log(f"round {r}/{cfg.rounds}: {rec['macs'] / 1e6:.1f} MMACs "
            f"({rec['macs'] / run.input_macs:.3f}x the input)")
        current, state = child, new_state
    return current, state, rounds


def _report_md(rep: dict[str, Any]) -> str:
    """The human-readable report (every figure from ``rep``, nothing else)."""
    lines = [f"# xcompress prune: {rep['model']}", "",
             f"- data: {', '.join(rep['data'])}; held-out: {', '.join(rep['val'])}",
             f"- shape {rep['shape']}, threads {rep['machine'].get('threads')}, "
             f"{rep['runtime']}, target {rep['machine'].get('target')}: "
             f"{rep['machine'].get('machine', '')}",
             f"- importance {rep['importance']}, channels rounded to {rep['round_to']}, "
             f"{rep['rounds']} round(s), "
             f"{sum(r.get('steps_run', 0) for r in rep.get('round_details', []))} distillation "
             f"steps run of {rep['steps']}"
             + (f" (--minutes {rep['minutes']:g})" if rep.get("minutes") else ""), ""]  # fmt: skip
    lines += ["| | input | pruned |", "|---|---:|---:|"]
    for key, label in (("macs", "MMACs"), ("params", "parameters"), ("onnx_mb", "ONNX MB")):
        a, b = rep["input"].get(key), rep["output"].get(key)
        if key == "macs":
            a, b = a / 1e6, b / 1e6
        lines.append(f"| {label} | {a:,.2f} | {b:,.2f} |" if isinstance(a, float)
                     else f"| {label} | {a:,} | {b:,} |")  # fmt: skip
    if rep.get("latency_ratio") is not None:
        lines.append(f"| fp32 latency (pruned / input, {rep['machine'].get('method', '')}) "
                     f"| 1.00 | {rep['latency_ratio']:.3f} |")
    for name, m in rep["output"].get("val", {}).items():
        for k, v in m.items():
            before = rep["input"].get("val", {}).get(name, {}).get(k)
            if isinstance(v, float) and before is not None:
                lines.append(f"| {name} {k} | {before:.4f} | {v:.4f} |")
    if rep.get("charset"):
        c = rep["charset"]
        lines += ["", f"Classifier slimmed to `{c['keep']}`: {c['classes_before']} -> "
                  f"{c['classes_after']} classes."]
    for rnd in rep.get("round_details", []):
        lines += ["", f"## Round {rnd['round']}: {rnd['macs'] / 1e6:.1f} MMACs", "",
                  "Plan: " + ", ".join(f"{k}={v}" for k, v in rnd["point"].items()
                                       if "width" in k or k in rep.get("width_fields", [])),
                  "", "| group | width | loss rise (sensitivity) |", "|---|---:|---:|"]
        lines += [f"| {s['group']} | {s['width']} | {s['rise']:+.4f} |"
                  for s in rnd["sensitivity"]]
    return "\n".join(lines) + "\n"


def run_prune(cfg: PruneConfig, log: Any = print, force: bool = False) -> PruneResult:
    """Run (or resume) one prune; see the module docstring."""
    import shutil
    import tempfile

    from xcompress.artifact import model_sha
    from xcompress.fsutil import atomic_dir, check_same_settings, prepare_output_dir, write_json
    from xcompress.models.checkpoint import save_checkpoint
    from xcompress.models.export import export_onnx
    from xcompress.profile.flops import count_onnx
    from xcompress.prune.plan import count_macs
    from xcompress.search.candidates import export_candidate
    from xcompress.search.latency import open_meter

    cfg.check()
    out = Path(prepare_output_dir(cfg.out, "prune", force=force))
    run = _Run(cfg, log)
    run.check_target()
    work = out.parent / f".{out.name}.prune-work"
    saved = work / "prune_config.json"
    check_same_settings(saved, cfg.model_dump(mode="json"), RESUMABLE, "a prune run")
    meter = open_meter(cfg.target, run.shape, cfg.threads, cfg.runs)
    if cfg.target_latency_ratio is not None and run.pspace is not None and not saved.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            onnx = export_candidate(run.original, run.original_card, Path(tmp) / "input")
            small = _latency_ratio(run, run.subnet(run.teacher, run.pspace.smallest()),
                                   Path(tmp), "smallest", meter, onnx)  # fmt: skip
        if small > cfg.target_latency_ratio:
            raise BudgetError(
                f"--target-latency-ratio {cfg.target_latency_ratio:g}: the smallest model the "
                f"prune space allows runs at {small:.3f}x the input on {cfg.target}: raise "
                "the ratio or pass a --space with smaller widths")
    work.mkdir(parents=True, exist_ok=True)
    write_json(saved, cfg.model_dump(mode="json"))
    parent_onnx = export_candidate(run.original, run.original_card, work / "input")
    log(f"input: {run.input_macs / 1e6:.1f} MMACs at {'x'.join(map(str, run.shape))}")
    before = _evaluate(run.original, run.original_card, run.val_sets)
    model, rounds = run.teacher, []
    if run.pspace is not None:
        model, _, rounds = _prune_rounds(run, work, meter, parent_onnx)
    card = run.card.derive(
        name=f"{run.card.name}-pruned" if run.pspace is not None else f"{run.card.name}-slim",
        step="prune", parent=model_sha(cfg.model),
        step_config={"importance": cfg.importance, "target_macs": cfg.target_macs,
                     "target_latency_ratio": cfg.target_latency_ratio,
                     "keep_charset": cfg.keep_charset, "rounds": cfg.rounds,
                     "steps": cfg.steps,
                     "point": rounds[-1]["point"] if rounds else None},
    )  # fmt: skip
    after = _evaluate(model, card, run.val_sets)
    with atomic_dir(work / "final") as tmp:
        save_checkpoint(tmp / "model.pt", model, card.derive(file="model.pt", format="torch"))
        export_onnx(model, card.derive(notes={**card.notes, "checkpoint": "model.pt"}), tmp)
    final = work / "final"
    ratio = meter.measure(final / "model.onnx", parent_onnx).ratio
    in_cost, out_cost = count_onnx(parent_onnx, run.shape), count_onnx(final / "model.onnx",
                                                                       run.shape)  # fmt: skip
    # MACs from torch's counter: complete (the ONNX count leaves an LSTM out)
    out_macs = count_macs(run.arch, model.config.model_dump(mode="json"), run.shape)
    rep = {
        "schema": 1, "model": cfg.model, "arch": run.arch, "data": run.data, "val": run.val,
        "shape": list(run.shape), "importance": cfg.importance, "runtime": _runtime(),
        "round_to": run.pspace.space.divisor if run.pspace else None, "rounds": cfg.rounds,
        "steps": cfg.steps, "minutes": cfg.minutes, "machine": meter.describe(),
        "charset": run.slim_info,
        "width_fields": list(run.pspace.space.width_fields) if run.pspace else [],
        "input": {"macs": run.input_macs, "params": in_cost.params,
                  "onnx_mb": _size_mb(parent_onnx), "val": before},
        "output": {"macs": out_macs, "params": out_cost.params,
                   "onnx_mb": _size_mb(final / "model.onnx"), "val": after},
        "latency_ratio": ratio, "round_details": rounds,
    }  # fmt: skip
    with atomic_dir(out, "prune") as tmp:
        for f in final.iterdir():
            shutil.copy2(f, tmp / f.name)
        write_json(tmp / "prune_report.json", rep)
        (tmp / "report.md").write_text(_report_md(rep), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    log(f"{out}: {run.input_macs / 1e6:.1f} -> {out_macs / 1e6:.1f} MMACs "
        f"({out_macs / run.input_macs:.3f}x), fp32 latency {ratio:.3f}x on {cfg.target}")
    return PruneResult(out, rep)


__all__ = ["PruneConfig", "PruneResult", "run_prune"]
