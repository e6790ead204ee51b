"""``xcompress search``: hardware-aware architecture search over a trained model, on Optuna.

A trial (:func:`_run_trial`) samples a point of the search space, derives the candidate from
the trained parent with inherited weights (:mod:`xcompress.search.derive`), exports and
counts it, predicts and measures its latency against the parent on the target
(:mod:`xcompress.search.latency`), rejects it before any training if it breaks a hard budget,
else refits its narrowed layers to the parent's outputs on a few batches
(:mod:`xcompress.search.reconstruct`; BatchNorm statistics are re-estimated instead when no
layer needed a refit), fine-tunes it ``finetune_steps`` with distillation
from the parent (:func:`xcompress.train.finetune_module`, U-DML losses) and scores it on the
held-out sets with the project's evaluators. Objectives: the task's error (rec
``cer_nospace``; det ``1 - hmean``) and latency, both minimized; budgets are Optuna
constraints set on the trial before ``tell`` (``Trial.set_constraint``; ``constraints_func``
is deprecated in Optuna 5), so rejected trials inform the sampler too.

Trials go through ask/tell on an Optuna storage (default ``RUN/study.db``, SQLite), so
several workers -- processes here (``--workers``) or on other machines (PostgreSQL) -- share
one study. Each running trial keeps a heartbeat; a re-run (or another worker) fails trials
whose worker died and retries each once (:mod:`xcompress.search.storage`). A run folder:

* ``search_config.json`` -- the :class:`SearchConfig`; a re-run must match it (budgets of
  time and trials may change);
* ``study.db`` -- the Optuna study (``optuna-dashboard sqlite:///RUN/study.db``);
* ``trials.json``, ``pareto.json``, ``pareto.png``, ``report.md`` (:mod:`.report`);
* ``best/`` -- the best feasible candidate after ``final_steps`` more fine-tuning: ``model.pt``,
  ``model.onnx`` and its card ``xcompress.json``.

Sampler: multi-objective TPE by default. NSGA-II needs populations of tens over many
generations to move; at the 20-60 trials a CPU budget allows, TPE (which models the good and
bad regions from the first ~10 trials on) is the practical choice; ``sampler="nsga2"`` is
kept for long runs. :mod:`benchmarks.search_bench` compares them on one budget.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xcompress.errors import BudgetError, DataError, XCompressError
from xcompress.fsutil import check_same_settings, mark_output, prepare_output_dir, write_json

RUN_FILES = ("search_config.json", "study.db", "trials.json", "pareto.json", "pareto.png",
             "report.md", "best")  # fmt: skip
#: settings a re-run may change: budgets of time and trials, machine settings
RESUMABLE_CHANGES = frozenset({"trials", "minutes", "workers", "final_steps", "out",
                               "timing_seconds"})
WORST_ERROR = 10.0  # objective of a rejected candidate (never trained; CER can exceed 1)


class SearchError(XCompressError):
    """A search that cannot start or cannot meet its budgets."""


class SearchConfig(BaseModel):
    """Everything one search needs; saved as ``search_config.json`` in the run folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str = Field(description="zoo name, model folder, ONNX file or .pt checkpoint")
    out: str = "runs/search"
    space: str | None = Field(None, description="search space YAML (default: the arch's)")
    target: str = "host"
    max_latency_ms: float | None = Field(None, gt=0)
    max_latency_ratio: float | None = Field(None, gt=0)
    max_macs: float | None = Field(None, gt=0)
    max_params: float | None = Field(None, gt=0)
    data: list[str] = Field(default_factory=lambda: ["synth"],
                            description="'synth', 'synth:LANG' or PaddleOCR label folders")
    val: list[str] = Field(default_factory=lambda: ["synth"])
    val_count: int = Field(200, ge=1, description="size of a synthetic held-out set")
    lang: str = "en"
    trials: int = Field(20, ge=1)
    minutes: float | None = Field(None, gt=0)
    finetune_steps: int = Field(100, ge=0)
    final_steps: int = Field(300, ge=0)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(5e-4, gt=0)
    bn_batches: int = Field(4, ge=0, description="batches for reconstruction and BatchNorm "
                            "re-estimation of each candidate (0: neither)")
    storage: str | None = None
    study: str = "search"
    workers: int = Field(1, ge=1)
    seed: int = 0
    sampler: Literal["tpe", "nsga2"] = "tpe"
    shape: tuple[int, ...] | None = None
    threads: int | None = Field(None, ge=1)
    runs: int = Field(30, ge=3, description="timed runs per model per measurement")
    timing_seconds: float = Field(9.0, gt=0, description="at most this many seconds of timed "
                                  "runs per latency measurement (host and ssh targets)")
    calibrate_samples: int = Field(32, ge=8)


