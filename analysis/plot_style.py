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
import warnings
from typing import Any, Callable

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd"
DPI = 110


def style(ax: Axes, title: str, xlabel: str, ylabel: str, pad: float = 6) -> None:
    ax.set_title(title, fontsize=12, loc="left", pad=pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    for side in ("top",):
        ax.spines[side].set_visible(False)


def no_data(ax: Axes, title: str, xlabel: str, ylabel: str, why: str = "no data") -> None:
    style(ax, title, xlabel, ylabel)
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color=GREY, fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


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
