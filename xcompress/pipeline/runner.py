"""Run a recipe: data, then its steps in order, then one report comparing every artifact
with the original.

``run_recipe`` is a loop over steps (:mod:`xcompress.pipeline.steps`): an artifact step makes
the next artifact of the chain (a candidate step proposes many, measured by the report's
measures, and continues from its chosen one); a measure listed among the steps measures the
chain's latest artifact. The report's table is the report's measures (one ``eval`` per set,
one ``profile``; :func:`~xcompress.pipeline.measures.report_measures`) applied to every
artifact of the chain.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from xcompress.artifact import Artifact, resolve_model
from xcompress.errors import XCompressError
from xcompress.fsutil import (
    mark_output,
    prepare_output_dir,
    sha256_file,
    write_json,
    write_text,
)
from xcompress.pipeline.recipe import (
    CropsSpec,
    DataSpec,
    Recipe,
    ScratchSpec,
    StepSpec,
    SynthSpec,
)
from xcompress.pipeline.steps import (
    CandidateStep,
    Measure,
    Measurement,
    RecipeStep,
    Step,
    get_step,
    run_candidates,
)

STEP_RECORD = "step.json"


@dataclass(frozen=True)
class Row:
    """One artifact in the final table."""

    label: str
    artifact: Artifact
    size_bytes: int
    metrics: dict[str, dict[str, float]]  # data set -> metric -> value
    latency: dict[str, float] | None  # median_ms, p90_ms, ratio (original / this)


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_recipe` made: the run folder, the table rows and the report dict."""

    out_dir: Path
    rows: list[Row]
    report: dict[str, Any]


@dataclass(frozen=True)
class Bound:
    """A step of the recipe with its config parsed (configs are checked before any work)."""

    spec: StepSpec
    step: RecipeStep
    config: BaseModel

    @classmethod
    def of(cls, spec: StepSpec) -> Bound:
        step = get_step(spec.step)
        config = step.parse_config(spec.config)
        missing = [r for r in step.roles if r not in spec.data]
        if missing:
            raise XCompressError(f"step {spec.folder}: needs data for {', '.join(missing)}")
        return cls(spec, step, config)

    def paths(self, data: dict[str, Path]) -> dict[str, Path]:
        """Role -> folder of the data sets this step reads."""
        return {r: data[d] for r, d in self.spec.data.items()}

    def can_measure(self, art: Artifact, original: Artifact) -> bool:
        """A measure that accepts ``art`` (and, comparing with it, the original)."""
        step = self.step
        assert isinstance(step, Measure)
        return step.accepts(art) and (not step.relative or step.accepts(original))

    def measure(self, label: str, art: Artifact, data: dict[str, Path], original: Artifact
                ) -> Measurement:
        assert isinstance(self.step, Measure)
        _say(self.step.describe(label, self.config, self.spec.data))
        return self.step.measure(art, self.config, self.paths(data), original)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done(record: Path, key: str) -> bool:
    """True if an earlier run finished this piece of work with the same inputs (``key``)."""
    return record.is_file() and json.loads(record.read_text()).get("key") == key


def _say(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold cyan]xcompress[/] {msg}", soft_wrap=True)


def _make_data(name: str, spec: DataSpec, art: Artifact, out_dir: Path) -> Path:
    """The folder of data set ``name``: the given path, or a synthetic set made once."""
    from xcompress.data import load_dataset

    if spec.path is not None:
        path = Path(spec.path)
        load_dataset(path)  # fail early, with the reader's clear error
        return path
    folder = out_dir / "data" / name
    key = _hash({**spec.model_dump(mode="json", exclude_none=True),
                 "charset": _hash(art.card.charset)})
    record = folder / "recipe-data.json"
    if _done(record, key):
        return folder  # made by an earlier run of this recipe
    if spec.crops is not None:
        return _make_crops(name, spec.crops, art, folder, record, key)
    assert spec.synth is not None
    _say(f"making data '{name}': {spec.synth.count} synthetic {spec.synth.task} samples")
    _synthesize(spec.synth, art, folder)
    write_json(record, {"key": key})
    return folder


def _synthesize(synth: SynthSpec, art: Artifact, folder: Path) -> None:
    from xcompress.data.synth import SynthConfig, generate
    from xcompress.data.synth.augment import augment_preset

    cfg = SynthConfig(
        task=synth.task,
        count=synth.count,
        seed=synth.seed,
        lang=synth.lang,
        charset=tuple(art.card.charset) if art.card.charset else None,
        augment=augment_preset(synth.augment),
    )
    generate(cfg, folder, force=True)


