#!/usr/bin/env python
"""Write a large result database for timing the offline report.

    python scripts/make_big_db.py OUT_DIR [--requests 100000] [--events 256]

OUT_DIR/benchmark_data.db gets the engine's exact schema and encodings
(`engine.store.RESULT_COLUMNS`, `RUN_COLUMNS`, `encode_pickle`): per request
a pickled OpenAI chat body, `events` OpenAI-style SSE chunk payloads, their
arrival times, usage token counts, plus ~1% failures and a few warm-up rows,
so the report does the work a real 100k-request run would give it.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from engine.store import DB_NAME, RESULT_COLUMNS, RUN_COLUMNS, encode_pickle  # noqa: E402

try:
    import orjson

    def dumps_floats(values: np.ndarray) -> str:
        return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()
except ImportError:  # pragma: no cover
    def dumps_floats(values: np.ndarray) -> str:
        return json.dumps(values.tolist())

T0 = 1_700_000_000.0
WORDS = ("the", " model", " answers", " quickly", ",", " and", " then", " stops", ".", " Here")


def chunk(i: int, k: int, model: str) -> str:
    return json.dumps({"id": f"chatcmpl-{i:08x}", "object": "chat.completion.chunk", "created": 1700000000,
                       "model": model, "choices": [{"index": 0, "delta": {"content": WORDS[k % len(WORDS)]},
                                                    "finish_reason": None}]}, separators=(",", ":"))


def message_pool(events: int, model: str, size: int = 16) -> list[str]:
    """A few distinct response_messages cells, reused (the report never
    decodes them; their size on disk is what matters)."""
    pool = []
    for p in range(size):
        role = json.dumps({"id": f"chatcmpl-{p:08x}", "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        body = [chunk(p, k, model) for k in range(events)]
        usage = json.dumps({"id": f"chatcmpl-{p:08x}", "object": "chat.completion.chunk", "choices": [],
                            "usage": {"prompt_tokens": 1000, "completion_tokens": events}})
        pool.append(encode_pickle([role, *body, usage]))
    return pool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=256, help="output events per successful request")
    parser.add_argument("--rate", type=float, default=100.0, help="mean arrivals per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing database")
    args = parser.parse_args(argv)

    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, DB_NAME)
    if os.path.exists(path):
        if not args.force:
            print(f"{path} exists (use --force to replace it)", file=sys.stderr)
            return 2
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)

    began = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    model = "big-model"
    n, n_ev = args.requests, args.events
    warm = min(16, n // 100)
    pool = message_pool(n_ev, model)
    starts = T0 + np.cumsum(rng.exponential(1.0 / args.rate, n))
    lag = rng.exponential(0.002, n)
    ttft = rng.lognormal(np.log(0.15), 0.4, n)
    prompt = rng.integers(100, 4000, n)
    failed = rng.random(n) < 0.01
    names = [c for c, _ in RESULT_COLUMNS]

    con = sqlite3.connect(path)
    # Bulk load without a journal, then switch the file to WAL like the
    # engine's store (a WAL-mode file; no 7 GB checkpoint to pay for).
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(f"CREATE TABLE result ({', '.join(f'{c} {t}' for c, t in RESULT_COLUMNS)})")
    con.execute(f"CREATE TABLE run ({', '.join(f'{c} {t}' for c, t in RUN_COLUMNS)})")
    run_args = {"url": "http://127.0.0.1:8000/v1/chat/completions", "api": "openai", "model": model,
                "api_key": "***", "parallel": 1024, "rate": args.rate, "number": n, "warmup_num": warm,
                "stream": True, "max_tokens": 2 * n_ev, "dataset": "builtin"}
    con.execute("INSERT INTO run (name, args, start_time, status, backend, version) VALUES (?, ?, ?, ?, ?, ?)",
                ("big", json.dumps(run_args), T0, "running", "local", "0.1.0"))
    insert = f"INSERT INTO result ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"

    batch = []
    for i in range(n):
        body = {"model": model, "stream": True, "max_tokens": 2 * n_ev,
                "messages": [{"role": "user", "content": f"Question {i}: " + "explain the weather " * 8}]}
        start = float(starts[i])
        if failed[i]:
            k = int(rng.integers(0, 4))
            offsets = ttft[i] + np.cumsum(rng.gamma(4.0, 0.005, k)) if k else np.empty(0)
            latency = float(offsets[-1] + 0.01) if k else float(rng.uniform(0.01, 0.5))
            status = 500 if i % 3 else 503
            row = {"request": encode_pickle(body), "response_messages": encode_pickle([]), "success": 0,
                   "latency": latency, "first_chunk_latency": float(offsets[0]) if k else None,
                   "chunk_times": dumps_floats(offsets), "n_chunks": k, "prompt_tokens": None,
                   "completion_tokens": None, "token_source": None, "status_code": status,
                   "error": f"HTTP {status}: upstream error (request id req-{i:010x})",
                   "event_times": dumps_floats(offsets)}
        else:
            gaps = rng.gamma(4.0, 0.005, n_ev - 1)
            offsets = ttft[i] + np.concatenate(([0.0], np.cumsum(gaps)))
            latency = float(offsets[-1] + 0.002)
            completion = n_ev + int(rng.integers(0, n_ev))  # some events carry several tokens
            all_events = np.concatenate(([offsets[0] - 0.001], offsets, [latency - 0.001]))
            row = {"request": encode_pickle(body), "response_messages": pool[i % len(pool)], "success": 1,
                   "latency": latency, "first_chunk_latency": float(offsets[0]),
                   "chunk_times": dumps_floats(offsets), "n_chunks": n_ev,
                   "chunk_time": float((offsets[-1] - offsets[0]) / (n_ev - 1)),
                   "time_per_output_token": (latency - float(offsets[0])) / (completion - 1),
                   "prompt_tokens": int(prompt[i]), "completion_tokens": completion, "token_source": "usage",
                   "status_code": 200, "event_times": dumps_floats(all_events)}
        row.update({"start_time": start, "completed_time": start + row["latency"],
                    "scheduled_time": start - float(lag[i]), "request_id": f"req-{i:06d}", "is_stream": 1,
                    "is_warmup": int(i < warm), "worker": f"w{i % 8}"})
        batch.append(tuple(row.get(c) for c in names))
        if len(batch) >= 2000:
            con.executemany(insert, batch)
            batch.clear()
    if batch:
        con.executemany(insert, batch)
    duration = float(starts[-1] - T0 + 5)
    workers = [{"worker": f"w{k}", "cpu_s": round(duration * 0.3, 3), "wall_s": round(duration, 3),
                "peak_rss_mb": 80.0} for k in range(8)]
    con.execute("UPDATE run SET end_time = ?, status = ?, workers = ?",
                (T0 + duration, "completed", json.dumps(workers)))
    con.commit()
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    size = os.path.getsize(path) / 1e9
    print(f"wrote {path}: {n:,} requests x {n_ev} events, {size:.2f} GB in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
