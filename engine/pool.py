"""The worker processes of one run, and what each has in flight.

Concurrency = processes x threads.  Each thread owns a slot in a shared
array holding the seq it is sending, so when a process dies the coordinator
knows exactly which requests went with it.

Each process writes its records into a pipe of its own, and a record is in
the pipe before its thread's slot is cleared; the pipe reaches its end only
when the process has exited.  So "every message of a worker has been read"
is an observable fact (end of file on its pipe), not a guess, and a process
killed at any moment leaves each of its requests either as a record in the
pipe or as a seq in its slots.

The stop (`stop()`, or a signal through `stop_fd`) is a byte written into a
pipe that every worker thread watches: it reaches all of them at once, not
through the job queue (engine.worker.PipeGate).  The deadline is a shared
double they read before each send.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass

from engine.ramp import thread_turns_s
from engine.records import Target, WorkerStats
from engine.worker import IDLE, run_worker

# spawn: workers start clean (no inherited threads, plugins or pandas), the
# same on every platform; it costs a fraction of a second per run.
CONTEXT = mp.get_context("spawn")
READY_TIMEOUT_S = 30.0
EXIT_WAIT_S = 1.0  # a process whose pipe has ended is exiting: how long to wait for it


def release_wakeup_fd(fd: int) -> None:
    """Before `fd` closes: if it is the signal wake-up fd, unset it (a
    signal must not write into a closed or reused descriptor)."""
    if threading.current_thread() is not threading.main_thread():
        return
    old = signal.set_wakeup_fd(-1)
    if old not in (-1, fd):
        signal.set_wakeup_fd(old, warn_on_full_buffer=False)


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
    reader: multiprocessing.connection.Connection  # its records, WorkerStats last
    follow: multiprocessing.connection.Connection  # the next turns of its conversations (engine.worker.FollowUps)
    open: bool = True  # its pipe has not reached its end
    finished: bool = False  # its WorkerStats arrived: its threads all ended
    reaped: bool = False  # accounted for after its pipe ended


class WorkerPool:
    def __init__(self, target: Target, parallel: int, workers: int, queue_ahead: int,
                 ramp_s: float | None = None):
        self.target = target
        self.jobs = CONTEXT.Queue(maxsize=max(queue_ahead, 1))
        self.threads = split_threads(parallel, workers)
        # --ramp-up of concurrency: each slot's turn after the ramp's t0 (shared, set by the feeder)
        self._turns_s = thread_turns_s(self.threads, ramp_s)
        self._ramp_start = CONTEXT.Value("d", 0.0, lock=False)
        self.slots = CONTEXT.Array("q", [IDLE] * sum(self.threads), lock=False)
        self._ready = CONTEXT.Semaphore(0)  # one release per process whose threads run
        self._stop_reader, self._stop_writer = CONTEXT.Pipe(duplex=False)
        os.set_blocking(self._stop_writer.fileno(), False)  # a signal's wake-up fd must not block
        self._deadline = CONTEXT.Value("d", 0.0, lock=False)
        self.members: list[_Member] = []
        self._next_index = 0
        self._ending = False  # the last job is queued: each thread gets a sentinel
        self._stopped = False
        self._sentinels = 0  # sentinels still to queue
        self._closed = False
        try:
            base = 0
            for n in self.threads:
                self._start(n, base)
                base += n
        except BaseException:  # e.g. Ctrl-C while spawning: no process is left behind
            self.shutdown()
            raise

    @property
    def total_threads(self) -> int:
        return sum(self.threads)

    @property
    def stop_fd(self) -> int:
        """Write end of the stop pipe, for signal.set_wakeup_fd: a signal
        stops every worker thread before the coordinator's handler runs."""
        return self._stop_writer.fileno()

    def _start(self, n_threads: int, slot_base: int, position: int | None = None) -> None:
        """Start a process for these slots; it goes at `position` in members
        (a dead one's place), or at the end."""
        index = self._next_index
        self._next_index += 1
        for t in range(n_threads):
            self.slots[slot_base + t] = IDLE
        reader, writer = CONTEXT.Pipe(duplex=False)
        follow_reader, follow_writer = CONTEXT.Pipe(duplex=False)
        process = CONTEXT.Process(target=run_worker, name=f"servegauge-w{index}", daemon=True,
                                  args=(index, self.target, self.jobs, writer, n_threads, self.slots, slot_base,
                                        self._ready, self._stop_reader, self._deadline, follow_reader,
                                        self._ramp_start, self._turns_s[slot_base:slot_base + n_threads]))
        # The child inherits blocked SIGINT and SIGTERM, so a Ctrl-C to the
        # process group while it imports is not a KeyboardInterrupt in it:
        # it ignores SIGINT, then unblocks both (engine.worker.run_worker).
        # Here a signal waits until the process is started and listed (so a
        # KeyboardInterrupt cannot leave it out of shutdown()).
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            try:
                process.start()
            finally:
                writer.close()  # the child has its own copy: end of file comes when it exits
                follow_reader.close()
            member = _Member(index, process, n_threads, slot_base, reader, follow_writer)
            if position is None:
                self.members.append(member)
            else:
                self.members[position] = member
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S, stop=None) -> None:
        """Until every process has started its threads (imports and spawn take
        a fraction of a second): an open-loop schedule starts after this, so
        its first requests are not late before a worker exists to send them.
        Returns early once `stop` (an Event) is set."""
        deadline = time.monotonic() + timeout_s
        for _ in self.members:
            while not self._ready.acquire(timeout=0.1):
                if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                    return  # a process that never starts is reaped as dead; the run goes on

    def set_deadline(self, epoch_s: float) -> None:
        """No thread sends at or after this time (engine.worker.wait_to_send)."""
        self._deadline.value = epoch_s

    def set_ramp_start(self, epoch_s: float) -> None:
        """--ramp-up: the ramp's t0, set before the first measured job is queued."""
        self._ramp_start.value = epoch_s

    def receive(self, timeout_s: float) -> list:
        """The messages (RawRecord, WorkerStats) that arrived within `timeout_s`."""
        readers = {m.reader: m for m in self.members if m.open}
        if not readers:
            time.sleep(min(timeout_s, 0.01))
            return []
        messages: list = []
        for reader in multiprocessing.connection.wait(list(readers), timeout_s):
            messages += self._read(readers[reader])
        return messages

    def _read(self, member: _Member, to_end: bool = False) -> list:
        """What its pipe holds now (to its end with `to_end`, once the process is gone)."""
        messages = []
        try:
            while to_end or member.reader.poll():
                messages.append(member.reader.recv())
        except (EOFError, OSError):  # the process exited (or died mid-write: that record is lost, its slot is not)
            member.open = False
        except Exception:  # bytes a dying process left half-written
            member.open = False
        if any(isinstance(m, WorkerStats) for m in messages):
            member.finished = True
        return messages

    def reap_dead(self) -> list[tuple[str, list[int]]]:
        """For every process whose pipe has ended: (worker name, seqs it had
        in flight) if it died rather than finished; a dead one is replaced
        unless the run is stopping."""
        dead = []
        for i, member in enumerate(self.members):
            if member.open or member.reaped:
                continue
            member.process.join(EXIT_WAIT_S)
            if member.process.exitcode is None:
                continue  # still on its way out: look again
            member.reaped = True
            seqs = [self.slots[member.slot_base + t] for t in range(member.n_threads)]
            seqs = [s for s in seqs if s != IDLE]
            if member.finished and member.process.exitcode == 0 and not seqs:
                continue  # its threads ended and it exited: all it sent is recorded
            dead.append((f"w{member.index} (exit {member.process.exitcode})", seqs))
            if not member.finished and not self._stopped:
                self._start(member.n_threads, member.slot_base, position=i)
                if self._ending:  # the sentinels already queued may have gone with the dead
                    self._sentinels += member.n_threads
        self._put_sentinels()
        return dead

    def send_stop(self) -> None:
        """After the last job: one sentinel per thread, each thread exits after
        its current request.  Never blocks; call it again until ended()."""
        if not self._ending:
            self._ending = True
            self._sentinels = self.total_threads
        self._put_sentinels()

    def _put_sentinels(self) -> None:
        while self._sentinels > 0 and not self._closed:
            try:
                self.jobs.put_nowait(None)
            except queue.Full:  # threads that find a job instead end on it (stopped) or take the next
                return
            self._sentinels -= 1

    def stop(self) -> None:
        """Stop now: no thread sends another request; those in flight go on."""
        self._stopped = True
        try:
            os.write(self.stop_fd, b"s")
        except (BlockingIOError, OSError):  # full (it already says stop) or closed
            pass
        self.send_stop()  # wakes idle threads sooner than their next check

    def send_follow_up(self, worker: str, slot: int, job) -> bool:
        """The next turn of a conversation (a Job; None: it is over) to the
        thread `slot` of process `worker` ("w1"), which sent the turn before.
        False when that process is gone (the conversation ends there)."""
        for member in self.members:
            if f"w{member.index}" == worker and not member.reaped and not self._closed:
                try:
                    member.follow.send((slot, job))
                    return True
                except (OSError, ValueError):  # it died, or its pipe is closed
                    return False
        return False

    def ended(self) -> bool:
        """Every process has ended and everything it sent has been read."""
        return all(m.reaped for m in self.members)

    def alive(self) -> int:
        return sum(1 for m in self.members if m.process.is_alive())

    def in_flight(self) -> list[int]:
        return [s for m in self.members if not m.reaped
                for s in self.slots[m.slot_base:m.slot_base + m.n_threads] if s != IDLE]

    def shutdown(self) -> tuple[list, list[int]]:
        """Stop, end the processes still running, and read their pipes to the
        end.  Returns (the messages read, the seqs still in flight when they
        ended: sent, never recorded).  Idempotent."""
        if self._closed:
            return [], []
        self.stop()
        self._closed = True
        release_wakeup_fd(self.stop_fd)
        for member in self.members:
            if member.process.is_alive():
                member.process.terminate()
        for member in self.members:
            member.process.join(timeout=2)
            if member.process.is_alive():
                member.process.kill()
                member.process.join(timeout=2)
        messages: list = []
        lost: list[int] = []
        for member in self.members:
            if member.open and not member.process.is_alive():
                messages += self._read(member, to_end=True)
            if not member.reaped:
                member.reaped = True
                lost += [s for s in self.slots[member.slot_base:member.slot_base + member.n_threads] if s != IDLE]
            member.reader.close()
            member.follow.close()
        # The job queue's feeder thread may hold jobs nobody will read.
        self.jobs.cancel_join_thread()
        self.jobs.close()
        self._stop_reader.close()
        self._stop_writer.close()
        return messages, lost

    terminate = shutdown