def _make_crops(name: str, spec: CropsSpec, art: Artifact, folder: Path, record: Path,
                key: str) -> Path:
    """Detection pages (given, or generated in the model's charset beside ``folder``) cut
    into recognition lines by ``spec.det``'s boxes."""
    from xcompress.data.crops import cut_crops

    if isinstance(spec.pages, SynthSpec):
        pages = folder.parent / f".{name}.pages"
        _say(f"making data '{name}': {spec.pages.count} synthetic det pages to cut")
        _synthesize(spec.pages, art, pages)
    else:
        pages = Path(spec.pages)
    rep = cut_crops(pages, spec.det, folder, iou=spec.iou)
    _say(f"data '{name}': {rep.lines} lines cut from {rep.pages} pages by {spec.det} "
         f"({rep.boxes} boxes found)")
    write_json(record, {"key": key})
    return folder


MeasureFn = Callable[[Artifact], list[Measurement]]


def _run_step(b: Bound, parent: Artifact, data: dict[str, Path], out_dir: Path,
              measure: MeasureFn) -> Artifact:
    """Run an artifact step into ``steps/<folder>``, or reuse a finished run of it."""
    spec, step = b.spec, b.step
    folder = out_dir / "steps" / spec.folder
    key = _hash(
        {"step": spec.step, "config": b.config.model_dump(mode="json"),
         "parent": parent.card.sha256, "data": {r: str(data[d]) for r, d in spec.data.items()}}
    )
    record = folder / STEP_RECORD
    if _done(record, key):
        _say(f"step {spec.folder}: already done with this config, reusing {folder}")
        return resolve_model(folder / json.loads(record.read_text()).get("artifact", "."))
    _say(f"step {spec.folder} ({spec.step}) ...")
    t0 = time.perf_counter()
    if isinstance(step, CandidateStep):
        res = run_candidates(step, parent, b.config, b.paths(data), folder, measure)
        art = res.chosen.candidate.artifact
    else:
        assert isinstance(step, Step)
        art = step.run(parent, b.config, b.paths(data), folder)
    try:  # the step's contract: its artifact lies in its folder
        rel = art.path.resolve().parent.relative_to(folder.resolve())
    except ValueError:
        raise XCompressError(f"internal: step {spec.step} returned {art.path}, outside "
                             f"{folder}") from None
    entry: dict[str, Any] = {"key": key, "step": spec.step, "seconds": time.perf_counter() - t0}
    if rel != Path():
        entry["artifact"] = rel.as_posix()  # a candidate step's chosen one
    write_json(record, entry)
    return art


def _run_steps(steps: list[Bound], table: list[Bound], original: Artifact,
               data: dict[str, Path], out: Path
               ) -> tuple[list[tuple[str, Artifact]], list[dict[str, Any]]]:
    """The loop over the recipe's steps: the artifact chain and the measurements taken."""
    chain: list[tuple[str, Artifact]] = [("original", original)]

    def measure_all(art: Artifact) -> list[Measurement]:
        return [m.measure("candidate", art, data, original) for m in table
                if m.can_measure(art, original)]

    measured: list[dict[str, Any]] = []
    for b in steps:
        label, head = chain[-1]
        if b.spec.input is not None:
            label, head = next(c for c in chain if c[0] == b.spec.input)
        if isinstance(b.step, Measure):
            if not b.can_measure(head, original):
                raise XCompressError(f"step {b.spec.folder}: cannot measure {label} "
                                     f"({head.card.format}) against the original "
                                     f"({original.card.format}): export it first")
            m = b.measure(label, head, data, original)
            measured.append({"name": b.spec.folder, "artifact": label, **asdict(m)})
        else:
            chain.append((b.spec.folder, _run_step(b, head, data, out, measure_all)))
    return chain, measured


