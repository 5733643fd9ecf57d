"""How faithfully does servegauge replay a trace's send times?

Writes a Mooncake-format trace (N requests spread uniformly over S seconds,
seeded), replays it with `--open-loop --dataset mooncake_trace` against the
project's mock server, and compares each request's arrival at the mock (its
kernel receive stamp) with the trace's timestamp.  The whole replay may start
at any moment, so the error is each arrival's offset from the trace time
minus the median offset.  Also printed: the schedule lag the run itself
reports (send stamp minus due time), p99.

    python scripts/bench_trace.py                     # 300 requests over 6 s, once
    python scripts/bench_trace.py --repeat 3          # three replays, each printed, then the median
    python scripts/bench_trace.py --requests 3000 --seconds 30
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.mock.launch import start_mock  # noqa: E402
from scripts.benchlib import cpu_model  # noqa: E402

def write_tokenizer(path: str) -> None:
    """One token per word: exact input lengths without a download."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(512)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(path)


def write_trace(path: str, n: int, seconds: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    stamps_ms = sorted(round(rng.uniform(0, seconds * 1000.0), 3) for _ in range(n - 1))
    stamps_ms = [0.0] + stamps_ms
    with open(path, "w", encoding="utf-8") as fh:
        for t in stamps_ms:
            fh.write(json.dumps({"timestamp": t, "input_length": rng.randint(1, 40),
                                 "output_length": rng.randint(1, 3), "hash_ids": [rng.randint(0, 5)]}) + "\n")
    return stamps_ms


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, -(-len(ordered) * p // 100)) - 1]


def replay(folder: str, trace: str, tokenizer: str, stamps_ms: list[float]) -> dict:
    with start_mock(["--ttft-ms", "10", "--itl-ms", "2", "--tokens", "16"]) as mock:
        out = os.path.join(folder, f"out{time.monotonic_ns()}")
        subprocess.run([sys.executable, "-m", "engine", "--url", mock.chat_url, "--open-loop", "--parallel", "32",
                        "--dataset", "mooncake_trace", "--dataset-path", trace, "--tokenizer-path", tokenizer,
                        "--outputs-dir", out, "--no-plots", "--no-test-connection", "--no-server-metrics"],
                       check=True, capture_output=True, cwd=ROOT)
        arrival = {t["request_id"]: t["arrival"] for t in mock.truth()}
    (db,) = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files if f == "benchmark_data.db"]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT request_id, scheduled_time, start_time FROM result "
                            "ORDER BY scheduled_time").fetchall()
    late_ms = [(arrival[rid] - t / 1000.0) * 1000.0 for (rid, _, _), t in zip(rows, stamps_ms)]
    median = statistics.median(late_ms)
    error_ms = [abs(x - median) for x in late_ms]
    lag_ms = [(start - due) * 1000.0 for _, due, start in rows]
    return {"p50_ms": percentile(error_ms, 50), "p99_ms": percentile(error_ms, 99), "max_ms": max(error_ms),
            "lag_p99_ms": percentile(lag_ms, 99), "requests": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as folder:
        trace = os.path.join(folder, "trace.jsonl")
        tokenizer = os.path.join(folder, "tokenizer.json")
        write_tokenizer(tokenizer)
        stamps_ms = write_trace(trace, ns.requests, ns.seconds, ns.seed)
        runs = []
        for i in range(ns.repeat):
            runs.append(replay(folder, trace, tokenizer, stamps_ms))
            print(f"replay {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[-1].items()), file=sys.stderr)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"# trace replay accuracy ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {cpu_model()}, "
          f"Python {sys.version.split()[0]}); median of {ns.repeat}")
    print("| requests | seconds | arrival error p50 (ms) | p99 (ms) | max (ms) | client schedule lag p99 (ms) |")
    print("|---|---|---|---|---|---|")
    print(f"| {ns.requests} | {ns.seconds:g} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {med['max_ms']:.2f} "
          f"| {med['lag_p99_ms']:.2f} |")
    print(f"\nreproduce: python scripts/bench_trace.py --requests {ns.requests} --seconds {ns.seconds:g} "
          f"--repeat {ns.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
