"""Issue 19: each server's /metrics text (fixtures written from vLLM's, SGLang's,
TGI's and llama.cpp's documented metric lists) maps onto the common set.

Two scrapes 10 s apart go through the real path: the scraper's parser, the
store's writer into a real sqlite file, the analysis reading it back."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from analysis.server_metrics import bucket_deltas, family_of, histogram_quantile, read_samples, timeline
from engine.server_metrics import ScrapeFailed, parse
from engine.store import ResultStore

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "server_metrics")
T0 = 1_800_000_000.0

# server -> (common metric -> its value at each scrape (gauges) or over the interval (rates, ratios))
EXPECTED = {
    "vllm": {"running": [4, 12], "waiting": [0, 3], "kv_cache_usage": [0.10, 0.42],
             "prefix_hit_rate": [300 / 1000], "spec_accept_rate": [150 / 250],
             "prompt_tokens_per_s": [5000 / 10], "generation_tokens_per_s": [2000 / 10]},
    "sglang": {"running": [2, 16], "waiting": [0, 5], "kv_cache_usage": [0.05, 0.61],
               "prefix_hit_rate": [1500 / 5000], "spec_accept_rate": [0.65, 0.75],
               "prompt_tokens_per_s": [5000 / 10], "generation_tokens_per_s": [4000 / 10]},
    "tgi": {"running": [1, 8], "waiting": [0, 2],
            "prompt_tokens_per_s": [20000 / 10], "generation_tokens_per_s": [4000 / 10]},
    "llamacpp": {"running": [1, 4], "waiting": [0, 2], "kv_cache_usage": [0.1, 0.3],
                 "prompt_tokens_per_s": [2000 / 10], "generation_tokens_per_s": [400 / 10]},
}
# server -> (histogram, its p50 over the two scrapes, worked out by hand from the fixtures' buckets)
P50 = {"vllm": [("vllm:time_to_first_token_seconds", 0.25), ("vllm:e2e_request_latency_seconds", 2.5)],
       "sglang": [("sglang:time_to_first_token_seconds", 0.3)],
       "tgi": [("tgi_request_duration", 3.0)],
       "llamacpp": []}


def _stored(tmp_path, server):
    db = str(tmp_path / "benchmark_data.db")
    store = ResultStore(db)
    for i in (1, 2):
        with open(os.path.join(FIXTURES, f"{server}_{i}.prom"), encoding="utf-8") as fh:
            store.add_metrics(parse(T0 + 10 * (i - 1), fh.read()))
    store.close()
    return read_samples(db)


@pytest.mark.parametrize("server", sorted(EXPECTED))
def test_a_servers_metrics_map_onto_the_common_set(tmp_path, server):
    samples = _stored(tmp_path, server)
    assert family_of(samples) == server
    series, overall = timeline(samples)
    assert sorted(series.columns) == sorted(EXPECTED[server])
    for key, values in EXPECTED[server].items():
        got = series[key].dropna().to_list()
        assert got == pytest.approx(values), key
        if key in ("prefix_hit_rate", "spec_accept_rate", "prompt_tokens_per_s"):
            assert overall[key] == pytest.approx(np.mean(values)), key
    for base, p50 in P50[server]:
        assert histogram_quantile(0.5, *bucket_deltas(samples, base)) == pytest.approx(p50), base


def test_unknown_metrics_are_stored_too(tmp_path):
    names = set(_stored(tmp_path, "vllm")["name"])
    assert {"process_resident_memory_bytes", "vllm:num_preemptions_total", "vllm:cache_config_info",
            "vllm:spec_decode_num_accepted_tokens_per_pos_total"} <= names
    # histogram parts as Prometheus names them
    assert {"vllm:time_to_first_token_seconds_bucket", "vllm:time_to_first_token_seconds_sum",
            "vllm:time_to_first_token_seconds_count"} <= names


def test_the_older_vllm_cache_gauge_is_read_when_the_new_one_is_absent(tmp_path):
    db = str(tmp_path / "benchmark_data.db")
    store = ResultStore(db)
    for i, usage in enumerate((0.2, 0.6)):
        store.add_metrics(parse(T0 + i, "# TYPE vllm:gpu_cache_usage_perc gauge\n"
                                        f'vllm:gpu_cache_usage_perc{{model_name="m"}} {usage}\n'))
    store.close()
    series, _ = timeline(read_samples(db))
    assert series["kv_cache_usage"].to_list() == [0.2, 0.6]


@pytest.mark.parametrize("text", ["<html>busy</html>\n", "", "just words here\n"])
def test_text_that_is_not_prometheus_gives_no_sample(text):
    with pytest.raises(ScrapeFailed):
        parse(T0, text)


def test_a_database_without_the_table_has_no_server_metrics(tmp_path):
    import sqlite3

    db = str(tmp_path / "old.db")
    sqlite3.connect(db).execute("CREATE TABLE result (start_time REAL)").connection.commit()
    samples = read_samples(db)
    assert samples.empty and family_of(samples) is None and timeline(samples)[0].empty
    assert math.isnan(histogram_quantile(0.5, np.array([1.0]), np.array([1.0])))


def test_a_histogram_that_went_down_is_a_restart_not_a_quantile(tmp_path):
    db = str(tmp_path / "benchmark_data.db")
    store = ResultStore(db)
    for i, n in enumerate((50, 3)):  # the server restarted between the scrapes
        store.add_metrics(parse(T0 + i, "# TYPE x_seconds histogram\n"
                                        f'x_seconds_bucket{{le="0.1"}} {n}\nx_seconds_bucket{{le="+Inf"}} {n}\n'
                                        f"x_seconds_sum 1.0\nx_seconds_count {n}\n"))
    store.close()
    assert bucket_deltas(read_samples(db), "x_seconds") is None
