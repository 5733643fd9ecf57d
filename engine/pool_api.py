"""The contract between the coordinator (engine.runner, engine.run_state)
and whatever sends its requests: local worker processes
(engine.pool.WorkerPool) or Ray actors (engine.ray_pool.RayPool).

A leaf: it imports nothing of ours but the records, so the runner can type
against it without importing either pool (the Ray one imports ray).
"""
from __future__ import annotations

import threading
from typing import Protocol, Union

from engine.records import RawRecord, WorkerStats

# What `receive` and `shutdown` hand back: a worker's record of one attempt,
# or a worker's own figures once its threads have ended.
Message = Union[RawRecord, WorkerStats]


class JobQueue(Protocol):
    """Where the feeder puts Jobs (bounded: a full queue raises queue.Full
    after `timeout`)."""

    def put(self, item, block: bool = True, timeout: float | None = None) -> None: ...


class Pool(Protocol):
    """The workers of one run.  Every Job a worker sends ends as exactly one
    final RawRecord from `receive`/`shutdown`, or as a seq from `reap_dead`
    or `shutdown`'s lost list (sent, never recorded): never both, never
    neither."""

    jobs: JobQueue  # the feeder's Jobs, in send order

    @property
    def total_threads(self) -> int:
        """Requests the pool can have in flight at once (--parallel)."""

    @property
    def stop_fd(self) -> int:
        """A file descriptor for signal.set_wakeup_fd: a signal's byte there
        stops every worker thread before the coordinator's handler runs."""

    def wait_ready(self, timeout_s: float = ..., stop: threading.Event | None = None) -> None:
        """Until every worker can send (an open-loop schedule starts after
        this); returns early once `stop` is set."""

    def set_deadline(self, epoch_s: float) -> None:
        """No worker thread sends at or after this time."""

    def set_ramp_start(self, epoch_s: float) -> None:
        """--ramp-up without --rate: the ramp's t0; each worker thread sends
        its first measured request at its turn after it (engine.ramp)."""

    def receive(self, timeout_s: float) -> list[Message]:
        """The messages that arrived within `timeout_s`."""

    def reap_dead(self) -> list[tuple[str, list[int]]]:
        """(worker name and cause, seqs it was sending) for each worker found
        dead since the last call."""

    def send_follow_up(self, worker: str, slot: int, job) -> bool:
        """The next turn of a conversation (a Job; None: it is over) to the
        thread that sent the turn before (a record's `worker` and `thread`).
        False when it cannot get there: the conversation ends."""

    def in_flight(self) -> list[int]:
        """Seqs being sent now."""

    def send_stop(self) -> None:
        """The last job is queued: workers end once the queue is empty.
        Never blocks; called again until `ended()`."""

    def stop(self) -> None:
        """Stop now: nothing more is sent; requests in flight go on."""

    def ended(self) -> bool:
        """Every worker has ended and everything it sent has been received."""

    def shutdown(self) -> tuple[list[Message], list[int]]:
        """Stop and end every worker.  Returns (the messages not yet
        received, the seqs still being sent when they ended: sent, never
        recorded).  Idempotent."""
