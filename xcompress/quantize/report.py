"""The quantization report: ``report.json`` assembled from the stage results, and
``report.md``, the same as a page a person reads.

:func:`build_report` is the last stage of :func:`xcompress.quantize.quantize`: it only reads
the typed results of the earlier stages (:mod:`xcompress.quantize.stages`), so every number
in the report is one a stage measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xcompress.quantize.stages import (
        FinalMeasurement,
        FloatFallback,
        Int4Choice,
        PlanSearch,
        PlanTiming,
        QuantizeContext,
        Upgraded,
    )


def build_report(ctx: QuantizeContext, upgraded: Upgraded, timing: PlanTiming,
                 search: PlanSearch, final: FinalMeasurement, parent_sha: str,
                 int4: Int4Choice | None = None) -> dict[str, Any]:
    """The content of ``report.json`` (``warnings`` last; ``quantize`` adds ``time_s``)."""
    from xcompress.quantize.graph import opset_of

    cfg, art, signal, chosen = ctx.cfg, ctx.art, ctx.signal, search.chosen
    cal, cmp = chosen.calibration, final.comparison
    fp32_bytes, int8_bytes = art.path.stat().st_size, final.path.stat().st_size
    return {
        "model": {"name": art.card.name, "task": art.card.task, "source": str(art.path),
                  "sha256": parent_sha, "opset": opset_of(ctx.orig),
                  "upgraded_opset": opset_of(upgraded.model)},
        "config": cfg.model_dump(mode="json"),
        "plan": {"name": chosen.plan.name, "description": chosen.plan.plan.description,
                 "speed_up_by_plan": timing.speed, "attempts": search.attempts},
        "rewrites": chosen.counts,
        "float_check": {"upgrade_max_diff": upgraded.max_diff,
                        "rewrite_max_diff": chosen.plan.max_diff},
        "calibration": {"method": cal.method,
                        "percentile": cal.percentile if cal.method == "percentile" else None,
                        "candidates": cal.candidates, "samples": len(ctx.data.calib),
                        "synthetic_samples": len(ctx.data.calib) if ctx.data.synthetic
                        else ctx.data.mixed,
                        "widths": [ctx.data.widths[0], ctx.data.widths[-1]],
                        "tensor_groups": cal.groups, "chosen_by": cal.rule,
                        "finalists": cal.finalists},
        "bias_correction": {"applied": chosen.bias.applied, "layers": chosen.bias.layers,
                            "disagreement": list(chosen.bias.disagreement or ()),
                            "seconds": chosen.bias.seconds},
        "size": {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes,
                 "ratio": int8_bytes / fp32_bytes},
        "int4_weights": None if int4 is None or int4.drop is None else {
            "layers": list(int4.layers), "candidates": int4.candidates,
            "bytes_saved": int4.bytes_saved, "error_rise": int4.error_rise,
            "drop_before": int4.drop[0],
            "drop_after": int4.drop[1], "checks": [list(c) for c in int4.checks],
            "sensitivity": int4.sensitivity, "seconds": int4.seconds},
        "accuracy": {k: {"metric": signal.metric, "fp32": final.fp32_metrics[k],
                         "int8": chosen.metrics[k],
                         "drop": signal.drop(final.fp32_metrics[k], chosen.metrics[k]),
                         "drop_ci95": list(final.drop_ci95.get(k, ())),
                         "n": len(ctx.data.budget_sets[k]),
                         "data": "built-in synthetic" if ctx.data.is_synthetic(k)
                                 else "given"}
                     for k in chosen.metrics},
        "latency": {"shape": list(ctx.shape), "threads": cmp.a.threads, "target": cfg.target,
                    "runtime": f"{cmp.a.runtime} {cmp.a.runtime_version}",
                    "runtime_options": dict(cmp.a.runtime_options),
                    "fp32_median_ms": cmp.a.median_ms, "fp32_p90_ms": cmp.a.p90_ms,
                    "int8_median_ms": cmp.b.median_ms, "int8_p90_ms": cmp.b.p90_ms,
                    "ratio": cmp.ratio, "ratio_ci95": [cmp.ci95_low, cmp.ci95_high],
                    "rounds": cmp.rounds, "cpu": cmp.a.machine.model_dump(mode="json")},
        "layers": _layers(chosen.fallback, art.card.task),
        "warnings": final.warnings,
    }


def _layers(fb: FloatFallback, task: str) -> dict[str, Any]:
    groups, sensitivity, res = fb.groups, fb.sensitivity, fb.result
    return {
        "total": len(groups) + len(fb.stem),
        "kept_float": [
            {"layer": g, "nodes": nodes, "sensitivity": None,
             "reason": "stem: reads the image, or is the depthwise conv reading the stem's "
                       "output; the image's contrast is served badly by one int8 range "
                       "(float_stem)"}
            for g, nodes in fb.stem.items()] + [
            {"layer": g, "nodes": groups[g], "sensitivity": sensitivity.get(g),
             "reason": f"rank {i + 1} by {task} sensitivity; needed to meet the budget"}
            for i, g in enumerate(res.float_layers)],
        "sensitivity": dict(sorted(sensitivity.items(), key=lambda kv: -kv[1])),
        "fallback_steps": [{"float_layers": list(s.float_layers), "drop": s.drop,
                            "kept": s.kept} for s in res.steps],
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}"


def _machine(cpu: dict[str, Any]) -> str:
    dot = ", ".join(cpu.get("int8_dot") or ()) or "none"
    load = cpu.get("load_avg_1m")
    text = f"{cpu.get('cpu', '?')}, {cpu.get('cores', '?')} cores, int8 dot: {dot}"
    return text + (f", load {load:.1f}" if load is not None else "")


def _candidate(label: str, score: Any) -> str:
    if isinstance(score, dict):  # drop and disagreement with float
        return (f"{label} drop {score['drop'] * 100:.2f} pt, "
                f"disagreement {score['disagreement']:.4f}")
    return f"{label} {score * 100:.2f} pt"


def _finalists(drops: dict[str, float] | None) -> str:
    if not drops:
        return ""
    return "; after bias correction: " + ", ".join(
        f"{k} drop {v * 100:.2f} pt" for k, v in drops.items())


def _bias_line(bc: dict[str, Any] | None) -> str:
    if not bc or not bc.get("layers"):
        return ""
    before, after = bc["disagreement"]
    return (f" Bias correction of {bc['layers']} layers: disagreement with float "
            f"{before:.4f} -> {after:.4f}, " + ("applied." if bc["applied"] else "not applied."))


def _int4_lines(w: dict[str, Any] | None) -> list[str]:
    if not w:
        return []
    if not w["layers"]:
        return [f"int4 weights: none of {w['candidates']} candidate layers fitted the limits; "
                "every weight is int8.", ""]
    return [f"int4 weights (GPTQ, int8 kernels): {len(w['layers'])} of {w['candidates']} "
            f"candidate layers, {w['bytes_saved'] / 1e6:.2f} MB saved; output error "
            f"x{1 + w['error_rise']:.2f} of the int8 model's; budget metric drop "
            f"{w['drop_before'] * 100:.2f} -> {w['drop_after'] * 100:.2f} pt "
            f"({len(w['checks'])} budget checks).", ""]


def render_markdown(r: dict[str, Any]) -> str:
    """Render the report dict written by :func:`xcompress.quantize.quantize` as Markdown."""
    m, size, lat, cal = r["model"], r["size"], r["latency"], r["calibration"]
    lines = [
        f"# int8 quantization of {m['name']} ({m['task']})",
        "",
        f"Plan **{r['plan']['name']}**: {r['plan']['description']}. Calibration: "
        f"{cal['method']}" + (f" {cal['percentile']}" if cal.get("percentile") else "")
        + f" on {cal['samples']} samples"
        + (f" ({cal['synthetic_samples']} of them from the built-in synthetic set)"
           if cal.get("synthetic_samples") and cal["synthetic_samples"] < cal["samples"] else "")
        + f" (input widths {cal['widths'][0]}-{cal['widths'][1]} px)"
        + (f"; chosen by {cal.get('chosen_by', 'the budget metric drop')}: " + ", ".join(
            _candidate(k, v) for k, v in cal["candidates"].items())
           if cal.get("candidates")
           else "") + _finalists(cal.get("finalists")) + "."
        + _bias_line(r.get("bias_correction")),
        f"Opset {m['opset']} -> {m['upgraded_opset']}; float outputs after upgrade / rewrites "
        f"differ by at most {r['float_check']['upgrade_max_diff']:.1e} / "
        f"{r['float_check']['rewrite_max_diff']:.1e}. Took {r['time_s']:.0f} s.",
        "",
        "## Size",
        "",
        "| | fp32 | int8 | int8/fp32 |",
        "|---|---:|---:|---:|",
        f"| bytes | {size['fp32_bytes']:,} | {size['int8_bytes']:,} | {size['ratio'] * 100:.1f}% |",
        "",
        *_int4_lines(r.get("int4_weights")),
        "## Accuracy",
        "",
        "| set (data, samples) | metric | fp32 | int8 | drop (points) | drop 95% CI |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, a in r["accuracy"].items():
        metric = a["metric"]
        ci = a.get("drop_ci95") or ()
        ci_s = f"{ci[0] * 100:+.2f}..{ci[1] * 100:+.2f}" if len(ci) == 2 else ""
        where = f"{name} ({a.get('data', 'given')}, {a['n']})" if "n" in a else name
        lines.append(f"| {where} | {metric} | {_pct(a['fp32'][metric])} | "
                     f"{_pct(a['int8'][metric])} | {_pct(a['drop'])} | {ci_s} |")
        for extra in ("line_accuracy", "cer", "cer_nospace", "line_accuracy_nospace",
                      "precision", "recall"):
            if extra in a["fp32"] and extra != metric:
                lines.append(f"| {where} | {extra} | {_pct(a['fp32'][extra])} | "
                             f"{_pct(a['int8'][extra])} | | |")
    lines += [
        "",
        "## Latency",
        "",
        f"Input {'x'.join(map(str, lat['shape']))}, {lat['threads']} threads, {lat['runtime']} "
        + "".join(f"({k}={v}) " for k, v in lat.get("runtime_options", {}).items())
        + f"on {lat['target']} ({_machine(lat['cpu'])}); "
        f"fp32 and int8 timed alternately in one run ({lat['rounds']} rounds).",
        "",
        "| | median ms | p90 ms |",
        "|---|---:|---:|",
        f"| fp32 | {lat['fp32_median_ms']:.2f} | {lat['fp32_p90_ms']:.2f} |",
        f"| int8 | {lat['int8_median_ms']:.2f} | {lat['int8_p90_ms']:.2f} |",
        "",
        f"Speed-up fp32/int8: **{lat['ratio']:.2f}x** (95% CI {lat['ratio_ci95'][0]:.2f}-"
        f"{lat['ratio_ci95'][1]:.2f}).",
        "",
        "## Layers kept in float",
        "",
    ]
    kept = r["layers"]["kept_float"]
    if not kept:
        lines.append(f"None: all {r['layers']['total']} layers are int8.")
    else:
        lines += ["| layer | nodes | sensitivity | why |", "|---|---:|---:|---|"]
        for k in kept:
            s = k["sensitivity"]
            lines.append(f"| {k['layer']} | {len(k['nodes'])} | "
                         f"{'-' if s is None else f'{s:.4f}'} | {k['reason']} |")
    steps = r["layers"]["fallback_steps"]
    if len(steps) > 1:
        lines += ["", "Fallback steps (float layers -> drop): "
                  + ", ".join(f"{len(s['float_layers'])} -> {_pct(s['drop'])}" for s in steps)]
    if r.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r["warnings"]]
    rw = ", ".join(f"{k} ({v})" for k, v in r["rewrites"].items() if v)
    lines += ["", "## Graph rewrites", "", rw or "none", ""]
    return "\n".join(lines)
