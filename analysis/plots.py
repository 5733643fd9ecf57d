"""One run's plots, and `run_figures`, which assembles them by file stem.

Each plot is `plot_x(ax, frames) -> None`: it draws one run's `Frames` on an
Axes it is given and writes nothing.  Here: the latency, TTFT, TPOT and ITL
distributions (histogram + CDF + p50/p90/p99, via `plot_distribution(ax,
values, ...)`), the timeline (requests in flight, output tokens/s, errors by
reason) and TTFT against prompt length.  Colours, styling and rendering come
from `analysis.plot_style`.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from analysis.errors import failure_groups, reason_totals
from analysis.formatting import count, plot_number
from analysis.frames import Frames, start_end
from analysis.metrics import generates_tokens, metric_samples
from analysis.plot_style import (BLUE, GREEN, GREY, ORANGE, PURPLE, RED, TITLE_GID, fit_titles, no_data, safely,
                                 single, style)
from analysis.stats import nearest_rank
from engine.store import RAMP_UP

MARKERS = (("50%", "p50", GREEN), ("90%", "p90", ORANGE), ("99%", "p99", RED))
MAX_SCATTER = 50_000


def plot_distribution(ax: Axes, values: np.ndarray, title: str, xlabel: str, ylabel: str = "requests",
                      unit: str = "", empty: str = "no data") -> None:
    """Histogram (left axis) with the CDF (right axis) and p50/p90/p99 markers.

    A wide spread (max/min > 50) gets logarithmic bins and axis, so a long
    tail does not squash the body into one bar; otherwise, a few outliers
    far beyond p99.9 are cut off and counted in the title."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    if values.size == 0:
        no_data(ax, title, xlabel, ylabel, why=empty)
        return
    lo, hi = float(values.min()), float(values.max())
    p50, p90, p99, p999 = nearest_rank(values, ["50%", "90%", "99%", "99.9%"])
    log = lo > 0 and hi / lo > 50
    upper = hi
    if not log and hi > lo and hi - lo > 3 * max(p99 - lo, 1e-12) and p999 < hi:
        upper = p999 + (p999 - lo) * 0.02
    if upper - lo <= max(abs(lo), 1.0) * 1e-9:  # (nearly) one value: give the bars some width
        half = abs(lo) * 0.05 or 0.5
        lo, upper = lo - half, lo + half
        log = False
    # One pass of a fine, uniform histogram (numpy's fast path; on log10 of the
    # values for a log axis) gives both the bars and the CDF.  About 2*sqrt(n)
    # bars, 10 to 60: forty requests in sixty bins read as a barcode.
    bins = int(min(60, max(10, round(2 * math.sqrt(values.size)))))
    sub = max(16, 960 // bins)
    if log:
        lo_t, up_t = math.log10(lo), math.log10(upper)
        fine_counts, _ = np.histogram(np.log10(values), bins=bins * sub, range=(lo_t, up_t))
        fine_edges = 10.0 ** np.linspace(lo_t, up_t, bins * sub + 1)
    else:
        fine_counts, fine_edges = np.histogram(values, bins=bins * sub, range=(lo, upper))
    counts = fine_counts.reshape(bins, sub).sum(axis=1)
    edges = fine_edges[::sub]
    hist = ax.stairs(counts, edges, fill=True, color=BLUE, alpha=0.55, label=f"{ylabel} per bin")
    cdf = np.r_[0.0, np.cumsum(fine_counts)] / values.size
    twin = ax.twinx()
    (cdf_line,) = twin.plot(fine_edges, cdf, color=PURPLE, linewidth=1.6, label="cumulative share")
    twin.set_ylim(0, 1.02)
    twin.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    twin.set_ylabel("cumulative share", color=PURPLE)
    twin.tick_params(axis="y", colors=PURPLE)
    twin.spines["top"].set_visible(False)
    handles = [hist, cdf_line]
    for label, name, color in MARKERS:
        x = {"50%": p50, "90%": p90, "99%": p99}[label]
        handles.append(ax.axvline(x, color=color, linestyle="--", linewidth=1.4,
                                  label=f"{name} = {plot_number(x)}{(' ' + unit) if unit else ''}"))
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        ax.set_xlim(lo / 1.05, upper * 1.05)
    else:
        ax.set_xlim(lo - (upper - lo) * 0.01, upper + (upper - lo) * 0.01)
    extra = ", log scale" if log else ""
    beyond = int((values > upper).sum())
    if beyond:
        extra += f"; {beyond:,} above {plot_number(upper)} (max {plot_number(hi)}) not shown"
    style(ax, f"{title}  (n={values.size:,}{extra})", xlabel, ylabel, pad=24)
    ax.set_ylim(0, max(counts.max(), 1) * 1.05)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(count))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(handles), fontsize=8.5,
              frameon=False, borderaxespad=0.2, handlelength=1.6, columnspacing=1.2)