@dataclass
class SearchResult:
    out: Path
    trials: list[dict[str, Any]]
    front: list[dict[str, Any]]
    best: dict[str, Any] | None
    parent: dict[str, Any]
    report: Path
    stopped: str = ""


# ----------------------------------------------------------------------------- context


@dataclass
class _Context:
    """What every trial of one worker shares (loaded once)."""

    cfg: SearchConfig
    out: Path
    work: Path
    parent: Any
    card: Any
    space: Any
    task: Any  # TrainTask: sources, batching
    val_sets: dict[str, list[Any]]
    meter: Any
    predictor: Any
    parent_onnx: Path
    shape: tuple[int, ...]
    headline: str
    higher_is_better: bool
    log: Any = print
    info: dict[str, Any] = field(default_factory=dict)

    def error(self, metrics: dict[str, dict[str, float]]) -> float:
        vals = [m[self.headline] for m in metrics.values()]
        mean = sum(vals) / len(vals)
        return 1.0 - mean if self.higher_is_better else mean

    def predict(self, features: dict[str, float], study: Any = None) -> float | None:
        """The latency predicted *before* measuring: the calibrated model, refitted on its
        calibration points plus every trial of the study measured so far (in this run's
        units: calibration points rescaled by the parent now vs then)."""
        from xcompress.search.latency import CalibrationPoint, fit_coefficients, latency_features

        if self.predictor is None:
            return None
        # scaled by this run's parent as measured now vs as the model predicts it: one cheap
        # measurement corrects a machine that runs faster or slower today than when the table
        # was built, and a table built on another parent of the same architecture
        if "parent_features" not in self.info:
            self.info["parent_features"] = latency_features(self.parent_onnx, self.shape)
        expected = self.predictor.predict(self.info["parent_features"])
        scale = self.meter.reference / expected if self.meter.reference and expected > 0 else 1.0
        points = [CalibrationPoint(features=p.features, measured=p.measured * scale)
                  for p in self.predictor.points]  # fmt: skip
        if study is not None:
            points += [CalibrationPoint(features=t.user_attrs["features"],
                                        measured=t.user_attrs["latency"])
                       for t in study.get_trials(deepcopy=False)
                       if "features" in t.user_attrs and t.user_attrs.get("latency")]  # fmt: skip
        coef = fit_coefficients(points) if points else None
        if coef is None:
            return self.predictor.predict(features) * scale
        return float(sum(c * features[f] for c, f in zip(coef, self.predictor.features,
                                                          strict=True)))  # fmt: skip

    def budgets(self) -> list[tuple[str, float, str]]:
        """(measure, limit, option) of each hard budget set."""
        c = self.cfg
        return [(k, v, o) for k, v, o in (
            ("latency", c.max_latency_ms, "--max-latency-ms"),
            ("ratio", c.max_latency_ratio, "--max-latency-ratio"),
            ("macs", c.max_macs, "--max-macs"), ("n_params", c.max_params, "--max-params"),
        ) if v is not None]  # fmt: skip

    def constraints(self, rec: dict[str, Any]) -> list[float]:
        """Optuna constraint values (<= 0 feasible): relative excess over each budget."""
        return [(float(rec[k]) - lim) / lim for k, lim, _ in self.budgets()] or [-1.0]


