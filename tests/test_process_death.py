"""A worker process killed mid-run, and the coordinator itself killed:
every request is accounted for, and the database stays readable."""
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest

from conftest import ROOT, find_dbs, rows, run_engine
from test_signals import slow_mock, wait_for_rows  # noqa: F401  (fixture)


def workers_of(pid):
    return [p for p in psutil.Process(pid).children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline())]


def test_a_killed_worker_is_replaced_and_its_requests_recorded(tmp_path, slow_mock):
    proc = subprocess.Popen([sys.executable, "-m", "engine", "--url", slow_mock.chat_url, "--parallel", "4",
                             "--number", "24", "--workers", "2", "--outputs-dir", str(tmp_path), "--no-plots"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(tmp_path, 2)
    victims = workers_of(proc.pid)
    assert len(victims) == 2
    victims[0].send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (db,) = find_dbs(tmp_path)
    result = rows(db)
    assert len(result) == 24  # every request accounted for
    died = [r for r in result if r["error"] and r["error"].startswith("worker died")]
    # the killed process had 2 threads, each sending a ~1 s request
    assert 1 <= len(died) <= 2
    # noticed within a second
    assert all(r["completed_time"] - killed_at < 1.5 for r in died if r["completed_time"])
    assert sum(r["success"] for r in result) == 24 - len(died)


def test_a_killed_coordinator_leaves_a_readable_database(tmp_path, slow_mock):
    proc = subprocess.Popen([sys.executable, "-m", "engine", "--url", slow_mock.chat_url, "--parallel", "4",
                             "--number", "200", "--outputs-dir", str(tmp_path), "--no-plots"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = wait_for_rows(tmp_path, 6)
    # past at least one more commit: wait until a reader sees the count grow
    wait_for_rows(tmp_path, len(rows(db, "SELECT 1 FROM result")) + 1)
    committed_before_kill = len(rows(db, "SELECT 1 FROM result"))
    orphans = workers_of(proc.pid)
    assert orphans
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # its workers notice the coordinator is gone and exit by themselves
    gone, alive = psutil.wait_procs(orphans, timeout=10)
    assert not alive
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM result").fetchone()[0] >= committed_before_kill
    conn.close()
    out = run_engine("report", db, "--no-plots")
    assert "Percentiles" in out.stdout or "TTFT" in out.stdout


def test_a_worker_killed_while_a_warmup_conversation_thinks_does_not_hang_the_run(tmp_path, mock):
    """Found in review: the thread waiting out its think time held no slot,
    so the dead worker named no request, the warm-up conversation never
    ended and the measured load never began."""
    import json

    data = tmp_path / "c.jsonl"
    two_turns = [{"role": "user", "content": "warm"}, {"role": "assistant", "content": "-"},
                 {"role": "user", "content": "up"}]
    one_turn = [{"role": "user", "content": "measured"}]
    data.write_text(json.dumps(two_turns) + "\n" + json.dumps(one_turn) + "\n")
    out = tmp_path / "out"
    # the warm-up conversation is the first line (two turns, 30 s apart), the measured one the second
    proc = subprocess.Popen([sys.executable, "-m", "engine", "--url", mock.chat_url, "--dataset",
                             "custom_multi_turn", "--dataset-path", str(data), "--number", "1", "--warmup-num", "1",
                             "--think-time", "30", "--parallel", "1", "--workers", "1", "--outputs-dir", str(out),
                             "--no-plots"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out, 1)  # the warm-up's first turn is stored: its next turn is now thinking
    (victim,) = workers_of(proc.pid)
    victim.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=25)  # before the think time could have ended it
    assert proc.returncode == 0, err
    (db,) = find_dbs(out)
    result = rows(db, "SELECT turn, is_warmup, success, request FROM result ORDER BY start_time")
    assert [(r["turn"], r["is_warmup"], r["success"]) for r in result] == [(1, 1, 1), (1, 0, 1)]
