"""``xcompress profile``: latency, MACs/FLOPs and parameters of a model on a target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from xcompress.cli.options import CharsetOpt, TargetOpt, TaskOpt, check_task

if TYPE_CHECKING:
    from rich.table import Table

    from xcompress.profile.base import LatencyResult
    from xcompress.profile.emu import EmulationReport
    from xcompress.profile.flops import CostReport
    from xcompress.profile.run import ProfileReport


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)


# The options, declared once here so the command's signature stays readable.
ModelArg = Annotated[
    str, typer.Argument(help="Zoo name, folder with xcompress.json, or model file.")
]
ShapeOpt = Annotated[
    str | None,
    typer.Option("--shape", help="Input shape, e.g. 1x3x48x320 (default: from the card)."),
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Intra-op threads.")]
VsOpt = Annotated[
    str | None,
    typer.Option("--vs", help="Second model, timed alternately with MODEL in the same run."),
]
RunsOpt = Annotated[int, typer.Option("--runs", min=1, help="Timed runs (per model).")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up runs.")]
MinTimeOpt = Annotated[
    float | None,
    typer.Option("--min-time", min=0.001, help="Keep timing until this many s per model."),
]
CpuOpt = Annotated[
    str | None,
    typer.Option("--cpu", help="Emulated CPU model for arm64-emu (cortex-a76, neoverse-n1...)."),
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option("--runtime", help="ort or litert: profile the artifact of that format."),
]
RemotePythonOpt = Annotated[
    str | None,
    typer.Option("--remote-python", help="ssh targets: the board's python (default python3)."),
]
SshKeyOpt = Annotated[
    Path | None,
    typer.Option("--ssh-key", help="ssh targets: private key file (default: agent, ~/.ssh)."),
]
KnownHostsOpt = Annotated[
    Path | None,
    typer.Option("--known-hosts", help="ssh targets: known_hosts file to check the board's key."),
]
CountRunsOpt = Annotated[
    int, typer.Option("--count-runs", min=1, help="Emulated targets: inferences counted.")
]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write everything as JSON.")]


def profile(
    model: ModelArg,
    shape: ShapeOpt = None,
    threads: ThreadsOpt = None,
    vs: VsOpt = None,
    runs: RunsOpt = 30,
    warmup: WarmupOpt = 5,
    min_time: MinTimeOpt = None,
    target: TargetOpt = "host",
    cpu: CpuOpt = None,
    runtime: RuntimeOpt = None,
    remote_python: RemotePythonOpt = None,
    ssh_key: SshKeyOpt = None,
    known_hosts: KnownHostsOpt = None,
    count_runs: CountRunsOpt = 3,
    json_out: JsonOpt = None,
    task: TaskOpt = None,
    charset: CharsetOpt = None,
) -> None:
    """Time MODEL on a target and count its MACs/FLOPs and parameters.

    Prints median and p90 latency after warm-up, at the card's input shape unless --shape.
    With --vs, both models are timed alternately (ABBA rounds) and MODEL/OTHER is printed.
    On arm64-emu it also prints the output's max abs difference from the host's and the guest
    instructions per inference (int8 dot-product ones apart); emulated times are not device
    latencies. Examples:

      xcompress profile ppocr-v4-rec --target arm64-emu --cpu cortex-a76 --json out.json

      xcompress profile rec-int8/ --target ssh://pi@192.168.1.20 --runtime ort
    """
    from rich.console import Console

    from xcompress.fsutil import prepare_output_file, write_json
    from xcompress.profile.run import parse_shape, profile_model

    if json_out is not None:
        prepare_output_file(json_out, "--json")

    report = profile_model(
        model,
        vs=vs,
        target=target,
        shape=parse_shape(shape) if shape is not None else None,
        threads=threads,
        runs=runs,
        warmup=warmup,
        min_time_s=min_time,
        cpu=cpu,
        runtime=runtime,
        remote_python=remote_python,
        ssh_key=ssh_key,
        known_hosts=known_hosts,
        count_runs=count_runs,
        task=check_task(task),
        charset=charset,
    )
    Console(width=110).print(_table(report))
    if json_out is not None:
        write_json(json_out, report.model_dump(mode="json"))
        typer.echo(f"wrote {json_out}")


def _ms(v: float) -> str:
    return f"{v:.2f} ms"


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3f} {unit}"
    return f"{v:g}"


def _latency_rows(r: LatencyResult) -> dict[str, str]:
    # Emulated times are the host's time emulating the board: say so on the row itself.
    tag = " (emulated)" if r.runtime_options.get("timing") == "emulated" else ""
    return {
        f"median{tag}": _ms(r.median_ms),
        f"p90{tag}": _ms(r.p90_ms),
        "spread": f"IQR {r.iqr_ms:.2f}, std {r.std_ms:.2f}, min {r.min_ms:.2f}, max {r.max_ms:.2f}",
        "runs": str(r.n_runs),
    }


def _cost_rows(c: CostReport | None) -> dict[str, str]:
    if c is None:
        return {"MACs": "n/a (no counter for this format)", "FLOPs": "n/a", "params": "n/a"}
    flops = f"{_si(c.flops)} (other ops {_si(c.other_flops)})"
    if c.uncounted:
        flops += f", uncounted: {', '.join(sorted(c.uncounted))}"
    return {"MACs": _si(c.macs), "FLOPs": flops, "params": _si(c.params)}


def _emu_rows(e: EmulationReport | None) -> dict[str, str]:
    if e is None:
        return {}
    diff = (
        "n/a (no host runtime)"
        if e.max_abs_diff_vs_host is None
        else f"{e.max_abs_diff_vs_host:.3g}"
    )
    wall = "n/a" if e.emulated_wall_ms is None else _ms(e.emulated_wall_ms)
    return {
        "max abs diff vs host": diff,
        "instructions / inference": f"{e.instructions_per_inference:,}",
        "  int8 dot (SDOT/UDOT..)": f"{e.int8_dot_instructions_per_inference:,}",
        "  int8 mmla (SMMLA..)": f"{e.int8_mmla_instructions_per_inference:,}",
        "  other": f"{e.other_instructions_per_inference:,}",
        "  int8 dot share": f"{100 * e.int8_dot_share:.2f}%",
        "emulated wall (median)": f"{wall} (qemu on the host, NOT a device latency)",
    }


def _table(rep: ProfileReport) -> Table:
    from rich.table import Table

    from xcompress.profile.base import RUNTIME_DIST
    from xcompress.profile.run import format_shape

    first = rep.result or rep.comparison.a  # type: ignore[union-attr]
    runtime = f"{RUNTIME_DIST.get(first.runtime, first.runtime)} {first.runtime_version}"
    if first.runtime_options:
        runtime += " (" + ", ".join(f"{k}={v}" for k, v in first.runtime_options.items()) + ")"
    m = first.machine
    load = f", load {m.load_avg_1m:g}" if m.load_avg_1m is not None else ""
    common = {
        "target": rep.target.name,
        "machine": m.describe() + load,
        "runtime": runtime,
        "threads": str(first.threads),
        "shape": format_shape(rep.shape),
        "warm-up": str(rep.config.warmup),
    }
    if rep.comparison is None:
        table = Table(title=f"xcompress profile {rep.model}", show_header=False)
        table.add_column("", style="bold")
        table.add_column("")
        rows = {
            "model": rep.path,
            **common,
            **_latency_rows(first),
            **_cost_rows(rep.cost),
            **_emu_rows(rep.emulation),
        }
        for k, v in rows.items():
            table.add_row(k, v)
        return table

    c = rep.comparison
    table = Table(title=f"xcompress profile {rep.model} --vs {rep.vs}")
    table.add_column("", style="bold")
    # The names as the user gave them: zoo names stay readable, paths shrink to the last part.
    table.add_column("A: " + Path(rep.model).name)
    table.add_column("B: " + Path(rep.vs or "").name)
    table.add_row("model", rep.path, rep.vs_path or "")
    for k, v in common.items():
        table.add_row(k, v, "")
    a_rows, b_rows = _latency_rows(c.a), _latency_rows(c.b)
    a_cost, b_cost = _cost_rows(rep.cost), _cost_rows(rep.vs_cost)
    for k in a_rows:
        table.add_row(k, a_rows[k], b_rows[k])
    for k in a_cost:
        table.add_row(k, a_cost[k], b_cost[k])
    a_emu, b_emu = _emu_rows(rep.emulation), _emu_rows(rep.vs_emulation)
    for k in a_emu:
        table.add_row(k, a_emu[k], b_emu.get(k, ""))
    if rep.emulation is not None and rep.vs_emulation is not None:
        ea, eb = rep.emulation, rep.vs_emulation
        table.add_row(
            "A/B instructions",
            f"{ea.instructions_per_inference / eb.instructions_per_inference:.3f}  "
            f"(B needs {1 - eb.instructions_per_inference / ea.instructions_per_inference:.1%} "
            f"fewer)",
            "",
        )
    table.add_row(
        "A/B median",
        f"{c.ratio:.3f}  (95% CI {c.ci95_low:.3f}-{c.ci95_high:.3f}; per-round quartiles "
        f"{c.round_ratio_q25:.3f}-{c.round_ratio_q75:.3f})",
        "",
    )
    table.add_row("A/B p90", f"{c.p90_ratio:.3f}", "")
    table.add_row("alternation", f"{c.rounds} rounds, {c.order} order", "")
    return table