def _empty(frames: Frames) -> str:
    """Why a distribution has no values, when the reason is that nothing succeeded."""
    return "no data" if frames.ok_mask().any() else "no data: no measured request succeeded"


def plot_latency_distribution(ax: Axes, frames: Frames) -> None:
    plot_distribution(ax, metric_samples(frames)["Latency (s)"], "End-to-end latency", "latency (s)", unit="s",
                      empty=_empty(frames))


def plot_ttft_distribution(ax: Axes, frames: Frames) -> None:
    plot_distribution(ax, metric_samples(frames)["TTFT (ms)"], "Time to first token", "TTFT (ms)", unit="ms",
                      empty=_empty(frames))


def plot_tpot_distribution(ax: Axes, frames: Frames) -> None:
    plot_distribution(ax, metric_samples(frames)["TPOT (ms)"],
                      "Time per output token, (latency − TTFT)/(tokens − 1)", "TPOT (ms)",
                      unit="ms", empty=_empty(frames))


def plot_itl_distribution(ax: Axes, frames: Frames) -> None:
    plot_distribution(ax, metric_samples(frames)["ITL (ms)"], "Inter-token latency (gaps between output events)",
                      "ITL (ms)", ylabel="gaps", unit="ms", empty=_empty(frames))


# -- timeline ---------------------------------------------------------------

def _times(frames: Frames) -> tuple[np.ndarray, np.ndarray, float]:
    start, end = start_end(frames.requests)
    t0 = float(np.nanmin(start)) if np.isfinite(start).any() else 0.0
    return start - t0, end - t0, t0


def _nice_ceil(x: float) -> float:
    """The smallest of ..., 0.01, 0.02, 0.05, 0.1, ..., 1, 2, 5, 10, ... that is >= x."""
    if x <= 0:
        return 1.0
    exp = math.floor(math.log10(x))
    for step in (1, 2, 5, 10):
        value = step * 10.0 ** exp
        if value >= x * (1 - 1e-9):
            return float(f"{value:.12g}")
    return 10.0 ** (exp + 1)


def _bin_width(span: float) -> float:
    """Per-second bins, as a rate plot is read; a short run gets finer bins
    (about 150 of them), a long one wider bins (at most about 600)."""
    if span < 150:
        return max(_nice_ceil(span / 150.0), 0.001)
    return _nice_ceil(span / 600.0) if span > 600 else 1.0


def _bins_text(width: float) -> str:
    if width == 1:
        return " per second"
    return f" ({width * 1000:g} ms bins)" if width < 1 else f" ({width:g}-second bins)"


def _shade_warmup(ax: Axes, frames: Frames, start: np.ndarray, end: np.ndarray) -> None:
    flag = frames.requests["is_warmup"].to_numpy()
    warm = flag == 1  # --warmup-num: until its last reply
    if warm.any() and np.isfinite(end[warm]).any():
        ax.axvspan(np.nanmin(start[warm]), np.nanmax(end[warm]), color=GREY, alpha=0.12, label="warm-up")
    ramp = flag == RAMP_UP  # --ramp-up (engine.store): the sends of the ramp, while the load grows
    if ramp.any() and np.isfinite(start[ramp]).any():
        ax.axvspan(np.nanmin(start[ramp]), np.nanmax(start[ramp]), color=ORANGE, alpha=0.10, label="ramp-up")


