"""A sweep's plots: one point per run, the runs differing in concurrency or rate.

Each plot is `plot_x(ax, sweep) -> None`: it draws on an Axes it is given
from `sweep`, a pandas DataFrame with one row per run (the report's summary
row: load, throughput, p50/p99 TTFT and TPOT) and writes nothing.  Here:
output throughput against the load, p50/p99 TTFT and TPOT against output
throughput, the labels placed beside their points (`place_labels`) and
`sweep_figures`, which assembles them by file stem.

Styling, colours and the figure plumbing come from `analysis.plot_style`.
Like it, this module imports matplotlib, so only import it when plotting.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from analysis.formatting import count, plot_number
from analysis.plot_style import BLUE, GREEN, GREY, RED, no_data, single, style


def sweep_axis(sweep: pd.DataFrame) -> tuple[str, str]:
    """(column, label) of the load variable: the request rate when runs differ
    in it, else the concurrency."""
    rates = pd.to_numeric(sweep.get("Request Rate (req/s)"), errors="coerce")
    if rates is not None and (rates > 0).any() and rates.nunique(dropna=True) > 1:
        return "Request Rate (req/s)", "request rate (req/s)"
    return "Concurrency", "concurrency (requests in flight)"


def _load_label(row: pd.Series, column: str) -> str:
    value = row.get(column)
    if column == "Concurrency":
        return f"c={value}" if value is not None and value == value else row.get("Run", "")
    return f"r={value:g}" if isinstance(value, (int, float)) and value > 0 else "r=INF"


# Where a label may go, relative to its point (offset in points, alignment),
# in order of preference: beside, above or below, then further out.
_LABEL_SPOTS = tuple(
    (dx * k, dy * k, "left" if dx > 0 else "right" if dx < 0 else "center",
     "bottom" if dy > 0 else "top" if dy < 0 else "center")
    for k in (1, 1.8, 2.8)
    for dx, dy in ((6, 6), (-6, 6), (6, -6), (-6, -6), (0, 9), (0, -9), (9, 0), (-9, 0))
)


def _obstacles(ax: Axes) -> np.ndarray:
    """Display coordinates of every line of `ax`, a point every ~3 pixels."""
    parts = []
    for line in ax.get_lines():
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 0:
            continue
        parts.append(xy[:1])
        for a, b in zip(xy[:-1], xy[1:]):
            n = max(1, int(np.hypot(*(b - a)) // 3))
            parts.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(parts) if parts else np.empty((0, 2))


def place_labels(ax: Axes, points: list[tuple[float, float]], texts: list[str], **text_kw: Any) -> list:
    """Annotate each point with its text where it covers no other label, no
    line or marker of `ax` and stays inside the axes: the first free spot of
    `_LABEL_SPOTS`, else the least crowded one.  Call after everything else is
    drawn on `ax` (limits, legend) so the geometry is final."""
    fig = ax.figure
    fig.draw_without_rendering()  # lay the figure out: display coordinates are now final
    frame = ax.get_window_extent()
    obstacles = _obstacles(ax)
    placed: list = []
    annotations = []
    text_style = dict(fontsize=8, color="#333333",
                      bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85))
    text_style.update(text_kw)
    for (x, y), text in zip(points, texts):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), **text_style)
        ann.set_in_layout(False)
        best, best_cost = None, math.inf
        for dx, dy, ha, va in _LABEL_SPOTS:
            ann.set_position((dx, dy))
            ann.set_ha(ha)
            ann.set_va(va)
            box = ann.get_window_extent().padded(2)
            cost = 0.0
            outside = (max(0.0, frame.x0 - box.x0) + max(0.0, box.x1 - frame.x1)
                       + max(0.0, frame.y0 - box.y0) + max(0.0, box.y1 - frame.y1))
            cost += 100.0 * outside
            cost += 50.0 * sum(1 for other in placed if box.overlaps(other))
            if obstacles.size:
                inside = ((obstacles[:, 0] > box.x0) & (obstacles[:, 0] < box.x1)
                          & (obstacles[:, 1] > box.y0) & (obstacles[:, 1] < box.y1))
                cost += float(inside.sum())
            if cost < best_cost:
                best, best_cost = (dx, dy, ha, va), cost
            if cost == 0:
                break
        dx, dy, ha, va = best
        if abs(dx) + abs(dy) > 13:  # away from its point: a thin leader says whose label it is
            ann.remove()
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                              arrowprops=dict(arrowstyle="-", color=GREY, linewidth=0.7, shrinkA=0, shrinkB=4),
                              **text_style)
            ann.set_in_layout(False)
        ann.set_position((dx, dy))
        ann.set_ha(ha)
        ann.set_va(va)
        placed.append(ann.get_window_extent().padded(2))
        annotations.append(ann)
    return annotations


def _log2_if_wide(ax: Axes, x: pd.Series) -> bool:
    """A log2 x axis when the loads span 8x or more (1, 4, 16 evenly spaced); True when it is."""
    log = bool(x.min() > 0 and x.max() / x.min() >= 8)
    if log:
        ax.set_xscale("log", base=2)
    ax.set_xticks(list(x))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    return log


def plot_throughput_vs_load(ax: Axes, sweep: pd.DataFrame) -> None:
    """Output tokens/s against concurrency or rate, one point per run, each
    labelled with its output tokens/s and requests/s.  (Requests/s on a second
    axis drew a copy of the same curve whenever replies had the same length.)"""
    column, label = sweep_axis(sweep)
    title = f"Throughput against {label.split(' (')[0]} (one point per run)"
    data = sweep.copy()
    data["_x"] = pd.to_numeric(data[column], errors="coerce")
    data["_y"] = pd.to_numeric(data["Output Throughput (tok/s)"], errors="coerce")
    data = data.dropna(subset=["_x", "_y"]).sort_values("_x")
    if data.empty:
        no_data(ax, title, label, "output tokens/s")
        return
    ax.plot(data["_x"], data["_y"], color=GREEN, marker="o", linewidth=2)
    if _log2_if_wide(ax, data["_x"]):  # say so: evenly spaced ticks of 1, 4, 16 read as a linear axis
        label = label[:-1] + ", log₂ scale)" if label.endswith(")") else label + " (log₂ scale)"
    style(ax, title, label, "output tokens/s")
    ax.margins(x=0.08, y=0.18)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(count))
    texts = []
    for _, row in data.iterrows():
        req_s = pd.to_numeric(row.get("Req Throughput (req/s)"), errors="coerce")
        text = f"{plot_number(row['_y'])} tok/s"
        if req_s == req_s and req_s is not None:
            text += f"\n{plot_number(float(req_s))} req/s"
        texts.append(text)
    place_labels(ax, list(zip(data["_x"], data["_y"])), texts)


def _latency_vs_throughput(ax: Axes, sweep: pd.DataFrame, metric: str) -> None:
    column, _ = sweep_axis(sweep)
    title = f"{metric} against output throughput (one point per run)"
    xl, yl = "output throughput (tokens/s)", f"{metric} (ms)"
    data = sweep.copy()
    data["_x"] = pd.to_numeric(data["Output Throughput (tok/s)"], errors="coerce")
    data = data.dropna(subset=["_x"]).sort_values("_x")
    cols = [f"P50 {metric} (ms)", f"P99 {metric} (ms)"]
    if data.empty or data[cols].isna().all().all():
        no_data(ax, title, xl, yl)
        return
    x = data["_x"].to_numpy(dtype=float)
    for pct, color, dash in (("P50", BLUE, "-"), ("P99", RED, "--")):
        y = pd.to_numeric(data[f"{pct} {metric} (ms)"], errors="coerce").to_numpy(dtype=float)
        ax.plot(x, y, color=color, linestyle=dash, marker="o", linewidth=2, label=f"{pct.lower()} {metric}")
    style(ax, title, xl, yl, pad=20)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8.5, frameon=False,
              borderaxespad=0.2)
    ax.margins(x=0.08, y=0.15)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(FuncFormatter(count))
    # one label per run, at its p99 point (its p50 when it has no p99)
    points, texts = [], []
    for (_, row), xi in zip(data.iterrows(), x):
        y99 = pd.to_numeric(row.get(cols[1]), errors="coerce")
        y50 = pd.to_numeric(row.get(cols[0]), errors="coerce")
        yi = y99 if y99 == y99 else y50
        if yi == yi:
            points.append((xi, float(yi)))
            texts.append(_load_label(row, column))
    place_labels(ax, points, texts)


def plot_ttft_vs_throughput(ax: Axes, sweep: pd.DataFrame) -> None:
    """Latency–throughput curve: p50/p99 TTFT against output tokens/s, one point per run."""
    _latency_vs_throughput(ax, sweep, "TTFT")


def plot_tpot_vs_throughput(ax: Axes, sweep: pd.DataFrame) -> None:
    """Latency–throughput curve: p50/p99 TPOT against output tokens/s, one point per run."""
    _latency_vs_throughput(ax, sweep, "TPOT")


# -- figures -------------------------------------------------------------------

def sweep_figures(sweep: pd.DataFrame) -> dict[str, Figure]:
    """A sweep's figures (one row of `sweep` per run), by file stem."""
    from analysis.server_plots import server_sweep_figures  # imports this module

    return {
        "sweep_throughput": single(plot_throughput_vs_load, sweep),
        "sweep_ttft_vs_throughput": single(plot_ttft_vs_throughput, sweep),
        "sweep_tpot_vs_throughput": single(plot_tpot_vs_throughput, sweep),
        **server_sweep_figures(sweep),
    }
