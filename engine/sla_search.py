"""The SLA search, pure: given the verdicts so far, which load to try next.

Nothing here runs a load or reads a database.  Every function replays the
search from the start value over the verdicts it is given and returns the
first value it has no verdict for (None: the search is over).  So the search
is a function of its verdicts alone: a resumed search that is handed the
verdicts of its completed points asks for exactly the points it had not run.

Thresholds (`next_value`), as evalscope perf's --sla-auto-tune: from the start
value, double while the point passes (up to the upper bound); when the start
fails, halve until a point passes (down to the lower bound); then bisect the
interval between the last pass and the first fail, to 1 for parallel and to
a relative tolerance for a rate.  A point "too close to call" (UNSURE) counts
as not passing: the answer never rests on a point we could not confirm.

Extremes (`next_extreme`, the `max`/`min` operators): double while the metric
improves, then bisect on each side of the best point until its neighbours
are one step away.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

PASS, FAIL, UNSURE = "pass", "fail", "too close to call"
VARIABLES = ("parallel", "rate")


@dataclass(frozen=True)
class Space:
    """Where the search may go: the variable, its start and bounds; for a
    rate, the relative width at which bisection stops."""

    variable: str
    start: float
    lower: float
    upper: float
    rate_tolerance: float = 0.1

    def __post_init__(self) -> None:
        if self.variable not in VARIABLES:
            raise ValueError(f"variable must be one of {VARIABLES}, not {self.variable!r}")
        if not 0 < self.lower <= self.upper:
            raise ValueError(f"bounds must satisfy 0 < lower <= upper, not {self.lower}, {self.upper}")
        if self.integral:  # whole numbers inside the bounds: 0.5 is 1, 100.4 is 100
            lower, upper = max(1, math.ceil(self.lower)), math.floor(self.upper)
            if lower > upper:
                raise ValueError(f"no whole number of parallel requests lies between {self.lower} and {self.upper}")
            object.__setattr__(self, "lower", lower)
            object.__setattr__(self, "upper", upper)

    @property
    def integral(self) -> bool:
        return self.variable == "parallel"

    def norm(self, value: float) -> float:
        """A value as the search names it: a whole number for parallel, four
        significant digits for a rate (so a folder name reads well), within the bounds."""
        value = min(max(value, self.lower), self.upper)
        if self.integral:
            return int(round(value))
        return float(f"{value:.4g}")

    def first(self) -> float:
        return self.norm(self.start)

    def up(self, value: float) -> float:
        return self.norm(value * 2)

    def down(self, value: float) -> float:
        return self.norm(math.floor(value / 2) if self.integral else value / 2)

    def close(self, lo: float, hi: float) -> bool:
        """No value worth trying is left strictly between lo and hi."""
        if self.integral:
            return hi - lo <= 1
        mid = self.norm((lo + hi) / 2)
        return hi - lo <= self.rate_tolerance * lo or not lo < mid < hi

    def mid(self, lo: float, hi: float) -> float:
        return self.norm((lo + hi) // 2 if self.integral else (lo + hi) / 2)


@dataclass(frozen=True)
class Step:
    """Where the search stands: the next value to run (None: done), the
    largest value that passed and the smallest that did not."""

    next: float | None
    best_pass: float | None
    first_fail: float | None


def next_value(space: Space, verdicts: Mapping[float, str]) -> Step:
    """The threshold search: the next value to try, given PASS/FAIL/UNSURE
    verdicts by value (UNSURE counts as FAIL)."""
    def passed(v: float) -> bool:
        return verdicts[v] == PASS

    v = space.first()
    lo = hi = None
    while True:  # up: double while it passes
        if v not in verdicts:
            return Step(v, lo, hi)
        if not passed(v):
            hi = v
            break
        lo = v
        if v >= space.upper or space.up(v) == v:  # at the top (a bound the names round away from, too)
            return Step(None, lo, None)
        v = space.up(v)
    if lo is None:  # the start failed: halve until a value passes
        while True:
            if v <= space.lower or space.down(v) == v:
                return Step(None, None, hi)
            v = space.down(v)
            if v not in verdicts:
                return Step(v, lo, hi)
            if passed(v):
                lo = v
                break
            hi = v
    while not space.close(lo, hi):  # bisect [last pass, first fail]
        v = space.mid(lo, hi)
        if v not in verdicts:
            return Step(v, lo, hi)
        if passed(v):
            lo = v
        else:
            hi = v
    return Step(None, lo, hi)


def next_extreme(space: Space, values: Mapping[float, float | tuple[float, float, float]],
                 maximise: bool) -> Step:
    """The `max`/`min` search on a metric by value: its estimate, or
    (estimate, low, high) with its interval (NaN: the point failed, the worst
    there is).  Step.best_pass is the answer so far: the smallest load whose
    interval reaches the top estimate's, i.e. the least load not worse than
    the best within noise (with bare estimates: the best estimate).

    The climb doubles while each point is better than the last beyond noise
    (its interval clear of the last one's); then it bisects below the answer
    (towards the knee of a plateau) and, when the answer is the top, above it."""
    est = {v: _interval(x) for v, x in values.items()}

    def score(v: float, i: int = 0) -> float:
        x = est[v][i]
        return -math.inf if x != x else (x if maximise else -x)

    def better(a: float, b: float) -> bool:  # a beats b beyond noise
        lo_a = score(a, 1 if maximise else 2)
        hi_b = score(b, 2 if maximise else 1)
        return lo_a > hi_b or (score(a) > score(b) and hi_b == -math.inf)

    v, prev = space.first(), None
    while True:  # climb while the metric improves
        if v not in est:
            return Step(v, _answer(est, score, better), None)
        if prev is not None and not better(v, prev):
            break
        if v >= space.upper or space.up(v) == v:
            break
        prev, v = v, space.up(v)
    tried = sorted(est)
    best = _answer(est, score, better)
    top = _top(est, score)
    below = [t for t in tried if t < best]
    above = [t for t in tried if t > best]
    sides = [(below[-1] if below else None, best)]
    if best == top:
        sides.append((best, above[0] if above else None))
    # The nearest tried values on each side of the answer: bisect towards it.
    for lo, hi in sides:
        if lo is None or hi is None or space.close(lo, hi):
            continue
        m = space.mid(lo, hi)
        if m not in est:
            return Step(m, best, None)
    return Step(None, best, None)


def _interval(x) -> tuple[float, float, float]:
    if isinstance(x, tuple):
        return tuple(float(v) for v in x)
    return (float(x), float(x), float(x))


def _top(est, score) -> float:
    # ties go to the smaller load: the same result for less
    return max(sorted(est), key=lambda v: (score(v), -v))


def _answer(est, score, better) -> float | None:
    """The smallest load the top point does not beat beyond noise."""
    if not est:
        return None
    top = _top(est, score)
    return min(v for v in est if v == top or not better(top, v))
