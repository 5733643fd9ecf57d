"""How much of what servegauge reports is servegauge's own delay?

Starts the project's mock server (which stamps every event it writes: the
ground truth), runs `python -m engine` against it at several loads, joins
the result database with the server's truth by request id, and prints per
load: the overhead of TTFT, ITL and latency (client figure minus server
figure), the request rate achieved, the client's CPU seconds (all its
processes) and its peak memory (summed over its processes).

The server's TTFT runs from the request's arrival (the kernel's receive
stamp of its bytes at the server) to the write of its first output event, so
the overhead is what the client adds: a send stamped before the bytes left,
an event stamped after it came.  How long the mock's loop then took to read
the request is its own queueing, shown apart as "mock read lag".

    python scripts/bench_fidelity.py                  # every load, once
    python scripts/bench_fidelity.py --repeat 3       # median of 3 runs
    python scripts/bench_fidelity.py --loads a,c --repeat 3
    python scripts/bench_fidelity.py --peer evalscope # also run `evalscope perf` on the same loads

Loads (as in issue 5): a = 1 stream; b = 64 streams, 640 requests, TTFT 50 ms,
ITL 10 ms, 64 tokens; c = 256 streams, 1024 requests, TTFT 50 ms, ITL 20 ms,
64 tokens; d = not streamed, 1 token, no delay, 64 concurrent, 5000
requests; e = 1024 streams; rate = open loop at 200 req/s, 3000 requests.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.mock.launch import start_mock  # noqa: E402
from scripts.benchlib import TreeSampler, cpu_model  # noqa: E402

LOADS = {
    "a": dict(parallel=1, number=100, ttft_ms=50, itl_ms=10, tokens=64, stream=True),
    "b": dict(parallel=64, number=640, ttft_ms=50, itl_ms=10, tokens=64, stream=True),
    "c": dict(parallel=256, number=1024, ttft_ms=50, itl_ms=20, tokens=64, stream=True),
    "d": dict(parallel=64, number=5000, ttft_ms=0, itl_ms=0, tokens=1, stream=False),
    "e": dict(parallel=1024, number=2048, ttft_ms=50, itl_ms=20, tokens=64, stream=True),
    "rate": dict(parallel=256, number=3000, ttft_ms=50, itl_ms=10, tokens=16, stream=True, rate=200.0),
}


def percentile(values, p):
    """Nearest rank, as the reports use."""
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]


def run_client(cmd: list[str]) -> tuple[float, float, float]:
    """Run a client to completion; (wall s, CPU s of it and its children, peak MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    wall = time.monotonic() - t0
    sampler.done.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"client failed (exit {proc.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, sampler.peak_mb


def servegauge_cmd(load: dict, url: str, out: str, extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "--url", url, "--model", "mock", "--parallel", str(load["parallel"]),
           "--number", str(load["number"]), "--outputs-dir", out, "--no-timestamp", "--name", "bench",
           "--no-plots", *extra]
    if not load["stream"]:
        cmd.append("--no-stream")
    if load.get("rate"):
        cmd += ["--rate", str(load["rate"])]
    return cmd


def measure(name: str, load: dict, tool: str) -> dict:
    """`tool`: "servegauge", "servegauge --some-flag" (run with that flag), or a peer."""
    mock_args = ["--ttft-ms", str(load["ttft_ms"]), "--itl-ms", str(load["itl_ms"]), "--tokens", str(load["tokens"])]
    out = tempfile.mkdtemp(prefix=f"fidelity-{name}-")
    try:
        with start_mock(mock_args) as mock:
            if tool.startswith("servegauge"):
                cmd = servegauge_cmd(load, mock.chat_url, out, tuple(tool.split()[1:]))
            else:
                cmd = evalscope_cmd(load, mock.chat_url, out)
            wall, cpu, peak = run_client(cmd)
            truth = {t["request_id"]: t for t in mock.truth()}
        db = _find_db(out)
        return _compare(db, truth, load) | {"cpu_s": cpu, "peak_mb": peak, "wall_s": wall}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def evalscope_cmd(load: dict, url: str, out: str) -> list[str]:
    exe = shutil.which("evalscope")
    if exe is None:
        raise SystemExit("--peer evalscope: `evalscope` is not on PATH (pip install evalscope in its own venv)")
    cmd = [exe, "perf", "--url", url, "--model", "mock", "--api", "openai", "--dataset", "random",
           "--parallel", str(load["parallel"]), "--number", str(load["number"]), "--outputs-dir", out,
           "--max-tokens", str(load["tokens"]), "--tokenizer-path", "gpt2"]
    if load["stream"]:
        cmd.append("--stream")
    return cmd


def _find_db(folder: str) -> str:
    for dirpath, _, files in os.walk(folder):
        if "benchmark_data.db" in files:
            return os.path.join(dirpath, "benchmark_data.db")
    raise SystemExit(f"no benchmark_data.db under {folder}")


def _compare(db: str, truth: dict, load: dict) -> dict:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT request_id, success, start_time, latency, first_chunk_latency, chunk_times,"
                        " scheduled_time, completed_time FROM result").fetchall()
    conn.close()
    ttft_over, lat_over, itl_over, lags, read_lags = [], [], [], [], []
    matched = ok = 0
    for rid, success, start, latency, ttft, chunk_times, scheduled, _ in rows:
        ok += bool(success)
        t = truth.get(rid)
        if t is None or not success:
            continue
        matched += 1
        lags.append((start - scheduled) * 1000)
        read_lags.append((t.get("read", t["arrival"]) - t["arrival"]) * 1000)
        server_first = t["first_content_time"] if load["stream"] else t["end"]
        ttft_over.append((ttft - (server_first - t["arrival"])) * 1000)
        lat_over.append((latency - (t["end"] - t["arrival"])) * 1000)
        client = json.loads(chunk_times)
        server = t["content_times"]
        if load["stream"] and len(client) == len(server):
            for k in range(1, len(client)):
                itl_over.append(((client[k] - client[k - 1]) - (server[k] - server[k - 1])) * 1000)
    starts = [r[2] for r in rows]
    ends = [r[7] for r in rows if r[7] is not None]
    duration = max(ends) - min(starts)
    result = {
        "requests": len(rows), "success": ok, "matched": matched,
        "ttft_mean": statistics.fmean(ttft_over) if ttft_over else float("nan"),
        "ttft_p50": percentile(ttft_over, 50), "ttft_p99": percentile(ttft_over, 99),
        # the mean of signed per-chunk differences telescopes to ~0; the mean
        # of their size is the figure that says how far each gap was off
        "itl_abs_mean": statistics.fmean(abs(v) for v in itl_over) if itl_over else float("nan"),
        "itl_p50": percentile(itl_over, 50), "itl_p99": percentile(itl_over, 99),
        "lat_mean": statistics.fmean(lat_over) if lat_over else float("nan"),
        "lat_p99": percentile(lat_over, 99),
        "req_s": ok / duration if duration > 0 else float("nan"),
        "lag_p99": percentile(lags, 99),
        # how long the mock's loop took to get to a request after its bytes
        # arrived: the server's own queueing, outside every TTFT overhead here
        "read_lag_p99": percentile(read_lags, 99),
    }
    if load.get("rate"):
        send_span = max(starts) - min(starts)
        result["rate_achieved"] = (len(starts) - 1) / send_span if send_span > 0 else float("nan")
    return result


