"""The report's plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from xcompress.report.entries import LOWER_IS_BETTER, Entry

_ACCURACY = {"rec": "cer_nospace", "det": "hmean", "cls": "accuracy", "system": "e2e_hmean"}
_LATENCY_LABEL = {"system": "ms per page (whole pipeline)"}


def _front(points: list[tuple[float, float]], lower_better: bool) -> list[tuple[float, float]]:
    """The Pareto front of (latency, accuracy): faster and more accurate than everything else."""
    pts = sorted(points)
    out, best = [], None
    for x, y in pts:
        if best is None or (y < best if lower_better else y > best):
            out.append((x, y))
            best = y
    return out


def plot_accuracy_latency(entries: list[Entry], path: Path) -> None:
    """One panel per model: each entry's accuracy against its latency, the parent marked,
    the Pareto front drawn through the entries no other is faster and better than."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Entry]] = {}
    for e in entries:
        if e.latency_ms is not None and _ACCURACY[e.task] in e.metrics:
            groups.setdefault(e.model, []).append(e)
    n = max(1, len(groups))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    for ax, (model, group) in zip(axes[0], groups.items(), strict=False):
        metric = _ACCURACY[group[0].task]
        lower = metric in LOWER_IS_BETTER
        scale = 100.0
        pts = [(e.latency_ms, e.metrics[metric] * scale) for e in group]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", zorder=3)
        for e, (x, y) in zip(group, pts, strict=True):
            ax.annotate(e.step, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if e.parent:
                ax.scatter([x], [y], s=140, facecolors="none", edgecolors="tab:red", zorder=4,
                           label="parent")
        front = _front(pts, lower)
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="tab:green",
                label="Pareto front")
        ax.set_xlabel(_LATENCY_LABEL.get(group[0].task, "median latency, ms"))
        ax.set_ylabel(f"{metric} (%){' (lower is better)' if lower else ''}")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if not groups:
        axes[0][0].text(0.5, 0.5, "no entry with both latency and accuracy", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sizes(entries: list[Entry], path: Path) -> None:
    """Size of every entry (MB), grouped by model; a system's bar is its members' sum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [e.key for e in entries]
    sizes = [e.metrics.get("size_bytes", 0.0) / 1e6 for e in entries]
    colors = ["tab:gray" if e.parent else "tab:blue" for e in entries]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(labels) + 2), 3.8))
    ax.bar(range(len(labels)), sizes, color=colors)
    for i, s in enumerate(sizes):
        ax.text(i, s, f"{s:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("size, MB (grey: the parent)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
