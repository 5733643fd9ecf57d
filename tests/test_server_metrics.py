"""Issue 19: the server's Prometheus metrics scraped during real runs against
the mock (a real subprocess), stored in the run's database, and read back."""
from __future__ import annotations

import json
import math
import os
import sqlite3

import numpy as np
import pytest

from analysis.server_metrics import bucket_deltas, histogram_quantile, rank_bucket, read_samples
from conftest import find_dbs, rows, run_engine
from engine.mock import start_mock

SLOW_REPLIES = ["--ttft-ms", "20", "--itl-ms", "20", "--tokens", "16"]  # each reply holds its slot 0.32 s


def _run(url, out, *flags):
    proc = run_engine("--url", url, "--workers", 2, "--outputs-dir", out, "--no-timestamp", "--name", "m",
                      "--no-plots", *flags, timeout=240)
    (db,) = find_dbs(out)
    return proc, db


def _scrapes(db, name):
    return [(r["time"], r["value"]) for r in rows(db, f"SELECT time, value FROM server_metrics "
                                                    f"WHERE name = '{name}' ORDER BY time")]


def test_histogram_quantile_interpolates_as_prometheus_does():
    bounds = np.array([0.1, 0.25, 0.5, math.inf])
    # 2 at or below 0.1, 4 in (0.1, 0.25], 2 in (0.25, 0.5]
    cumulative = np.array([2.0, 6.0, 8.0, 8.0])
    assert histogram_quantile(0.5, bounds, cumulative) == pytest.approx(0.1 + 0.15 * 2 / 4)
    assert histogram_quantile(0.99, bounds, cumulative) == pytest.approx(0.25 + 0.25 * 1.92 / 2)
    assert histogram_quantile(0.1, bounds, cumulative) == pytest.approx(0.1 * 0.8 / 2)  # from 0 in the first
    # a rank in the +Inf bucket: the highest finite bound
    assert histogram_quantile(0.95, bounds, np.array([2.0, 6.0, 8.0, 10.0])) == 0.5
    assert math.isnan(histogram_quantile(0.5, bounds, np.zeros(4)))
    # which bucket holds the rank: the quantile's resolution (+Inf: index 3)
    assert [rank_bucket(q, bounds, cumulative) for q in (0.1, 0.5, 0.99)] == [0, 1, 2]
    assert rank_bucket(0.5, bounds, np.array([0.0, 1.0, 1.0, 10.0])) == 3
    assert rank_bucket(0.5, bounds, np.zeros(4)) is None


def test_server_vs_client_rows_say_what_the_histogram_can_tell(tmp_path):
    """Where the client's value lies in the server's bucket the row says
    "within bucket" (a number there would measure the interpolation);
    unstreamed, there is no TTFT row (the client's "TTFT" is its whole
    latency, the server's histogram a first token's)."""
    # TTFT 600 ms: inside one of vLLM's TTFT buckets (0.5-0.75 s), far from its edges
    with start_mock(["--ttft-ms", "600", "--itl-ms", "0", "--tokens", "2"]) as mock:
        _, streamed_db = _run(mock.chat_url, tmp_path / "s", "--parallel", 2, "--number", 6)
        _, plain_db = _run(mock.chat_url, tmp_path / "p", "--parallel", 2, "--number", 6, "--no-stream")

    def latency_rows_of(db):
        with open(os.path.join(os.path.dirname(db), "benchmark_summary.json"), encoding="utf-8") as fh:
            return json.load(fh)["Server vs Client Latency"]

    streamed_rows = latency_rows_of(streamed_db)
    assert {r["Metric"] for r in streamed_rows} == {"TTFT (ms)", "Latency (s)"}
    for r in streamed_rows:  # the mock measures what it did: every client value lies in the server's bucket
        low, high = (float(x) for x in r["Bucket"].split("-"))
        assert low <= r["Client"] <= high and r["Client - Server"] == "within bucket", r
    assert {r["Metric"] for r in latency_rows_of(plain_db)} == {"Latency (s)"}


