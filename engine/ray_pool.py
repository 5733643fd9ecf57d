"""The Ray backend (`--backend ray`): the worker loop of engine.worker run
as Ray actors over the nodes of a cluster, behind engine.pool_api.Pool as
the local engine.pool.WorkerPool is.  The coordinator, the scheduler and the
database writer stay in the driver; only Jobs and RawRecords cross, in
batches.  Each actor runs `engine.worker.run_threads`, stamping exactly as a
local worker process does, so the numbers of both backends mean the same.
Reaching the cluster, placing the actors, their clocks: engine.ray_cluster.

Flow.  A dispatcher thread moves Jobs from `jobs` (a bounded local queue the
runner's feeder fills) to the actors, batched, to whichever has the most
room (threads + as many queued); a receiver thread keeps one long poll open
per actor, which an actor answers with the records it has at most every
BATCH_S (engine.ray_actor), so results stream while the run goes.  Each
reply also says which seqs the actor's threads are sending (the local
pool's shared slots).

Stopping.  A signal reaches the actors at once: the driver's wake-up fd
(`stop_fd`) is a pipe a thread here watches, which calls every actor's
`stop_now`; each actor's threads check an Event before each send (engine.
worker.wait_to_send), and the deadline of --duration travels with every
batch of jobs.  Jobs an actor held but did not send when it ended after a
stop or the deadline were never sent: they go to no other actor.

Faults.  An actor that dies (its process, or its node) has the requests its
threads were sending recorded as failed, "worker died: <node>/w<i> (...)";
the jobs it had queued but not started go to the other actors, and the run
finishes on those.  Ray's own retries and restarts are off: a request is
never sent twice by Ray behind our back.

`ray` is imported only inside functions, here and in engine.ray_actor (the
actor side: LoadActor and what it uses), and only when the backend is chosen.
"""
from __future__ import annotations

import collections
import os
import queue
import select
import signal
import threading
import time

from engine.errors import UsageError
from engine.pool import release_wakeup_fd, split_threads
from engine.ray_cluster import (Member, alive_nodes, connect, create_actors, death_cause, import_ray,
                                 kill_actors, node_labels, placement, start_actors)
from engine.records import Job, RawRecord, Target, WorkerStats

POLL_WAIT_S = 0.2  # an idle actor answers a poll after this long with nothing
SUBMIT_TIMEOUT_S = 10.0
UNAVAILABLE_LIMIT_S = 30.0  # an actor unreachable this long is taken for dead
NO_ACTOR = "no Ray actor left to send it"


