#!/usr/bin/env python
"""Time the offline report on a large database: wall time and peak RSS.

    python scripts/bench_report.py [DB_DIR] [--make] [--requests 100000] [--events 256] [--no-plots]

Runs `report` (analysis.cli.report_main, what `python -m engine report`
calls) in a child process on DB_DIR/benchmark_data.db (made first with
scripts/make_big_db.py when --make is given or it is missing), then prints
the machine, the command, the wall time and the child's peak RSS
(resource.getrusage(RUSAGE_CHILDREN).ru_maxrss).  Targets: < 30 s, < 2 GB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from scripts.benchlib import cpu_model  # noqa: E402
TARGET_S, TARGET_GB = 30.0, 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db_dir", nargs="?", default=os.path.join(tempfile.gettempdir(), "servegauge_big"))
    parser.add_argument("--make", action="store_true", help="(re)make the database first")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=256)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)

    db = os.path.join(args.db_dir, "benchmark_data.db")
    if args.make or not os.path.exists(db):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_big_db.py"), args.db_dir,
                        "--requests", str(args.requests), "--events", str(args.events), "--force"],
                       check=True, cwd=ROOT)
    out = tempfile.mkdtemp(prefix="servegauge_report_")
    cmd = [sys.executable, "-c", "import sys, analysis.cli as c; sys.exit(c.report_main(sys.argv[1:]))",
           db, "--out", out, "--quiet"] + (["--no-plots"] if args.no_plots else [])
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - began
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # KiB on Linux
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    written = sorted(os.listdir(out))
    shutil.rmtree(out, ignore_errors=True)

    print(f"date:     {dt.date.today().isoformat()}")
    print(f"machine:  {os.cpu_count()} CPUs (nproc), {cpu_model()}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT count(*) FROM result").fetchone()[0]
    con.close()
    print(f"database: {db} ({os.path.getsize(db) / 1e9:.2f} GB, {rows:,} requests)")
    print(f"command:  {' '.join(shlex.quote(c) for c in cmd)}")
    print(f"          (what `python -m engine report {db} --out DIR --quiet"
          f"{' --no-plots' if args.no_plots else ''}` runs)")
    print(f"wrote:    {', '.join(written)}")
    print(f"wall:     {wall:.1f} s   (target < {TARGET_S:.0f} s)")
    print(f"peak RSS: {peak_gb:.2f} GB (target < {TARGET_GB:.0f} GB)")
    ok = wall < TARGET_S and peak_gb < TARGET_GB
    print("result:   " + ("within target" if ok else "OVER TARGET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