def plot_in_flight(ax: Axes, frames: Frames) -> None:
    """Requests in flight (sent, not yet finished) over the run."""
    title, xl, yl = "Requests in flight", "time since first send (s)", "requests"
    start, end, _ = _times(frames)
    ok = np.isfinite(start) & np.isfinite(end)
    if not ok.any():
        no_data(ax, title, xl, yl)
        return
    t = np.concatenate([start[ok], end[ok]])
    step = np.concatenate([np.ones(ok.sum()), -np.ones(ok.sum())])
    order = np.lexsort((step, t))  # at a tie, a finish before a start
    level = np.cumsum(step[order])
    ax.step(np.r_[0.0, t[order]], np.r_[0.0, level], where="post", color=BLUE, linewidth=1.2)
    ax.fill_between(np.r_[0.0, t[order]], np.r_[0.0, level], step="post", color=BLUE, alpha=0.15)
    _shade_warmup(ax, frames, start, end)
    parallel = (frames.run.get("args") or {}).get("parallel")
    if isinstance(parallel, (int, float)) and parallel > 0:
        ax.axhline(parallel, color=GREY, linestyle=":", linewidth=1.2, label=f"--parallel {parallel:g}")
    style(ax, title, xl, yl)
    if ax.get_legend_handles_labels()[0]:  # beside the title, never over the curve
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False,
                  borderaxespad=0.1)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_output_rate(ax: Axes, frames: Frames) -> None:
    """Output tokens per second over the run (successful requests, each
    request's tokens spread evenly over its output events)."""
    start, end, _ = _times(frames)
    span = float(np.nanmax(end)) if np.isfinite(end).any() else 0.0
    width = _bin_width(span)
    title = "Output throughput" + _bins_text(width)
    xl, yl = "time since first send (s)", "output tokens/s"
    req = frames.requests
    ev = frames.events
    success = req["success"].to_numpy() == 1
    tokens = np.nan_to_num(req["completion_tokens"].to_numpy(dtype=float))
    idx = ev["request"].to_numpy()
    n_events = np.bincount(idx, minlength=len(req))
    per_event = np.where((n_events > 0) & success, tokens / np.maximum(n_events, 1), 0.0)
    if np.all(idx[1:] >= idx[:-1]):  # grouped by request, as loaded
        t = np.repeat(start, n_events) + ev["offset_s"].to_numpy()
        weights = np.repeat(per_event, n_events)
    else:
        t = start[idx] + ev["offset_s"].to_numpy()
        weights = per_event[idx]
    # tokens of successful replies without any output event land at completion
    lone = success & (n_events == 0) & (tokens > 0)
    nbins = max(1, int(math.ceil((span + 1e-9) / width)))
    edges = np.arange(nbins + 1) * width
    sums = np.zeros(nbins)
    if t.size:
        sums += np.histogram(t, bins=nbins, range=(0, nbins * width), weights=weights)[0]
    if lone.any():
        sums += np.histogram(end[lone], bins=nbins, range=(0, nbins * width), weights=tokens[lone])[0]
    del t, weights
    if sums.sum() == 0:
        no_data(ax, title, xl, yl, why="no output tokens" + ("" if success.any() else ": no request succeeded"))
        return
    ax.stairs(sums / width, edges, fill=True, color=GREEN, alpha=0.5)
    _shade_warmup(ax, frames, start, end)
    style(ax, title, xl, yl)
    ax.yaxis.set_major_formatter(FuncFormatter(count))


def _per_bin_text(width: float) -> str:
    if width == 1:
        return "per second"
    return f"per {width * 1000:g} ms" if width < 1 else f"per {width:g} s"


