"""The result database: one writer (the coordinator), batched, WAL.

Schema and encodings are a contract with users' own scripts (DESIGN.md):
`request` and `response_messages` are base64(pickle.dumps(...)).
"""
from __future__ import annotations

import base64
import json
import os
import pickle
import sqlite3
import threading
import time
from typing import Any, Iterable

DB_NAME = "benchmark_data.db"
# --resume renames a run folder it will run again to `<folder>.incomplete-<k>`
# (engine.resume); reports of a sweep folder pass those by (analysis.cli).
SET_ASIDE_MARK = ".incomplete-"

RESULT_COLUMNS = (
    ("request", "TEXT"),
    ("response_messages", "TEXT"),
    ("success", "INTEGER"),
    ("start_time", "REAL"),
    ("completed_time", "REAL"),
    ("latency", "REAL"),
    ("first_chunk_latency", "REAL"),
    ("chunk_times", "TEXT"),
    ("n_chunks", "INTEGER"),
    ("chunk_time", "REAL"),
    ("time_per_output_token", "REAL"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("token_source", "TEXT"),
    ("status_code", "INTEGER"),
    ("error", "TEXT"),
    ("scheduled_time", "REAL"),
    ("request_id", "TEXT"),
    ("is_stream", "INTEGER"),
    ("is_warmup", "INTEGER"),  # 0 measured; 1 --warmup-num; RAMP_UP (2) sent during --ramp-up
    ("worker", "TEXT"),
    # ours, after the contract's columns: arrival of every event (output or
    # not), seconds since send, so any metric can be re-derived offline
    ("event_times", "TEXT"),
    ("attempt", "INTEGER"),  # 0, or the retry number with --retries
    # kept-alive connections found closed by the server as this request went
    # out (it was then sent on a new one): engine.transport.Sender.exchange
    ("reconnects", "INTEGER"),
    # output tokens in each output event, aligned with chunk_times, as a JSON
    # list without spaces ("[4,4,3]": ~2 bytes an event beside chunk_times'
    # ~11); NULL when the replies did not say (engine.timing: ITL per token)
    ("chunk_tokens", "TEXT"),
    # multi-turn runs (engine.conversations): which conversation, which turn
    # (1, 2, ...); NULL for single requests
    ("conversation_id", "TEXT"),
    ("turn", "INTEGER"),
    # the sending thread's slot in the pool (with `worker`: which thread sent it)
    ("thread", "INTEGER"),
    # the prompt's text length, and how much of it (in whole 64-character
    # blocks) repeats a prefix an earlier request sent (engine.prefix_reuse)
    ("prompt_chars", "INTEGER"),
    ("shared_prefix_chars", "INTEGER"),
    # a stream with reasoning (reasoning_content, Responses reasoning events):
    # send -> first answer event, seconds (first_chunk_latency is the first
    # output of any kind); NULL without reasoning.  engine.derive
    ("first_answer_latency", "REAL"),
    ("reasoning_tokens", "INTEGER"),  # of completion_tokens, when the usage says (NULL otherwise)
)

RUN_COLUMNS = (
    ("name", "TEXT"),
    ("args", "TEXT"),  # JSON of Arguments.public_dict(): no secrets
    ("start_time", "REAL"),
    ("end_time", "REAL"),
    ("status", "TEXT"),  # running / completed / interrupted / stopped (--max-error-rate) / failed
    ("backend", "TEXT"),
    ("workers", "TEXT"),  # JSON list of per-worker health (cpu_s, wall_s, ...)
    ("version", "TEXT"),
)

# Every sample of every good scrape of the server's Prometheus /metrics
# (engine.server_metrics): histogram buckets, sums and counts under the names
# Prometheus gives them (`..._bucket` with an `le` label, `_sum`, `_count`).
SERVER_METRICS_COLUMNS = (
    ("time", "REAL"),  # epoch seconds, the clock of result.start_time: mid-way through the scrape
    ("name", "TEXT"),
    ("labels", "TEXT"),  # JSON object, keys sorted
    ("value", "REAL"),
)

COMMIT_INTERVAL_S = 0.5
RAMP_UP = 2  # is_warmup of a request sent during --ramp-up: not measured, as warm-up is not


def encode_pickle(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def _create_sql(table: str, columns: Iterable[tuple[str, str]]) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t in columns)})"


class ResultStore:
    """Appends result rows; commits at least every COMMIT_INTERVAL_S."""

    def __init__(self, path: str):
        if os.path.exists(path):
            # A run never overwrites what an earlier run measured.
            raise FileExistsError(path)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_create_sql("result", RESULT_COLUMNS))
        self._conn.execute(_create_sql("run", RUN_COLUMNS))
        self._conn.execute(_create_sql("server_metrics", SERVER_METRICS_COLUMNS))
        self._conn.commit()
        names = [n for n, _ in RESULT_COLUMNS]
        self._insert = f"INSERT INTO result ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        self._names = names
        self._pending: list[tuple] = []
        self._last_commit = time.monotonic()
        self.rows = 0
        # Server metrics come from the scraper thread; only this list is shared
        # (under the lock): the connection is used by the writer's thread alone.
        self._metrics_lock = threading.Lock()
        self._metrics_pending: list[tuple] = []
        self._closed = False

    def start_run(self, name: str, args: dict, backend: str, version: str) -> None:
        self._conn.execute(
            "INSERT INTO run (name, args, start_time, status, backend, version) VALUES (?, ?, ?, ?, ?, ?)",
            (name, json.dumps(args, default=str), time.time(), "running", backend, version),
        )
        self._conn.commit()

    def add(self, row: dict) -> None:
        self._pending.append(tuple(row.get(n) for n in self._names))
        self.rows += 1
        self.flush_due()

    def flush_due(self) -> None:
        """Commit when the last commit is COMMIT_INTERVAL_S old.  Called on
        every row and by the collector while no row comes, so rows of long
        requests (and the scraper's samples) are on disk within about that,
        not only when the next request ends."""
        if (self._pending or self._metrics_pending) and time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self.flush()

    def add_metrics(self, samples: list[tuple[float, str, str, float]]) -> None:
        """(time, name, labels JSON, value) of one scrape; any thread may call
        it.  They are written with the next flush; after close they are dropped."""
        with self._metrics_lock:
            if not self._closed:
                self._metrics_pending.extend(samples)

    def flush(self) -> None:
        if self._pending:
            self._conn.executemany(self._insert, self._pending)
            self._pending.clear()
        with self._metrics_lock:
            metrics, self._metrics_pending = self._metrics_pending, []
        if metrics:
            self._conn.executemany("INSERT INTO server_metrics (time, name, labels, value) VALUES (?, ?, ?, ?)",
                                   metrics)
        self._conn.commit()
        self._last_commit = time.monotonic()

    def finish_run(self, status: str, workers: list[dict]) -> None:
        self.flush()
        self._conn.execute(
            "UPDATE run SET end_time = ?, status = ?, workers = ?",
            (time.time(), status, json.dumps(workers)),
        )
        self._conn.commit()

    def close(self) -> None:
        self.flush()
        with self._metrics_lock:
            self._closed = True
        # Leave WAL mode once the run is over: the database is then one
        # self-contained file that can be copied alone to another machine,
        # and readers opening it read-only leave no -wal/-shm files behind.
        self._conn.execute("PRAGMA journal_mode=DELETE")
        self._conn.close()
