"""The worker processes of one run, and what each has in flight.

Concurrency = processes x threads.  Each thread owns a slot in a shared
array holding the seq it is sending, so when a process dies the coordinator
knows exactly which requests went with it.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

from engine.records import Target
from engine.worker import IDLE, run_worker

# spawn: workers start clean (no inherited threads, plugins or pandas), the
# same on every platform; it costs a fraction of a second per run.
CONTEXT = mp.get_context("spawn")
READY_TIMEOUT_S = 30.0


def split_threads(parallel: int, workers: int) -> list[int]:
    """Threads per process so that their sum is `parallel`."""
    processes = max(1, min(workers, parallel))
    base, extra = divmod(parallel, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


@dataclass
class _Member:
    index: int
    process: mp.Process
    n_threads: int
    slot_base: int


class WorkerPool:
    def __init__(self, target: Target, parallel: int, workers: int, queue_ahead: int):
        self.target = target
        self.jobs = CONTEXT.Queue(maxsize=max(queue_ahead, 1))
        self.results = CONTEXT.Queue()
        self.threads = split_threads(parallel, workers)
        self.slots = CONTEXT.Array("q", [IDLE] * sum(self.threads), lock=False)
        self._ready = CONTEXT.Semaphore(0)  # one release per process whose threads run
        self.members: list[_Member] = []
        self._next_index = 0
        self._stopping = False
        base = 0
        for n in self.threads:
            self.members.append(self._start(n, base))
            base += n

    @property
    def total_threads(self) -> int:
        return sum(self.threads)

    def _start(self, n_threads: int, slot_base: int) -> _Member:
        index = self._next_index
        self._next_index += 1
        for t in range(n_threads):
            self.slots[slot_base + t] = IDLE
        process = CONTEXT.Process(target=run_worker, name=f"servegauge-w{index}", daemon=True,
                                  args=(index, self.target, self.jobs, self.results, n_threads,
                                        self.slots, slot_base, self._ready))
        process.start()
        return _Member(index, process, n_threads, slot_base)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every process has started its threads (imports and spawn take
        a fraction of a second): an open-loop schedule starts after this, so
        its first requests are not late before a worker exists to send them."""
        deadline = time.monotonic() + timeout_s
        for _ in self.members:
            if not self._ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return  # a process that never starts is reaped as dead; the run goes on

    def reap_dead(self) -> list[tuple[str, list[int]]]:
        """Replace every process that died before it was told to stop; return
        (worker name, seqs it had in flight) for each."""
        dead = []
        for i, member in enumerate(self.members):
            process = member.process
            if process.is_alive() or process.exitcode == 0:
                continue
            seqs = [self.slots[member.slot_base + t] for t in range(member.n_threads)]
            seqs = [s for s in seqs if s != IDLE]
            dead.append((f"w{member.index} (exit {process.exitcode})", seqs))
            self.members[i] = self._start(member.n_threads, member.slot_base)
            if self._stopping:  # the sentinels already sent went with the dead
                for _ in range(member.n_threads):
                    self.jobs.put(None)
        return dead

    def send_stop(self) -> None:
        """One sentinel per thread: each exits after its current request."""
        self._stopping = True
        for _ in range(self.total_threads):
            self.jobs.put(None)

    def alive(self) -> int:
        return sum(1 for m in self.members if m.process.is_alive())

    def in_flight(self) -> list[int]:
        return [s for s in self.slots if s != IDLE]

    def terminate(self) -> None:
        for member in self.members:
            if member.process.is_alive():
                member.process.terminate()
        for member in self.members:
            member.process.join(timeout=2)
            if member.process.is_alive():
                member.process.kill()
                member.process.join(timeout=2)
        # Queues hold feeder threads and pipes: let them go without blocking.
        self.jobs.cancel_join_thread()
        self.results.cancel_join_thread()
