"""`servegauge report --export csv|parquet`: a real run against a mock that
fails some requests, exported, read back with pandas and checked against the
database row by row."""
from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, find_dbs, run_engine
from engine.mock.launch import start_mock

RAW = ("request", "response_messages", "chunk_times", "event_times")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One run with warm-up rows and failed rows (the mock answers 500 to a share)."""
    out = tmp_path_factory.mktemp("export")
    with start_mock(["--ttft-ms", "5", "--itl-ms", "1", "--tokens", "8", "--fault", "http500=0.3",
                     "--fault-seed", "7"]) as mock:
        run_engine("--url", mock.chat_url, "--parallel", 2, "--number", 20, "--warmup-num", 2, "--no-plots",
                   "--outputs-dir", out)
    (db,) = find_dbs(out)
    return os.path.dirname(db)


def _db_rows(run_dir: str) -> dict[str, dict]:
    con = sqlite3.connect(os.path.join(run_dir, "benchmark_data.db"))
    con.row_factory = sqlite3.Row
    try:
        return {r["request_id"]: dict(r) for r in con.execute("SELECT * FROM result")}
    finally:
        con.close()


def _same(value, expected) -> bool:
    if expected is None:
        return value is None or (isinstance(value, float) and math.isnan(value))
    if isinstance(expected, float):
        return abs(float(value) - expected) <= 1e-9 * max(1.0, abs(expected))
    return value == expected


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_reads_back_as_the_database(run_dir, fmt):
    proc = run_engine("report", run_dir, "--export", fmt, "--no-plots", "--quiet")
    path = os.path.join(run_dir, f"benchmark_requests.{fmt}")
    assert f"export: {path}" in proc.stderr.splitlines()
    df = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    rows = _db_rows(run_dir)
    assert len(df) == len(rows) == 22
    assert not set(RAW) & set(df.columns)  # the large raw columns only when asked
    assert set(df["run"]) == {os.path.basename(run_dir)}
    assert (df["success"] == 0).sum() == sum(1 for r in rows.values() if not r["success"]) > 0
    assert (df["is_warmup"] == 1).sum() == 2
    for rec in df.to_dict(orient="records"):
        row = rows[rec["request_id"]]
        for name in ("success", "latency", "first_chunk_latency", "completion_tokens", "status_code", "error",
                     "start_time", "is_warmup", "attempt"):
            assert _same(rec[name], row[name]), (name, rec[name], row[name])
        assert _same(rec["latency_ms"], row["latency"] * 1000.0)
        if row["success"]:
            assert _same(rec["ttft_ms"], row["first_chunk_latency"] * 1000.0)
            assert _same(rec["tpot_ms"], row["time_per_output_token"] * 1000.0)
            assert _same(rec["schedule_lag_ms"], (row["start_time"] - row["scheduled_time"]) * 1000.0)


def test_export_raw_keeps_the_request_and_event_times(run_dir):
    run_engine("report", run_dir, "--export", "csv", "--export-raw", "--no-plots", "--quiet")
    df = pd.read_csv(os.path.join(run_dir, "benchmark_requests.csv"))
    rows = _db_rows(run_dir)
    assert set(RAW) <= set(df.columns)
    for rec in df.to_dict(orient="records"):
        row = rows[rec["request_id"]]
        assert json.loads(rec["chunk_times"]) == json.loads(row["chunk_times"])
        assert json.loads(rec["request"])["messages"]  # the body sent, decoded


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(run_dir):
    code = ("import sys; sys.modules['pyarrow'] = None\n"  # as on a machine without it
            "import analysis.cli as c; sys.exit(c.report_main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, run_dir, "--export", "parquet", "--no-plots", "--quiet",
                           "--out", os.path.join(run_dir, "nopyarrow")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'servegauge[parquet]'" in proc.stderr
    assert not os.path.exists(os.path.join(run_dir, "nopyarrow"))  # refused before any work


def test_export_flag_errors_are_one_line(run_dir):
    for flags in (["--export", "xlsx"], ["--export-raw"]):
        proc = run_engine("report", run_dir, "--quiet", *flags, check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "--export" in proc.stderr and "csv" in proc.stderr and "parquet" in proc.stderr  # the choices
