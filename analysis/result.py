"""One run analysed: load -> metrics -> (plots), kept as a `RunResult` once
its frames are dropped; the tables, the page and the files are made from it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from analysis.frames import Frames, streamed
from analysis.loader import load
from analysis.metrics import percentiles, summary, summary_row
from analysis.server_metrics import server_summary, sweep_columns
from analysis.slo import check_slo


@dataclass
class RunResult:
    """What the reports need from one run, once its frames are dropped."""

    name: str
    db_path: str
    summary: dict
    percentiles: pd.DataFrame
    row: dict
    run: dict
    pngs: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # False when no successful request was streamed: TTFT is then the whole
    # latency and TPOT says nothing, which the tables must say
    streamed: bool = True


# A run's report, once built, is kept for the sweep report that follows it in
# the same process (the engine reports each run, then the sweep of them all):
# its plots are not rendered twice.  The key holds the database's (and its
# WAL's) size and mtime, so a changed database is analysed afresh.
_RESULTS: dict[tuple, RunResult] = {}
_RESULTS_MAX = 64


def _db_state(db_path: str) -> tuple:
    state: list[Any] = [os.path.realpath(db_path)]
    for path in (db_path, db_path + "-wal"):
        try:
            st = os.stat(path)
            state += [st.st_mtime_ns, st.st_size]
        except FileNotFoundError:
            state += [None, None]
    return tuple(state)


def analyse(db_path: str, slo: Mapping[str, float] | str | None = None, plots: bool = True) -> RunResult:
    """Load one database, compute its summary and percentiles and render its
    plots to PNG bytes; the frames are dropped on return.  The result is
    shared with later calls for the same unchanged database: do not modify it."""
    slo = check_slo(slo)
    key = (_db_state(db_path), tuple(sorted(slo.items())) if slo else None, bool(plots))
    cached = _RESULTS.get(key)
    if cached is not None:
        return cached
    result = _analyse(db_path, slo, plots)
    if len(_RESULTS) >= _RESULTS_MAX:
        _RESULTS.pop(next(iter(_RESULTS)))
    _RESULTS[key] = result
    return result


def _analyse(db_path: str, slo: Mapping[str, float] | None, plots: bool) -> RunResult:
    # The report needs no request bodies: skip decoding them (the fast path).
    frames = load(db_path, decode_messages=False, decode_requests=False, lists=False)
    summ = summary(frames, slo)
    server = server_summary(frames)  # the server's /metrics, when the run scraped them
    if server:
        summ.update(server)
    pct = percentiles(frames)
    pngs: dict[str, bytes] = {}
    if plots:
        from analysis.plot_style import render_pngs  # matplotlib only when plotting
        from analysis.plots import run_figures

        pngs = render_pngs(run_figures(frames))
    return RunResult(name=frames.name, db_path=frames.path, summary=summ, percentiles=pct,
                     row={**summary_row(frames, summ, pct), **sweep_columns(server)}, run=frames.run, pngs=pngs, problems=frames.problems,
                     streamed=streamed(frames))