def train_config(cfg: SearchConfig, steps: int, seed: int, max_width: int = 320) -> Any:
    from xcompress.train import DistillConfig, TrainConfig

    return TrainConfig(
        model=cfg.model, train=list(cfg.data), val=list(cfg.val), synth_lang=cfg.lang,
        val_count=cfg.val_count, steps=max(steps, 1), eval_every=max(steps, 1),
        batch_size=cfg.batch_size, lr=cfg.lr, warmup=min(20, max(steps // 10, 0)),
        seed=seed, freeze_norm=True, max_width=max_width, out=".",
        distill=DistillConfig(teacher=cfg.model),
    )  # fmt: skip


def _check_val_charset(task: Any, val: list[str]) -> None:
    """A rec validation folder with characters outside the model's charset is an error:
    silently dropping its lines would score the search on part of the user's data."""
    from xcompress.data.labels import check_charset, load_dataset
    from xcompress.train.tasks import synth_lang

    charset = task.card.charset if task.task == "rec" else None
    if not charset:
        return
    for v in val:
        if synth_lang(v, "en") is not None:
            continue
        rep = check_charset(load_dataset(v, "rec"), charset)
        if not rep.ok:
            raise DataError(
                f"{v}: labels use characters outside the model's charset ({rep.summary()}): "
                "fix the labels or pass the model's --charset"
            )


def _open_context(cfg: SearchConfig, out: Path, work: Path, log: Any) -> _Context:
    """Load and check everything a worker needs; nothing is written to ``out``."""
    import torch

    from xcompress.eval.metrics import task_metrics
    from xcompress.export import load_source
    from xcompress.profile.run import default_shape
    from xcompress.search.candidates import export_candidate
    from xcompress.search.latency import load_predictor, open_meter, runtime_key
    from xcompress.search.space import load_space
    from xcompress.train.tasks import TASKS

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    source = load_source(cfg.model)
    parent, card = source.module.eval(), source.card
    space = load_space(cfg.space, parent.arch)
    space.check_fits(parent)
    shape = tuple(cfg.shape) if cfg.shape else default_shape(card)
    tm = task_metrics(parent.task)
    width = shape[-1] if parent.task == "rec" else 320
    tcfg = train_config(cfg, cfg.finetune_steps, cfg.seed, width)
    task = TASKS[parent.task](tcfg, parent, card)
    _check_val_charset(task, list(cfg.val))
    val_sets = task.val_sets()
    for name, samples in val_sets.items():
        if not samples:
            raise DataError(f"validation set {name} is empty: pass --val with labelled data")
    meter = open_meter(cfg.target, shape, cfg.threads, cfg.runs, cfg.timing_seconds)
    if cfg.max_latency_ms is not None and meter.unit != "ms":
        raise SearchError(
            f"target {meter.profiler.target.name} measures latency in {meter.unit} (not ms): "
            "use --max-latency-ratio"
        )
    parent_onnx = export_candidate(parent, card, work / "parent")
    d = meter.describe()
    predictor = load_predictor(d["target"], parent.arch, shape, int(d["threads"]),
                               runtime_key(meter))  # fmt: skip
    ctx = _Context(cfg, out, work, parent, card, space, task, val_sets, meter, predictor,
                   parent_onnx, shape, tm.headline, tm.higher_is_better, log)  # fmt: skip
    return ctx


def _ensure_predictor(ctx: _Context) -> None:
    """Calibrate and cache the target's latency predictor if there is none yet."""
    from xcompress.search.latency import calibrate, save_predictor

    if ctx.predictor is not None:
        return
    n = ctx.cfg.calibrate_samples
    ctx.log(f"no latency predictor for {ctx.parent.arch} at {_shape(ctx.shape)} on "
            f"{ctx.meter.profiler.target.name}: calibrating on {n} subnets "
            "(once per target; `xcompress board calibrate` does the same)")  # fmt: skip

    def on_point(i: int, total: int, point: Any, m: Any) -> None:
        ctx.log(f"  calibrate {i + 1}/{total}: {m.normalized:.3f} {m.unit} "
                f"(ratio {m.ratio:.3f}, {m.seconds:.1f} s)")  # fmt: skip

    ctx.predictor = calibrate(ctx.parent, ctx.card, ctx.space, ctx.meter, n, ctx.cfg.seed,
                              ctx.work, on_point)  # fmt: skip
    path = save_predictor(ctx.predictor)
    ctx.log(f"latency predictor: leave-one-out mean abs error {ctx.predictor.cv_mape:.1f}%, "
            f"{ctx.predictor.cv_within10:.0%} within ±10% -> {path}")  # fmt: skip


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# ----------------------------------------------------------------------------- trials


def _measure_parent(ctx: _Context, study: Any) -> dict[str, Any]:
    """The parent's own point (error on the held-out sets, latency), once per study."""
    from xcompress.eval import TorchRunner, evaluate_samples
    from xcompress.profile.flops import count_onnx

    if ctx.meter.reference is None:
        ctx.meter.calibrate_reference(ctx.parent_onnx)
    known = study.user_attrs.get("parent")
    if known is not None:
        return known
    runner = TorchRunner(ctx.parent, ctx.card)
    metrics = {n: evaluate_samples(runner, ctx.card, s).metrics for n, s in ctx.val_sets.items()}
    cost = count_onnx(ctx.parent_onnx, ctx.shape)
    rec = {"error": ctx.error(metrics), "metrics": metrics, "latency": ctx.meter.reference,
           "ratio": 1.0, "macs": cost.macs, "n_params": cost.params, "unit": ctx.meter.unit}
    study.set_user_attr("parent", rec)
    return rec


def _check_reachable(ctx: _Context) -> dict[str, Any] | None:
    """Refuse budgets that even the smallest candidate of the space breaks (measured)."""
    from xcompress.search.candidates import make_candidate

    if not ctx.budgets():
        return None
    cand = make_candidate(ctx.parent, ctx.card, ctx.space, ctx.space.extreme(min),
                          ctx.work / "smallest", ctx.shape)  # fmt: skip
    m = ctx.meter.measure(cand.onnx, ctx.parent_onnx)
    small = {"latency": m.normalized, "ratio": m.ratio, "macs": cand.macs,
             "n_params": cand.n_params}  # fmt: skip
    shutil.rmtree(ctx.work / "smallest", ignore_errors=True)
    unit = ctx.meter.unit
    for key, limit, option in ctx.budgets():
        if small[key] > limit:
            what = {
                "latency": f"{small['latency']:.2f} {unit}",
                "ratio": f"{small['ratio']:.2f}x the parent ({small['latency']:.2f} {unit})",
                "macs": f"{small['macs']:,} MACs",
                "n_params": f"{small['n_params']:,} parameters",
            }[key]
            raise BudgetError(
                f"no candidate in the space meets {option} {limit:g}: the smallest one is "
                f"{what} at {_shape(ctx.shape)} on {ctx.meter.profiler.target.name}; relax "
                "the budget or widen the space"
            )
    return small


def _run_trial(ctx: _Context, study: Any, trial: Any) -> dict[str, Any]:
    """Evaluate one asked trial and tell the study; returns its record."""
    import optuna

    from xcompress.search.candidates import inherit, make_candidate
    from xcompress.train import finetune_module

    t0 = time.monotonic()
    params = ctx.space.sample(trial.suggest_categorical)
    folder = ctx.work / f"trial-{trial.number}"
    try:
        cand = make_candidate(ctx.parent, ctx.card, ctx.space, params, folder, ctx.shape)
        rec: dict[str, Any] = {"point": ctx.space.full(params), "macs": cand.macs,
                               "n_params": cand.n_params, "features": cand.features,
                               "predicted": ctx.predict(cand.features, study)}  # fmt: skip
        m = ctx.meter.measure(cand.onnx, ctx.parent_onnx)
        rec.update(latency=m.normalized, measured=m.value, measured_parent=m.parent_value,
                   ratio=m.ratio, unit=m.unit)  # fmt: skip
        constraints = ctx.constraints(rec)
        feasible = all(c <= 0 for c in constraints)
        rec.update(constraints=constraints, feasible=feasible)
        if not feasible:
            broken = [o for (_, _, o), c in zip(ctx.budgets(), constraints, strict=True) if c > 0]
            rec.update(rejected=f"breaks {', '.join(broken)} (not trained)", error=None)
            values = [WORST_ERROR, m.normalized]
        else:
            inherited = inherit(ctx.parent, cand.module, cand.copier, ctx.task,
                                ctx.cfg.bn_batches, ctx.cfg.batch_size, ctx.cfg.seed + trial.number)
            tcfg = train_config(ctx.cfg, ctx.cfg.finetune_steps, ctx.cfg.seed + trial.number,
                                ctx.shape[-1] if ctx.parent.task == "rec" else 320)  # fmt: skip
            if ctx.cfg.finetune_steps == 0:
                tcfg = tcfg.model_copy(update={"steps": 0})
            metrics = finetune_module(cand.module, ctx.card, tcfg, ctx.parent, ctx.val_sets)
            error = ctx.error(metrics)
            rec.update(error=error, metrics=metrics, **inherited)
            values = [error, m.normalized]
        rec["seconds"] = round(time.monotonic() - t0, 1)
        for k, v in rec.items():
            trial.set_user_attr(k, v)
        # budgets as Optuna constraints, set before tell: the samplers read them from the
        # trial, rejected (untrained) candidates included
        for (_, _, option), c in zip(ctx.budgets(), constraints, strict=False):
            trial.set_constraint(option.lstrip("-"), c)
        try:
            study.tell(trial, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            # another worker took this trial for dead (no heartbeat for too long) and
            # failed it; its retry measures the same point again
            ctx.log(f"trial {trial.number} was failed by another worker meanwhile; its "
                    "result is dropped")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"number": trial.number, **rec}


def _make_sampler(cfg: SearchConfig, worker: int) -> Any:
    import optuna

    seed = cfg.seed + 1009 * worker  # workers sample apart, each reproducibly
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)


def open_study(cfg: SearchConfig, out: Path, worker: int = 0) -> Any:
    import optuna

    from xcompress.search.storage import default_storage_url, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(cfg.storage or default_storage_url(out))
    study = optuna.create_study(
        study_name=cfg.study, storage=storage, directions=["minimize", "minimize"],
        sampler=_make_sampler(cfg, worker), load_if_exists=True,
    )  # fmt: skip
    learned = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RESUMABLE_CHANGES}
    saved = study.user_attrs.get("config")
    if saved is None:
        study.set_user_attr("config", learned)
    elif saved != learned:
        differ = sorted(k for k in set(saved) | set(learned) if saved.get(k) != learned.get(k))
        raise SearchError(
            f"study {cfg.study!r} in {cfg.storage or 'RUN/study.db'} was made with other settings "
            f"({', '.join(differ)} differ): re-run with the same options, or pass another "
            "--study / --out"
        )
    return study


