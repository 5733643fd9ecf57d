"""--sla-auto-tune end to end: real runs against the mock with a capacity
(--slots N), the answer checked against the queueing model's prediction."""
import json
import math
import os

import pytest

from conftest import find_dbs, run_engine

TTFT_S, ITL_S, TOKENS = 0.02, 0.01, 8
BUSY_S = TTFT_S + (TOKENS - 1) * ITL_S  # each reply holds its slot this long: 0.09 s
THRESHOLD_S = 0.155  # halfway between the TTFT levels 0.11 (one reply ahead) and 0.20 (two ahead)
UPPER = 512


def mock_with(slots):
    from engine.mock.launch import start_mock

    return start_mock(["--slots", str(slots), "--ttft-ms", str(TTFT_S * 1e3), "--itl-ms", str(ITL_S * 1e3),
                       "--tokens", str(TOKENS)])


def predicted_parallel(slots):
    """Closed loop, c clients all sending at once, N slots, each reply busy B:
    the last of the first round waits (ceil(c/N) - 1) * B.  The largest c whose
    worst TTFT stays under the threshold."""
    c = 1
    while TTFT_S + (math.ceil((c + 1) / slots) - 1) * BUSY_S <= THRESHOLD_S:
        c += 1
    return c


def doubling_points(start, upper):
    return int(math.log2(upper / start)) + 1


@pytest.mark.parametrize("slots", [2, 3])
def test_parallel_search_finds_the_capacity_the_model_predicts(tmp_path, slots):
    with mock_with(slots) as mock:
        proc = run_engine("--url", mock.chat_url, "--model", "m", "--sla-auto-tune", "--sla-variable", "parallel",
                          "--sla-params", json.dumps([{"p99_ttft": f"<={THRESHOLD_S}"}]), "--sla-num-runs", "1",
                          "--parallel", "2", "--sla-upper-bound", UPPER, "--workers", "1", "--no-test-connection", "--outputs-dir", tmp_path, "--no-timestamp",
                          "--no-plots")
    out_dir = os.path.join(tmp_path, "m")
    with open(os.path.join(out_dir, "sla_search.json")) as fh:
        found = json.load(fh)
    group = found["groups"][0]
    expected = predicted_parallel(slots)
    assert abs(group["best"] - expected) <= 1, (expected, group)
    assert group["first_fail"] == group["best"] + 1
    # every point an ordinary run folder with its database; fewer than a doubling sweep to the bound
    runs = find_dbs(out_dir)
    assert len(runs) == sum(p["runs"] for p in group["points"])
    assert len(runs) < doubling_points(2, UPPER)
    # the answer first, in words, with its interval
    first = proc.stdout.strip().splitlines()[0]
    assert first.startswith(f"max parallel {group['best']} meets p99 TTFT ≤ 155 ms (95 %: p99 = "), first
    assert f"{group['first_fail']} does not" in first or "too close to call" in first
    assert "verdict" in proc.stdout  # the table of every point


def test_rate_search_finds_the_capacity_of_an_open_loop(tmp_path):
    slots, multiplier = 2, 1.0
    capacity = slots / BUSY_S  # 22 req/s
    # Evenly spaced arrivals (D/D/N): no wait below the capacity; above it the
    # backlog grows, and the last of `number = rate * multiplier` requests waits
    # number * (1/capacity - 1/rate) = multiplier * (rate/capacity - 1).  The
    # largest rate whose wait stays under the threshold:
    wait_s = THRESHOLD_S - TTFT_S
    predicted = capacity * (1 + wait_s / multiplier)
    with mock_with(slots) as mock:
        run_engine("--url", mock.chat_url, "--model", "m", "--sla-auto-tune", "--sla-variable", "rate",
                   "--sla-params", json.dumps([{"p99_ttft": f"<={THRESHOLD_S}"}]), "--sla-num-runs", "1",
                   "--sla-number-multiplier", multiplier, "--sla-fixed-parallel", "64", "--burstiness", "inf",
                   "--rate", "8", "--sla-upper-bound", "128", "--sla-rate-tolerance", "0.2", "--workers", "1",
                   "--no-test-connection",
                   "--outputs-dir", tmp_path, "--no-timestamp", "--no-plots")
    with open(os.path.join(tmp_path, "m", "sla_search.json")) as fh:
        group = json.load(fh)["groups"][0]
    best, fail = group["best"], group["first_fail"]
    assert best is not None and fail is not None, group
    assert best < fail <= best * 1.2 + 1e-9  # bisected to the tolerance
    # within one step (the tolerance) of the model, with room for a busy machine's late sends
    assert predicted * 0.8 <= best <= predicted * 1.2, (predicted, group)
    assert best >= capacity * 0.75  # well below the capacity passes


def test_bad_sla_params_is_one_line(tmp_path):
    proc = run_engine("--url", "http://127.0.0.1:9/v1/chat/completions", "--sla-auto-tune", "--sla-params",
                      '[{"p99_ttfx": "<=0.3"}]', "--outputs-dir", tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--sla-params" in proc.stderr and "p99_ttfx" in proc.stderr


@pytest.mark.parametrize("flag, words", [
    (("--number", "50"), ("--sla-number-multiplier", "--number/--duration")),
    (("--duration", "10"), ("--sla-number-multiplier", "--number/--duration")),
    (("--max-error-rate", "0.1"), ("any failed request", "drop --max-error-rate")),
    (("--sla-lower-bound", "2.2", "--sla-upper-bound", "2.8"), ("no whole number of parallel",)),
])
def test_a_search_refuses_flags_it_would_ignore_or_cannot_meet(tmp_path, flag, words):
    proc = run_engine("--url", "http://127.0.0.1:9/v1/chat/completions", "--sla-auto-tune", "--sla-params",
                      '[{"p99_ttft": "<=0.3"}]', *flag, "--outputs-dir", tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr
