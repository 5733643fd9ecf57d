"""Plots of the server's own metrics (analysis.server_metrics), from the
database alone: the timeline's extra panels (server running/waiting, KV-cache
usage, prefix-cache hits and spec-decode acceptance, each only when the
server reports it), on the client panels' time axis; and the sweep's figure
of them against the load.  Like analysis.plot_style, imports matplotlib:
import it only when plotting.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from analysis.frames import Frames, start_end
from analysis.plot_style import BLUE, GREEN, ORANGE, PURPLE, RED, no_data, safely, style
from analysis.server_metrics import read_samples, timeline
from analysis.sweep_plots import sweep_axis

Panel = Callable[[Axes, Frames], None]
XLABEL = "time since first send (s)"


def _x(series: pd.DataFrame, frames: Frames) -> np.ndarray:
    """Scrape times on the client panels' axis: seconds since the first send."""
    start, _ = start_end(frames.requests)
    t0 = float(np.nanmin(start)) if np.isfinite(start).any() else float(series.index.min())
    return series.index.to_numpy(dtype=float) - t0


def _lines(ax: Axes, x: np.ndarray, series: pd.DataFrame, what: list[tuple[str, str, str]], title: str,
           ylabel: str, share: bool, span_s: float) -> None:
    drawn = False
    for (key, label, color), (dash, marker) in zip(what, (("-", "o"), ("--", "s"))):
        if key not in series:
            continue
        y = series[key].to_numpy(dtype=float) * (100.0 if share else 1.0)
        ok = np.isfinite(y)
        ax.plot(x[ok], y[ok], color=color, linestyle=dash, marker=marker, markersize=3.5, linewidth=1.4,
                label=label)
        drawn = True
    if span_s > 0:  # the client's run: the scrapes just before and after it fall at its edges
        ax.set_xlim(-0.02 * span_s, 1.02 * span_s)
    if not drawn:
        no_data(ax, title, XLABEL, ylabel)
        return
    style(ax, title, XLABEL, ylabel)
    ax.set_ylim(bottom=0)
    if share:
        ax.yaxis.set_major_formatter(PercentFormatter(100))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=8, frameon=False, borderaxespad=0.1)


def server_panels(frames: Frames) -> list[Panel]:
    """The panels the run's server metrics fill, in order; none without them."""
    series, _ = timeline(read_samples(frames.path)) if frames.path else (pd.DataFrame(), {})
    if series.empty:
        return []
    x = _x(series, frames)
    start, end = start_end(frames.requests)
    span_s = float(np.nanmax(end) - np.nanmin(start)) if np.isfinite(end).any() else 0.0
    groups = [
        ([("running", "running", BLUE), ("waiting", "waiting", ORANGE)], "Server: requests running and waiting",
         "requests", False),
        ([("kv_cache_usage", "KV-cache usage", PURPLE)], "Server: KV-cache usage", "used", True),
        ([("prefix_hit_rate", "prefix-cache hits", GREEN), ("spec_accept_rate", "spec-decode accepted", RED)],
         "Server: prefix-cache hit rate and spec-decode acceptance", "rate", True),
    ]
    panels: list[Panel] = []
    for what, title, ylabel, share in groups:
        if any(key in series for key, _, _ in what):
            def draw(ax: Axes, _frames: Frames, what=what, title=title, ylabel=ylabel, share=share) -> None:
                _lines(ax, x, series, what, title, ylabel, share, span_s)
            draw.__name__ = f"server panel {title!r}"
            panels.append(draw)
    return panels


# -- the sweep ------------------------------------------------------------------

SWEEP_GROUPS = (
    ("Server: running and waiting requests against load", "requests",
     (("Server Max Running requests", "max running", BLUE, "-"),
      ("Server Mean Running requests", "mean running", BLUE, ":"),
      ("Server Max Waiting requests", "max waiting", ORANGE, "-"),
      ("Server Mean Waiting requests", "mean waiting", ORANGE, ":"))),
    ("Server: KV-cache, prefix-cache hits, spec-decode acceptance against load", "%",
     (("Server Max KV-cache usage (%)", "max KV-cache usage", PURPLE, "-"),
      ("Server Mean KV-cache usage (%)", "mean KV-cache usage", PURPLE, ":"),
      ("Server Mean Prefix-cache hit rate (%)", "mean prefix-cache hits", GREEN, ":"),
      ("Server Mean Spec-decode acceptance (%)", "mean spec-decode acceptance", RED, ":"))),
)


def _sweep_plot(ax: Axes, sweep: pd.DataFrame, title: str, ylabel: str, lines) -> None:
    column, xlabel = sweep_axis(sweep)
    x = pd.to_numeric(sweep[column], errors="coerce")
    order = np.argsort(x.to_numpy(dtype=float))
    for name, label, color, dash in lines:
        if name in sweep:
            y = pd.to_numeric(sweep[name], errors="coerce").to_numpy(dtype=float)[order]
            ax.plot(x.to_numpy(dtype=float)[order], y, color=color, linestyle=dash, marker="o", label=label)
    style(ax, title, xlabel, ylabel, pad=22)
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=8, frameon=False, borderaxespad=0.2)


def server_sweep_figures(sweep: pd.DataFrame) -> dict[str, Figure]:
    """The server's figures against the load, when its runs have server metrics."""
    groups = [g for g in SWEEP_GROUPS if any(name in sweep and sweep[name].notna().any() for name, *_ in g[2])]
    if not groups:
        return {}
    fig = Figure(figsize=(8.5, 4.6 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (title, ylabel, lines) in zip(axes, groups):
        def draw(ax: Axes, data: pd.DataFrame, title=title, ylabel=ylabel, lines=lines) -> None:
            _sweep_plot(ax, data, title, ylabel, lines)
        safely(draw, ax, sweep)
    return {"sweep_server": fig}
