"""A server's capacity: at most N requests generating at once, the rest wait in order.

Real servers (vLLM's max_num_seqs, TGI's max batch, llama.cpp's --parallel)
admit a bounded number of sequences and queue the rest, so past that load
TTFT grows by the time spent waiting.  The mock models it at arrival: each
reply's whole plan is known when the request arrives, so the slot it takes and
when that slot frees are known too, and the wait is a shift of the plan's due
times.  A FIFO queue in front of N identical servers (an M/G/N queue when
arrivals are Poisson): the request takes the slot that frees first.

A reply whose client goes away keeps its slot until its planned end, as a
server that has not noticed the disconnect keeps generating.
"""
from __future__ import annotations

import heapq
from collections import deque


class SlotQueue:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        # Loop-clock times at which each slot frees; -inf: free since the start.
        self._free_at = [float("-inf")] * slots
        # (arrival, start, end) of admitted replies not yet over, in arrival
        # order: what running/waiting counts are computed from.
        self._spans: deque[tuple[float, float, float]] = deque()

    def admit(self, arrival: float, busy_s: float) -> float:
        """Take a slot for a reply that arrives at `arrival` (loop clock) and
        generates for `busy_s` once admitted; return the seconds it waits."""
        free_at = heapq.heappop(self._free_at)
        start = max(arrival, free_at)
        end = start + max(busy_s, 0.0)
        heapq.heappush(self._free_at, end)
        self._append((arrival, start, end))
        return start - arrival

    def _append(self, span: tuple[float, float, float]) -> None:
        # Forget spans over before this arrival: without a reader of counts()
        # (/metrics, /stats) they would pile up, one per request, for good.
        spans = self._spans
        while spans and spans[0][2] <= span[0]:
            spans.popleft()
        spans.append(span)

    def counts(self, now: float) -> tuple[int, int]:
        """(running, waiting) at loop time `now`."""
        spans = self._spans
        # Spans end in admission order only roughly; drop the over ones at the
        # front, and skip any others below.
        while spans and spans[0][2] <= now:
            spans.popleft()
        running = waiting = 0
        for arrival, start, end in spans:
            if arrival > now or end <= now:
                continue
            if start <= now:
                running += 1
            else:
                waiting += 1
        return running, waiting


class Unbounded(SlotQueue):
    """No capacity limit: every reply runs at once and none waits; kept only
    so /metrics can say how many replies are in progress."""

    def __init__(self) -> None:
        self.slots = 0
        self._spans = deque()

    def admit(self, arrival: float, busy_s: float) -> float:
        self._append((arrival, arrival, arrival + max(busy_s, 0.0)))
        return 0.0
