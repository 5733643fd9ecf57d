"""--sla-auto-tune: drive the search (engine.sla_search) with real runs.

Each point is `num_runs` ordinary runs, each in its own run folder with its
database (`<output>/<variable>_<value>/run_<k>/...`); a point whose verdict
is too close to call gets one more run at a time, up to `max_runs`.  Each
group of --sla-params is searched on its own; a point already run for one
group lends its runs to the next.

The command line lends this module what it may not import itself (only
engine.cli starts runs, only the command line calls into analysis):
`run_point(args, label) -> db_path` runs one run (or, with --resume, finds it
completed) and `judge(value, db_paths, group) -> PointVerdict` gives the
verdict (analysis.sla.judge_point).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

from engine.arguments import Arguments
from engine.sla_search import UNSURE, Space, Step, next_extreme, next_value


@dataclass
class GroupSearch:
    """One group's search: its conditions, every point judged, where it ended."""

    group: tuple
    points: dict = field(default_factory=dict)  # value -> PointVerdict, in the order tried
    step: Step | None = None

    @property
    def extreme(self) -> bool:
        return len(self.group) == 1 and self.group[0].extreme


def space_of(sla) -> Space:
    return Space(sla.variable, sla.start, sla.lower, sla.upper, sla.rate_tolerance)


def point_args(base: Arguments, sla, value: float, k: int, out_dir: str) -> Arguments:
    """The Arguments of run k (0-based) of a point: number = round(value x multiplier), as evalscope;
    each run its own seed, so a point's runs are not copies of one arrival pattern."""
    number = max(1, round(value * sla.number_multiplier))
    folder = os.path.join(out_dir, f"{sla.variable}_{value:g}", f"run_{k + 1}")
    common = dict(number=number, sweep_dir=folder, seed=base.seed + k, duration=None)
    if sla.variable == "parallel":
        return base.replace(parallel=int(value), rate=None, **common)
    return base.replace(parallel=sla.fixed_parallel, rate=float(value), **common)


def tune(base: Arguments, sla, out_dir: str, run_point: Callable[[Arguments, str], str],
         judge: Callable, say: Callable[[str], None] = lambda line: None) -> list[GroupSearch]:
    """Search every group; return their searches.  An interruption propagates
    out of run_point: what completed is on disk for --resume."""
    space = space_of(sla)
    runs: dict[float, list[str]] = {}  # value -> its runs' databases

    def dbs(value: float, k: int) -> list[str]:
        have = runs.setdefault(value, [])
        while len(have) < k:
            i = len(have)
            label = f"[sla] {sla.variable} {value:g} run {i + 1}"
            have.append(run_point(point_args(base, sla, value, i, out_dir), label))
        return have

    searches = []
    for group in sla.groups:
        search = GroupSearch(tuple(group))
        searches.append(search)
        while True:
            if search.extreme:
                # each point's estimate with its interval: a plateau's noise is not an improvement
                estimates = {v: ((p.judged[0].estimate, p.judged[0].low, p.judged[0].high) if not p.failed
                                 else math.nan) for v, p in search.points.items()}
                step = next_extreme(space, estimates, maximise=group[0].op == "max")
            else:
                step = next_value(space, {v: p.verdict for v, p in search.points.items()})
            search.step = step
            if step.next is None:
                break
            value = step.next
            k = max(sla.num_runs, len(runs.get(value, ())))
            verdict = judge(value, dbs(value, k), group)
            while verdict.verdict == UNSURE and k < sla.max_runs:
                k += 1  # too close to call: one more run, then judge the pooled requests again
                verdict = judge(value, dbs(value, k), group)
            search.points[value] = verdict
            say(f"servegauge: [sla] {sla.variable} {value:g}: {verdict.verdict} after {verdict.runs} run(s)")
    return searches