def _loop(ctx: _Context, study: Any, deadline: float | None) -> str:
    """One worker's loop: ask, evaluate, tell until the study has ``trials`` finished trials
    or the deadline passes. Returns why it stopped."""
    from xcompress.search.storage import Heartbeat, recover_stale_trials, study_counts

    total = ctx.cfg.trials
    while True:
        for n in recover_stale_trials(study):
            ctx.log(f"trial {n} was left running by a worker that died: failed (queued again "
                    "once)")  # fmt: skip
        c = study_counts(study)
        if c["COMPLETE"] >= total or (c["COMPLETE"] + c["RUNNING"] >= total and not c["WAITING"]):
            return "trials"
        if deadline is not None and time.monotonic() > deadline:
            return "minutes"
        trial = study.ask()
        with Heartbeat(study._storage, trial._trial_id):
            rec = _run_trial(ctx, study, trial)
        ctx.log(_trial_line(rec, study, total))


def _trial_line(rec: dict[str, Any], study: Any, total: int) -> str:
    from xcompress.search.report import front_of

    u = rec.get("unit", "")
    pred = rec.get("predicted")
    lat = (f"{rec['latency']:.2f} {u} ({rec['ratio']:.2f}x"
           + (f", predicted {pred:.2f}" if pred is not None else "") + ")")  # fmt: skip
    score = (f"error {rec['error']:.4f}" if rec.get("error") is not None
             else f"rejected: {rec.get('rejected', '')}")  # fmt: skip
    front = len(front_of(trial_records(study)))
    return (f"trial {rec['number'] + 1}/{total} [{rec['seconds']:.0f} s] {rec['macs'] / 1e6:.1f} "
            f"MMACs, {rec['n_params'] / 1e6:.2f} M params, {lat}, {score} | front: {front}")


