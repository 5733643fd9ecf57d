"""--resume: a sweep or SLA search cut by Ctrl-C continues where it stopped;
every run completes once, none is made twice (counted at the mock)."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import ROOT, find_dbs, rows, run_engine
from engine.resume import MARKER


@pytest.fixture(scope="module")
def mock():
    from engine.mock.launch import start_mock

    # 8 tokens 20 ms apart, 2 slots: a request takes about 0.16 s, and queues past 2 in flight
    with start_mock(["--slots", "2", "--ttft-ms", "20", "--itl-ms", "20", "--tokens", "8"]) as server:
        yield server


def start(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout_s=60):
    """Poll until `path` exists (the run has started making its folder)."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def ids(db):
    return [r["request_id"] for r in rows(db, "SELECT request_id FROM result")]


def complete(folder):
    return os.path.exists(os.path.join(folder, MARKER))


def test_a_sweep_cut_by_ctrl_c_resumes_without_running_anything_twice(tmp_path, mock):
    before = {t["request_id"] for t in mock.truth()}
    flags = ["--url", mock.chat_url, "--model", "m", "--parallel", "2", "--number", "6", "30", "8", "10",
             "--workers", "1", "--grace", "0", "--outputs-dir", tmp_path, "--no-timestamp", "--no-plots",
             "--no-test-connection"]
    sweep_dir = os.path.join(tmp_path, "m")
    folders = [os.path.join(sweep_dir, f"parallel_2_number_{n}") for n in (6, 30, 8, 10)]
    proc = start(*flags)
    wait_for(folders[1], proc)  # the second run has begun
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert complete(folders[0]) and not complete(folders[1])
    assert not os.path.exists(folders[2])
    first_ids = ids(find_dbs(folders[0])[0])
    partial_ids = set(ids(find_dbs(folders[1])[0]))

    proc = run_engine(*flags, "--resume", sweep_dir)
    assert "completed before, kept" in proc.stderr
    assert all(complete(f) for f in folders)
    aside = os.path.join(sweep_dir, "parallel_2_number_30.incomplete-1")
    assert os.path.isdir(aside) and set(ids(find_dbs(aside)[0])) == partial_ids  # kept, not lost
    assert ids(find_dbs(folders[0])[0]) == first_ids  # the first run was not made again
    # Counted at the mock: every request of the four complete runs arrived exactly
    # once; beyond them only requests of the set-aside partial run.
    seen = Counter(t["request_id"] for t in mock.truth() if t["request_id"] not in before)
    done = [i for f in folders for i in ids(find_dbs(f)[0])]
    assert len(done) == 6 + 30 + 8 + 10
    assert all(seen[i] == 1 for i in done)
    assert set(seen) - set(done) <= partial_ids
    assert max(seen.values()) == 1
    # a report of the sweep folder shows the four runs, not the set-aside one too
    from analysis.cli import find_databases

    assert sorted(os.path.dirname(db) for db in find_databases(sweep_dir)) == sorted(folders)


def test_an_sla_search_resumes_reusing_the_points_it_completed(tmp_path, mock):
    before = {t["request_id"] for t in mock.truth()}
    flags = ["--url", mock.chat_url, "--model", "m", "--sla-auto-tune", "--sla-params", '[{"p99_ttft": "<=0.25"}]',
             "--sla-num-runs", "1", "--parallel", "2", "--sla-upper-bound", "64", "--workers", "1", "--grace", "0",
             "--outputs-dir", tmp_path, "--no-timestamp", "--no-plots", "--no-test-connection"]
    out = os.path.join(tmp_path, "m")
    proc = start(*flags)
    wait_for(os.path.join(out, "parallel_8"), proc)  # the third point (2, 4, 8) has begun
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err

    proc = run_engine(*flags, "--resume", out)
    assert proc.stderr.count("completed before, kept") == 2  # parallel 2 and 4
    with open(os.path.join(out, "sla_search.json")) as fh:
        group = json.load(fh)["groups"][0]
    assert (group["best"], group["first_fail"]) == (4, 5)  # 2 slots of 0.16 s: 2 replies ahead is 0.34 s
    seen = Counter(t["request_id"] for t in mock.truth() if t["request_id"] not in before)
    done = [i for db in find_dbs(out) if ".incomplete-" not in db for i in ids(db)]
    # each run of a point sends value x 2 requests (a too-close point gets a second run)
    assert len(done) == sum(round(p["value"] * 2) * p["runs"] for p in group["points"])
    assert all(seen[i] == 1 for i in done) and max(seen.values()) == 1


@pytest.mark.parametrize("make", [False, True])
def test_resume_of_a_folder_without_runs_is_one_line(tmp_path, make):
    target = tmp_path / "nothing"
    if make:
        target.mkdir()
    proc = run_engine("--url", "http://127.0.0.1:9/v1/chat/completions", "--resume", target, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--resume" in proc.stderr, proc.stderr
