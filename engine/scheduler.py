"""When each request is due: pure functions of the index and the seed.

Send times are absolute offsets from the run's t0 (`t0 + offset(i)`), never
accumulated sleeps, so a late send does not push every later one back and
the achieved rate does not drift.
"""
from __future__ import annotations

import math
import random
from typing import Iterator


def send_offsets_s(rate: float | None, burstiness: float = 1.0, seed: int = 0) -> Iterator[float | None]:
    """Offsets in seconds from t0, one per request, without end.

    rate None: closed loop, every request as soon as a worker thread is free
    (yields None).  Otherwise an open loop whose gaps are gamma distributed
    with mean 1/rate and shape `burstiness` (1 = Poisson; below 1 burstier,
    above 1 more regular; inf = evenly spaced, i/rate).
    """
    if rate is None:
        while True:
            yield None
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if math.isinf(burstiness):
        i = 0
        while True:
            yield i / rate
            i += 1
    rng = random.Random(seed)
    # The first request goes at t0; each later one after a random gap.
    offset = 0.0
    scale = 1.0 / (rate * burstiness)
    while True:
        yield offset
        offset += rng.gammavariate(burstiness, scale)
