"""Ctrl-C and SIGTERM sent to a real run: it stops dispatching, keeps what
was measured, commits, writes its report and exits 130 / 143."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, find_dbs, rows


@pytest.fixture(scope="module")
def slow_mock():
    from engine.mock.launch import start_mock

    # 20 tokens 50 ms apart: every request is about a second long
    with start_mock(["--ttft-ms", "20", "--itl-ms", "50", "--tokens", "20"]) as server:
        yield server


def start_run(url, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "engine", "--url", url, "--parallel", "4", "--number", "200",
                             "--outputs-dir", str(out), "--no-plots", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(out, n, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dbs = find_dbs(out)
        if dbs:
            try:
                if len(rows(dbs[0], "SELECT 1 FROM result")) >= n:
                    return dbs[0]
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    raise AssertionError("the run recorded nothing in time")


def wait_for_in_flight(mock, timeout_s=30):
    """Until the mock is generating a reply that began under 0.2 s ago
    (each is about a second long, --grace is 0.3 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = requests.get(mock.base_url + "/stats", timeout=5).json()
        if before["running"]:
            started = [t["arrival"] for t in mock.truth() if t["end"] is None and t["path"].endswith("/completions")]
            if started and time.time() - max(started) < 0.2:
                return
        time.sleep(0.02)
    raise AssertionError("no request in flight at the mock")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_run_and_keeps_what_was_measured(tmp_path, slow_mock, sig, code):
    proc = start_run(slow_mock.chat_url, tmp_path, "--grace", "0.3")
    db = wait_for_rows(tmp_path, 4)
    wait_for_in_flight(slow_mock)  # not between two waves of requests: some are surely cut
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT status FROM run").fetchone()[0] == "interrupted"
    result = rows(db)
    done = [r for r in result if r["success"]]
    cancelled = [r for r in result if not r["success"]]
    assert len(done) >= 4
    # the requests in flight when the grace ran out (at most --parallel) are recorded as cancelled;
    # those never sent get no row
    assert 1 <= len(cancelled) <= 4
    assert all(r["error"] == "cancelled: the run was interrupted" for r in cancelled)
    assert len(result) < 200
    assert os.path.exists(os.path.join(os.path.dirname(db), "benchmark_summary.json"))


def test_in_flight_requests_finish_within_the_grace(tmp_path, slow_mock):
    proc = start_run(slow_mock.chat_url, tmp_path, "--grace", "5")
    db = wait_for_rows(tmp_path, 4)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    result = rows(db)
    # each request takes about a second, well within 5 s of grace: none is cut
    assert result and all(r["success"] == 1 for r in result)