class RayPool:
    """engine.pool_api.Pool over Ray actors (see the module docstring)."""

    def __init__(self, target: Target, parallel: int, workers: int | None, queue_ahead: int,
                 address: str | None = "auto"):
        started_local = connect(address)
        ray = self._ray = import_ray()
        nodes = alive_nodes(ray)
        if not nodes:
            raise UsageError(f"--ray-address {address}: the Ray cluster has no alive node")
        places = placement(nodes, workers)
        self.threads = split_threads(parallel, len(places))
        self.members: list[Member] = []
        self._lock = threading.Condition()
        self._reports: list[tuple[str, list[int]]] = []
        self._backlog: collections.deque = collections.deque()
        self._stop_requested = False  # the last job is queued
        self._stopped = False  # stop now: nothing more is sent
        self._deadline: float | None = None  # driver epoch; sent to actors with every batch
        self._closed = False
        self._shut = False
        self._stop_refs: list = []
        self.jobs: queue.Queue = queue.Queue(maxsize=max(queue_ahead, 1))
        self.results: queue.Queue = queue.Queue()
        self._t0 = time.monotonic()
        try:
            # Into self.members as each is made, so a failure kills the ones made so far.
            create_actors(ray, places, self.threads, node_labels(nodes), self.members)
            start_actors(ray, self.members, target, started_local)
        except BaseException:  # Ctrl-C included: no actor is left behind
            kill_actors(ray, self.members)
            raise
        # The signal wake-up fd: a byte here (a signal's number) stops every actor.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="servegauge-ray-dispatch", daemon=True)
        self._receiver = threading.Thread(target=self._receive_loop, name="servegauge-ray-receive", daemon=True)
        self._stopper = threading.Thread(target=self._stop_loop, name="servegauge-ray-stop", daemon=True)
        self._dispatcher.start()
        self._receiver.start()
        self._stopper.start()

    # -- the runner's interface ----------------------------------------------------
    @property
    def total_threads(self) -> int:
        return sum(self.threads)

    @property
    def stop_fd(self) -> int:
        """For signal.set_wakeup_fd: a signal stops every actor (`_stop_loop`)."""
        return self._wake_w

    def wait_ready(self, timeout_s: float = 0.0, stop=None) -> None:
        """The actors started in __init__: ready already."""

    def set_deadline(self, epoch_s: float) -> None:
        """No actor thread sends at or after this time (driver clock)."""
        with self._lock:
            self._deadline = epoch_s

    def set_ramp_start(self, epoch_s: float) -> None:
        """Never called: engine.options refuses a concurrency --ramp-up on Ray."""
        raise NotImplementedError("--ramp-up of concurrency with --backend ray")

    def receive(self, timeout_s: float) -> list:
        """The messages (RawRecord, WorkerStats) that arrived within `timeout_s`."""
        try:
            messages = [self.results.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while True:
            try:
                messages.append(self.results.get_nowait())
            except queue.Empty:
                return messages

    def stop(self) -> None:
        """Stop now: no actor thread sends another request."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            targets = [m for m in self.members if m.accepting]
            self._lock.notify_all()
        self._stop_refs = [m.actor.stop_now.remote() for m in targets]

    def ended(self) -> bool:
        """Every actor has ended or died, and all it sent has been taken."""
        with self._lock:
            done = all(m.finished or m.dead for m in self.members) and not self._reports
        return done and self.results.empty()

    def shutdown(self) -> tuple[list, list[int]]:
        """Stop, take what each live actor still holds, end the actors.
        Returns (the messages not yet received, the seqs still being sent:
        sent, never recorded).  Idempotent."""
        if self._shut:
            return [], []
        self._shut = True
        ray = self._ray
        self.stop()
        release_wakeup_fd(self._wake_w)
        try:
            ray.wait(self._stop_refs, num_returns=len(self._stop_refs), timeout=SUBMIT_TIMEOUT_S)
        except Exception:
            pass
        self._closed = True
        with self._lock:
            self._lock.notify_all()
        for thread in (self._dispatcher, self._receiver, self._stopper):
            thread.join(timeout=2 * POLL_WAIT_S + SUBMIT_TIMEOUT_S)
        # A last look at each live actor: its threads send nothing new now,
        # so what it holds plus what it is sending is everything it sent.
        live = [m for m in self.members if m.accepting]
        refs = {m.actor.poll.remote(0.0): m for m in live}
        for ref, m in refs.items():
            try:
                records, sending, stats = ray.get(ref, timeout=SUBMIT_TIMEOUT_S)
            except Exception:  # gone meanwhile: its last known sending set stands
                continue
            self._received(m, records, sending, stats)
        with self._lock:
            lost = sorted(s for m in self.members if m.accepting for s in m.sending if s in m.assigned)
            lost += [s for _, seqs in self._reports for s in seqs]
            self._reports = []
        kill_actors(ray, self.members)
        messages = []
        while True:
            try:
                messages.append(self.results.get_nowait())
            except queue.Empty:
                break
        os.close(self._wake_r)
        os.close(self._wake_w)
        return messages, lost

    def reap_dead(self) -> list[tuple[str, list[int]]]:
        """(worker, seqs) for every actor found dead since the last call: the
        seqs it was sending.  Once no actor is left, every job still waiting
        is returned too, so the run can end."""
        with self._lock:
            if all(m.dead for m in self.members) and not self._stopped:
                waiting = [job.seq for job in self._backlog]
                self._backlog.clear()
                while True:
                    try:
                        job = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is not None:
                        waiting.append(job.seq)
                if waiting:
                    self._reports.append((NO_ACTOR, waiting))
            reports, self._reports = self._reports, []
        return reports

    def send_stop(self) -> None:
        """After the last job: each actor stops once its queue is empty."""
        with self._lock:
            self._stop_requested = True
            self._lock.notify_all()

    def alive(self) -> int:
        with self._lock:
            return sum(1 for m in self.members if m.accepting)

    def send_follow_up(self, worker: str, slot: int, job) -> bool:
        """Multi-turn runs are local only (engine.runner.make_jobs refuses Ray)."""
        return False

    def in_flight(self) -> list[int]:
        with self._lock:
            seqs = [s for m in self.members if not m.dead for s in m.sending if s in m.assigned]
            seqs += [s for _, reported in self._reports for s in reported]
        return seqs

    terminate = shutdown

    # -- inside ---------------------------------------------------------------------
    def _take_jobs(self, room: int) -> list[Job]:
        """Up to `room` jobs: those of a dead actor first, then new ones."""
        batch: list[Job] = []
        with self._lock:
            while self._backlog and len(batch) < room:
                batch.append(self._backlog.popleft())
        if not batch:
            try:
                job = self.jobs.get(timeout=0.05)
            except queue.Empty:
                return batch
            if job is not None:
                batch.append(job)
        while len(batch) < room:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                batch.append(job)
        return batch

    def _stop_loop(self) -> None:
        """Wait for a signal's byte on the wake-up pipe; then stop every actor."""
        wanted = {signal.SIGINT, signal.SIGTERM}
        while not self._closed:
            if not select.select([self._wake_r], [], [], POLL_WAIT_S)[0]:
                continue
            try:
                data = os.read(self._wake_r, 64)
            except OSError:
                return
            if any(b in wanted for b in data):
                self.stop()

    def _dispatch_loop(self) -> None:
        ray = self._ray
        while not self._closed:
            with self._lock:
                if self._stopped:  # nothing more is sent: the jobs left stay unsent
                    self._lock.wait(0.05)
                    continue
                room = sum(max(0, m.capacity - len(m.assigned)) for m in self.members if m.accepting)
                if room == 0:
                    self._lock.wait(0.05)
                    continue
            batch = self._take_jobs(room)
            if not batch:
                self._maybe_stop(ray)
                continue
            sends: dict[int, list[Job]] = collections.defaultdict(list)
            with self._lock:
                deadline = self._deadline
                live = [m for m in self.members if m.accepting]
                for job in batch:
                    m = max(live, key=lambda m: (m.capacity - len(m.assigned), -m.index), default=None)
                    if m is None or m.capacity - len(m.assigned) <= 0:  # an actor died meanwhile
                        self._requeue([job])
                        continue
                    m.assigned[job.seq] = job
                    sends[m.index].append(job)
            refs = [self.members[i].actor.submit.remote(jobs, False, deadline) for i, jobs in sends.items()]
            # One batch at a time per actor, so its jobs arrive in order; a
            # dead actor's call fails at once (the receiver handles it).
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=SUBMIT_TIMEOUT_S)

    def _maybe_stop(self, ray) -> None:
        with self._lock:
            if not self._stop_requested or self._backlog or not self.jobs.empty():
                return
            targets = [m for m in self.members if m.accepting and not m.stopped]
            for m in targets:
                m.stopped = True
        refs = [m.actor.submit.remote([], True) for m in targets]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=SUBMIT_TIMEOUT_S)

    def _receive_loop(self) -> None:
        ray = self._ray
        polls: dict = {}  # ref -> member
        retry_at: dict[int, float] = {}  # member index -> when to poll again (after "unavailable")
        while not self._closed:
            now = time.monotonic()
            with self._lock:
                members = [m for m in self.members if m.accepting]
            polled = {p.index for p in polls.values()}
            for m in members:
                if m.index not in polled and retry_at.get(m.index, 0.0) <= now:
                    polls[m.actor.poll.remote(POLL_WAIT_S)] = m
            if not polls:
                time.sleep(0.05)
                continue
            ready, _ = ray.wait(list(polls), num_returns=1, timeout=0.1)
            self._take_polls(ray, polls, ready, retry_at)
        # Closing: the polls still open carry records too (answered within POLL_WAIT_S).
        if polls:
            ready, _ = ray.wait(list(polls), num_returns=len(polls), timeout=2 * POLL_WAIT_S + 1.0)
            self._take_polls(ray, polls, ready, retry_at)

    def _take_polls(self, ray, polls: dict, ready: list, retry_at: dict) -> None:
        unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())  # Ray >= 2.30
        for ref in ready:
            m = polls.pop(ref)
            try:
                records, sending, stats = ray.get(ref)
            except unavailable:
                m.unavailable_since = m.unavailable_since or time.monotonic()
                if time.monotonic() - m.unavailable_since > UNAVAILABLE_LIMIT_S:
                    self._died(m, "actor unreachable")
                else:
                    retry_at[m.index] = time.monotonic() + 0.2
                continue
            except ray.exceptions.RayError as exc:  # RayActorError: the actor or its node died
                self._died(m, death_cause(exc))
                continue
            m.unavailable_since = None
            self._received(m, records, sending, stats)

    def _received(self, m: Member, records: list[RawRecord], sending: list[int],
                  stats: WorkerStats | None) -> None:
        for record in records:  # into the runner's queue before they leave `in_flight`
            self.results.put(record)
        with self._lock:
            for record in records:
                if record.final:
                    if m.assigned.pop(record.seq, None) is not None:
                        m.requests += 1
            m.sending = set(sending)
            if stats is not None and not m.finished:
                m.finished = True
                leftover = sorted(m.assigned.values(), key=lambda j: j.seq)
                m.assigned.clear()
                # Jobs that reached it after its threads left go to another
                # actor; after a stop or the deadline they were not sent, and
                # no one will send them.
                if not self._stopped and not (self._deadline is not None and time.time() >= self._deadline):
                    self._requeue(leftover)
                self.results.put(m.figures(stats))
            self._lock.notify_all()

    def _died(self, m: Member, cause: str) -> None:
        with self._lock:
            if m.dead:
                return
            m.dead = True
            sending = sorted(s for s in m.sending if s in m.assigned)
            for s in sending:
                del m.assigned[s]
            leftover = sorted(m.assigned.values(), key=lambda j: j.seq)  # queued there, never started
            m.assigned.clear()
            m.sending = set()
            self._reports.append((f"{m.name} ({cause})", sending))
            self._requeue(leftover)
            self.results.put(m.figures(WorkerStats(worker=m.name, cpu_s=0.0, wall_s=time.monotonic() - self._t0),
                                       died=cause))
            self._lock.notify_all()

    def _requeue(self, jobs: list[Job]) -> None:
        """Jobs an actor will not send go first in line for the others (lock held)."""
        if not jobs:
            return
        if any(m.accepting for m in self.members):
            self._backlog.extendleft(reversed(jobs))
        else:
            self._reports.append((NO_ACTOR, [j.seq for j in jobs]))

