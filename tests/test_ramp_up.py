"""--ramp-up S: concurrency (or rate) grows linearly from 1 to its target
over S seconds; the requests sent meanwhile are marked (is_warmup = 2) and
left out of the metrics.  The concurrency ramp is judged on the database
alone: requests in flight over time, from each row's send and end."""
import json
import os

import numpy as np
import pytest

from conftest import find_dbs, rows, run_engine
from engine.mock.launch import start_mock
from engine.ramp import ramped_offsets_s, thread_turns_s
from engine.store import RAMP_UP


def test_a_rate_ramp_sends_at_a_rate_that_grows_linearly_then_stays():
    """Evenly spaced (burstiness inf), the i-th send is where the expected
    count, the integral of the rate, reaches i."""
    rate, ramp_s = 41.0, 2.0
    offsets = list(zip(range(200), ramped_offsets_s(rate, ramp_s, burstiness=float("inf"))))
    for i, t in offsets:
        expected = t + (rate - 1) * t * t / (2 * ramp_s) if t < ramp_s else 42.0 + rate * (t - ramp_s)
        assert expected == pytest.approx(i, abs=1e-6)
    t = np.array([t for _, t in offsets])
    middle, achieved = (t[1:] + t[:-1]) / 2, 1 / np.diff(t)
    within = (middle > 0.5) & (middle < ramp_s - 0.1)  # 1 req/s at the start: no gap to judge by there
    assert achieved[within] == pytest.approx(1 + (rate - 1) * middle[within] / ramp_s, rel=0.02)
    assert achieved[-1] == pytest.approx(rate)
    assert sum(1 for _, t in offsets if t < ramp_s) == 42  # (1 + 41) / 2 req/s on average for 2 s


def test_a_random_rate_ramp_keeps_the_seed_and_the_count():
    a = list(zip(range(500), ramped_offsets_s(20.0, 5.0, seed=3, number=500)))
    b = list(zip(range(500), ramped_offsets_s(20.0, 5.0, seed=3, number=500)))
    assert a == b
    during = sum(1 for _, t in a if t < 5.0)
    assert abs(during - 52.5) < 4 * 52.5 ** 0.5  # (1 + 20) / 2 * 5 expected, Poisson spread


@pytest.mark.parametrize("threads", [[1], [5], [3, 3], [4, 3, 3], [2, 2, 2, 2, 2, 2, 2, 2, 1]])
def test_thread_turns_allow_the_rounded_linear_count_and_alternate_processes(threads):
    ramp_s, total = 4.0, sum(threads)
    turns = thread_turns_s(threads, ramp_s)
    assert len(turns) == total and min(turns) == 0.0 and max(turns) < ramp_s
    for t in np.linspace(0, ramp_s, 97):
        allowed = sum(1 for turn in turns if turn <= t)
        assert abs(allowed - (1 + (total - 1) * t / ramp_s)) <= 0.5 + 1e-9
    firsts = sorted(turns)[:len(threads)]  # the first turns go one to each process
    bases = np.cumsum([0] + threads[:-1])
    assert sorted(turns[b] for b in bases) == firsts
    assert thread_turns_s(threads, None) == [0.0] * total


@pytest.fixture(scope="module")
def slow_mock():
    """Replies of about 0.2 s, so that the in-flight count is the concurrency."""
    with start_mock(["--ttft-ms", "100", "--itl-ms", "10", "--tokens", "10"]) as server:
        yield server


def in_flight(start, end, t):
    return int(((start <= t) & (end > t)).sum())


def test_a_concurrency_ramp_rises_linearly_in_the_database_and_is_left_out_of_the_metrics(tmp_path, slow_mock):
    parallel, ramp_s = 20, 3.0
    out = tmp_path / "out"
    run_engine("--url", slow_mock.chat_url, "--parallel", parallel, "--duration", 4.5, "--ramp-up", ramp_s,
               "--warmup-num", 3, "--outputs-dir", out, "--no-plots", "--no-test-connection")
    (db,) = find_dbs(out)
    result = rows(db, "SELECT start_time, latency, is_warmup, success FROM result")
    assert all(r["success"] == 1 for r in result)
    start = np.array([r["start_time"] for r in result])
    end = start + np.array([r["latency"] for r in result])
    flag = np.array([r["is_warmup"] for r in result])
    assert (flag == 1).sum() == 3
    t0 = start[flag != 1].min()  # the ramp starts with the first request after the warm-up
    times = np.arange(0.05, ramp_s, 0.1)
    level = np.array([in_flight(start, end, t0 + x) for x in times])
    ideal = 1 + (parallel - 1) * times / ramp_s
    assert np.all(np.abs(level - ideal) <= 0.1 * parallel), list(zip(times.round(2), level, ideal.round(1)))
    slope = np.polyfit(times, level, 1)[0]
    assert slope == pytest.approx((parallel - 1) / ramp_s, rel=0.10)
    steady = [in_flight(start, end, t0 + x) for x in np.arange(ramp_s + 0.2, 4.3, 0.1)]
    assert np.mean(steady) >= 0.9 * parallel
    # marked by send time: every ramp row was sent within the ramp, every measured one after it
    ramp = flag == RAMP_UP
    assert ramp.sum() > parallel and start[ramp].max() < t0 + ramp_s + 0.01
    assert start[flag == 0].min() >= t0 + ramp_s - 0.01
    summary = json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
    assert summary["Total Requests"] == (flag == 0).sum()
    assert summary["Ramp-up Requests"] == ramp.sum() and summary["Warmup Requests"] == 3


def test_a_rate_ramp_marks_the_requests_due_within_it(tmp_path, mock):
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--rate", 40, "--burstiness", "inf", "--number", 100, "--ramp-up", 2,
               "--outputs-dir", out, "--no-plots", "--no-test-connection")
    (db,) = find_dbs(out)
    result = rows(db, "SELECT scheduled_time, is_warmup FROM result ORDER BY scheduled_time")
    assert len(result) == 100
    # evenly spaced, (1 + 40) / 2 req/s for 2 s: the first 41 are due within the ramp
    assert [r["is_warmup"] for r in result] == [RAMP_UP] * 41 + [0] * 59
    due = np.array([r["scheduled_time"] for r in result]) - result[0]["scheduled_time"]
    assert due[41] == pytest.approx(2.0, abs=1e-5) and np.diff(due[41:]) == pytest.approx(1 / 40, abs=1e-5)


def test_a_run_that_ends_inside_its_ramp_says_nothing_was_measured(tmp_path, mock):
    # 40 requests over a ramp of 2 s at 40 req/s: every one is due within the ramp (41 would be)
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--rate", 40, "--burstiness", "inf", "--number", 40, "--ramp-up", 2,
               "--outputs-dir", out, "--no-plots", "--no-test-connection")
    (db,) = find_dbs(out)
    with open(os.path.join(os.path.dirname(db), "benchmark_summary.json"), encoding="utf-8") as fh:
        summary = json.load(fh)
    assert summary["Total Requests"] == 0 and summary["Ramp-up Requests"] == 40
    assert any("sent during --ramp-up" in w and "--number" in w for w in summary["Warnings"]), summary["Warnings"]
