"""A worker process: T threads, each with its own requests adapter and
keep-alive connection (engine.transport), pulling Jobs from a shared queue
and pushing RequestRecords back.

Blocking I/O releases the GIL, so threads give concurrency within a
process; several processes keep one process's GIL from delaying every
stream's reads.  Workers import no plugin, pandas or matplotlib: they only
move bytes and read clocks (the coordinator splits the bodies into events,
engine.events.finish).
"""
from __future__ import annotations

import dataclasses
import gc
import os
import queue
import resource
import signal
import threading
import time
from typing import Callable

from engine import transport
from engine.records import Job, RequestRecord, Target, WorkerStats

IDLE = -1  # slot value: this thread has no request in flight
PARENT_CHECK_S = 1.0  # how often an idle thread checks that the coordinator lives
RETRY_BACKOFF_S = 0.5  # first wait before a retry without Retry-After; doubles each time
MAX_RETRY_WAIT_S = 30.0


def run_worker(index: int, target: Target, jobs, results, n_threads: int, slots, slot_base: int, ready) -> None:
    """Process entry point.  `slots[slot_base + t]` holds the seq thread t is
    sending, so the coordinator can account for it if this process dies;
    `ready` (a semaphore) is released once the threads run."""
    # Ctrl-C goes to the whole process group: the coordinator decides what
    # happens, workers keep going until told to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_gc()
    name = f"w{index}"
    parent = os.getppid()
    wall0, cpu0 = time.monotonic(), time.process_time()
    run_threads(target, jobs, results, n_threads, slots, slot_base, name, lambda: os.getppid() != parent,
                started=ready.release)
    if os.getppid() != parent:  # orphaned: nobody will read what is left in the pipe
        results.cancel_join_thread()
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(WorkerStats(worker=name, cpu_s=time.process_time() - cpu0, wall_s=time.monotonic() - wall0,
                            peak_rss_mb=usage.ru_maxrss / 1024.0, extra={"pid": os.getpid(), "threads": n_threads}))
    results.close()
    results.join_thread()


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
                orphaned: Callable[[], bool], started: Callable[[], object] | None = None) -> None:
    """The worker loop, shared by a local worker process and a Ray actor
    (engine.ray_actor): `n_threads` threads, each with its own
    transport.Sender, take Jobs from `jobs` (`get(timeout=)`; None = stop),
    put each RequestRecord into `results` (`put(record)`), and hold the seq
    they are sending in `slots[slot_base + t]`.  Returns when every thread
    has stopped; `orphaned()` is asked while idle whether the coordinator is
    gone; `started()` is called once every thread has its connection open."""
    waiting = [n_threads]
    lock = threading.Lock()

    def thread_ready() -> None:
        with lock:
            waiting[0] -= 1
            last = waiting[0] == 0
        if last and started is not None:
            started()

    threads = [threading.Thread(target=_thread_loop, name=f"{name}-t{t}", daemon=True,
                                args=(target, jobs, results, slots, slot_base + t, name, orphaned, thread_ready))
               for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _thread_loop(target: Target, jobs, results, slots, slot: int, worker: str,
                 orphaned: Callable[[], bool], ready: Callable[[], None]) -> None:
    sender = transport.Sender(target)
    sender.warm()
    ready()
    while True:
        try:
            job: Job | None = jobs.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if orphaned():
                return  # the coordinator was killed: do not linger as an orphan
            continue
        except (EOFError, OSError):
            return  # the coordinator has gone
        if job is None:
            return
        slots[slot] = job.seq
        for attempt in range(target.retries + 1):
            record = _attempt(sender, target, job, worker)
            retry = attempt < target.retries and _retryable(record)
            results.put(dataclasses.replace(record, attempt=attempt, final=not retry))
            if not retry:
                break
            # A retry is a new request, sent now (after any Retry-After).
            time.sleep(min(record.retry_after_s or RETRY_BACKOFF_S * 2 ** attempt, MAX_RETRY_WAIT_S))
            job = dataclasses.replace(job, scheduled_time=None)
        slots[slot] = IDLE


def _attempt(sender: transport.Sender, target: Target, job: Job, worker: str) -> RequestRecord:
    if job.scheduled_time is not None:
        delay = job.scheduled_time - time.time()
        if delay > 0:
            time.sleep(delay)
    try:
        return sender.exchange(job, worker)
    except BaseException as exc:  # never lose a request to our own bug
        return RequestRecord(seq=job.seq, worker=worker, scheduled_time=job.scheduled_time or time.time(),
                             start_time=time.time(), latency_s=None, status_code=None,
                             error=f"client error: {type(exc).__name__}: {exc}"[:300],
                             transport_failed=True, is_stream=target.stream)


def _retryable(record: RequestRecord) -> bool:
    status = record.status_code
    return record.transport_failed or status == 429 or (status is not None and status >= 500)

