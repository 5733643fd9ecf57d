"""An SLA search's outputs: the answer, the table of every point tried,
`sla_search.json` and the plot of the metric against the load.

Takes the searches as engine.sla_tune returns them, read by attribute
(`group`, `points` value -> analysis.sla.PointVerdict, `step.best_pass`,
`step.first_fail`), so nothing of the engine is imported: the verdicts were
made from the databases alone (analysis.sla).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from analysis.sla import UNSURE, answer_text, describe, point_text
from analysis.tables import format_table

SLA_JSON = "sla_search.json"
PLOT_STEM = "sla_search"


def answers(searches: Sequence[Any], variable: str, confidence: float, lower: float) -> list[str]:
    """One line per group: the answer, in words, with its intervals."""
    out = []
    for s in searches:
        best = s.points.get(s.step.best_pass) if s.step.best_pass is not None else None
        fail = s.points.get(s.step.first_fail) if s.step.first_fail is not None else None
        line = answer_text(variable, s.group, best, fail, confidence, lower)
        unsure = sorted(v for v, p in s.points.items() if p.verdict == UNSURE)
        if unsure and not (len(s.group) == 1 and s.group[0].extreme):
            line += (f" [too close to call after the most runs allowed: {variable} "
                     f"{', '.join(f'{v:g}' for v in unsure)}; counted as not meeting it]")
        out.append(line)
    return out


def points_table(searches: Sequence[Any], variable: str) -> str:
    """Every point tried, in the order tried: value, runs, requests, each metric with its interval, verdict."""
    rows = []
    for gi, s in enumerate(searches, 1):
        extreme = len(s.group) == 1 and s.group[0].extreme
        for value, p in s.points.items():
            # max/min: no threshold to pass; the column marks the best point instead
            verdict = ("best" if value == s.step.best_pass else "") if extreme else p.verdict
            rows.append((str(gi), f"{value:g}", str(p.runs), f"{p.requests - p.failed}/{p.requests}",
                         point_text(p), verdict))
    return format_table(["group", variable, "runs", "ok/requests", "metric [interval]", "verdict"], rows,
                        align="lrrrll")


def search_json(searches: Sequence[Any], variable: str, confidence: float, lower: float,
                settings: dict) -> dict:
    """sla_search.json: the settings, and per group its answer, best and first failing value, every point."""
    lines = answers(searches, variable, confidence, lower)
    return {"variable": variable, "confidence": confidence, "settings": settings,
            "groups": [{"conditions": [{"metric": c.metric, "op": c.op, "threshold": c.threshold} for c in s.group],
                        "answer": line, "best": s.step.best_pass, "first_fail": s.step.first_fail,
                        "points": [p.to_dict() for p in s.points.values()]}
                       for s, line in zip(searches, lines)]}


def sla_frame(search: Any) -> pd.DataFrame:
    """One row per point of one group's first condition: value, estimate, low, high (display
    units), verdict, threshold; the condition's name and unit in `frame.attrs`."""
    cond = search.group[0]
    name, unit, scale = describe(cond.metric)
    rows = []
    for value, p in sorted(search.points.items()):
        j = p.judged[0]
        rows.append({"value": value, "estimate": j.estimate * scale, "low": j.low * scale, "high": j.high * scale,
                     "verdict": p.verdict, "runs": p.runs})
    frame = pd.DataFrame(rows, columns=["value", "estimate", "low", "high", "verdict", "runs"])
    frame.attrs.update(name=name, unit=unit, condition=cond.text(), variable=getattr(search, "variable", "load"),
                       threshold=None if cond.threshold is None else cond.threshold * scale,
                       best=search.step.best_pass)
    return frame


def plot_sla_metric(ax, frame: pd.DataFrame) -> None:
    """The metric against the load: each point with its interval, coloured by
    verdict, the SLO as a dashed line, the answer's value marked."""
    from analysis.plot_style import BLUE, GREEN, GREY, ORANGE, RED, no_data, style

    name, unit = frame.attrs.get("name", "metric"), frame.attrs.get("unit", "")
    xlabel = frame.attrs.get("variable", "load")
    title = f"SLA search: {frame.attrs.get('condition', name)}"
    if frame.empty or not frame["estimate"].notna().any():
        no_data(ax, title, xlabel, f"{name} ({unit})")
        return
    colours = {"pass": GREEN, "fail": RED, UNSURE: ORANGE}
    for verdict, part in frame.groupby("verdict"):
        est = part["estimate"].to_numpy(dtype=float)
        lo = part["low"].to_numpy(dtype=float)
        hi = part["high"].to_numpy(dtype=float)
        finite = [x for x in est if math.isfinite(x)]
        top = max(finite) * 10 if finite else 1.0
        yerr = [est - lo, [min(h, top) - e for h, e in zip(hi, est)]]
        ax.errorbar(part["value"], est, yerr=yerr, fmt="o", capsize=4, color=colours.get(verdict, BLUE),
                    label=verdict)
    threshold = frame.attrs.get("threshold")
    if threshold is not None:
        ax.axhline(threshold, color=GREY, linestyle="--", linewidth=1, label=f"SLO {threshold:g} {unit}")
    best = frame.attrs.get("best")
    if best is not None:
        ax.axvline(best, color=GREEN, linestyle=":", linewidth=1, label=f"answer {best:g}")
    if frame["value"].max() / max(frame["value"].min(), 1e-9) >= 8:
        ax.set_xscale("log", base=2)
    style(ax, title, xlabel, f"{name} ({unit})")
    ax.legend(fontsize=8, loc="best")


def sla_pngs(searches: Sequence[Any], variable: str) -> dict[str, bytes]:
    """One PNG per group: `sla_search` (and `sla_search_2`, ... for more groups)."""
    from analysis.plot_style import render_pngs, single

    figs = {}
    for i, s in enumerate(searches, 1):
        frame = sla_frame(s)
        frame.attrs["variable"] = variable
        figs[PLOT_STEM if i == 1 else f"{PLOT_STEM}_{i}"] = single(plot_sla_metric, frame)
    return render_pngs(figs)


def sla_html(lines: Sequence[str], table: str, pngs: dict[str, bytes]) -> str:
    """The block at the top of the report: the answer, the plot, the table of points."""
    import base64
    import html

    parts = ['<section class="sla"><h2>SLA search</h2>']
    parts += [f"<p><strong>{html.escape(line)}</strong></p>" for line in lines]
    parts += [f'<img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
              for name, png in pngs.items()]
    parts.append(f"<pre>{html.escape(table)}</pre></section>")
    return "\n".join(parts)
