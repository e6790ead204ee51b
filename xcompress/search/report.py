"""What a search writes: ``trials.json``, ``pareto.json``, ``pareto.png``, ``report.md``.

Every figure comes from the study's trial records; the report states the model, data, shape,
threads, runtime and machine the latencies were measured on, and the latency predictor's
error on the evaluated trials (mean abs % error, share within ±10%).

Example:
    >>> front_of([{"state": "COMPLETE", "feasible": True, "error": 0.1, "latency": 5.0}])
    [{'state': 'COMPLETE', 'feasible': True, 'error': 0.1, 'latency': 5.0}]
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from xcompress.fsutil import atomic_path, write_json, write_text

REPORT_SCHEMA = 1


def _evaluated(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("state") == "COMPLETE" and r.get("error") is not None]


def front_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feasible evaluated trials no other feasible one beats on both error and latency,
    fastest first."""
    ok = [r for r in _evaluated(records) if r.get("feasible")]
    front = [r for r in ok if not any(
        o["error"] <= r["error"] and o["latency"] <= r["latency"]
        and (o["error"] < r["error"] or o["latency"] < r["latency"]) for o in ok)]  # fmt: skip
    return sorted(front, key=lambda r: r["latency"])


def predictor_error(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """|predicted - measured| / measured over every trial that has both (%)."""
    errs = [abs(r["predicted"] - r["latency"]) / r["latency"] * 100.0 for r in records
            if r.get("predicted") is not None and r.get("latency")]  # fmt: skip
    if not errs:
        return None
    e = np.asarray(errs)
    return {"trials": int(e.size), "mean_abs_pct_error": float(e.mean()),
            "within_10pct": float((e <= 10.0).mean()), "max_abs_pct_error": float(e.max())}


def _plot(path: Path, records: list[dict[str, Any]], parent: dict[str, Any], unit: str,
          metric: str) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = _evaluated(records)
    front = front_of(records)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    feas = [r for r in ev if r.get("feasible")]
    infeas = [r for r in records if r.get("state") == "COMPLETE" and not r.get("feasible")]
    if feas:
        ax.scatter([r["latency"] for r in feas], [r["error"] * 100 for r in feas], s=18,
                   c="tab:blue", alpha=0.6, label="candidates")  # fmt: skip
    if infeas:  # never trained: drawn along the top edge, at their measured latency
        top = 100 * max([r["error"] for r in feas] + [parent.get("error", 0.0), 0.01]) * 1.1
        ax.scatter([r["latency"] for r in infeas], [top] * len(infeas), marker="x",
                   c="tab:gray", s=14, label="over budget (not trained)")  # fmt: skip
    if front:
        ax.plot([r["latency"] for r in front], [r["error"] * 100 for r in front], "-o",
                c="tab:red", ms=5, label="Pareto front")  # fmt: skip
    if parent:
        ax.scatter([parent["latency"]], [parent["error"] * 100], marker="*", s=160, c="k",
                   label="parent (trained model)", zorder=5)  # fmt: skip
    ax.set_xlabel(f"latency ({unit})")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def write_reports(out: Path, cfg: Any, records: list[dict[str, Any]], study_attrs: dict[str, Any],
                  best: dict[str, Any] | None) -> Path:  # fmt: skip
    """Write the four report files into ``out``; returns ``report.md``'s path."""
    from xcompress import __version__
    from xcompress.profile.base import runtime_version

    parent = study_attrs.get("parent", {})
    unit = parent.get("unit", "ms")
    metric_error = "CER (space-insensitive)" if "cer_nospace" in str(parent.get("metrics")) \
        else "1 - Hmean"
    meta = {
        "schema_version": REPORT_SCHEMA, "xcompress": __version__, "model": cfg.model,
        "target": cfg.target, "shape": list(cfg.shape) if cfg.shape else None,
        "threads": cfg.threads, "runtime": f"onnxruntime {runtime_version('ort')}",
        "python": platform.python_version(), "data": cfg.data, "val": cfg.val,
        "val_count": cfg.val_count, "finetune_steps": cfg.finetune_steps,
        "final_steps": cfg.final_steps, "sampler": cfg.sampler, "study": cfg.study,
        "measure": study_attrs.get("measure", {}),
    }  # fmt: skip
    write_json(out / "trials.json", {"meta": meta, "parent": parent, "trials": records})
    front = front_of(records)
    perr = predictor_error(records)
    write_json(out / "pareto.json", {"meta": meta, "objectives": ["error", f"latency_{unit}"],
                                     "parent": parent, "front": front, "best": best,
                                     "predictor_error": perr})  # fmt: skip
    _plot(out / "pareto.png", records, parent, unit, metric_error)
    m = meta["measure"] or {}
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    ev = _evaluated(records)
    lines = [
        f"# xcompress search: {cfg.model}", "",
        f"- model: `{cfg.model}`; space: `{cfg.space or 'shipped for its architecture'}`",
        f"- target: {m.get('target', cfg.target)} ({m.get('machine', 'machine not recorded')}); "
        f"shape {m.get('shape', meta['shape'])}; threads {m.get('threads', cfg.threads)}; "
        f"{meta['runtime']}",
        f"- latency: {m.get('method', '')}; the latency column is the candidate/parent ratio x "
        f"the parent's value at the start ({parent.get('latency', float('nan')):.3f} {unit})",
        f"- fine-tune data: {', '.join(cfg.data)}; held-out: {', '.join(cfg.val)}"
        + (f" ({cfg.val_count} synthetic lines/pages: synthetic, so expect real data to score "
           "worse)" if any(v.startswith("synth") for v in cfg.val) else ""),
        f"- {cfg.finetune_steps} distillation steps per trial (batch {cfg.batch_size}), "
        f"{cfg.final_steps} for the best; sampler {cfg.sampler}",
        f"- trials: {', '.join(f'{k} {v}' for k, v in sorted(states.items()))}; "
        f"{len(ev)} trained and scored, {len(front)} on the Pareto front", "",
    ]  # fmt: skip
    if perr is not None:
        lines += [f"Latency predictor on these trials: mean abs error "
                  f"{perr['mean_abs_pct_error']:.1f}%, {perr['within_10pct']:.0%} within ±10% "
                  f"(max {perr['max_abs_pct_error']:.1f}%, {perr['trials']} trials).",
                  ""]  # fmt: skip
    lines += ["| trial | error | latency | ratio | predicted | MMACs | params | point |",
              "|---:|---:|---:|---:|---:|---:|---:|---|"]
    if parent:
        lines.append(f"| parent | {parent['error']:.4f} | {parent['latency']:.3f} | 1.00 | | "
                     f"{parent['macs'] / 1e6:.1f} | {parent['n_params']:,} | trained model |")
    for r in front:
        pred = f"{r['predicted']:.3f}" if r.get("predicted") is not None else ""
        lines.append(f"| {r['number']} | {r['error']:.4f} | {r['latency']:.3f} | "
                     f"{r['ratio']:.2f} | {pred} | {r['macs'] / 1e6:.1f} | {r['n_params']:,} | "
                     f"{_fmt_params(r.get('point', r['params']))} |")
    lines.append("")
    if best is not None:
        fin = best.get("final", {})
        lines += [f"Best feasible candidate: trial {best['number']} (error {best['error']:.4f} "
                  f"after {cfg.finetune_steps} steps; "
                  + (f"{fin['error']:.4f} after its final {fin.get('steps')} steps" if fin else
                     "no final fine-tune") + f"), {best['latency']:.3f} {unit}, "
                  f"{best['ratio']:.2f}x the parent -> `best/`.", ""]  # fmt: skip
    else:
        lines += ["No feasible candidate was evaluated: `best/` was not written.", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