def test_a_run_past_the_servers_slots_stores_its_true_queue_and_ttft(tmp_path):
    with start_mock(["--slots", "8", *SLOW_REPLIES]) as mock:
        proc, db = _run(mock.chat_url, tmp_path, "--parallel", 16, "--number", 160)
    assert proc.stderr.count("server metrics: found at") == 1, proc.stderr
    running, waiting = _scrapes(db, "vllm:num_requests_running"), _scrapes(db, "vllm:num_requests_waiting")
    assert len(running) == len(waiting) >= 5  # about 6 s of load, a scrape each second
    assert max(v for _, v in running) == 8  # never more than the slots
    assert 6 <= max(v for _, v in waiting) <= 8  # 16 in flight, 8 generating: about 8 wait
    gaps = np.diff([t for t, _ in running])[:-1]  # the last is the scrape just after the last request
    assert 0.8 <= float(np.median(gaps)) <= 1.3 and gaps.max() < 3.5, gaps
    # scraped from just before the first request to just after the last, on the result table's clock
    result = rows(db, "SELECT start_time, completed_time, first_chunk_latency FROM result")
    assert running[0][0] <= min(r["start_time"] for r in result)
    assert running[-1][0] >= max(r["completed_time"] for r in result)

    samples = read_samples(db)
    bounds, counts = bucket_deltas(samples, "vllm:time_to_first_token_seconds")
    assert counts[-1] == len(result) == 160  # the server's histogram saw every request once
    server_p50 = histogram_quantile(0.5, bounds, counts)
    client_p50 = float(np.median([r["first_chunk_latency"] for r in result]))
    b = int(np.searchsorted(bounds, server_p50))
    width = bounds[b] - (bounds[b - 1] if b else 0.0)
    assert abs(server_p50 - client_p50) <= width, (server_p50, client_p50, width)
    assert client_p50 > 0.25  # queued: a whole reply's wait on top of the 20 ms TTFT
    # The summary's row says so: the client's p50 lies in the server's bucket
    # (if it did not, the row would give how far outside, not a bare difference).
    low, high = (bounds[b - 1] if b else 0.0) * 1000.0, bounds[b] * 1000.0
    with open(os.path.join(os.path.dirname(db), "benchmark_summary.json"), encoding="utf-8") as fh:
        summary = json.load(fh)
    (row,) = [r for r in summary["Server vs Client Latency"] if r["Metric"] == "TTFT (ms)" and r["Percentile"] == "50%"]
    nearest = sorted(r["first_chunk_latency"] for r in result)[79] * 1000.0  # nearest rank, 160 values
    if low <= nearest <= high:
        assert row["Client - Server"] == "within bucket", row
    else:
        assert row["Client - Server"] == pytest.approx(nearest - (high if nearest > high else low), rel=1e-3), row


@pytest.mark.parametrize("mode", ["hang", "500", "garbage"])
def test_a_bad_metrics_endpoint_changes_nothing_of_the_run(tmp_path, mode):
    load = ("--parallel", 4, "--number", 24)
    with start_mock(["--metrics", mode, *SLOW_REPLIES]) as mock:
        _, plain = _run(mock.chat_url, tmp_path / "plain", *load, "--no-server-metrics")
        proc, db = _run(mock.chat_url, tmp_path / "scraped", *load,
                        "--server-metrics", mock.base_url + "/metrics", "--metrics-interval", 0.5)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "server metrics at" in warnings[0], proc.stderr
    assert rows(db, "SELECT COUNT(*) AS n FROM server_metrics")[0]["n"] == 0
    ours, theirs = rows(db), rows(plain)
    assert len(ours) == len(theirs) == 24
    assert all(r["success"] == 1 and r["error"] is None for r in ours)
    summaries = []
    for path in (db, plain):
        with open(path.replace("benchmark_data.db", "benchmark_summary.json")) as fh:
            summaries.append(json.load(fh))
    assert set(summaries[0]) == set(summaries[1])  # the same figures, no server section from bad scrapes
    for key in ("Total Requests", "Success Requests", "Failed Requests", "Errors"):
        assert summaries[0][key] == summaries[1][key]


def test_only_good_scrapes_are_stored(tmp_path):
    with start_mock(["--metrics", "flaky", *SLOW_REPLIES]) as mock:  # every other scrape answers 500
        proc, db = _run(mock.chat_url, tmp_path, "--parallel", 4, "--number", 40,
                        "--server-metrics", mock.base_url + "/metrics", "--metrics-interval", 0.4)
    assert sum("warning" in line for line in proc.stderr.splitlines()) == 1, proc.stderr
    per_scrape = rows(db, "SELECT time, COUNT(*) AS n, COUNT(DISTINCT name) AS names FROM server_metrics "
                          "GROUP BY time")
    assert len(per_scrape) >= 3
    # every stored scrape is a whole exposition: the same samples each time
    assert len({(r["n"], r["names"]) for r in per_scrape}) == 1
    success = _scrapes(db, "vllm:request_success_total")
    assert [v for _, v in success] == sorted(v for _, v in success)  # a counter, read in order
    assert 0 < success[-1][1] - success[0][1] <= 40  # what the run's requests added between them


def test_without_metrics_at_the_default_url_a_sweep_says_so_once(tmp_path):
    with start_mock(["--metrics", "off"]) as mock:
        proc = run_engine("--url", mock.chat_url, "--parallel", 1, 2, "--number", 3, 4, "--workers", 1,
                          "--outputs-dir", tmp_path, "--no-timestamp", "--no-plots")
        url = mock.base_url + "/metrics"
    lines = [line for line in proc.stderr.splitlines() if "server metrics" in line]
    assert len(lines) == 1 and f"no server metrics at {url}" in lines[0], proc.stderr
    for db in find_dbs(tmp_path):
        assert len(rows(db)) in (3, 4)
        assert rows(db, "SELECT COUNT(*) AS n FROM server_metrics")[0]["n"] == 0


