"""The coordinator of one run: dataset -> API plugin -> Jobs -> workers ->
RawRecords -> rows in the database; then the report.

The coordinator is the only writer of the database.  Every Job a worker
sent ends as exactly one row (one per attempt with --retries): its record,
or, if that worker died or the run was cut, a failed row that says so.  A
Job no worker sent (stopped, or past the deadline, when its time came) gets
none.  The run ends once every worker has ended and everything it wrote has
been read (engine.pool), so no record is left in a pipe when it is saved.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

from engine import installed_version, interrupts, replay, server_metrics, transport
from engine.arguments import Arguments
from engine.conversations import Conversations, has_conversations
from engine.errors import DatasetError, PluginFailed, Terminated, UsageError
from engine.pool import WorkerPool
from engine.pool_api import Pool
from engine.progress import Progress
from engine.records import Job, Sent, Target, WorkerStats
from engine.run_state import RunState
from engine.store import DB_NAME, ResultStore, encode_pickle
from plugins import registry
from plugins.tokenizer import load_tokenizer

COLLECT_POLL_S = 0.1
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunResult:
    db_path: str
    status: str  # completed / interrupted / stopped (--max-error-rate)
    requests: int
    failed: int


class Interrupted(Exception):
    """Raised out of run_one after the run was stopped and saved."""

    def __init__(self, result: RunResult, terminated: bool = False):
        super().__init__(result.status)
        self.result = result
        self.terminated = terminated  # SIGTERM rather than Ctrl-C


def run_folder(args: Arguments) -> str:
    name = f"parallel_{args.parallel}_number_{args.number if args.number is not None else 'inf'}"
    if args.rate is not None:
        name += f"_rate_{args.rate:g}"
    return os.path.join(args.sweep_dir or args.outputs_dir, name)


def _items(dataset) -> Iterator:
    """The dataset's items, cycled until the run has what it needs."""
    prompt = dataset.query_parameters.prompt
    if prompt:  # --prompt: the same prompt for every request
        message = [dataset.create_message(prompt)]
        while True:
            yield message
    first = True
    offset = dataset.query_parameters.dataset_offset
    while True:
        empty = True
        for item in itertools.islice(dataset.build_messages(), offset, None):  # --dataset-offset
            empty = False
            yield item
        if empty:
            hint = _empty_hint(dataset.query_parameters) if first else ""
            raise DatasetError(f"dataset '{dataset.query_parameters.dataset}' yielded no prompts{hint}")
        if getattr(dataset, "provides_arrival_schedule", False):
            return  # a trace is replayed once: its times would repeat
        first = False


def _empty_hint(p: Arguments) -> str:
    """Blame the length flags only when they were given."""
    if p.dataset_offset:
        return f" after --dataset-offset {p.dataset_offset}"
    default = Arguments()
    given = [f"--{n.replace('_', '-')} {getattr(p, n)}" for n in ("min_prompt_length", "max_prompt_length")
             if getattr(p, n) != getattr(default, n)]
    if given:
        unit = "tokens" if p.tokenizer_path else "characters"
        return f" (check {' and '.join(given)}: prompt lengths are in {unit})"
    return f" (is --dataset-path {p.dataset_path} empty?)" if p.dataset_path else ""


def _jobs(args: Arguments, api, dataset) -> Iterator[Sent]:
    """A Sent (Job, body, base64 request) for every request, warm-up first, in send order."""
    seq = itertools.count()
    limit = None if args.number is None else args.number + args.warmup_num
    produced = 0
    skipped = replay.skip_counter(args, "item")
    for item in _items(dataset):
        if limit is not None and produced >= limit:
            return
        body, offset_s = replay.body_and_offset(item, api, args)
        if skipped(body):
            continue
        n = next(seq)
        job = Job(seq=n, request_id=uuid.uuid4().hex, payload=replay.json_bytes(body), is_warmup=n < args.warmup_num)
        produced += 1
        yield Sent(job, body, encode_pickle(body), offset_s)


def make_jobs(args: Arguments, api, dataset) -> tuple[Iterator[Sent], Conversations | None]:
    """The Sents the feeder dispatches: one per request, or the first turn
    of each conversation when the dataset yields conversations
    (engine.conversations builds the later turns from the replies)."""
    if has_conversations(dataset):
        if args.backend == "ray":
            raise UsageError(f"--dataset {args.dataset} (multi-turn) runs with --backend local only")
        conversations = Conversations(args, api, dataset)
        return conversations.first_turns(), conversations
    if args.multi_turn:
        raise UsageError(f"--multi-turn needs a dataset of conversations: --dataset random_multi_turn, "
                         f"share_gpt_en_multi_turn, share_gpt_zh_multi_turn or custom_multi_turn, "
                         f"not '{args.dataset}'")
    return _jobs(args, api, dataset), None


