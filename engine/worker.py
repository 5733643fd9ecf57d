"""A worker process: T threads, each with its own requests adapter and
keep-alive connection (engine.transport), pulling Jobs from a shared queue
and pushing RawRecords back.

Blocking I/O releases the GIL, so threads give concurrency within a
process; several processes keep one process's GIL from delaying every
stream's reads.  Workers import no plugin, pandas or matplotlib: they only
move bytes and read clocks (the coordinator splits the bodies into events,
engine.events.finish).

Stopping.  A thread asks its Gate just before each send (`wait_to_send`):
after a stop, or at the run's deadline, the job is not sent and gets no
row.  The stop does not travel through the job queue: locally it is a byte
in a pipe every worker process watches (the coordinator's signal wake-up
fd writes it the moment Ctrl-C arrives), on Ray an Event each actor sets.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import queue
import resource
import select
import signal
import threading
import time
from typing import Callable

from engine import transport
from engine.records import Job, RawRecord, Target, WorkerStats

IDLE = -1  # slot value: this thread has no request in flight
PARENT_CHECK_S = 1.0  # how often an idle thread checks that the coordinator lives
RETRY_BACKOFF_S = 0.5  # first wait before a retry without Retry-After; doubles each time
MAX_RETRY_WAIT_S = 30.0


class PipeGate:
    """The stop and the deadline as a local worker process sees them: the
    read end of the coordinator's stop pipe (readable once anything was
    written to it, or once the coordinator is gone), and a shared double
    holding the deadline in epoch seconds (0: none)."""

    def __init__(self, stop_reader, deadline_value, ramp_value=None):
        self._reader = stop_reader  # kept: it owns the descriptor
        self._fd = stop_reader.fileno()
        self._deadline = deadline_value
        self._ramp = ramp_value  # --ramp-up: epoch t0 of the ramp (0: not started)

    def wait(self, timeout_s: float) -> bool:
        """True as soon as the run is stopped; False after `timeout_s` without."""
        timeout_s = max(0.0, timeout_s)
        if self._fd < 1024:  # select's limit; its timeout is precise to the microsecond
            return bool(select.select([self._fd], [], [], timeout_s)[0])
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(timeout_s * 1000.0))

    def deadline(self) -> float | None:
        return self._deadline.value or None

    def ramp_start(self) -> float | None:
        return (self._ramp.value or None) if self._ramp is not None else None


class EventGate:
    """The same for threads of one process (a Ray actor): an Event and a deadline."""

    def __init__(self):
        self.stop = threading.Event()
        self.limit: float | None = None

    def wait(self, timeout_s: float) -> bool:
        return self.stop.wait(max(0.0, timeout_s))

    def deadline(self) -> float | None:
        return self.limit

    def ramp_start(self) -> float | None:
        return None  # Ray actors do not ramp (engine.options refuses it)


def wait_to_send(job: Job, gate) -> bool:
    """Wait until `job` is due (a stop ends the wait at once), then say
    whether to send it: not after a stop, and not at or after the deadline.
    The check is the last thing before the request's bytes are written."""
    deadline = gate.deadline()
    due = job.scheduled_time
    if due is not None:
        if deadline is not None and due >= deadline:
            return False
        delay = due - time.time()
        if delay > 0 and gate.wait(delay):
            return False
    if gate.wait(0.0):
        return False
    return deadline is None or time.time() < deadline


