"""``xcompress quantize --qat``: quantization-aware training of the PTQ int8 graph, distilled
from the float model.

Steps (the run resumes from its work folder after an interruption):

1. post-training quantization as ``xcompress quantize`` does it (plan timing, calibration,
   float fallback): its QDQ graph fixes the plan, the Q/DQ placement and the initial ranges;
2. that graph interpreted in torch (:class:`xcompress.quantize.qat.QDQGraph`): weights
   trainable under per-channel symmetric int8 fake quantization with the PTQ scales, every
   activation scale learnable (LSQ), rounding half to even as onnxruntime's QuantizeLinear;
   trained to match the float model's output distribution (KL) on the training data;
   a checkpoint of the trainable state every ``save_every`` steps; every ``select_every``
   steps the graph is scored on a val subset, and the best state (PTQ's at step 0 included)
   is the one exported;
3. the trained values written back into the same graph (same nodes, so exactly the PTQ
   model's speed), then checked: the max difference between the torch fake-quant model and
   onnxruntime on the exported graph, the share of val lines whose greedy CTC decoding is
   identical, and PTQ vs QAT accuracy on the val sets.

Example:
    xcompress quantize ppocr-v4-rec --qat --minutes 20 --out runs/v4rec-qat
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xcompress.errors import XCompressError

#: settings a re-run may change and still resume the training state
RESUMABLE = frozenset({"out", "minutes", "threads"})


class QATConfig(BaseModel):
    """One QAT run; saved beside its work files for resuming."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    out: str
    data: list[str] = Field(default_factory=lambda: ["synth"])
    val: list[str] = Field(default_factory=lambda: ["synth"])
    val_count: int = Field(200, ge=1)
    calib: str | None = None
    steps: int = Field(600, ge=1)
    minutes: float | None = Field(None, gt=0)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(0.01, gt=0, description="weights: Adam step in int8 steps (LSB)")
    scale_lr: float = Field(1e-4, gt=0, description="activation scales (log-gain, LSQ-style)")
    save_every: int = Field(50, ge=1)
    select_every: int = Field(100, ge=1, description="steps between scorings of the val "
                              "subset; the best-scoring state (PTQ's at step 0) is exported")
    select_lines: int = Field(100, ge=1, description="val lines per set that choose the state")
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    max_drop: float = Field(0.005, ge=0, le=1, description="the PTQ step's budget")


@dataclass
class QATResult:
    out: Path
    report: dict[str, Any]


def _kl(teacher_p: Any, student_p: Any) -> Any:
    """KL(teacher || student) per frame, averaged, on probabilities (the graphs' outputs)."""

    t = teacher_p.clamp_min(1e-8)
    return (t * (t.log() - student_p.clamp_min(1e-8).log())).sum(-1).mean()


def _lsb(p: Any) -> float:
    """One int8 step of a weight tensor (mean over output channels of max|w| / 127)."""
    w = p.detach().abs()
    m = w.flatten(1).amax(1).mean() if w.dim() > 1 else w.amax()
    return float(m.clamp_min(1e-8)) / 127.0


def _decodes(probs: Any) -> list[tuple[int, ...]]:
    """Greedy CTC paths (argmax per frame, repeats merged, blanks dropped), per line."""
    import numpy as np

    out = []
    for row in np.asarray(probs).argmax(-1):
        path, prev = [], -1
        for c in row.tolist():
            if c != prev and c != 0:
                path.append(c)
            prev = c
        out.append(tuple(path))
    return out


