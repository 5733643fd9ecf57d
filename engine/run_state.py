"""The state of one run that the feeder thread and the collector share:
which jobs were dispatched and have no final record yet (`pending`), and
what each record becomes (events -> row -> database, progress, stop rules).

The feeder (`feed`) puts each Job on the pool's queue at its time; the
collector (engine.runner) hands every message the pool returns to `take`.
A job ends as one row when its final record comes (`record`), as a failed
row when its worker was lost (`fail`), or as none when it was never sent
(`forget_unsent`).
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Iterator

from engine import events
from engine.arguments import REDACTED, Arguments
from engine.derive import ParseWatch, to_row
from engine.errors import PluginFailed
from engine.pool_api import Message, Pool
from engine.prefix_reuse import PrefixReuse
from engine.progress import Progress
from engine.ramp import ramped_offsets_s
from engine.replay import trace_schedule
from engine.records import FinishedRecord, Job, RawRecord, Sent, WorkerStats
from engine.scheduler import send_offsets_s
from engine.store import RAMP_UP, ResultStore

RATE_LEAD_S = 0.1  # open loop: the first request is due this long after set-up


class RunState:
    """State of one run, shared by the feeder thread and the collector."""

    def __init__(self, args: Arguments, api, count_tokens, store: ResultStore, progress: Progress):
        self.args, self.api, self.count_tokens, self.store, self.progress = args, api, count_tokens, store, progress
        self.pending: dict[int, Sent] = {}  # dispatched, no final record yet
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.feeding_done = threading.Event()
        self.warmup_done = threading.Event()
        self.feed_error: BaseException | None = None
        self.deadline: float | None = None  # epoch: --duration ends here (set by the feeder)
        self.ramp_end: float | None = None  # epoch: --ramp-up ends here; rows due before are marked
        self.max_failed: int | None = None  # more failed requests than this stop the run
        self.failed = 0
        self.rows = 0
        self.warmup_left = args.warmup_num
        self.parse_watch = ParseWatch(api, args.api, say=progress.note)
        # A multi-turn run: engine.conversations.Conversations, and the pool
        # that takes each next turn to the thread of the one before.
        self.conversations = None
        self.pool: Pool | None = None
        self.prefix_reuse = PrefixReuse()  # the rows' prompt_chars, shared_prefix_chars
        # Next turns handed to a worker's thread, not yet sent (it may be in
        # its think time): seq -> worker.  Its slot is idle meanwhile, so a
        # dead worker would not name them (lost_follow_ups does).
        self.handed: dict[int, str] = {}
        if self.warmup_left == 0:
            self.warmup_done.set()

    # --- feeder ----------------------------------------------------------
    def feed(self, pool: Pool, jobs: Iterator[Sent]) -> None:
        args = self.args
        try:
            if args.ramp_up and args.rate is not None:
                offsets = ramped_offsets_s(args.rate, args.ramp_up, args.burstiness, args.seed, args.number)
            else:
                offsets = send_offsets_s(args.rate, args.burstiness, args.seed, args.number)
            t0 = deadline = trace_first = None
            for sent in jobs:
                job = sent.job
                if self.stop.is_set():
                    return
                if job.is_warmup:
                    scheduled = None
                else:
                    if t0 is None:  # measured requests start after the warm-up
                        while not self.warmup_done.wait(0.1):
                            if self.stop.is_set():
                                return
                        pool.wait_ready(stop=self.stop)
                        if self.stop.is_set():
                            return
                        open_loop = args.rate is not None or sent.offset_s is not None
                        t0 = time.time() + (RATE_LEAD_S if open_loop else 0.0)
                        if args.ramp_up:
                            self.ramp_end = t0 + args.ramp_up
                            if args.rate is None:  # threads join one by one (engine.ramp)
                                pool.set_ramp_start(t0)
                        if args.duration is not None:
                            # Workers check it at the send; the feeder only stops queueing.
                            deadline = self.deadline = t0 + args.duration
                            pool.set_deadline(deadline)
                    if sent.offset_s is not None:  # a trace's own time (engine.replay)
                        offset, trace_first = trace_schedule(sent.offset_s, trace_first)
                    else:
                        offset = next(offsets)
                    scheduled = None if offset is None else t0 + offset
                    due = scheduled if scheduled is not None else time.time()
                    if deadline is not None and due >= deadline:
                        return
                    job = dataclasses.replace(job, scheduled_time=scheduled)
                    sent = dataclasses.replace(sent, job=job)
                with self.lock:
                    self.pending[job.seq] = sent
                while True:
                    if self.stop.is_set() or (deadline is not None and time.time() >= deadline):
                        return  # left pending: never sent, forgotten at the end
                    try:
                        pool.jobs.put(job, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # reported by the collector in the main thread
            if not self.stop.is_set():  # (once stopped, the pool may be closing under it)
                self.feed_error = exc
        finally:
            self.feeding_done.set()

    # --- collector ---------------------------------------------------------
    def take(self, message: Message, stats: list[WorkerStats]) -> None:
        if isinstance(message, RawRecord):
            self.record(message)
        elif isinstance(message, WorkerStats):
            stats.append(message)

    def record(self, raw: RawRecord) -> None:
        with self.lock:
            sent = self.pending.pop(raw.seq, None) if raw.final else self.pending.get(raw.seq)
            self.handed.pop(raw.seq, None)
        if sent is None:  # already accounted for (e.g. its worker was declared dead)
            return
        record = events.finish(raw)
        if self.args.api_key:
            record = redact(record, self.args.api_key)
        row = to_row(record, sent, self.api, self.count_tokens, self.parse_watch)
        if self.ramp_end is not None and not sent.job.is_warmup and record.scheduled_time < self.ramp_end:
            row["is_warmup"] = RAMP_UP  # left out of the metrics, as warm-up is
        if record.attempt == 0:  # (a retry sends the same prompt again: not a prefix reused)
            row.update(self.prefix_reuse.measure(sent.body))
        ended = True
        if record.final and sent.job.conversation_id is not None:
            # before the row is stored: a commit's wait must not make the next turn late
            ended = self.next_turn(sent, record, row)
        self.store.add(row)
        if not record.final:  # an attempt that --retries will repeat: a row of its own, not a result
            self.progress.on_attempt(bool(row["success"]))
            return
        self.rows += 1
        if not row["success"]:
            self.failed += 1
        if sent.job.is_warmup and ended:  # --warmup-num counts conversations in a multi-turn run
            self.warmup_left -= 1
            if self.warmup_left <= 0:
                self.warmup_done.set()
        self.progress.on_done(bool(row["success"]), row["completion_tokens"])
        if not self.stop.is_set() and self.parse_watch.hopeless():  # every request so far unreadable
            raise PluginFailed(self.parse_watch.line)

    def next_turn(self, sent: Sent, record: FinishedRecord, row: dict) -> bool:
        """After a turn's final record: send the conversation's next turn
        to the thread that sent this one, or tell it that none follows.
        True when the conversation is over."""
        nxt = None
        if self.conversations is not None and not self.stop.is_set():
            nxt = self.conversations.next_turn(sent, record, row)
        if nxt is not None:
            with self.lock:
                self.pending[nxt.job.seq] = nxt
        # A thread waits for word only after a turn that was not the last
        # (engine.worker._next_turn); a lost worker's thread waits for nothing.
        if not sent.job.last_turn and record.thread >= 0 and self.pool is not None:
            if not self.pool.send_follow_up(record.worker, record.thread, nxt.job if nxt else None) and nxt:
                with self.lock:  # its process is gone: never sent
                    self.pending.pop(nxt.job.seq, None)
                nxt = None
            elif nxt is not None:
                with self.lock:
                    self.handed[nxt.job.seq] = record.worker
        if nxt is None and self.conversations is not None:
            self.conversations.end(sent.job.conversation_id)
        return nxt is None

    def lost_follow_ups(self, worker: str) -> None:
        """`worker` died: the next turns handed to its threads and not sent
        (they were thinking) never will be; their conversations end there,
        and a warm-up one counts as done, so the measured load can begin."""
        with self.lock:
            lost = [seq for seq, w in self.handed.items() if w == worker]
            sents = [self.pending.pop(seq, None) for seq in lost]
            for seq in lost:
                del self.handed[seq]
        for sent in filter(None, sents):
            self.conversations.end(sent.job.conversation_id)
            if sent.job.is_warmup:
                self.warmup_left -= 1
                if self.warmup_left <= 0:
                    self.warmup_done.set()

    def fail(self, seqs: list[int], reason: str, worker: str = "-") -> None:
        """Record requests that will never get a record from a worker."""
        for seq in seqs:
            with self.lock:
                sent = self.pending.get(seq)
            if sent is None:
                continue
            job = sent.job
            now = time.time()
            scheduled = job.scheduled_time if job.scheduled_time is not None else now
            self.record(RawRecord(seq=seq, worker=worker, scheduled_time=scheduled,
                                  start_time=min(scheduled, now), latency_s=None, status_code=None,
                                  error=reason, transport_failed=True, is_stream=self.args.stream))

    def forget_unsent(self) -> int:
        """Once every worker has ended and all it wrote has been read, a job
        still pending was never sent (stopped, or past the deadline, when a
        thread took it; or still queued): it gets no row."""
        with self.lock:
            left = len(self.pending)
            self.pending.clear()
        return left


def redact(record: FinishedRecord, secret: str) -> FinishedRecord:
    """A server may echo the key back ("invalid key sk-..."): it never
    reaches the database."""
    if secret in (record.error or "") or any(secret in e for e in record.events):
        return dataclasses.replace(record, error=record.error and record.error.replace(secret, REDACTED),
                                   events=tuple(e.replace(secret, REDACTED) for e in record.events))
    return record
