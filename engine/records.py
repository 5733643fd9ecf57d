"""Small frozen records that cross process boundaries.

A leaf module: anyone may import it, it imports nothing of ours.  Workers
never pass Response objects around; they turn what arrived into a
RawRecord of raw timestamps; the coordinator makes it a FinishedRecord
(engine.events) and derives the row from that (engine.derive).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how every request of one run is sent (shipped to workers once)."""

    url: str
    headers: tuple[tuple[str, str], ...]  # may hold the API key: never stored
    stream: bool
    connect_timeout_s: float
    read_timeout_s: float
    retries: int = 0  # extra attempts after a transport failure, 429 or 5xx
    # requests' own settings (engine.transport.with_environment fills in what
    # the environment gives): proxies by scheme (may hold credentials: never
    # stored), verify (True, False, or a CA bundle path), client certificate
    # (a PEM path, or (cert, key) paths).
    proxies: tuple[tuple[str, str], ...] = ()
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One request to send.  The body is serialised by the coordinator so the
    worker has nothing left to do but wait for its time and write it."""

    seq: int
    request_id: str
    payload: bytes
    # Epoch seconds the scheduler wants it sent at; None means "as soon as a
    # worker thread is free" (closed loop).
    scheduled_time: float | None = None
    is_warmup: bool = False
    # Multi-turn (engine.conversations): the conversation this turn belongs
    # to, its number (1, 2, ...), and whether another turn follows on the
    # same worker thread.  Single requests: None, 0, True.
    conversation_id: str | None = None
    turn: int = 0
    last_turn: bool = True


@dataclass(frozen=True, slots=True)
class Sent:
    """A dispatched job as the coordinator keeps it until its record comes
    back: the Job the worker has, the body it was built from (the API plugin
    reads it again to judge the reply) and the body as stored in the
    database (`request`, base64 pickle), encoded before the clock starts."""

    job: Job
    body: dict
    request_b64: str
    # A trace's own send time for it (engine.replay): seconds after the
    # trace's first request; None = the run's schedule decides.
    offset_s: float | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """What both stages of a request's record say: which job, which worker,
    and its clock (the worker thread's raw facts)."""

    seq: int
    worker: str
    scheduled_time: float  # epoch; when the thread meant to send it
    start_time: float  # epoch at send
    latency_s: float | None  # send to last byte (or to the failure)
    status_code: int | None
    # The sending thread's slot in its pool (engine.pool: unique across the
    # pool's processes); -1 when no thread sent it (a worker was lost).
    thread: int = -1


@dataclass(frozen=True, slots=True)
class RawRecord(Observed):
    """What one worker thread observed for one Job: raw facts only, made in
    the worker (engine.transport), turned into a FinishedRecord in the
    coordinator (engine.events.finish)."""

    # The body as the worker thread read it: the pieces urllib3 handed over,
    # the arrival of the read that completed each (seconds since send), and
    # whether the body ended well.
    pieces: tuple[bytes, ...] = ()
    piece_offsets_s: tuple[float, ...] = ()
    body_complete: bool = False
    error: str | None = None
    # Set when the worker could not reach the server or the transfer broke;
    # a non-2xx status or an error event is judged by the coordinator.
    transport_failed: bool = False
    is_stream: bool = True  # the reply was an event stream
    retry_after_s: float | None = None  # the server's Retry-After, when it sent one
    attempt: int = 0  # 0 for the first try; see --retries
    # Times the kept-alive connection was found closed by the server when
    # this request went out (engine.transport.Sender.exchange).
    reconnects: int = 0
    final: bool = True  # False when another attempt of the same job follows


@dataclass(frozen=True, slots=True)
class FinishedRecord(Observed):
    """A RawRecord with its body split into events (engine.events.finish):
    what engine.derive turns into a row."""

    # Each SSE `data:` payload as received ([DONE] not kept), or the whole
    # body of a non-streamed reply as one element.
    events: tuple[str, ...] = ()
    # Arrival of each element of `events`, seconds since send.
    event_offsets_s: tuple[float, ...] = ()
    error: str | None = None
    transport_failed: bool = False  # as RawRecord's
    is_stream: bool = True  # the reply was an event stream
    saw_done: bool = False  # the stream carried the `[DONE]` sentinel
    attempt: int = 0
    reconnects: int = 0
    final: bool = True


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A worker process's own health at the end of a run (client self-check)."""

    worker: str
    cpu_s: float
    wall_s: float
    peak_rss_mb: float = 0.0
    extra: dict = field(default_factory=dict)
