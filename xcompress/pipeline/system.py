"""System recipes: a detector, an angle classifier and a recognizer, each through its own
steps, then the whole system scored end to end against the original one.

A system recipe is a recipe whose ``members`` are small recipes (``det``, ``cls``, ``rec``:
a model, its data, its steps, its report). Each member runs as a recipe of its own in
``RUN/members/<role>`` (:func:`~xcompress.pipeline.runner.run_recipe`: finished steps are
reused, so a re-run resumes at the step that failed); its last runnable artifact (or the
step named by ``use``) joins the compressed system. Both systems then read the same pages,
page by page in turn (:func:`~xcompress.eval.system.evaluate_systems`), and the report
gives each member and the whole: size, end-to-end Hmean with a paired 95 % interval of the
change, CER of matched lines, latency per page and the speed-up measured alternately.

Example (``recipes/ppocr-v4-system.yaml``)::

    name: ppocr-v4-system
    data:
      pages: {synth: {task: det, count: 30, seed: 11, lang: mix}}
    members:
      det: {model: ppocr-v4-det, data: {...}, steps: [{step: quantize, ...}]}
      cls: {model: ppocr-v4-cls}            # no steps: the member stays as it is
      rec: {model: ppocr-v4-rec, data: {...}, steps: [...]}
    system: {eval: [pages], threads: 2}
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xcompress.artifact import Artifact, resolve_model
from xcompress.errors import XCompressError
from xcompress.ocr import system_defaults as defaults
from xcompress.pipeline.recipe import DataSpec, Recipe, ReportSpec, StepSpec

Role = Literal["det", "cls", "rec"]
ROLES: tuple[Role, ...] = ("det", "cls", "rec")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemberSpec(_Frozen):
    """One member: a recipe without a name (steps may be empty: the member as it is)."""

    model: str
    data: dict[str, DataSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)
    report: ReportSpec = Field(default_factory=ReportSpec)
    use: str | None = None  # the step folder whose artifact joins the system; None: the last

    def recipe(self, name: str) -> Recipe:
        return Recipe(name=name, model=self.model, data=self.data, steps=self.steps,
                      report=self.report)


class SystemSpec(_Frozen):
    """How the systems are compared: the page sets, threads, and the pipeline settings."""

    eval: list[str] = Field(min_length=1)  # data set names (detection pages with text)
    threads: int = Field(default=2, ge=1)
    limit: int | None = Field(default=None, ge=1)
    drop_score: float = Field(default=defaults.DROP_SCORE, ge=0, le=1)
    cls_thresh: float = Field(default=defaults.CLS_THRESH, ge=0, le=1)
    rec_batch: int = Field(default=defaults.REC_BATCH, ge=1)  # crops per recognizer call


class SystemRecipe(_Frozen):
    """Named page sets, the members, and the end-to-end comparison."""

    name: str
    data: dict[str, DataSpec] = Field(default_factory=dict)
    members: dict[Role, MemberSpec]
    system: SystemSpec

    @model_validator(mode="after")
    def _check(self) -> SystemRecipe:
        missing = [r for r in ("det", "rec") if r not in self.members]
        if missing:
            raise ValueError(f"a system needs a {' and a '.join(missing)} member")
        for ds in self.system.eval:
            if ds not in self.data:
                raise ValueError(f"system: eval data '{ds}' is not defined")
        for role, m in self.members.items():
            if m.use is not None and m.use not in {s.folder for s in m.steps}:
                raise ValueError(f"members.{role}.use: no step is named '{m.use}'")
            if m.steps:
                m.recipe(role)  # the member's own checks (its data names, step folders)
        return self


def is_system_recipe(raw: Any) -> bool:
    return isinstance(raw, dict) and "members" in raw


def load_system_recipe(path: str | Path) -> SystemRecipe:
    """Read and validate a system recipe YAML file (one-line errors, as recipes)."""
    p = Path(path)
    try:
        return SystemRecipe.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "recipe"
        raise XCompressError(f"recipe {p}: {where}: {err['msg']}") from e


@dataclass(frozen=True)
class SystemRunSummary:
    out_dir: Path
    report: dict[str, Any]


#: what a system run folder holds
SYSTEM_ENTRIES = ("data", "members", "report.json", "report.md")


def _say(msg: str) -> None:
    from xcompress.pipeline.runner import _say as say

    say(msg)


def _run_member(role: str, spec: MemberSpec, name: str, out: Path, force: bool
                ) -> tuple[Artifact, Artifact, dict[str, Any] | None]:
    """(original, the artifact that joins the system, the member's run report)."""
    from xcompress.pipeline.runner import _runnable, run_recipe

    original = resolve_model(spec.model, task=role)  # type: ignore[arg-type]
    if not spec.steps:
        _say(f"member {role}: {spec.model} as it is")
        return original, original, None
    _say(f"member {role}: recipe of {len(spec.steps)} step(s) in {out / 'members' / role}")
    summary = run_recipe(spec.recipe(f"{name}/{role}"), out / "members" / role, force=force)
    chain = [(r.label, r.artifact) for r in summary.rows]
    if spec.use is not None:
        chosen = next(a for lab, a in chain if lab == spec.use)
        if not _runnable(chosen):
            raise XCompressError(f"members.{role}.use: {spec.use} is a {chosen.card.format} "
                                 "model no runtime here runs: export it first")
    else:
        chosen = next(a for _, a in reversed(chain) if _runnable(a))
    return original, chosen, summary.report


def run_system_recipe(recipe: SystemRecipe, out_dir: str | Path, force: bool = False
                      ) -> SystemRunSummary:
    """Run every member's recipe, then compare the original and the compressed system end
    to end on each page set; write ``report.json`` / ``report.md`` and print the table."""
    from xcompress.eval.system import SystemEvalConfig, evaluate_systems
    from xcompress.fsutil import mark_output, prepare_output_dir
    from xcompress.pipeline.runner import _make_data

    out = prepare_output_dir(out_dir, "run", force=force)
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "run", SYSTEM_ENTRIES)
    t0 = time.perf_counter()
    _say(f"system recipe {recipe.name}: {', '.join(recipe.members)}")
    picked = {role: _run_member(role, recipe.members[role], recipe.name, out, force)
              for role in ROLES if role in recipe.members}
    # pages are rendered with the recognizer's charset: every transcription is readable
    data = {n: _make_data(n, spec, picked["rec"][0], out) for n, spec in recipe.data.items()}
    sysc = recipe.system
    cfg = SystemEvalConfig(threads=sysc.threads, limit=sysc.limit, drop_score=sysc.drop_score,
                           cls_thresh=sysc.cls_thresh, rec_batch=sysc.rec_batch, progress=True)

    def members(i: int) -> tuple:
        return tuple(picked[r][i] if r in picked else None for r in ROLES)

    evals = {}
    for name in sysc.eval:
        _say(f"end-to-end: original and compressed systems on '{name}', alternately")
        evals[name] = evaluate_systems({"original": members(0), "compressed": members(1)},
                                       data[name], cfg)
    report = system_report(recipe, picked, data, evals)
    report["seconds"] = time.perf_counter() - t0
    from xcompress.fsutil import write_json, write_text

    write_json(out / "report.json", report)
    write_text(out / "report.md", render_system_markdown(report))
    print_system_table(report)
    return SystemRunSummary(out, report)


