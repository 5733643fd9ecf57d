"""Every plot a run and a sweep write, rendered from real databases: its
titles, axis labels and legends lie inside the figure (matplotlib's own text
extents), an all-failed run's timeline keeps its time labels, the median line
of TTFT against prompt length breaks over lengths nobody sent, and a log-spaced
sweep axis says so."""
from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.legend import Legend
from matplotlib.text import Text

from conftest import find_dbs, run_engine
from test_analysis_dbutil import T0, req, write_db

from analysis.loader import load
from analysis.plots import run_figures
from analysis.report import sweep_frame
from analysis.result import analyse
from analysis.sweep_plots import sweep_figures

RUN_PLOTS = ("latency_distribution", "ttft_distribution", "tpot_distribution", "itl_distribution", "timeline",
             "ttft_vs_prompt")
# the mock serves /metrics, so the sweep has the server's figure too
SWEEP_PLOTS = ("sweep_throughput", "sweep_ttft_vs_throughput", "sweep_tpot_vs_throughput", "sweep_server")


@pytest.fixture(scope="module")
def sweep_dbs(tmp_path_factory, mock):
    """A real sweep at concurrency 1, 4 and 16 against the mock (a 16x span: a log-spaced axis)."""
    out = tmp_path_factory.mktemp("plots")
    run_engine("--url", mock.chat_url, "--parallel", 1, 4, 16, "--number", 6, 16, 48, "--workers", 1,
               "--outputs-dir", out, "--no-timestamp", "--name", "fit", "--no-plots")
    dbs = find_dbs(out)
    assert len(dbs) == 3, dbs
    return dbs


