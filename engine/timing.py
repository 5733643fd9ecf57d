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


# ITL per token.  A server that sends several tokens in one event
# (speculative decoding, a coalescing proxy, vLLM's stream intervals) makes
# the gap before that event look like one slow token; per token it is not.
# For each output event after a request's first, with n > 0 output tokens
# (the `chunk_tokens` column) and a gap g since the previous output event:
# each of its n tokens gets g / n.  The samples are weighted per token (an
# event of 4 tokens is 4 samples of g / 4), so percentiles are over tokens,
# and the mean is sum(g) / sum(n): the decode time per token after the
# first event.  An output event of 0 tokens (usage not yet counted) carries
# no sample: its gap joins the next counted event's (its tokens came with
# it).  The first event's tokens have no gap: they are TTFT's.  Requests
# whose events have no counts have no per-token ITL; `ITL (ms)` stays
# evalscope's per-event gap.

def token_gap_defined(n_tokens):
    """An event's gap is shared by its tokens when it has any."""
    return n_tokens > 0


def token_gap_s(gap, n_tokens):
    """The ITL of each of an event's tokens: its gap / its tokens."""
    return gap / n_tokens
