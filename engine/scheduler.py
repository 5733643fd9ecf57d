"""When each request is due: pure functions of the index and the seed.

Send times are absolute offsets from the run's t0 (`t0 + offset(i)`), never
accumulated sleeps, so a late send does not push every later one back and
the achieved rate does not drift.
"""
from __future__ import annotations

import math
import random
from typing import Iterator


def send_offsets_s(rate: float | None, burstiness: float = 1.0, seed: int = 0,
                   number: int | None = None) -> Iterator[float | None]:
    """Offsets in seconds from t0, one per request.

    rate None: closed loop, every request as soon as a worker thread is free
    (yields None forever).  Otherwise an open loop whose gaps are gamma
    distributed with mean 1/rate and shape `burstiness` (1 = Poisson; below 1
    burstier, above 1 more regular; inf = evenly spaced, i/rate).

    With `number` known, the random gaps are scaled so that the last of the
    `number` requests is due at exactly (number - 1) / rate: the arrival
    process conditioned on its count (for Poisson, uniform order statistics),
    so a run of 3000 requests at 200 req/s offers 200 req/s, not 200 plus the
    1.8 % sampling error of 3000 random gaps.  Later offsets (a --duration
    run) continue unscaled.
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
    scale = 1.0 / (rate * burstiness)
    offset = 0.0
    if number is not None and number > 1:
        gaps = [rng.gammavariate(burstiness, scale) for _ in range(number - 1)]
        stretch = (number - 1) / rate / sum(gaps)
        yield 0.0
        for gap in gaps:
            offset += gap * stretch
            yield offset
    else:
        yield offset
    while True:  # the first request goes at t0; each later one after a random gap
        offset += rng.gammavariate(burstiness, scale)
        yield offset