COLUMNS = [("ttft_mean", "TTFT over mean ms"), ("ttft_p50", "p50"), ("ttft_p99", "p99"),
           ("itl_abs_mean", "ITL/chunk |over| mean ms"), ("itl_p50", "p50"), ("itl_p99", "p99"),
           ("lat_mean", "latency over mean ms"),
           ("lat_p99", "p99"), ("req_s", "req/s"), ("cpu_s", "CPU s"), ("peak_mb", "peak MB"),
           ("lag_p99", "send lag p99 ms"), ("rate_achieved", "rate achieved"),
           ("read_lag_p99", "mock read lag p99 ms")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", default="a,b,c,d,e,rate", help="comma-separated subset of " + ",".join(LOADS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per load; the median is printed")
    parser.add_argument("--peer", choices=["evalscope"], help="also run this peer on the same loads")
    parser.add_argument("--also-with", metavar="FLAG", action="append", default=[],
                        help="also run servegauge with this flag (e.g. --also-with=--no-server-metrics), "
                             "interleaved with the plain runs, so the two are compared in one sitting")
    ns = parser.parse_args(argv)
    names = [n.strip() for n in ns.loads.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOADS]
    if unknown:
        parser.error(f"unknown load {unknown}; choose from {', '.join(LOADS)}")
    tools = ["servegauge"] + [f"servegauge {flag}" for flag in ns.also_with] + ([ns.peer] if ns.peer else [])
    table = []
    for name in names:
        runs: dict[str, list[dict]] = {tool: [] for tool in tools}
        for i in range(ns.repeat):  # tools interleaved: a noisy minute hits them alike
            for tool in tools:
                print(f"load {name} / {tool}: run {i + 1} of {ns.repeat} ...", file=sys.stderr, flush=True)
                runs[tool].append(measure(name, LOADS[name], tool))
        for tool in tools:
            median = {k: statistics.median(r[k] for r in runs[tool]) for k in runs[tool][0]}
            table.append((name, tool, median))
    print()
    print(f"# servegauge fidelity ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{cpu_model()}, Python {sys.version.split()[0]}); median of {ns.repeat}")
    print("| load | tool | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, tool, m in table:
        cells = [f"{m[key]:.2f}" if key in m else "" for key, _ in COLUMNS]
        print(f"| {name} | {tool} | " + " | ".join(cells) + " |")
    print(f"\nreproduce: python scripts/bench_fidelity.py --loads {','.join(names)} --repeat {ns.repeat}"
          + "".join(f" --also-with={flag}" for flag in ns.also_with)
          + (f" --peer {ns.peer}" if ns.peer else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