def system_report(recipe: SystemRecipe, picked: dict[str, tuple], data: dict[str, Path],
                  evals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's report: members (sizes, their own table rows), and per page set both
    systems' end-to-end metrics, the paired interval of the change and the speed-up."""
    import platform

    from xcompress.eval.bootstrap import paired_interval
    from xcompress.eval.evaluate import cpu_model
    from xcompress.profile.machine import host_machine

    members = []
    for role, (orig, chosen, rep) in picked.items():
        rows = {r["artifact"]: r for r in (rep or {}).get("rows", [])}
        label = next((lab for lab, r in rows.items() if r["path"] == str(chosen.path)),
                     "original")
        members.append({
            "role": role, "model": orig.card.name, "artifact": label,
            "path": str(chosen.path), "format": chosen.card.format,
            "original_bytes": orig.path.stat().st_size, "bytes": chosen.path.stat().st_size,
            "metrics": rows.get(label, {}).get("metrics", {}),
            "original_metrics": rows.get("original", {}).get("metrics", {}),
            "latency": rows.get(label, {}).get("latency"),
        })
    sets = {}
    for name, pair in evals.items():
        a, b = pair["original"], pair["compressed"]
        import numpy as np

        ca, cb = np.asarray(a.page_counts), np.asarray(b.page_counts)
        lo, hi = paired_interval("e2e", ca, cb, "e2e_hmean")
        sets[name] = {
            "data": a.data, "original": a.to_dict(), "compressed": b.to_dict(),
            "e2e_hmean_delta": b.metrics["e2e_hmean"] - a.metrics["e2e_hmean"],
            "e2e_hmean_delta_ci95": [lo, hi],
            "speedup": a.metrics["page_ms_mean"] / b.metrics["page_ms_mean"],
        }
    first = next(iter(evals.values()))["original"]
    return {
        "kind": "system", "recipe": recipe.model_dump(mode="json"), "name": recipe.name,
        "members": members, "sets": sets,
        "data": {n: {"path": str(p)} for n, p in data.items()},
        "size": {"original_bytes": sum(m["original_bytes"] for m in members),
                 "bytes": sum(m["bytes"] for m in members)},
        "threads": recipe.system.threads,
        "runtime": sorted({f"{m.runtime} {m.runtime_version}" for m in first.members}),
        "machine": {**host_machine().model_dump(include={"int8_dot", "simd"}),
                    "cpu": cpu_model(), "cores": first.settings["cores"],
                    "isa": platform.machine()},
    }


def _system_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["", "MB", "e2e Hmean*", "e2e Hmean", "matched CER*", "det Hmean", "ms / page",
              "speed-up"]
    body = []
    for m in report["members"]:
        body.append([f"{m['role']} {m['artifact']} ({m['format']})",
                     f"{m['original_bytes'] / 1e6:.2f} -> {m['bytes'] / 1e6:.2f}", "", "", "",
                     "", "", f"{m['latency']['speedup']:.2f}x" if m.get("latency") else "-"])
    for name, s in report["sets"].items():
        for side in ("original", "compressed"):
            r = s[side]
            body.append([f"{side} system, {name}",
                         f"{r['size_bytes'] / 1e6:.2f}", f"{100 * r['e2e_hmean']:.2f}",
                         f"{100 * r['e2e_hmean_asis']:.2f}",
                         f"{100 * r['matched_cer_nospace']:.2f}%", f"{100 * r['det_hmean']:.2f}",
                         f"{r['page_ms_mean']:.1f}",
                         "1.00x" if side == "original" else f"{s['speedup']:.2f}x"])
    return header, body


def _system_context(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, s in report["sets"].items():
        lo, hi = s["e2e_hmean_delta_ci95"]
        lines.append(f"{name}: e2e Hmean* change {100 * s['e2e_hmean_delta']:+.2f} points "
                     f"(95% paired bootstrap {100 * lo:+.2f} .. {100 * hi:+.2f}) on "
                     f"{s['data']['pages']} pages, {s['data']['lines']} lines from "
                     f"{s['data']['path']} (label sha256 {s['data']['sha256'][:12]})")
    m = report["machine"]
    lines += [
        "* = ignoring spaces, full-width folded (PaddleOCR's end-to-end default); e2e: a read "
        "line counts when its box matches at IoU >= 0.5 and its text is exact",
        "latency: whole pipeline per page (det + cls + rec, rec crops in batches sorted by "
        "width: the recipe's system.rec_batch, default 6), "
        f"{report['threads']} threads, {', '.join(report['runtime'])}, both systems page by "
        "page in turn; member speed-ups from each member's own report",
        f"machine: {m['cpu']}, {m['isa']}, {m['cores']} cores"
        + (f", int8 dot: {', '.join(m['int8_dot']) or 'none'}" if "int8_dot" in m else ""),
    ]
    return lines


def render_system_markdown(report: dict[str, Any]) -> str:
    from xcompress.pipeline.runner import markdown_table_doc

    header, body = _system_rows(report)
    size = report["size"]
    intro = [f"System size {size['original_bytes'] / 1e6:.2f} MB -> {size['bytes'] / 1e6:.2f} "
             "MB", ""]
    return markdown_table_doc(report["name"], intro, _system_context(report), header, body)


def print_system_table(report: dict[str, Any]) -> None:
    from xcompress.pipeline.runner import print_rich_table

    header, body = _system_rows(report)
    print_rich_table(f"{report['name']}: original / compressed system", header, body,
                     _system_context(report), "")


def run_recipe_file(path: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Run the recipe in ``path`` (a model recipe, or a system recipe when it has
    ``members``) into ``out_dir``; returns the path of its ``report.md``."""
    from xcompress.pipeline.recipe import load_recipe
    from xcompress.pipeline.runner import run_recipe

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) if p.is_file() else None
    except yaml.YAMLError:
        raw = None  # load_recipe gives the one-line YAML error
    if is_system_recipe(raw):
        return run_system_recipe(load_system_recipe(p), out_dir, force=force).out_dir / "report.md"
    return run_recipe(load_recipe(p), out_dir, force=force).out_dir / "report.md"