def trial_records(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study as a plain record (what ``trials.json`` holds)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        rec = {"number": t.number, "state": t.state.name, "params": dict(t.params),
               **dict(t.user_attrs)}  # fmt: skip
        if t.values is not None:
            rec["values"] = list(t.values)
        out.append(rec)
    return out


def _worker_entry(cfg_json: str, out: str, worker: int, deadline_s: float | None) -> None:
    """A ``--workers`` process: its own models and meter, the main process's study."""
    import tempfile

    cfg = SearchConfig.model_validate_json(cfg_json)
    deadline = None if deadline_s is None else time.monotonic() + deadline_s

    def log(msg: str) -> None:
        print(f"[worker {worker}] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="xcompress-search-") as work:
        ctx = _open_context(cfg, Path(out), Path(work), log)
        study = open_study(cfg, Path(out), worker)
        ctx.info["parent"] = _measure_parent(ctx, study)
        _loop(ctx, study, deadline)


# ----------------------------------------------------------------------------- the job


def _check_resume(out: Path, cfg: SearchConfig) -> None:
    check_same_settings(out / "search_config.json", cfg.model_dump(mode="json"),
                        RESUMABLE_CHANGES, "a search")  # fmt: skip


def run_search(cfg: SearchConfig, log: Any = print, force: bool = False) -> SearchResult:
    """Run (or resume) a search and write its run folder; see the module docstring.

    Every input is checked -- model, space, data, target, storage, budgets (against the
    smallest candidate, measured) -- before anything is written to ``cfg.out``.
    """
    import multiprocessing as mp
    import tempfile

    from xcompress.search.report import front_of, write_reports
    from xcompress.search.storage import open_storage

    t0 = time.monotonic()
    out = prepare_output_dir(cfg.out, "search", force=force)
    _check_resume(out, cfg)
    if cfg.storage:
        open_storage(cfg.storage)  # an unreachable server fails here, in seconds
    deadline = None if cfg.minutes is None else t0 + cfg.minutes * 60
    with tempfile.TemporaryDirectory(prefix="xcompress-search-") as work:
        ctx = _open_context(cfg, out, Path(work), log)
        _ensure_predictor(ctx)
        small = _check_reachable(ctx)
        out.mkdir(parents=True, exist_ok=True)
        mark_output(out, "search", RUN_FILES)
        write_json(out / "search_config.json", cfg.model_dump(mode="json"))
        study = open_study(cfg, out)
        for key, value in (("measure", ctx.meter.describe()), ("smallest", small)):
            if key not in study.user_attrs and value is not None:
                study.set_user_attr(key, value)
        ctx.info["parent"] = _measure_parent(ctx, study)
        procs = []
        if cfg.workers > 1:
            spawn = mp.get_context("spawn")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            for w in range(1, cfg.workers):
                p = spawn.Process(target=_worker_entry,
                                  args=(cfg.model_dump_json(), str(out), w, left))  # fmt: skip
                p.start()
                procs.append(p)
        try:
            stopped = _loop(ctx, study, deadline)
        except BaseException:  # Ctrl-C or SIGTERM: the workers stop too (their trials are
            for p in procs:  # failed by the heartbeat and retried on the re-run)
                p.terminate()
            raise
        finally:
            for p in procs:
                p.join()
        bad = [p.exitcode for p in procs if p.exitcode]
        if bad:
            log(f"{len(bad)} worker(s) exited with an error (codes {bad}); their trials were "
                "failed or retried")  # fmt: skip
        records = trial_records(study)
        best = _final(ctx, records)
        report = write_reports(out, cfg, records, dict(study.user_attrs), best)
    return SearchResult(out=out, trials=records, front=front_of(records), best=best,
                        parent=ctx.info["parent"], report=report, stopped=stopped)  # fmt: skip


def pick_best(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The feasible evaluated trial with the lowest error (then the lowest latency)."""
    ok = [r for r in records if r["state"] == "COMPLETE" and r.get("feasible")
          and r.get("error") is not None]  # fmt: skip
    if not ok:
        return None
    return min(ok, key=lambda r: (round(r["error"], 6), r["latency"]))


def _final(ctx: _Context, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Fine-tune the best candidate ``final_steps`` more and write ``best/`` atomically."""
    from xcompress.artifact import model_sha
    from xcompress.fsutil import atomic_dir
    from xcompress.models.checkpoint import save_checkpoint
    from xcompress.models.export import export_onnx
    from xcompress.search.candidates import derive_point, inherit
    from xcompress.train import finetune_module

    cfg, out, log = ctx.cfg, ctx.out, ctx.log
    best = pick_best(records)
    if best is None:
        log("no feasible candidate was evaluated: nothing written to best/")
        return None
    marker = out / "best" / "search_best.json"
    key = {"trial": best["number"], "final_steps": cfg.final_steps}
    if marker.is_file():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            done = {}
        if {k: done.get(k) for k in key} == key:
            log(f"best/ already holds trial {best['number']} after its final fine-tune")
            return {**best, "final": done}
    params = ctx.space.full(best["point"])
    child, copier = derive_point(ctx.parent, ctx.space, params)
    inherit(ctx.parent, child, copier, ctx.task, cfg.bn_batches, cfg.batch_size,
            cfg.seed + best["number"])
    steps = cfg.final_steps if cfg.final_steps > 0 else cfg.finetune_steps
    log(f"final fine-tune of trial {best['number']} ({steps} steps)")
    tcfg = train_config(cfg, steps, cfg.seed + best["number"],
                        ctx.shape[-1] if ctx.parent.task == "rec" else 320)  # fmt: skip
    metrics = finetune_module(child, ctx.card, tcfg, ctx.parent, ctx.val_sets)
    error = ctx.error(metrics)
    card = ctx.card.derive(
        name=f"{ctx.card.name}-search", step="search", parent=model_sha(cfg.model),
        step_config={"trial": best["number"], "params": params, "space": ctx.space.arch,
                     "final_steps": steps, "target": ctx.meter.profiler.target.name},
        notes={**ctx.card.notes, "val_metrics": metrics, "search_latency": best["latency"],
               "search_latency_unit": best.get("unit"), "search_ratio": best["ratio"]},
    )  # fmt: skip
    final = {**key, "error": error, "metrics": metrics, "steps": steps}
    with atomic_dir(out / "best") as tmp:
        save_checkpoint(tmp / "model.pt", child, card.derive(file="model.pt", format="torch"))
        # the ONNX card names its checkpoint: quantize / export / eval load the exact module
        export_onnx(child, card.derive(notes={**card.notes, "checkpoint": "model.pt"}), tmp)
        write_json(tmp / "search_best.json", {**final, "params": params})
    log(f"best/: trial {best['number']}, error {error:.4f} after the final fine-tune "
        f"({best['latency']:.2f} {best.get('unit', '')}, {best['ratio']:.2f}x the parent)")
    return {**best, "final": final}


def default_log() -> Any:
    from rich.console import Console

    console = Console(stderr=False, soft_wrap=True)
    return lambda msg: console.print(msg, markup=False, highlight=False)


__all__ = ["SearchConfig", "SearchError", "SearchResult", "pick_best", "run_search",
           "trial_records"]  # fmt: skip

