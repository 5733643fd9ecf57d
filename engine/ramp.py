"""--ramp-up S: the load grows linearly from 1 to its target over S seconds,
as pure functions (of the index for a rate, of the thread for concurrency).

Rate.  The rate at t seconds after t0 is r(t) = r0 + (R - r0) t / S until
S, then R (r0 = 1 request/s, or R if that is lower).  Requests are drawn
as a unit-rate process (engine.scheduler, same seed and burstiness, so
u_i is "expected arrivals before request i") and mapped through the
inverse of the expected count L(t) = integral of r: t_i = L^-1(u_i).

Concurrency.  In-flight requests are bounded by worker threads, so that is
where the ramp is enforced: each thread waits for its turn before its
first measured request (engine.worker).  Thread turns are spread so that at
t the number of threads allowed is 1 + (P - 1) t / S rounded to the
nearest integer: the rank-k thread starts at S (k - 1/2) / (P - 1).  Ranks
alternate between processes, so the load grows on every process alike.
"""
from __future__ import annotations

import math
from typing import Iterator

from engine.scheduler import send_offsets_s


def ramp_time_s(u: float, start_rate: float, rate: float, ramp_s: float) -> float:
    """The time t at which L(t) = u (see the module's docstring)."""
    slope = (rate - start_rate) / ramp_s  # requests/s per second
    during = start_rate * ramp_s + slope * ramp_s * ramp_s / 2.0  # expected requests sent in the ramp
    if u >= during:
        return ramp_s + (u - during) / rate
    # slope/2 t^2 + start t - u = 0, in the form that stays exact as slope -> 0
    return 2.0 * u / (start_rate + math.sqrt(start_rate * start_rate + 2.0 * slope * u))


def ramped_offsets_s(rate: float, ramp_s: float, burstiness: float = 1.0, seed: int = 0,
                     number: int | None = None) -> Iterator[float]:
    """Send offsets from t0 of an open loop whose rate ramps up to `rate` over `ramp_s`."""
    start = min(1.0, rate)
    for u in send_offsets_s(1.0, burstiness, seed, number):
        yield ramp_time_s(u, start, rate, ramp_s)


def thread_turns_s(threads: list[int], ramp_s: float | None) -> list[float]:
    """Per thread slot (process 0's threads first, as engine.pool numbers
    them): seconds after t0 before which it sends no measured request."""
    total = sum(threads)
    if not ramp_s or total <= 1:
        return [0.0] * total
    slots = [(t, p, sum(threads[:p]) + t) for p, n in enumerate(threads) for t in range(n)]
    turns = [0.0] * total
    for rank, (_, _, slot) in enumerate(sorted(slots)):  # thread 0 of each process, then thread 1, ...
        turns[slot] = 0.0 if rank == 0 else ramp_s * (rank - 0.5) / (total - 1)
    return turns
