"""The look of every plot and the figure plumbing, shared by the plots of
one run (`analysis.plots`) and of a sweep (`analysis.sweep_plots`).

Figures are built with `matplotlib.figure.Figure` directly, never through
pyplot: no GUI backend is ever chosen or needed (a headless machine, a
worker without a display and a Jupyter session are all fine), no global
state is touched and a figure is freed as soon as it is dropped.  PNG bytes
come from the Agg renderer (`figure_png`); the report module is the one
place that writes files.
"""
from __future__ import annotations

import io
import textwrap
import warnings
from typing import Any, Callable

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd"
DPI = 110
TITLE_GID = "servegauge-title"  # marks the titles `fit_titles` may wrap
TITLE_MARGIN_PX = 4


def style(ax: Axes, title: str, xlabel: str, ylabel: str, pad: float = 6) -> None:
    ax.set_title(title, fontsize=12, loc="left", pad=pad).set_gid(TITLE_GID)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    for side in ("top",):
        ax.spines[side].set_visible(False)


def no_data(ax: Axes, title: str, xlabel: str, ylabel: str, why: str = "no data") -> None:
    style(ax, title, xlabel, ylabel)
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color=GREY, fontsize=12)
    # An x axis shared with other panels (the timeline) keeps its ticks: they
    # are the other panels' ticks too, and an all-failed run's timeline lost
    # every time label to its empty throughput panel.
    if len(ax.get_shared_x_axes().get_siblings(ax)) == 1:
        ax.set_xticks([])
    ax.set_yticks([])


def fit_titles(fig: Figure) -> None:
    """Wrap each title (`style`'s, or a suptitle marked with TITLE_GID) that
    would run past the figure's edge onto more lines: a long note (n, log
    scale, values not shown) cut the ITL title off at the right edge.
    Measured, not guessed: the figure is laid out and each title's extent
    compared with the figure's; only a title that might not fit costs a layout."""
    titles = [t for t in fig.findobj(Text) if t.get_gid() == TITLE_GID and t.get_text()]
    if not titles:
        return
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    edge = fig.bbox
    # a title narrower than 3/4 of the figure fits beside any axis label we draw
    if all(t.get_window_extent(renderer).width < 0.75 * edge.width for t in titles):
        return
    for _ in range(3):  # each wrap changes the layout, which moves the titles
        fig.draw_without_rendering()
        changed = False
        for t in titles:
            box = t.get_window_extent(renderer)
            if box.x0 >= edge.x0 + TITLE_MARGIN_PX - 0.5 and box.x1 <= edge.x1 - TITLE_MARGIN_PX + 0.5:
                continue
            lines = t.get_text().split("\n")
            px_per_char = box.width / max(len(line) for line in lines)
            if t.get_ha() == "left":
                room = edge.x1 - TITLE_MARGIN_PX - max(box.x0, edge.x0 + TITLE_MARGIN_PX)
            else:
                room = edge.width - 2 * TITLE_MARGIN_PX
            width = max(12, int(room / px_per_char) - 1)
            flat = " ".join(lines)
            head, sep, note = flat.partition("  ")  # "Title  (n=..., notes)": break there first
            if sep and len(head) <= width and len(note) <= width:
                t.set_text(f"{head}\n{note}")
            else:
                t.set_text(textwrap.fill(flat, width, break_long_words=True))
            changed = True
        if not changed:
            return


def safely(draw: Callable[[Axes, Any], None], ax: Axes, data: Any) -> None:
    """A plot that fails says so on its axes (and in a warning) instead of
    costing the whole report its JSON and tables."""
    try:
        draw(ax, data)
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        warnings.warn(f"plot {draw.__name__} failed: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        ax.clear()
        no_data(ax, draw.__name__, "", "", why=f"plot failed: {type(exc).__name__}: {exc}"[:120])


def single(draw: Callable[[Axes, Any], None], data: Any, size: tuple[float, float] = (8.5, 4.6)) -> Figure:
    """A figure of one Axes drawn by `draw(ax, data)`."""
    fig = Figure(figsize=size, layout="constrained")
    safely(draw, fig.add_subplot(), data)
    fit_titles(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with Agg."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def render_pngs(figs: dict[str, Figure]) -> dict[str, bytes]:
    out = {}
    for name, fig in figs.items():
        out[name] = figure_png(fig)
        fig.clear()
    return out
