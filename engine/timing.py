"""Per-request timing metrics, defined once (DESIGN.md "Metric definitions").

`engine.derive` writes them into the `result` table; `analysis.loader`
reads them from there, and computes them with these same functions where a
database lacks them (evalscope's, or a failed row).

A leaf: it imports nothing, so the coordinator does not load numpy or
pandas for it.  Each formula is plain arithmetic, so it works on floats
(the writer, one request at a time) and elementwise on numpy arrays (the
analysis, a column at a time); each has a `*_defined` condition saying
for which requests it has a value (None in the database, NaN in a frame
otherwise).  All times in seconds.
"""
from __future__ import annotations

from typing import Sequence


def ttft_s(chunk_times: Sequence[float]) -> float | None:
    """Send -> first output-carrying event (`chunk_times[0]`); None without
    one.  For a non-streamed reply the one "event" is the whole body, so its
    TTFT is its latency."""
    return chunk_times[0] if chunk_times else None


def tpot_defined(completion_tokens):
    """TPOT needs more than one output token."""
    return completion_tokens > 1


def tpot_s(latency, ttft, completion_tokens):
    """Time per output token after the first: (latency - TTFT) / (completion_tokens - 1)."""
    return (latency - ttft) / (completion_tokens - 1)


def tpot_incl_ttft_defined(completion_tokens):
    return completion_tokens > 0


def tpot_incl_ttft_s(latency, completion_tokens):
    """The other TPOT definition (evalscope's earlier one): latency / completion_tokens."""
    return latency / completion_tokens


def mean_gap_defined(n_chunks):
    """A mean gap needs two output-carrying events."""
    return n_chunks > 1


def mean_gap_s(first, last, n_chunks):
    """The mean gap between a request's output-carrying events (the
    `chunk_time` column, the request's mean ITL): (last - first) / (n_chunks - 1)."""
    return (last - first) / (n_chunks - 1)


def chunk_time_s(chunk_times: Sequence[float]) -> float | None:
    """`mean_gap_s` of one request's event offsets; None with fewer than two."""
    n = len(chunk_times)
    return mean_gap_s(chunk_times[0], chunk_times[-1], n) if mean_gap_defined(n) else None