def _failure_reasons(frames: Frames, failed: np.ndarray, top: int = 3) -> tuple[np.ndarray, list[str]]:
    """For the failed rows: an index into `names` (the `top` most frequent
    normalised reasons, then "other"), normalising each distinct message once."""
    codes, reasons = failure_groups(frames.requests.loc[failed])
    totals = reason_totals(codes, reasons)
    ranked = list(totals)  # most frequent first
    names = ranked[:top] + ([f"other ({len(ranked) - top} reasons)"] if len(ranked) > top else [])
    lookup = {name: i for i, name in enumerate(names[:top])}
    pair_index = np.array([lookup.get(r, len(names) - 1) for r in reasons], dtype=np.int64)
    return pair_index[codes], names


def plot_error_rate(ax: Axes, frames: Frames) -> None:
    """Failed requests per time bin, at the time each failure happened,
    stacked by reason (the three most frequent, then the rest)."""
    start, end, _ = _times(frames)
    span = float(np.nanmax(end)) if np.isfinite(end).any() else 0.0
    width = _bin_width(span)
    xl, yl = "time since first send (s)", f"failed requests\n{_per_bin_text(width)}"
    failed = frames.requests["success"].to_numpy() != 1
    failed &= np.isfinite(end)
    t = end[failed]
    measured = int((failed & frames.measured_mask()).sum())
    title = f"Errors{_bins_text(width)}: {measured:,} failed"
    if t.size > measured:
        title += f" (+{t.size - measured:,} in warm-up)"
    nbins = max(1, int(math.ceil((span + 1e-9) / width)))
    edges = np.arange(nbins + 1) * width
    which = np.clip((t // width).astype(np.int64), 0, nbins - 1)
    if t.size == 0:
        style(ax, title, xl, yl)
        ax.stairs(np.zeros(nbins), edges, color=RED)
        ax.text(0.5, 0.5, "no errors", transform=ax.transAxes, ha="center", va="center", color=GREY)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        return
    reason, names = _failure_reasons(frames, failed)
    colors = (RED, ORANGE, PURPLE, GREY)
    base = np.zeros(nbins)
    for k, name in enumerate(names):
        counts = np.bincount(which[reason == k], minlength=nbins).astype(float)
        n = int(counts.sum())
        label = (name if len(name) <= 60 else name[:59] + "…") + f" ({n:,})"
        ax.stairs(base + counts, edges, baseline=base, fill=True, color=colors[k % len(colors)], alpha=0.7,
                  label=label)
        base += counts
    _shade_warmup(ax, frames, start, end)
    ax.set_ylim(0, max(base.max(), 1) * 1.1)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    # the reasons go in a row between the title and the axes, never over a bar
    labels = ax.get_legend_handles_labels()[1]
    ncol = len(labels) if sum(len(x) for x in labels) <= 110 else min(2, len(labels))
    rows = math.ceil(len(labels) / ncol)
    style(ax, title, xl, yl, pad=6 + 14 * rows)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=ncol, fontsize=8, frameon=False,
              borderaxespad=0.2, handlelength=1.4, columnspacing=1.2)


def plot_ttft_vs_prompt(ax: Axes, frames: Frames) -> None:
    """TTFT against prompt tokens, one point per successful request, with the
    median TTFT per prompt length (per bin of lengths when there are many)."""
    title, xl, yl = "TTFT against prompt length", "prompt tokens", "TTFT (ms)"
    req = frames.requests.loc[frames.ok_mask()]
    streamed = req["is_stream"].to_numpy() == 1
    if streamed.any():
        req = req.loc[streamed]
    x = req["prompt_tokens"].to_numpy(dtype=float)
    y = req["ttft_ms"].to_numpy(dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        no_data(ax, title, xl, yl, why=_empty(frames))
        return
    note = ""
    if x.size > MAX_SCATTER:
        pick = np.random.default_rng(0).choice(x.size, MAX_SCATTER, replace=False)
        xs, ys = x[pick], y[pick]
        note = f"; {MAX_SCATTER:,} random ones shown"
    else:
        xs, ys = x, y
    ax.scatter(xs, ys, s=6, alpha=0.35, color=BLUE, edgecolors="none", rasterized=True, label="request")
    log = bool(x.min() > 0 and x.max() / x.min() > 50)
    distinct = np.unique(x)
    if distinct.size >= 2:
        if distinct.size <= 40:  # few lengths: the median of each, none merged with its neighbour
            which = np.searchsorted(distinct, x)
            mids = distinct
        else:  # ~20 bins of equal counts; the x of a bin is its median length
            edges = np.unique(np.quantile(x, np.linspace(0, 1, 21)))
            which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
            mids = None
        order = np.argsort(which, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(which[order])) + 1)
        mx = np.array([float(mids[which[g[0]]]) if mids is not None else float(np.median(x[g])) for g in groups])
        my = np.array([float(np.median(y[g])) for g in groups])
        gaps = empty_stretches(np.array([x[g].min() for g in groups]), np.array([x[g].max() for g in groups]),
                               log)
        # a NaN between two groups breaks the line: no median is drawn across lengths nobody sent
        mx, my = np.insert(mx, gaps + 1, np.nan), np.insert(my, gaps + 1, np.nan)
        ax.plot(mx, my, color=RED, linewidth=2, marker="o", markersize=3,
                label="median per length" if mids is not None else "median per bin of lengths")
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: count(v)))
        note += ", log scale"
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(count))
    style(ax, f"{title} ({x.size:,} requests{note})", xl, yl, pad=20)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8.5, frameon=False,
              borderaxespad=0.2, markerscale=2)
    ax.set_ylim(bottom=0)


