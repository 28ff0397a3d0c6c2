"""The report's figures, each returned as a base64 PNG for embedding in a self-contained HTML page.

Figures: metrics per mode, the per-kind breakdown, the latency distribution per mode. Labels are ASCII
(modes, metric and kind names) so no CJK font is needed.

Does not: compute metrics (eval.run does), or write files (eval.report does).
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from eval import metrics  # noqa: E402

COLORS = {"bm25": "#8c8c8c", "dense": "#4c9be8", "hybrid": "#e8804c", "rerank": "#5cb85c"}
BY_KIND = ("hit@5", "mrr@10")


def _color(mode: str, n: int) -> str:
    return COLORS.get(mode, f"C{n}")


def _labels(modes: dict[str, dict]) -> dict[str, str]:
    """Legend names: a rerank mode whose cross-encoder was off is marked as the fused order."""
    return {mode: f"{mode} (off: fused)" if "reranker" in m else mode for mode, m in modes.items()}


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bars(
    ax: plt.Axes, groups: list[str], series: dict[str, list[float]], label: dict[str, str], *, labels: bool
) -> None:
    """Grouped vertical bars: one group per name in `groups`, one bar per series (mode)."""
    width = 0.8 / max(len(series), 1)
    for n, (mode, values) in enumerate(series.items()):
        xs = [g + (n - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width, label=label.get(mode, mode), color=_color(mode, n))
        if labels:
            crowded = len(series) > 2
            ax.bar_label(bars, fmt="%.2f", fontsize=6.5, padding=2, rotation=90 if crowded else 0)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.12)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def modes_figure(modes: dict[str, dict], metric_names: tuple[str, ...]) -> str:
    """Grouped bars: each overall metric, one bar per mode."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    series = {mode: [m["overall"][name] for name in metric_names] for mode, m in modes.items()}
    groups = [name.replace("context_", "context\n") for name in metric_names]
    _bars(ax, groups, series, _labels(modes), labels=True)
    ax.set_title("Retrieval metrics per mode (answerable questions)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


def kinds_figure(modes: dict[str, dict]) -> str:
    """One panel per metric in BY_KIND: grouped bars per question kind, one bar per mode."""
    kinds = sorted({kind for m in modes.values() for kind in m["by_kind"]})
    first = next(iter(modes.values()))
    groups = [f"{kind}\n(n={first['by_kind'].get(kind, {}).get('n', 0)})" for kind in kinds]
    fig, axes = plt.subplots(1, len(BY_KIND), figsize=(11, 3.6), sharey=True)
    for ax, name in zip(axes, BY_KIND, strict=True):
        series = {
            mode: [m["by_kind"].get(kind, {}).get(name, 0.0) for kind in kinds] for mode, m in modes.items()
        }
        _bars(ax, groups, series, _labels(modes), labels=False)
        ax.set_title(f"{name} by question kind")
        ax.tick_params(axis="x", labelsize=8)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _png(fig)


def latency_figure(latencies: dict[str, list[float]]) -> str:
    """Horizontal box plots of search latency per mode (log scale), p50 and p95 written beside."""
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.6 * len(latencies)))
    names = list(latencies)
    values = [[max(v, 0.01) for v in latencies[m]] or [0.01] for m in names]
    parts = ax.boxplot(
        values, orientation="horizontal", tick_labels=names, whis=(5, 95), patch_artist=True, widths=0.5
    )
    for n, (box, mode) in enumerate(zip(parts["boxes"], names, strict=True)):
        box.set_facecolor(_color(mode, n))
        box.set_alpha(0.7)
    for y, v in enumerate(values, start=1):
        cut = metrics.percentiles(v)
        ax.annotate(f"p50 {cut['p50']:.1f} ms · p95 {cut['p95']:.1f} ms", (max(v), y), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    flat = [x for v in values for x in v]
    ax.set_xlim(min(flat) / 2, max(flat) * 12)  # room on the right for the p50/p95 text
    ax.set_xlabel("search latency per question, ms (log scale; whiskers 5th-95th percentile)")
    ax.grid(axis="x", alpha=0.3, which="both")
    return _png(fig)