def _measure_chain(chain: list[tuple[str, Artifact]], table: list[Bound],
                   data: dict[str, Path]) -> tuple[list[Row], str]:
    """Every artifact measured by the report's measures: the table rows, and the runtime the
    latencies were measured with."""
    # the baseline of relative measures: the original, or (an untrained checkpoint that no
    # runtime runs) the first artifact of the chain a runtime runs, e.g. its ONNX export
    original = next((a for _, a in chain if _runnable(a)), chain[0][1])
    rows: list[Row] = []
    runtime = "?"
    for label, art in chain:
        metrics, latency = {}, None
        for b in table:
            assert isinstance(b.step, Measure)
            if (b.step.relative and art is original) or not b.can_measure(art, original):
                continue  # the baseline's side is the first comparison's (below); a
                # checkpoint is measured once exported
            m = b.measure(label, art, data, original)
            if b.step.relative:
                latency, runtime = m.values, m.info.get("runtime", runtime)
            else:
                metrics[", ".join(b.spec.data.values())] = m.values
        rows.append(Row(label, art, art.path.stat().st_size, metrics, latency))
    # The baseline's latency is the one measured beside the first artifact after it.
    at = next(i for i, (_, a) in enumerate(chain) if a is original)
    first = next((r.latency for r in rows[at + 1:] if r.latency), None)
    if first:
        r = rows[at]
        rows[at] = Row(r.label, r.artifact, r.size_bytes, r.metrics,
                       {"median_ms": first["original_median_ms"],
                        "p90_ms": first["original_p90_ms"], "speedup": 1.0})
    return rows, runtime


def _runnable(art: Artifact) -> bool:
    from xcompress.runtime import list_runtimes

    return art.card.format in {r.format for r in list_runtimes(runnable_only=True)}


#: what a run folder holds (its output mark lists these)
RUN_ENTRIES = ("data", "steps", "original", "report.json", "report.md", "manifest.json")


def run_recipe(recipe: Recipe, out_dir: str | Path, force: bool = False) -> RunSummary:
    """Run ``recipe`` into ``out_dir`` and print the before/after table.

    Args:
        recipe: a validated :class:`Recipe` (see :func:`load_recipe`).
        out_dir: the run folder; data, step outputs and reports go below it. A second run
            with the same recipe reuses data and finished steps (resume after interruption).
            A non-empty folder that is not a run folder is refused unless ``force``.

    Returns:
        :class:`RunSummary` with the table rows and the report written to ``report.json``.
    """
    from xcompress.pipeline.measures import report_measures

    out = prepare_output_dir(out_dir, "run", force=force)
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "run", RUN_ENTRIES)
    t_start = time.perf_counter()
    model = recipe.model if isinstance(recipe.model, str) else f"new {recipe.model.arch}"
    _say(f"recipe {recipe.name}: model {model}")
    original = _original(recipe, out)
    data = {name: _make_data(name, spec, original, out) for name, spec in recipe.data.items()}
    steps = [Bound.of(s) for s in recipe.steps]
    table = [Bound.of(s) for s in report_measures(recipe)]
    chain, measured = _run_steps(steps, table, original, data, out)
    rows, runtime = _measure_chain(chain, table, data)
    report = _report(recipe, original, data, rows, table, runtime)
    if measured:
        report["measurements"] = measured
    report["seconds"] = time.perf_counter() - t_start
    _write_run(out, recipe, report, chain)
    print_table(report)
    return RunSummary(out, rows, report)


def _original(recipe: Recipe, out: Path) -> Artifact:
    """The recipe's model: resolved, or (a :class:`ScratchSpec`) a new untrained checkpoint
    written once to ``out/original/model.pt``."""
    spec = recipe.model
    if not isinstance(spec, ScratchSpec):
        return resolve_model(spec)
    path = out / "original" / "model.pt"
    key = _hash(spec.model_dump(mode="json"))
    record = path.parent / "recipe-model.json"
    if not _done(record, key):
        from xcompress.train.loop import new_checkpoint

        _say(f"new {spec.arch} model (untrained) in {path}")
        new_checkpoint(spec.arch, spec.arch_config, spec.charset, spec.max_width, path)
        write_json(record, {"key": key})
    return resolve_model(path)


def _report(recipe: Recipe, original: Artifact, data: dict[str, Path], rows: list[Row],
            table: list[Bound], runtime: str) -> dict[str, Any]:
    from xcompress.data import load_dataset
    from xcompress.pipeline.measures import ProfileStep, ProfileStepConfig

    rep = recipe.report
    prof = next(b for b in table if isinstance(b.step, ProfileStep))
    assert isinstance(prof.step, ProfileStep) and isinstance(prof.config, ProfileStepConfig)
    return {
        "recipe": recipe.model_dump(mode="json"),
        "model": {"name": original.card.name, "path": str(original.path),
                  "sha256": _sha256(original), "task": original.task},
        "data": {name: {"path": str(p), "samples": len(load_dataset(p)),
                        "source": "synthetic (xcompress data synth)" if recipe.data[name].synth
                        else "user"} for name, p in data.items()},
        "shape": list(prof.step.shape(prof.config, original)),
        "threads": rep.threads,
        "runtime": runtime,
        "target": rep.target,
        "machine": prof.step.profiler(prof.config).machine().model_dump(),
        "rows": [{"artifact": r.label, "path": str(r.artifact.path), "size_bytes": r.size_bytes,
                  "metrics": r.metrics, "latency": r.latency} for r in rows],
    }