def _outside(fig) -> list[str]:
    """What of `fig`, as drawn, is not wholly inside the figure: each Axes'
    tight box (its title, axis labels, drawn tick labels and legend) and every
    other visible text (suptitle, annotations, notes on the axes)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    edge = fig.bbox
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)}
    boxes = [(f"the axes titled {ax.get_title(loc='left')!r}", ax.get_tightbbox(renderer)) for ax in fig.axes]
    boxes += [(repr(t.get_text()), t.get_window_extent(renderer)) for t in fig.findobj(Text)
              if t.get_visible() and t.get_text().strip() and id(t) not in ticks]
    boxes += [("a legend", leg.get_window_extent(renderer)) for leg in fig.findobj(Legend)]
    return [f"{what} at x {box.x0:.0f}..{box.x1:.0f}, y {box.y0:.0f}..{box.y1:.0f} "
            f"in a {edge.width:.0f}x{edge.height:.0f} figure"
            for what, box in boxes
            if box.x0 < edge.x0 - 0.5 or box.x1 > edge.x1 + 0.5 or box.y0 < edge.y0 - 0.5 or box.y1 > edge.y1 + 0.5]


def _titles(fig) -> list[str]:
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    return titles + ([fig.get_suptitle()] if fig.get_suptitle() else [])


def test_every_plot_of_a_real_sweep_fits_its_figure(sweep_dbs):
    for db in sweep_dbs:
        figs = run_figures(load(db, decode_requests=False, lists=False))
        assert tuple(figs) == RUN_PLOTS
        for name, fig in figs.items():
            assert _titles(fig), name
            assert _outside(fig) == [], f"{db}: {name}"
    figs = sweep_figures(sweep_frame([analyse(db, plots=False) for db in sweep_dbs]))
    assert tuple(figs) == SWEEP_PLOTS
    for name, fig in figs.items():
        assert _titles(fig) and _outside(fig) == [], name
    # 1, 4, 16 sit evenly spaced on a log2 axis: the label says so
    ax = figs["sweep_throughput"].axes[0]
    assert ax.get_xscale() == "log" and "log₂ scale" in ax.get_xlabel(), ax.get_xlabel()


def test_a_linear_sweep_axis_does_not_claim_a_log_scale(sweep_dbs):
    two = [db for db in sweep_dbs if "parallel_1_" in db or "parallel_4_" in db]  # 1 and 4: a 4x span
    figs = sweep_figures(sweep_frame([analyse(db, plots=False) for db in two]))
    ax = figs["sweep_throughput"].axes[0]
    assert ax.get_xscale() == "linear" and "log" not in ax.get_xlabel()


def test_a_long_itl_title_is_wrapped_inside_the_figure(tmp_path):
    # 3,000 gaps near 3 ms and a few far out (a stall): the title gains a
    # "N above X (max Y) not shown" note, which ran off the right edge
    rows = []
    for i in range(300):
        times = list(0.05 + np.cumsum([0.0025 + 0.0001 * ((i + k) % 10) for k in range(11)]))
        if i % 100 == 7:
            times[-1] += 0.02 + i / 100_000
        rows.append(req(i, start=T0 + i * 0.01, latency=times[-1] + 0.001, chunk_times=times, completion=11))
    frames = load(write_db(str(tmp_path), rows), decode_requests=False, lists=False)
    fig = run_figures(frames)["itl_distribution"]
    (title,) = _titles(fig)
    assert "not shown" in title, title  # the long form of the title, the one that was cut off
    assert _outside(fig) == []


def test_an_all_failed_runs_timeline_keeps_its_time_labels(tmp_path):
    rows = [req(i, success=0, status=500, error="HTTP 500: boom", latency=0.02, start=T0 + i * 0.1)
            for i in range(20)]
    frames = load(write_db(str(tmp_path), rows), decode_requests=False, lists=False)
    fig = run_figures(frames)["timeline"]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    bottom = fig.axes[2]
    labels = [t.get_text() for t in bottom.get_xticklabels() if t.get_visible() and t.get_text()]
    assert len(labels) >= 3, labels
    assert max(float(x.replace(",", "").replace("−", "-")) for x in labels) >= 1.0  # the run spans ~1.9 s
    assert "no request succeeded" in " ".join(t.get_text() for t in fig.axes[1].texts)
    assert _outside(fig) == []
    for name, other in run_figures(frames).items():  # the other plots say why they are empty, and fit
        if name != "timeline":
            assert "no measured request succeeded" in " ".join(t.get_text() for t in other.axes[0].texts), name
            assert _outside(other) == [], name


def _median_line(fig):
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("median")]
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def _prompt_rows(lengths):
    return [req(i, prompt=int(n), ttft=0.02 + n / 100_000, latency=0.2, start=T0 + i * 0.05)
            for i, n in enumerate(lengths)]


@pytest.mark.parametrize("many", [False, True], ids=["few lengths", "binned lengths"])
def test_the_median_line_breaks_over_an_empty_stretch_of_prompt_lengths(tmp_path, many):
    # requests at lengths 100..180 and 900..980, none between
    if many:
        lengths = [100 + i % 81 for i in range(400)] + [900 + i % 81 for i in range(400)]
    else:
        lengths = [100 + 10 * (i % 9) for i in range(90)] + [900 + 10 * (i % 9) for i in range(90)]
    frames = load(write_db(str(tmp_path), _prompt_rows(lengths)), decode_requests=False, lists=False)
    fig = run_figures(frames)["ttft_vs_prompt"]
    x, y = _median_line(fig)
    gaps = np.flatnonzero(np.isnan(y))
    assert gaps.size == 1, (x, y)
    k = int(gaps[0])
    assert x[k - 1] <= 180 and x[k + 1] >= 900  # the break is in the empty stretch, nowhere else
    assert np.isfinite(y[:k]).all() and np.isfinite(y[k + 1:]).all()
    assert _outside(fig) == []


def test_evenly_spread_prompt_lengths_keep_one_unbroken_median_line(tmp_path):
    lengths = [100 * (1 + i % 8) for i in range(80)]  # 100, 200, ..., 800: evenly spaced, no stretch empty
    frames = load(write_db(str(tmp_path), _prompt_rows(lengths)), decode_requests=False, lists=False)
    x, y = _median_line(run_figures(frames)["ttft_vs_prompt"])
    assert x.size == 8 and np.isfinite(y).all() and not any(math.isnan(v) for v in x)