class _Graph:
    """A QDQGraph behind ``module(x) -> first output`` (what TorchRunner calls)."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    def __call__(self, x: Any) -> Any:
        return self.graph(x)[0]


class _Selection:
    """The trained state to export: the one with the lowest mean CER* on a val subset, PTQ's
    own (step 0) included, so QAT never publishes a state that scores worse than PTQ there.

    Training distils on generated lines; measured on ppocr-v4-rec, 303 steps took the
    synthetic val CER* from 1.79% to 1.29% while held-out document text got 3-7 points worse
    than PTQ. Scoring the torch fake-quant graph (the numerics QAT trains, no export) every
    ``select_every`` steps bounds that drift by the val sets. Kept in ``qat_best.pt`` so a
    resumed run keeps its history.
    """

    def __init__(self, graph: Any, card: Any, val_sets: dict[str, list[Any]], lines: int,
                 path: Path) -> None:  # fmt: skip
        import torch

        self.graph, self.card, self.path = graph, card, path
        self.sets = {n: s[:lines] for n, s in val_sets.items()}
        self.history: list[tuple[int, float]] = []
        self.best: dict[str, Any] | None = None
        if path.is_file():
            st = torch.load(path, weights_only=True)
            self.history = [(int(a), float(b)) for a, b in st["history"]]
            self.best = {"step": int(st["step"]), "score": float(st["score"]),
                         "graph": st["graph"]}  # fmt: skip

    def score(self) -> float:
        import numpy as np

        from xcompress.eval import TorchRunner, evaluate_samples

        was = self.graph.training
        self.graph.eval()
        runner = TorchRunner(_Graph(self.graph), self.card)
        cers = [evaluate_samples(runner, self.card, s).metrics["cer_nospace"]
                for s in self.sets.values()]  # fmt: skip
        self.graph.train(was)
        return float(np.mean(cers))

    def offer(self, step: int) -> float:
        """Score the graph's current state at ``step``; keep it if it is the best so far."""
        import copy

        import torch

        if self.history and self.history[-1][0] == step:
            return self.history[-1][1]
        value = self.score()
        self.history.append((step, value))
        if self.best is None or value < self.best["score"]:
            self.best = {"step": step, "score": value,
                         "graph": copy.deepcopy(self.graph.state_dict())}  # fmt: skip
        torch.save({**self.best, "history": self.history}, self.path)
        return value

    def restore(self) -> int:
        """Load the best state into the graph; its step."""
        assert self.best is not None
        self.graph.load_state_dict(self.best["graph"])
        return int(self.best["step"])


