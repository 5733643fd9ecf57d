"""Does a long run keep its memory flat?

Runs `python -m engine --duration D --parallel P` against the mock server,
samples the summed RSS of servegauge's processes every few seconds, and
prints the memory at the start and at the end of the steady state, the
growth per 1,000 requests, and the command to reproduce.

    python scripts/bench_memory.py                       # --duration 600 --parallel 256
    python scripts/bench_memory.py --duration 120 --parallel 64
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.mock.launch import start_mock  # noqa: E402
from scripts.benchlib import TreeSampler, cpu_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--parallel", type=int, default=256, help="concurrent streams (default 256)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between memory samples")
    ns = parser.parse_args(argv)
    out = tempfile.mkdtemp(prefix="bench-memory-")
    with start_mock(["--ttft-ms", "20", "--itl-ms", "10", "--tokens", "32"]) as mock:
        cmd = [sys.executable, "-m", "engine", "--url", mock.chat_url, "--parallel", str(ns.parallel),
               "--duration", str(ns.duration), "--outputs-dir", out, "--no-plots", "--no-timestamp"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid, interval_s=ns.interval, keep=True)
        sampler.start()
        proc.wait()
        sampler.done.set()
    if proc.returncode != 0:
        print(f"run failed with exit {proc.returncode}", file=sys.stderr)
        return 1
    db = next(os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if f == "benchmark_data.db")
    n = sqlite3.connect(db).execute("SELECT count(*) FROM result").fetchone()[0]
    samples = [(t, mb) for t, mb in sampler.samples if t <= ns.duration]  # the load, not the report
    # steady state: skip the first 10 % (start-up), compare the next and the last tenth
    tenth = max(1, len(samples) // 10)
    early = samples[tenth:2 * tenth]
    late = samples[-tenth:]
    early_mb = sum(mb for _, mb in early) / len(early)
    late_mb = sum(mb for _, mb in late) / len(late)
    per_1k = (late_mb - early_mb) / (n / 1000) if n else float("nan")
    print(f"# servegauge memory over a long run ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{cpu_model()}, Python {sys.version.split()[0]})")
    print("| duration s | parallel | requests | RSS early MB | RSS late MB | growth MB per 1k requests | peak MB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {ns.duration:g} | {ns.parallel} | {n} | {early_mb:.1f} | {late_mb:.1f} | {per_1k:.3f} | "
          f"{sampler.peak_mb:.1f} |")
    print(f"\nreproduce: python scripts/bench_memory.py --duration {ns.duration:g} --parallel {ns.parallel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