def check_inputs(args: Arguments) -> bool:
    """Load the plugins and build the first request, as run_one does first:
    a bad flag, file or plugin is reported before anything goes on the network.
    True when the dataset yields conversations (--number counts those, not requests)."""
    api = registry.create("api", args.api, args)
    dataset = registry.create("dataset", args.dataset, args)
    load_tokenizer(args.tokenizer_path)
    jobs, conversations = make_jobs(args, api, dataset)
    next(jobs)
    if args.backend == "ray":
        from engine.ray_cluster import import_ray

        import_ray()
    return conversations is not None


def run_one(args: Arguments, label: str = "", show_progress: bool = True,
            max_failed: int | None = None) -> RunResult:
    """Run one load level and write its database; raises Interrupted after a
    Ctrl-C or SIGTERM, with everything measured so far committed (a bare
    KeyboardInterrupt when it came before anything was created).  With
    `max_failed`, the run stops (status "stopped") once more requests than
    that have failed."""
    api = registry.create("api", args.api, args)
    dataset = registry.create("dataset", args.dataset, args)
    tokenizer = load_tokenizer(args.tokenizer_path)
    jobs, conversations = make_jobs(args, api, dataset)
    # Read the dataset and build the first request now, so a bad file or
    # plugin fails before any folder or database is made.
    jobs = itertools.chain([next(jobs)], jobs)
    folder = run_folder(args)
    db_path = os.path.join(folder, DB_NAME)
    if os.path.exists(db_path):
        raise UsageError(f"'{db_path}' already exists and is never overwritten: pass another --name or remove it")
    if args.server_metrics is None and not args.no_server_metrics:  # not decided by the command line
        args = server_metrics.resolve(args)
    headers = args.request_headers()
    headers.update(api.request_headers(args))
    target = transport.with_environment(Target(
        url=args.url, headers=tuple(headers.items()), stream=args.stream, connect_timeout_s=args.connect_timeout,
        read_timeout_s=args.read_timeout, retries=args.retries, proxies=args.proxies(),
        verify=False if args.insecure else (args.ca_bundle or True), cert=args.client_cert()))
    pool = None
    try:
        # Workers first: a Ray cluster that cannot be reached leaves no empty database.
        pool = _make_pool(args, target)
        # From here a signal is counted, and acted on by the loops below at
        # safe points; the workers have it at once through the stop pipe.
        with interrupts.deferred():
            with interrupts.wakeup(pool.stop_fd):
                interrupts.raise_if_requested()  # one that came while the workers started
                return _run(args, api, tokenizer, jobs, folder, db_path, label, show_progress, pool, max_failed,
                            conversations)
    finally:
        if pool is not None:
            pool.shutdown()


def _run(args: Arguments, api, tokenizer, jobs, folder: str, db_path: str, label: str, show_progress: bool,
         pool: Pool, max_failed: int | None, conversations: Conversations | None = None) -> RunResult:
    os.makedirs(folder, exist_ok=True)
    store = ResultStore(db_path)
    store.start_run(os.path.basename(folder), args.public_dict(), args.backend, installed_version())
    total = None if args.number is None or conversations else args.number + args.warmup_num  # turns: unknown
    progress = Progress(label or os.path.basename(folder), total, enabled=show_progress)
    run = RunState(args, api, tokenizer.count if tokenizer else None, store, progress)
    run.conversations, run.pool = conversations, pool
    run.max_failed = max_failed
    stats: list[WorkerStats] = []
    status = "completed"
    terminated = False
    cut = "cancelled: the run was interrupted"  # the reason of a request still in flight at the end
    feeder = threading.Thread(target=run.feed, args=(pool, jobs), name="servegauge-feeder", daemon=True)
    scraper = None
    if args.server_metrics and not args.no_server_metrics:  # from just before the first request
        scraper = server_metrics.Scraper(args, args.server_metrics, store.add_metrics, progress.note)
        scraper.start()
    try:
        feeder.start()
        outcome = _collect(run, pool, stats)
        if outcome == "interrupted":
            status, terminated = "interrupted", interrupts.terminated()
            if args.grace > 0:
                progress.note(f"servegauge: stopping: nothing more is sent; requests in flight get "
                              f"{args.grace:g} s (--grace); Ctrl-C again to stop now")
            _stop(run, pool, stats, grace_s=args.grace, signals=1)
        elif outcome == "tripped":
            status, cut = "stopped", "cancelled: --max-error-rate was exceeded"
            _stop(run, pool, stats, grace_s=args.grace, signals=0)
        elif outcome == "overtime":
            cut = f"cancelled: still in flight {args.grace:g} s (--grace) after the --duration ended"
        elif outcome == "error":
            status, cut = "failed", "cancelled: the run failed"
    except PluginFailed:  # the API plugin read none of the first replies: stop before a long run
        status, cut = "failed", "cancelled: the run stopped (parse_responses failed)"
        # as any other stop: nothing more is sent, what is in flight gets --grace,
        # so no worker is cut down between taking a job and the server seeing it
        _stop(run, pool, stats, grace_s=args.grace, signals=0)
        raise
    except KeyboardInterrupt as stop:  # without the command line's handlers (servegauge as a library)
        status, terminated = "interrupted", isinstance(stop, Terminated)
        _stop(run, pool, stats, grace_s=args.grace, signals=interrupts.requested())
    finally:
        run.stop.set()
        feeder.join(timeout=1.0)  # it checks the stop at least every 0.1 s
        # End the workers still running, read everything they wrote, then
        # record what they were still sending; what is left was never sent.
        messages, lost = pool.shutdown()
        for message in messages:
            run.take(message, stats)
        run.fail(lost, cut)
        run.forget_unsent()
        if scraper is not None:  # to just after the last
            scraper.stop()
        progress.close()
        store.finish_run(status, [_stats_dict(s) for s in stats])
        store.close()
    if run.feed_error is not None:
        raise run.feed_error
    result = RunResult(db_path, status, run.rows, run.failed)
    if status == "interrupted":
        raise Interrupted(result, terminated)
    return result