def empty_stretches(lows: np.ndarray, highs: np.ndarray, log: bool) -> np.ndarray:
    """Indices k where the lengths between group k (ending at highs[k]) and
    group k+1 (starting at lows[k+1]) are an empty stretch: a gap wider than
    1/20 of the axis and than 3 times the median gap (on the axis's scale),
    so evenly spaced lengths (100, 200, 300) are one line and 10..18, 27 are two."""
    if lows.size < 2:
        return np.empty(0, dtype=np.int64)
    lo, hi = (np.log10(lows), np.log10(highs)) if log else (lows.astype(float), highs.astype(float))
    gaps = lo[1:] - hi[:-1]
    span = hi[-1] - lo[0]
    return np.flatnonzero(gaps > max(span / 20.0, 3.0 * float(np.median(gaps))))


# -- figures -------------------------------------------------------------------

def run_figures(frames: Frames) -> dict[str, Figure]:
    """One run's figures by file stem (nothing written)."""
    figs = {"latency_distribution": single(plot_latency_distribution, frames)}
    tokens = generates_tokens(frames)  # embeddings, rerank: no first token, no gaps to draw
    if tokens:
        figs["ttft_distribution"] = single(plot_ttft_distribution, frames)
        figs["tpot_distribution"] = single(plot_tpot_distribution, frames)
        figs["itl_distribution"] = single(plot_itl_distribution, frames)
    from analysis.server_plots import server_panels  # the server's own metrics, when the run has them

    server = server_panels(frames)
    fig = Figure(figsize=(10, 8 + 2.2 * len(server)), layout="constrained")
    # the errors panel is the least busy: less height than the two above
    axes = fig.subplots(3 + len(server), 1, sharex=True, height_ratios=[3, 3] + [2] * len(server) + [2])
    for ax, draw in zip(axes, (plot_in_flight, plot_output_rate, *server, plot_error_rate)):
        safely(draw, ax, frames)
    for ax in axes[:-1]:
        ax.set_xlabel("")
        ax.tick_params(labelbottom=True)
    fig.suptitle(f"Timeline of run {frames.name}", fontsize=13).set_gid(TITLE_GID)
    fit_titles(fig)
    figs["timeline"] = fig
    if tokens:
        figs["ttft_vs_prompt"] = single(plot_ttft_vs_prompt, frames, (8.5, 5))
    return figs


