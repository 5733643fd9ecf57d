"""ITL per token: each output event's gap shared among the tokens it carried
(`engine.timing` defines it; the counts are the `chunk_tokens` column).

The samples are weighted, not repeated: an event of n tokens is one value
with weight n, and the percentiles are the nearest ranks of the tokens, as
if each value were repeated n times, without the memory of doing so (a
long run at 8 tokens an event would hold 8 floats per event).
"""
from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np

from analysis.frames import Frames
from analysis.stats import PERCENTILE_LABELS, rank_index
from engine import timing

COLUMN = "ITL per token (ms)"
AVG_KEY = "Avg ITL per token (ms)"
DEFINITION = ("each output event's gap / the output tokens it carried (usage in every chunk: "
              "--continuous-usage), weighted per token; the mean is decode time / tokens after the first event")


def token_itl(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """(ITL per token in ms, its weight in tokens) of the successful measured
    requests whose events have token counts.  Computed once per frames."""
    return frames.cached("token_itl", lambda: _token_itl(frames))


def _token_itl(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    empty = (np.empty(0), np.empty(0))
    req, ev = frames.requests, frames.events
    if ev.empty or "chunk_tokens" not in req.columns:
        return empty
    req_idx = ev["request"].to_numpy()
    lengths = np.bincount(req_idx, minlength=len(req))
    starts = np.cumsum(lengths) - lengths
    texts = req["chunk_tokens"].to_numpy(dtype=object)
    rows = [i for i in np.flatnonzero(frames.ok_mask()) if isinstance(texts[i], str) and texts[i]]
    if not rows:
        return empty
    try:  # one parse for the whole run
        lists = json.loads("[" + ",".join(texts[i] for i in rows) + "]")
    except ValueError:
        lists = [_one(texts[i]) for i in rows]
    counts = np.full(req_idx.size, np.nan)
    for i, values in zip(rows, lists):
        if isinstance(values, list) and len(values) == lengths[i]:  # else: not this row's events
            counts[starts[i]:starts[i] + lengths[i]] = np.fromiter(
                (v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values),
                dtype=float, count=len(values))
    known = np.isfinite(counts)
    first = np.zeros(req_idx.size, dtype=bool)
    first[starts[lengths > 0]] = True
    # a request's first event anchors its first gap; a later event of 0 tokens is
    # dropped, its gap joining the next counted event's
    keep = known & (first | timing.token_gap_defined(np.nan_to_num(counts)))
    offsets = ev["offset_s"].to_numpy()[keep]
    n = counts[keep][1:]
    same = req_idx[keep][1:] == req_idx[keep][:-1]
    gaps_ms = (offsets[1:] - offsets[:-1])[same] * 1000.0
    n = n[same]
    return timing.token_gap_s(gaps_ms, n), n


def _one(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def weighted_nearest_rank(values: np.ndarray, weights: np.ndarray,
                          labels: Sequence[str] = PERCENTILE_LABELS) -> list[float]:
    """`stats.nearest_rank` of the values each repeated `weight` times
    (whole weights), without repeating them."""
    ok = ~np.isnan(values) & (weights > 0)
    values, weights = values[ok], weights[ok]
    if not values.size:
        return [math.nan] * len(labels)
    order = np.argsort(values, kind="stable")
    values, cum = values[order], np.cumsum(weights[order])
    total = int(cum[-1])
    return [float(values[np.searchsorted(cum, rank_index(label, total) + 1)]) for label in labels]


def mean_ms(frames: Frames) -> float:
    """Decode time per token after the first event: the weighted mean."""
    values, weights = token_itl(frames)
    total = weights.sum()
    return float((values * weights).sum() / total) if total > 0 else math.nan


def percentile_column(frames: Frames, labels: Sequence[str] = PERCENTILE_LABELS) -> list[float]:
    return weighted_nearest_rank(*token_itl(frames), labels=labels)


