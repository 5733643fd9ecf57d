"""Stopping, judged by what the server saw: the mock's /truth joined with the
database by request id.  Whatever stops a run (Ctrl-C at any moment, the
--duration deadline, --max-error-rate, a worker's death), nothing is sent
after the stop, every request that reached the server has exactly one row,
there is no row for a request that did not, and the last progress line
counts what the database holds.

Each wait here is on something observable (the server's /truth, a worker
process, the database), never a guessed sleep; the one sleep picks the
random moment of a signal.
"""
import collections
import contextlib
import queue
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psutil
import pytest

from conftest import ROOT, find_dbs, rows, run_engine
from test_signals import slow_mock  # noqa: F401  (fixture: ~1 s streams)

PREFLIGHT = "servegauge-preflight-"
CHAT = "/v1/chat/completions"
SEND_SLACK_S = 0.010  # a request may reach the server this long after the stop


@pytest.fixture(scope="module")
def varied_mock():
    """Streams of 0.5 to 1.5 s: 10 to 30 tokens 50 ms apart, drawn per request."""
    from engine.mock.launch import start_mock

    with start_mock(["--ttft-ms", "50", "--itl-ms", "50", "--tokens", "30", "--tokens-min", "10"]) as server:
        yield server


def start(url, out, *extra, stdout=subprocess.DEVNULL):
    return subprocess.Popen([sys.executable, "-m", "engine", "--url", url, "--outputs-dir", str(out), *map(str, extra)],
                            cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(url, out, *extra, **kwargs):
    """A run in a subprocess, killed if it outlives the test."""
    proc = start(url, out, *extra, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def interrupt(proc):
    """Ctrl-C now: (when it was sent, the run's stderr once it has ended)."""
    stopped_at = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return stopped_at, err


def wait_until(condition, timeout_s=60.0, what="the condition"):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def served(mock):
    """The generation requests the server received (not the pre-flight check's)."""
    return [t for t in mock.truth() if t["path"] == CHAT and not t["request_id"].startswith(PREFLIGHT)]


def preflight_seen(mock):
    return any(t["path"] == "/v1/models" for t in mock.truth())


def last_progress(stderr):
    """(sent, failed) of the last progress line."""
    found = re.findall(r"sent (\d+) \| failed (\d+) \| in flight (\d+)", stderr)
    assert found, stderr
    sent, failed, in_flight = map(int, found[-1])
    assert in_flight == 0
    return sent, failed


def check_join(out, truth, stderr, stopped_at=None):
    """Every request the server saw has exactly one row, and every row one
    request the server saw; none arrived after `stopped_at` (+ slack).
    Returns the rows."""
    if stopped_at is not None:
        late = sorted(round(t["arrival"] - stopped_at, 4) for t in truth if t["arrival"] > stopped_at + SEND_SLACK_S)
        assert not late, f"requests reached the server this long after the stop: {late}"
    dbs = find_dbs(out)
    result = rows(dbs[0]) if dbs else []
    per_id = collections.Counter(r["request_id"] for r in result)
    assert [i for i, n in per_id.items() if n > 1] == []
    assert set(per_id) == {t["request_id"] for t in truth}
    assert len(result) == len(truth)
    if dbs:  # the last progress line and the database agree
        assert last_progress(stderr) == (len(result), sum(1 for r in result if not r["success"]))
    return result


# 20 moments: 6 at --parallel 1, 7 at 8, 7 at 64; half the runs with a grace
# that lets every in-flight request finish, half with one that cuts some
MOMENTS = {1: 6, 8: 7, 64: 7}


@pytest.mark.parametrize("parallel", sorted(MOMENTS))
def test_ctrl_c_at_random_moments(tmp_path, varied_mock, parallel):
    rng = random.Random(1300 + parallel)
    for k in range(MOMENTS[parallel]):
        varied_mock.truth(clear=True)
        out = tmp_path / f"run{k}"
        grace = 2.0 if k % 2 else 0.2
        with running(varied_mock.chat_url, out, "--parallel", parallel, "--number", 100000, "--grace", grace,
                     "--no-plots") as proc:
            # from start-up (the pre-flight check) through spawning and connecting into the run
            wait_until(lambda: preflight_seen(varied_mock), what="the pre-flight request")
            time.sleep(rng.uniform(0.0, 2.5))  # a random moment, not a wait for a state
            stopped_at, err = interrupt(proc)
        assert proc.returncode == 130, err
        result = check_join(out, served(varied_mock), err, stopped_at)
        cut = [r for r in result if not r["success"]]
        assert all(r["error"] == "cancelled: the run was interrupted" for r in cut), [r["error"] for r in cut]
        if grace == 2.0:  # longer than any request: each one in flight finished
            assert not cut


def test_ctrl_c_during_the_report_stops_it(tmp_path, mock):
    varied = tmp_path / "out"
    def run_saved():
        dbs = find_dbs(varied)
        try:
            return bool(dbs) and rows(dbs[0], "SELECT status FROM run") == [{"status": "completed"}]
        except sqlite3.OperationalError:  # being created
            return False

    with running(mock.chat_url, varied, "--parallel", 4, "--number", 40) as proc:  # with plots: a report of seconds
        wait_until(run_saved, what="the run's end")
        _, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "servegauge: interrupted"
    (db,) = find_dbs(varied)
    assert len(rows(db)) == 40 and rows(db, "SELECT status FROM run")[0]["status"] == "completed"


def test_ctrl_c_while_workers_start(tmp_path, varied_mock):
    varied_mock.truth(clear=True)
    with running(varied_mock.chat_url, tmp_path, "--parallel", 64, "--number", 1000, "--grace", 0.2,
                 "--no-plots") as proc:
        wait_until(lambda: any("spawn_main" in " ".join(p.cmdline())
                               for p in psutil.Process(proc.pid).children(recursive=True)),
                   what="a worker process")
        children = psutil.Process(proc.pid).children(recursive=True)
        stopped_at, err = interrupt(proc)
    assert proc.returncode == 130, err
    check_join(tmp_path, served(varied_mock), err, stopped_at)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive  # no worker is left behind


def test_a_second_ctrl_c_stops_at_once(tmp_path, slow_mock):
    slow_mock.truth(clear=True)
    proc = start(slow_mock.chat_url, tmp_path, "--parallel", 4, "--number", 1000, "--grace", 60, "--no-plots")
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        wait_until(lambda: len(served(slow_mock)) >= 6, what="requests in flight")
        stopped_at = time.time()
        proc.send_signal(signal.SIGINT)
        # two signals sent at once arrive as one: the second goes once the first was taken
        while "Ctrl-C again to stop now" not in lines.get(timeout=30):
            pass
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines.queue)
    assert proc.returncode == 130, err
    result = check_join(tmp_path, served(slow_mock), err, stopped_at)
    # not the 60 s of grace: the requests in flight were cut and recorded as such
    (run,) = rows(find_dbs(tmp_path)[0], "SELECT end_time FROM run")
    assert run["end_time"] - stopped_at < 5
    assert 1 <= sum(1 for r in result if r["error"] == "cancelled: the run was interrupted") <= 4


@pytest.mark.parametrize("parallel", [1, 8])
def test_duration_is_checked_at_the_send(tmp_path, slow_mock, parallel):
    slow_mock.truth(clear=True)
    grace = 0.5
    proc = run_engine("--url", slow_mock.chat_url, "--parallel", parallel, "--duration", 3, "--grace", grace,
                      "--outputs-dir", tmp_path, "--no-plots")
    truth = served(slow_mock)
    first = min(t["arrival"] for t in truth)
    result = check_join(tmp_path, truth, proc.stderr, stopped_at=first + 3.0)
    assert len(result) >= 3 * parallel
    (run,) = rows(find_dbs(tmp_path)[0], "SELECT status, end_time FROM run")
    assert run["status"] == "completed"
    # the run ends by 3 s + grace (and the time to save it), not when the queued requests are done
    assert run["end_time"] - first < 3.0 + grace + 1.0
    # what was still in flight then was cut, and recorded as such (a cancelled row is stamped when it is cut)
    assert max(r["completed_time"] or r["start_time"] for r in result) - first < 3.0 + grace + 0.2
    cut = [r for r in result if not r["success"]]
    assert all(r["error"] == "cancelled: still in flight 0.5 s (--grace) after the --duration ended" for r in cut)


def test_max_error_rate_stops_the_run_once_certain(tmp_path):
    from engine.mock.launch import start_mock

    with start_mock(["--ttft-ms", "20", "--itl-ms", "10", "--tokens", "10", "--fault", "http500=0.5"]) as m:
        proc = run_engine("--url", m.chat_url, "--parallel", 8, "--number", 400, "--max-error-rate", "0.1",
                          "--outputs-dir", tmp_path, "--no-plots", check=False)
        truth = served(m)
    assert proc.returncode == 1, proc.stderr
    result = check_join(tmp_path, truth, proc.stderr)
    failed = sum(1 for r in result if not r["success"])
    assert failed > 40  # more than 10 % of 400 failed: the verdict was certain, so the run stopped there
    assert len(result) < 200
    assert proc.stderr.strip().splitlines()[-1] == (f"servegauge: {failed}/{len(result)} requests failed, above "
                                                    "--max-error-rate 0.1: stopped once that was certain")
    (run,) = rows(find_dbs(tmp_path)[0], "SELECT status FROM run")
    assert run["status"] == "stopped"


def test_a_killed_worker_leaves_the_join_whole(tmp_path, slow_mock):
    slow_mock.truth(clear=True)
    proc = start(slow_mock.chat_url, tmp_path, "--parallel", 8, "--number", 40, "--workers", 2, "--no-plots")
    try:
        wait_until(lambda: len(served(slow_mock)) >= 10, what="requests in flight")
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        workers[0].send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = check_join(tmp_path, served(slow_mock), err)
    died = [r for r in result if r["error"] and r["error"].startswith("worker died: ")]
    assert 1 <= len(died) <= 4  # its 4 threads' requests in flight
    assert len(result) == 40