def _sha256(art: Artifact) -> str:
    """The card's digest of the model file, or the file's own: a checkpoint carries its card
    inside, so that card cannot hold the digest of the file it is in (a model trained from
    scratch starts from one)."""
    return art.card.sha256 or sha256_file(art.path)


def _write_run(out: Path, recipe: Recipe, report: dict[str, Any],
               chain: list[tuple[str, Artifact]]) -> None:
    write_json(out / "report.json", report)
    write_text(out / "report.md", render_markdown(report))
    write_json(out / "manifest.json", {
        "recipe": recipe.name,
        "artifacts": [{"label": lab, "path": str(a.path), "sha256": _sha256(a),
                       "parent": a.card.parent, "step": a.card.step} for lab, a in chain],
    })


def _fmt_metric(name: str, v: float) -> str:
    return f"{100 * v:.2f}%" if name.startswith("cer") else f"{v:.4f}"


_SHORT = {"line_accuracy_nospace": "line acc*", "cer_nospace": "CER*", "cer": "CER",
          "precision": "P", "recall": "R", "hmean": "Hmean", "accuracy": "acc"}


def _columns(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(data set, metric, header) for the metrics shown, chosen by task."""
    shown = {"rec": ("line_accuracy_nospace", "cer_nospace", "cer"),
             "det": ("precision", "recall", "hmean"), "cls": ("accuracy",)}[report["model"]["task"]]
    sets = list(dict.fromkeys(ds for r in report["rows"] for ds in r["metrics"]))
    prefix = len(sets) > 1
    return [(ds, m, f"{ds} {_SHORT[m]}" if prefix else _SHORT[m]) for ds in sets for m in shown]


def _table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(report)
    header = ["artifact", "MB", *[c[2] for c in cols], "median ms", "p90 ms", "speed-up"]
    body = []
    for r in report["rows"]:
        lat = r["latency"] or {}
        body.append([
            r["artifact"],
            f"{r['size_bytes'] / 1e6:.2f}",
            *[_fmt_metric(m, r["metrics"][ds][m]) if ds in r["metrics"] else "-"
              for ds, m, _ in cols],
            f"{lat['median_ms']:.2f}" if lat else "-",
            f"{lat['p90_ms']:.2f}" if lat else "-",
            f"{lat['speedup']:.2f}x" if lat else "-",
        ])
    return header, body


def _context_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    data = "; ".join(f"{n}: {d['samples']} samples from {d['path']} ({d['source']})"
                     for n, d in report["data"].items())
    evals = ", ".join(report["recipe"]["report"]["eval"]) or "none"
    return [
        f"metrics on: {evals}; * = ignoring spaces (PaddleOCR's default)",
        f"model: {report['model']['name']} ({report['model']['task']}, sha256 "
        f"{(report['model']['sha256'] or '?')[:12]})",
        f"data: {data}",
        f"latency: shape {'x'.join(map(str, report['shape']))}, {report['threads']} threads, "
        f"{report['runtime']}, target {report['target']}, measured alternately in one run",
        f"machine: {m['cpu']}, {m['isa']}, {m['cores']} cores, "
        f"int8 dot: {', '.join(m['int8_dot']) or 'none'}",
    ]


def markdown_table_doc(title: str, intro: list[str], context: list[str], header: list[str],
                       body: list[list[str]]) -> str:
    """A Markdown report: title, intro lines, context bullets, then the table."""
    lines = [f"# {title}", "", *intro]
    lines += [f"- {c}" for c in context]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def print_rich_table(title: str, header: list[str], body: list[list[str]],
                     context: list[str], left: str) -> None:
    """The table on the terminal (column ``left`` left-aligned), then one line per context
    line (also in a CI log)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h == left else "right", no_wrap=True)
    for row in body:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for c in context:
        console.print(f"  {c}", soft_wrap=True)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: context lines, then the before/after table."""
    header, body = _table_rows(report)
    return markdown_table_doc(report["recipe"]["name"], [], _context_lines(report), header,
                              body)


def print_table(report: dict[str, Any]) -> None:
    """Print the before/after table with its context."""
    header, body = _table_rows(report)
    print_rich_table(f"{report['recipe']['name']}: before / after", header, body,
                     _context_lines(report), "artifact")