def _make_pool(args: Arguments, target: Target) -> Pool:
    """The workers of a run: local processes, or Ray actors (engine.pool_api.Pool)."""
    if args.backend == "ray":
        from engine.ray_pool import RayPool  # imports ray: only when asked for

        return RayPool(target, args.parallel, args.ray_workers, queue_ahead=args.parallel + 8,
                       address=args.ray_address)
    return WorkerPool(target, args.parallel, args.workers, queue_ahead=args.parallel + 8,
                      ramp_s=args.ramp_up if args.rate is None else None)


def _collect(run: RunState, pool: Pool, stats: list[WorkerStats]) -> str:
    """Until every worker has ended: "done"; or "interrupted" (a signal),
    "tripped" (more failures than run.max_failed), "overtime" (requests
    still in flight --grace after --duration ended), "error" (the feeder
    failed)."""
    last_refresh = time.monotonic()
    while True:
        for message in pool.receive(COLLECT_POLL_S):
            run.take(message, stats)
        _reap(run, pool)
        if time.monotonic() - last_refresh >= 0.25:
            last_refresh = time.monotonic()
            run.progress.refresh(in_flight=len(pool.in_flight()))
            run.store.flush_due()
        if interrupts.requested():
            return "interrupted"
        if run.feed_error is not None:
            return "error"
        if run.max_failed is not None and run.failed > run.max_failed:
            return "tripped"
        if run.feeding_done.is_set():
            pool.send_stop()
            if pool.ended():
                return "done"
        if run.deadline is not None and time.time() >= run.deadline + run.args.grace:
            return "overtime"


def _reap(run: RunState, pool: Pool) -> None:
    for worker, seqs in pool.reap_dead():
        name, known, _ = worker.partition(" (")  # "w1 (exit -9)": the row says which worker
        run.fail(seqs, f"worker died: {worker}", worker=name if known else "-")
        run.lost_follow_ups(name)


def _stop(run: RunState, pool: Pool, stats: list[WorkerStats], grace_s: float, signals: int) -> None:
    """A stop: nothing more is sent (after a signal the workers had it first,
    through the pipe); in-flight requests get `grace_s`; one signal more than
    the `signals` that caused the stop ends it now (a second Ctrl-C)."""
    run.stop.set()
    pool.stop()
    deadline = time.monotonic() + grace_s
    try:
        while time.monotonic() < deadline and not pool.ended():
            for message in pool.receive(min(COLLECT_POLL_S, max(0.0, deadline - time.monotonic()))):
                run.take(message, stats)
            _reap(run, pool)
            run.progress.refresh(in_flight=len(pool.in_flight()))
            if interrupts.requested() > signals:
                return  # a second Ctrl-C: stop at once
    except KeyboardInterrupt:  # the same, without the command line's handlers
        pass


def _stats_dict(s: WorkerStats) -> dict:
    return {"worker": s.worker, "cpu_s": round(s.cpu_s, 4), "wall_s": round(s.wall_s, 4),
            "peak_rss_mb": round(s.peak_rss_mb, 1), **s.extra}
