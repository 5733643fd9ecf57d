"""Hand-built result databases for the analysis tests (no engine, no mocks).

Written straight with sqlite3 in the engine's exact schema and encodings
(`engine.store.RESULT_COLUMNS`, `RUN_COLUMNS`, `encode_pickle`), so the
analysis is tested against the contract, not against its own writer.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `pytest` run from elsewhere
    sys.path.insert(0, ROOT)

from engine.store import DB_NAME, RESULT_COLUMNS, RUN_COLUMNS, encode_pickle  # noqa: E402

T0 = 1_700_000_000.0


def req(i: int, *, latency=1.0, ttft=0.1, chunk_times=None, prompt=10, completion=5, success=1, stream=1,
        warmup=0, error=None, status=200, start=None, lag=0.0, worker="w0", events=None, body=None) -> dict:
    """One `result` row as the engine writes it.  chunk_times default: `completion`
    events evenly spread from ttft to latency (streamed) or [latency] (not)."""
    start = T0 + i * 0.5 if start is None else start
    if chunk_times is None:
        if not success:
            chunk_times = []
        elif not stream:
            chunk_times = [latency]
        elif completion <= 1:
            chunk_times = [ttft]
        else:
            step = (latency - ttft) / (completion - 1)
            chunk_times = [ttft + k * step for k in range(completion)]
    ttft_col = chunk_times[0] if chunk_times else None
    body = body if body is not None else {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}],
                                          "stream": bool(stream)}
    messages = events if events is not None else [json.dumps({"n": k}) for k in range(len(chunk_times))]
    return {
        "request": encode_pickle(body),
        "response_messages": encode_pickle(messages),
        "success": success,
        "start_time": start,
        "completed_time": start + latency if latency is not None else None,
        "latency": latency,
        "first_chunk_latency": ttft_col,
        "chunk_times": json.dumps(chunk_times),
        "n_chunks": len(chunk_times),
        "chunk_time": None,
        "time_per_output_token": None,
        "prompt_tokens": prompt if success else None,
        "completion_tokens": completion if success else None,
        "token_source": "usage",
        "status_code": status,
        "error": error,
        "scheduled_time": start - lag,
        "request_id": f"r{i}",
        "is_stream": stream,
        "is_warmup": warmup,
        "worker": worker,
        "event_times": json.dumps(chunk_times),
    }


def write_db(folder: str, rows: list[dict], args: dict | None = None, workers: list | None = None,
             status: str = "completed", with_run: bool = True, name: str = "run") -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, DB_NAME)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")  # like the engine's store
    cols = [n for n, _ in RESULT_COLUMNS]
    con.execute(f"CREATE TABLE result ({', '.join(f'{n} {t}' for n, t in RESULT_COLUMNS)})")
    con.executemany(f"INSERT INTO result ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [tuple(r.get(c) for c in cols) for r in rows])
    if with_run:
        con.execute(f"CREATE TABLE run ({', '.join(f'{n} {t}' for n, t in RUN_COLUMNS)})")
        args = {"parallel": 2, "rate": None, "api_key": "***", "model": "m"} if args is None else args
        workers = [{"worker": "w0", "cpu_s": 1.0, "wall_s": 10.0, "peak_rss_mb": 50.0}] if workers is None else workers
        con.execute("INSERT INTO run (name, args, start_time, end_time, status, backend, workers, version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, json.dumps(args), T0, T0 + 100, status, "local", json.dumps(workers), "0.1.0"))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path


def test_helper_writes_the_engine_schema(tmp_path):
    path = write_db(str(tmp_path), [req(0)])
    con = sqlite3.connect(path)
    names = [r[1] for r in con.execute("PRAGMA table_info(result)")]
    con.close()
    assert names == [n for n, _ in RESULT_COLUMNS]