def test_no_server_metrics_and_an_explicit_url_contradict(tmp_path):
    proc = run_engine("--url", "http://127.0.0.1:9/v1/chat/completions", "--server-metrics",
                      "http://127.0.0.1:9/metrics", "--no-server-metrics", check=False, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "servegauge: error: --server-metrics and --no-server-metrics contradict each other: give one"]


def test_scraping_stops_with_the_run_and_the_database_is_one_file(tmp_path):
    with start_mock(SLOW_REPLIES) as mock:
        _, db = _run(mock.chat_url, tmp_path, "--parallel", 2, "--number", 4)
    conn = sqlite3.connect(db)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        names = {r[0] for r in conn.execute("SELECT DISTINCT name FROM server_metrics")}
    finally:
        conn.close()
    assert mode == "delete"
    assert {"vllm:num_requests_running", "vllm:time_to_first_token_seconds_bucket",
            "vllm:e2e_request_latency_seconds_count", "vllm:prompt_tokens_total"} <= names


def _metrics(base_url):
    import requests

    from engine.server_metrics import parse

    reply = requests.get(base_url + "/metrics", timeout=5)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {(name, labels): value for _, name, labels, value in parse(0.0, reply.text)}


def _value(metrics, name, **labels):
    return sum(v for (n, lab), v in metrics.items() if n == name
               and all(json.loads(lab).get(k) == want for k, want in labels.items()))


def test_the_mocks_metrics_without_slots_count_replies_in_progress():
    import threading
    import time

    import requests

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    # ttft 200 ms, 4 tokens 100 ms apart: each reply is in progress 0.5 s
    with start_mock(["--ttft-ms", "200", "--itl-ms", "100", "--tokens", "4"]) as mock:
        threads = [threading.Thread(target=lambda: requests.post(mock.chat_url, json=body, timeout=10).content)
                   for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        seen = []
        while time.monotonic() < deadline:  # poll until all three are in progress at once
            m = _metrics(mock.base_url)
            seen.append((_value(m, "vllm:num_requests_running"), _value(m, "vllm:num_requests_waiting")))
            if seen[-1][0] == 3:
                break
        for t in threads:
            t.join()
        after = _metrics(mock.base_url)
    assert (3.0, 0.0) in seen, seen
    assert _value(after, "vllm:num_requests_running") == 0
    assert _value(after, "vllm:generation_tokens_total") == 3 * 4
    assert _value(after, "vllm:time_to_first_token_seconds_count") == 3
    # each first token went out 0.2 s after arrival (a little later on a busy machine): le 0.25, not le 0.1
    assert _value(after, "vllm:time_to_first_token_seconds_bucket", le="0.1") == 0
    assert _value(after, "vllm:time_to_first_token_seconds_bucket", le="0.25") == 3
    assert _value(after, "vllm:e2e_request_latency_seconds_bucket", le="0.3") == 0  # 0.5 s (and a bit)
    assert _value(after, "vllm:e2e_request_latency_seconds_bucket", le="0.8") == 3


def test_the_mocks_metrics_count_every_endpoint_it_serves():
    """Responses, embeddings and rerank replies reach /metrics' counters and
    histograms as chat replies do (found in review: they did not)."""
    import requests

    with start_mock(["--ttft-ms", "5", "--itl-ms", "1", "--tokens", "6"]) as mock:
        base = mock.base_url
        replies = [
            requests.post(base + "/v1/responses", json={"model": "m", "input": "one two three", "stream": True},
                          timeout=10),
            requests.post(base + "/v1/responses", json={"model": "m", "input": "one two three"}, timeout=10),
            requests.post(base + "/v1/embeddings", json={"model": "m", "input": "four five"}, timeout=10),
            requests.post(base + "/v1/rerank", json={"model": "m", "query": "six", "documents": ["seven eight"]},
                          timeout=10),
        ]
        assert [r.status_code for r in replies] == [200] * 4
        metrics = _metrics(base)
        truth = mock.truth()
    generated = sum(t["completion_tokens"] or 0 for t in truth)
    prompted = sum(t["prompt_tokens"] or 0 for t in truth)
    assert generated == 12 and _value(metrics, "vllm:generation_tokens_total") == generated
    assert _value(metrics, "vllm:prompt_tokens_total") == prompted > 0
    assert _value(metrics, "vllm:request_success_total") == 4
    assert _value(metrics, "vllm:e2e_request_latency_seconds_count") == 4
