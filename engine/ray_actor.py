"""The actor side of the Ray backend: what runs inside each Ray actor.
LoadActor runs `engine.worker.run_threads` as a local worker process does,
takes Jobs from the driver in batches and hands back its records in the
driver's clock when polled.  The driver side, and how time, flow and faults
work between the two, is engine.ray_pool (see its module docstring).

`ray` is imported only inside functions: this module imports without it.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import queue
import resource
import socket
import threading
import time

from engine import installed_version
from engine.records import Job, RawRecord, Target, WorkerStats
from engine.worker import IDLE, EventGate, run_threads, tune_gc

BATCH_S = 0.005  # a busy actor answers at most this often: records travel in batches


class _ActorJobs:
    """The actor's local job queue, as `run_threads` reads it: `get(timeout=)`
    returns a Job, None once stopped and empty, or raises queue.Empty."""

    def __init__(self):
        self._jobs: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False

    def extend(self, jobs: list[Job]) -> None:
        with self._cond:
            self._jobs.extend(jobs)
            self._cond.notify(len(jobs))

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Job | None:
        with self._cond:
            if not self._jobs and not self._stopping:
                self._cond.wait(timeout)
            if self._jobs:
                return self._jobs.popleft()
            if self._stopping:
                return None
            raise queue.Empty


class _ActorResults:
    """What `run_threads` puts records into: converted to the driver's clock
    and kept until the next poll takes them."""

    def __init__(self, cond: threading.Condition, buffer: list, offset_s: float):
        self._cond, self._buffer, self._offset = cond, buffer, offset_s

    def put(self, record: RawRecord) -> None:
        record = dataclasses.replace(record, scheduled_time=record.scheduled_time - self._offset,
                                     start_time=record.start_time - self._offset)
        with self._cond:
            self._buffer.append(record)
            self._cond.notify_all()


class LoadActor:
    """One load-generating actor: the same threads as a local worker
    process.  Made a Ray actor class by `actor_class()`."""

    def __init__(self):
        self._cond = threading.Condition()
        self._buffer: list = []
        self._jobs = _ActorJobs()
        self._slots: list[int] = []
        self._offset = 0.0
        self._stats: WorkerStats | None = None
        self._last_poll = 0.0
        self._gate = EventGate()  # stop and deadline, checked by every thread before it sends

    def hello(self) -> dict:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
                "pid": os.getpid(), "version": installed_version()}

    def clock(self) -> float:
        return time.time()

    def start(self, name: str, target: Target, n_threads: int, offset_s: float) -> None:
        self._offset = offset_s
        self._slots = [IDLE] * n_threads
        results = _ActorResults(self._cond, self._buffer, offset_s)

        def main() -> None:
            tune_gc()
            wall0, cpu0 = time.monotonic(), time.process_time()
            # The actor dies with its owner, the driver: no orphan check needed.
            run_threads(target, self._jobs, results, n_threads, self._slots, 0, name, lambda: False, self._gate)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = WorkerStats(worker=name, cpu_s=time.process_time() - cpu0, wall_s=time.monotonic() - wall0,
                                peak_rss_mb=usage.ru_maxrss / 1024.0)
            with self._cond:
                self._stats = stats
                self._cond.notify_all()

        threading.Thread(target=main, name=f"{name}-main", daemon=True).start()

    def submit(self, jobs: list[Job], stop: bool = False, deadline: float | None = None) -> None:
        """Jobs to send; `stop`: threads leave once the queue is empty;
        `deadline` (driver epoch): nothing is sent at or after it."""
        if deadline is not None:
            self._gate.limit = deadline + self._offset
        if jobs:
            offset = self._offset
            self._jobs.extend([j if j.scheduled_time is None
                               else dataclasses.replace(j, scheduled_time=j.scheduled_time + offset)
                               for j in jobs])
        if stop:  # threads leave once the queue is empty
            self._jobs.stop()

    def stop_now(self) -> None:
        """No thread sends another request; each leaves at its next job."""
        self._gate.stop.set()
        self._jobs.stop()

    def poll(self, wait_s: float) -> tuple[list[RawRecord], list[int], WorkerStats | None]:
        """(records since the last poll, seqs being sent, final stats once the
        threads have all stopped).  Answers at once when there is something,
        but not more often than every BATCH_S."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self._stats is None:
                now = time.monotonic()
                if now >= deadline or (self._buffer and now >= self._last_poll + BATCH_S):
                    break
                self._cond.wait((min(deadline, self._last_poll + BATCH_S) if self._buffer else deadline) - now)
            records = list(self._buffer)
            self._buffer.clear()
            sending = [s for s in self._slots if s != IDLE]
            self._last_poll = time.monotonic()
            return records, sending, self._stats


_ACTOR_CLASS = None


def actor_class(ray):
    """LoadActor as a Ray actor class, made once (the driver side,
    engine.ray_pool, creates the actors from it)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        # num_cpus=0: placement is ours (one node each, by node id); no
        # restarts or task retries, which would resend requests unseen.
        _ACTOR_CLASS = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=0,
                                  max_task_retries=0)(LoadActor)
    return _ACTOR_CLASS