def run_qat(cfg: QATConfig, log: Any = print, force: bool = False) -> QATResult:
    """Run (or resume) QAT; see the module docstring."""
    import shutil

    import numpy as np
    import onnx
    import torch

    from xcompress.artifact import resolve_model
    from xcompress.eval import TorchRunner, evaluate_samples
    from xcompress.export import load_source
    from xcompress.fsutil import atomic_dir, check_same_settings, prepare_output_dir, write_json
    from xcompress.quantize.api import quantize
    from xcompress.quantize.config import QuantizeConfig
    from xcompress.quantize.qat import QDQGraph
    from xcompress.runtime import open_runner
    from xcompress.search.runner import _check_val_charset
    from xcompress.train import TrainConfig
    from xcompress.train.loop import _mixed_stream
    from xcompress.train.tasks import TASKS, expand_synth

    out = Path(prepare_output_dir(cfg.out, "quantize", force=force))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task_name = resolve_model(cfg.model).card.task
    if task_name != "rec":
        raise XCompressError(f"--qat supports recognizers for now; this model is {task_name}: "
                             "use post-training quantization (drop --qat)")  # fmt: skip
    source = load_source(cfg.model)
    teacher, card = source.module.eval(), source.card
    data = expand_synth(list(cfg.data), card.charset)
    val = expand_synth(list(cfg.val), card.charset)
    tcfg = TrainConfig(model=cfg.model, train=data, val=val, val_count=cfg.val_count,
                       batch_size=cfg.batch_size, seed=cfg.seed, out=".")  # fmt: skip
    task = TASKS["rec"](tcfg, teacher, card)
    _check_val_charset(task, val)
    val_sets = task.val_sets()
    for name, samples in val_sets.items():
        if not samples:
            raise XCompressError(f"validation set {name} is empty: pass --val with labelled data")
    work = out.parent / f".{out.name}.qat-work"
    saved = work / "qat_config.json"
    check_same_settings(saved, cfg.model_dump(mode="json"), RESUMABLE, "a QAT run")
    work.mkdir(parents=True, exist_ok=True)
    write_json(saved, cfg.model_dump(mode="json"))

    # 1. PTQ: the plan and the initial ranges
    ptq_dir = work / "ptq"
    if not (ptq_dir / "model.int8.onnx").is_file():
        log("step 1/3: post-training quantization (plan, ranges, float fallback)")
        quantize(cfg.model, cfg.calib, ptq_dir,
                 QuantizeConfig(max_drop=cfg.max_drop, threads=cfg.threads or 2), force=True)
    else:
        log("step 1/3: post-training quantization done before, resumed")
    ptq = onnx.load(str(ptq_dir / "model.int8.onnx"))
    ptq_card = type(card).load(ptq_dir)

    # 2. QAT on the PTQ graph
    graph = QDQGraph(ptq)
    state_path = work / "qat_state.pt"
    step, seconds = 0, 0.0
    if state_path.is_file():
        st = torch.load(state_path, weights_only=True)
        graph.load_state_dict(st["graph"])
        step, seconds = int(st["step"]), float(st["seconds"])
        log(f"step 2/3: resuming QAT at step {step}/{cfg.steps}")
    scales = list(graph.act_scales.parameters())
    ids = {id(p) for p in scales}
    weights = [p for p in graph.parameters() if id(p) not in ids]
    # Adam moves every parameter by about its lr per step: in absolute units one lr is a
    # fraction of an int8 step in one layer and many steps in another (20 steps at 1e-5 took
    # ppocr-v4-rec's CER* from 0.13% to 3.4%); so each weight tensor's lr is in its own LSBs
    opt = torch.optim.Adam([{"params": [p], "lr": cfg.lr * _lsb(p)} for p in weights]
                           + [{"params": scales, "lr": cfg.scale_lr}])  # fmt: skip
    if state_path.is_file() and "opt" in st:
        opt.load_state_dict(st["opt"])
    stream = _mixed_stream(task.sources(), cfg.seed, step * cfg.batch_size)
    t0 = time.monotonic() - seconds
    budget = cfg.minutes * 60 if cfg.minutes else None
    loss_avg = None
    selection = _Selection(graph, ptq_card, val_sets, cfg.select_lines, work / "qat_best.pt")
    if step == 0:
        ptq_cer = selection.offer(0)
        log(f"  PTQ (step 0): val subset CER* {ptq_cer:.2%}")
    graph.train()
    while step < cfg.steps and (budget is None or time.monotonic() - t0 < budget):
        x, _ = task.batch([next(stream) for _ in range(cfg.batch_size)])
        with torch.no_grad():
            target = teacher(x)
        loss = _kl(target, graph(x)[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = float(loss.detach())
        loss_avg = value if loss_avg is None else 0.9 * loss_avg + 0.1 * value
        if step % cfg.save_every == 0 or step == cfg.steps:
            torch.save({"graph": graph.state_dict(), "opt": opt.state_dict(), "step": step,
                        "seconds": time.monotonic() - t0}, state_path)  # fmt: skip
            log(f"  QAT step {step}/{cfg.steps}: KL {loss_avg:.4f} "
                f"({(time.monotonic() - t0) / 60:.1f} min)")
        if step % cfg.select_every == 0:
            value = selection.offer(step)
            log(f"  QAT step {step}: val subset CER* {value:.2%} (best: step "
                f"{selection.best['step']}, {selection.best['score']:.2%})")
    selection.offer(step)
    graph.eval()
    chosen = selection.restore()
    if chosen == 0:
        log(f"step 3/3: no QAT state scored below PTQ on the val subset in {step} steps: "
            "exporting PTQ's values (the model is PTQ's)")
    else:
        log(f"step 3/3: export and checks, the state of step {chosen} of {step}")
    trained = graph.to_onnx()

    # 3. checks: parity torch fake-quant vs onnxruntime; PTQ vs QAT accuracy
    tmp_model = work / "qat.int8.onnx"
    onnx.save(trained, str(tmp_model))
    ort_qat = open_runner(tmp_model, threads=cfg.threads)
    ort_ptq = open_runner(ptq_dir / "model.int8.onnx", threads=cfg.threads)
    lines = [s for samples in val_sets.values() for s in samples][:100]
    same, worst = 0, 0.0
    from xcompress.data import read_image
    from xcompress.ocr.preprocess import preprocess_for

    for s in lines:
        image = s.image if isinstance(s.image, np.ndarray) else read_image(s.image)
        arr = preprocess_for(ptq_card, [image]).batch
        a = ort_qat.run(arr)
        with torch.no_grad():
            b = graph(torch.from_numpy(arr))[0].numpy()
        worst = max(worst, float(np.abs(a - b).max()))
        same += _decodes(a) == _decodes(b)
    metrics = {}
    for name, samples in val_sets.items():
        metrics[name] = {
            "fp32": evaluate_samples(TorchRunner(teacher, card), card, samples).metrics,
            "ptq": evaluate_samples(ort_ptq, ptq_card, samples).metrics,
            "qat": evaluate_samples(ort_qat, ptq_card, samples).metrics,
        }
        m = metrics[name]
        log(f"  {name}: CER* fp32 {m['fp32']['cer_nospace']:.2%}, PTQ "
            f"{m['ptq']['cer_nospace']:.2%}, QAT {m['qat']['cer_nospace']:.2%}")
    ptq_report = json.loads((ptq_dir / "report.json").read_text(encoding="utf-8"))
    report = {
        "schema": 1, "model": cfg.model, "method": "qat", "steps": step,
        "selection": {"every": cfg.select_every, "lines_per_set": cfg.select_lines,
                      "metric": "mean cer_nospace over the val sets (torch fake-quant)",
                      "selected_step": chosen, "history": selection.history},
        "minutes": round((time.monotonic() - t0) / 60, 2), "data": data, "val": val,
        "lr": cfg.lr, "scale_lr": cfg.scale_lr, "batch_size": cfg.batch_size,
        "ptq": {k: ptq_report.get(k) for k in ("plan", "latency", "size", "machine",
                                                 "runtime", "threads") if k in ptq_report},
        "parity": {"max_abs_diff": worst, "lines": len(lines),
                   "identical_ctc_decoding": same / max(len(lines), 1)},
        "metrics": metrics,
    }  # fmt: skip
    new_card = ptq_card.derive(name=f"{card.name}-int8-qat", step="quantize-qat",
                               notes={**ptq_card.notes,
                                      "qat": {"steps": step, "selected_step": chosen}})  # fmt: skip
    with atomic_dir(out, command="quantize") as tmp:
        shutil.copy2(tmp_model, tmp / "model.int8.onnx")
        new_card.save(tmp)
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(_markdown(report), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out / 'model.int8.onnx'}: parity max |diff| {worst:.2e}, "
        f"{same}/{len(lines)} lines decode identically")
    return QATResult(out, report)


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"# xcompress quantize --qat: {r['model']}", "",
             f"- {r['steps']} steps in {r['minutes']} min, batch {r['batch_size']}, "
             f"lr {r['lr']:g} (weights) / {r['scale_lr']:g} (activation scales)",
             f"- data: {', '.join(r['data'])}; val: {', '.join(r['val'])}",
             f"- exported: the state of step {r['selection']['selected_step']} (lowest mean "
             f"CER* on {r['selection']['lines_per_set']} val lines per set, scored every "
             f"{r['selection']['every']} steps; step 0 is PTQ)",
             f"- PTQ plan: {r['ptq'].get('plan')}",
             f"- parity, torch fake-quant vs onnxruntime on the exported graph: max |diff| "
             f"{r['parity']['max_abs_diff']:.2e}; identical CTC decoding on "
             f"{r['parity']['identical_ctc_decoding']:.1%} of {r['parity']['lines']} lines", "",
             "| set | fp32 CER* | PTQ CER* | QAT CER* | fp32 CER | PTQ CER | QAT CER |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, m in r["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k][metric]:.2%}" for metric in
                                               ("cer_nospace", "cer")
                                               for k in ("fp32", "ptq", "qat")) + " |")
    return "\n".join(lines) + "\n"