class PipeSink:
    """A worker process's records to the coordinator, through a pipe of its
    own.  Each put is written before it returns (no feeder thread holds it),
    so a record put before its thread's slot is cleared is in the pipe even
    if the process is killed a moment later; a process killed mid-write
    spoils only its own pipe, never another worker's."""

    def __init__(self, writer):
        self._writer = writer
        self._lock = threading.Lock()
        self.broken = False

    def put(self, message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self.broken:
                return
            try:
                self._writer.send_bytes(data)
            except OSError:  # the coordinator has gone
                self.broken = True

    def close(self) -> None:
        with self._lock:
            self._writer.close()


def wait_turn(turn_s: float, gate) -> bool:
    """--ramp-up: before its first measured request a thread waits until
    its turn (engine.ramp.thread_turns_s) after the ramp's t0; False once
    the run is stopped meanwhile."""
    start = gate.ramp_start()
    if start is None:
        return True
    delay = start + turn_s - time.time()
    return not (delay > 0 and gate.wait(delay))


class FollowUps:
    """The next turns of conversations (engine.conversations), each for the
    one thread that sent the turn before: a local process reads them from a
    pipe of its own (`(slot, Job or None)`, None: the conversation is over)
    and hands each to its thread's queue."""

    def __init__(self, reader=None):
        self._queues: dict[int, queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        if reader is not None:
            threading.Thread(target=self._route, args=(reader,), name="servegauge-followups", daemon=True).start()

    def _queue(self, slot: int) -> queue.SimpleQueue:
        with self._lock:
            return self._queues.setdefault(slot, queue.SimpleQueue())

    def put(self, slot: int, job: Job | None) -> None:
        self._queue(slot).put(job)

    def get(self, slot: int, timeout_s: float) -> Job | None:
        """The next turn for `slot` (None: none follows); queue.Empty after `timeout_s`."""
        return self._queue(slot).get(timeout=timeout_s)

    def _route(self, reader) -> None:
        try:
            while True:
                slot, job = reader.recv()
                self.put(slot, job)
        except (EOFError, OSError):  # the coordinator closed it, or has gone
            return


def run_worker(index: int, target: Target, jobs, results, n_threads: int, slots, slot_base: int, ready,
               stop_reader, deadline, follow_reader=None, ramp=None, turns_s=None) -> None:
    """Process entry point.  `slots[slot_base + t]` holds the seq thread t is
    sending, so the coordinator can account for it if this process dies;
    `ready` (a semaphore) is released once the threads run; `results` is the
    write end of this process's own pipe to the coordinator; `stop_reader`
    and `deadline` make its PipeGate; `follow_reader` brings the next turns
    of conversations (FollowUps); with --ramp-up, `ramp` is the shared
    t0 of the ramp and `turns_s` each thread's turn after it."""
    # Ctrl-C goes to the whole process group: the coordinator decides what
    # happens, workers keep going until told to stop.  (The pool starts us
    # with SIGINT and SIGTERM blocked, so nothing arrives before this line.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    tune_gc()
    name = f"w{index}"
    parent = os.getppid()
    sink = PipeSink(results)
    wall0, cpu0 = time.monotonic(), time.process_time()
    run_threads(target, jobs, sink, n_threads, slots, slot_base, name,
                lambda: sink.broken or os.getppid() != parent, PipeGate(stop_reader, deadline, ramp),
                started=ready.release, follow_ups=FollowUps(follow_reader), turns_s=turns_s)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sink.put(WorkerStats(worker=name, cpu_s=time.process_time() - cpu0, wall_s=time.monotonic() - wall0,
                         peak_rss_mb=usage.ru_maxrss / 1024.0, extra={"pid": os.getpid(), "threads": n_threads}))
    sink.close()


def tune_gc() -> None:
    """Once per worker process, before its threads start."""
    # A gen-2 collection in the middle of a stream would show up as a
    # latency spike that the server never caused.
    gc.collect()
    gc.freeze()
    # What a request allocates is freed by reference counting (no cycles), so
    # frequent young-generation passes are pure overhead on the hot path.
    gc.set_threshold(100_000, 50, 1000)


def run_threads(target: Target, jobs, results, n_threads: int, slots, slot_base: int, name: str,
                orphaned: Callable[[], bool], gate, started: Callable[[], object] | None = None,
                follow_ups: FollowUps | None = None, turns_s=None) -> None:
    """The worker loop, shared by a local worker process and a Ray actor
    (engine.ray_actor): `n_threads` threads, each with its own
    transport.Sender, take Jobs from `jobs` (`get(timeout=)`; None = stop),
    put each RawRecord into `results` (`put(record)`), and hold the seq
    they are sending in `slots[slot_base + t]`.  Before each send a thread
    asks `gate` (wait_to_send); once the gate says no, the thread stops.
    Returns when every thread has stopped; `orphaned()` is asked while idle
    whether the coordinator is gone; `started()` is called once every
    thread has its connection open.  A thread that sent a turn of a
    conversation with more to come takes its next turn from `follow_ups`
    (the coordinator builds it from the reply), so a conversation stays on
    one thread and its connection, and holds the thread while it lasts.
    `turns_s[t]`, when given, is thread t's turn in a --ramp-up (wait_turn)."""
    waiting = [n_threads]
    lock = threading.Lock()

    def thread_ready() -> None:
        with lock:
            waiting[0] -= 1
            last = waiting[0] == 0
        if last and started is not None:
            started()

    threads = [threading.Thread(target=_thread_loop, name=f"{name}-t{t}", daemon=True,
                                args=(target, jobs, results, slots, slot_base + t, name, orphaned, thread_ready,
                                      gate, follow_ups, turns_s[t] if turns_s else 0.0))
               for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _thread_loop(target: Target, jobs, results, slots, slot: int, worker: str,
                 orphaned: Callable[[], bool], ready: Callable[[], None], gate,
                 follow_ups: FollowUps | None = None, turn_s: float = 0.0) -> None:
    sender = transport.Sender(target)
    if not gate.wait(0.0):
        sender.warm()
    ready()
    while True:
        try:
            job: Job | None = jobs.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if orphaned() or _closed(gate):
                return  # stopped, past the deadline, or the coordinator was killed
            continue
        except (EOFError, OSError):
            return  # the coordinator has gone
        if job is None:
            return
        if turn_s > 0 and not job.is_warmup:  # --ramp-up: this thread joins at its turn, once
            if not wait_turn(turn_s, gate):
                return
            turn_s = 0.0
        while job is not None:  # a single request, or the turns of one conversation
            if not wait_to_send(job, gate):
                return  # not sent, no row; nothing after it will be sent either
            _send(sender, target, job, worker, results, slots, slot, gate)
            if job.last_turn or follow_ups is None:
                break
            job = _next_turn(follow_ups, slot, orphaned, gate)
            if job is _STOP:
                return


_STOP = object()  # _next_turn: this thread ends


def _next_turn(follow_ups: FollowUps, slot: int, orphaned: Callable[[], bool], gate):
    """The conversation's next turn for this thread (its Job), None when it
    has none (the conversation ended: back to the shared queue), or _STOP."""
    while True:
        try:
            return follow_ups.get(slot, PARENT_CHECK_S)
        except queue.Empty:
            if orphaned() or _closed(gate):
                return _STOP


def _send(sender: transport.Sender, target: Target, job: Job, worker: str, results, slots, slot: int,
          gate) -> None:
    """One job, with its retries: every attempt's record into `results`."""
    # In the slot from now: if this process dies, the request was (about to be) sent.
    slots[slot] = job.seq
    for attempt in range(target.retries + 1):
        record = _attempt(sender, target, job, worker)
        retry = attempt < target.retries and _retryable(record)
        if retry:  # a retry is a new request, sent after any Retry-After, unless the run stops first
            wait = min(record.retry_after_s or RETRY_BACKOFF_S * 2 ** attempt, MAX_RETRY_WAIT_S)
            job = dataclasses.replace(job, scheduled_time=time.time() + wait)
            retry = wait_to_send(job, gate)
        # Put only once it is known whether another attempt follows, so
        # every job that was sent ends in exactly one final record.
        results.put(dataclasses.replace(record, attempt=attempt, final=not retry, thread=slot))
        if not retry:
            break
        job = dataclasses.replace(job, scheduled_time=None)
    slots[slot] = IDLE


def _closed(gate) -> bool:
    """Stopped, or past the deadline: this thread will send nothing more."""
    if gate.wait(0.0):
        return True
    deadline = gate.deadline()
    return deadline is not None and time.time() >= deadline


def _attempt(sender: transport.Sender, target: Target, job: Job, worker: str) -> RawRecord:
    try:
        return sender.exchange(job, worker)
    except BaseException as exc:  # never lose a request to our own bug
        return RawRecord(seq=job.seq, worker=worker, scheduled_time=job.scheduled_time or time.time(),
                         start_time=time.time(), latency_s=None, status_code=None,
                         error=f"client error: {type(exc).__name__}: {exc}"[:300],
                         transport_failed=True, is_stream=target.stream)


def _retryable(record: RawRecord) -> bool:
    status = record.status_code
    return record.transport_failed or status == 429 or (status is not None and status >= 500)
