"""Metrics against answers worked out here from the rows written (DESIGN.md definitions)."""
from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    from test_analysis_dbutil import T0, req, write_db
except ImportError:  # tests imported as a package
    from tests.test_analysis_dbutil import T0, req, write_db

import analysis
from analysis.metrics import PERCENTILE_LABELS, nearest_rank, normalize_error, parse_slo

# -- nearest rank --------------------------------------------------------------


def test_nearest_rank_textbook_example():
    # The classic nearest-rank example: 15, 20, 35, 40, 50.
    data = [35, 20, 50, 15, 40]
    assert nearest_rank(data, ["5%", "30%", "40%", "50%", "100%"]) == [15, 20, 20, 35, 50]
    assert nearest_rank(data, ["min", "max"]) == [15, 50]


def test_nearest_rank_exact_ranks_and_nan():
    thousand = list(range(1, 1001))
    # 99.9% of 1000 is rank 999 exactly (float arithmetic would say 999.0000000000001 -> 1000)
    assert nearest_rank(thousand, ["99.9%", "1%", "99%"]) == [999, 10, 990]
    assert nearest_rank([float("nan"), 3.0, 1.0, float("nan"), 2.0], ["min", "50%", "max"]) == [1, 2, 3]
    assert all(math.isnan(v) for v in nearest_rank([], PERCENTILE_LABELS))
    assert nearest_rank([7.0], PERCENTILE_LABELS) == [7.0] * len(PERCENTILE_LABELS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=60))
def test_nearest_rank_matches_the_definition(values):
    ordered = sorted(values)
    n = len(ordered)
    expected = []
    for label in PERCENTILE_LABELS:
        if label == "min":
            expected.append(ordered[0])
        elif label == "max":
            expected.append(ordered[-1])
        else:
            # rank = ceil(p/100 * n), p in tenths to stay exact
            tenths = int(round(float(label[:-1]) * 10))
            rank = max(1, -(-tenths * n // 1000))
            expected.append(ordered[rank - 1])
    assert nearest_rank(values) == expected


# -- a hand-built run --------------------------------------------------------------


@pytest.fixture(scope="module")
def run_db(tmp_path_factory):
    rows = [
        # streamed, 3 events carrying 7 tokens (multi-token chunks)
        req(0, start=T0 + 0, latency=2.0, chunk_times=[0.5, 1.0, 2.0], completion=7, prompt=100, lag=0.001),
        req(1, start=T0 + 1, latency=1.0, chunk_times=[0.2, 0.4, 0.6, 0.8, 1.0], completion=5, prompt=50,
            lag=0.003),
        # not streamed: one body, TTFT = latency
        req(2, start=T0 + 2, latency=3.0, stream=0, completion=10, prompt=20, lag=0.002),
        # failed: two variants of one HTTP 500, one bare 503
        req(3, start=T0 + 3, latency=0.5, success=0, chunk_times=[0.1], status=500,
            error="HTTP 500: internal error id 7f3a9b2c1d", lag=0.5),
        req(4, start=T0 + 4, latency=0.25, success=0, status=500, error="HTTP 500: internal error id 99aa88bb77",
            lag=0.5),
        req(5, start=T0 + 4.5, latency=0.1, success=0, status=503, error=None, lag=0.5),
        # warm-up: earlier than everything and slow; must not count anywhere
        req(6, start=T0 - 10, latency=5.0, chunk_times=[4.0, 5.0], completion=2, warmup=1),
        # streamed, a single token: no TPOT
        req(7, start=T0 + 5, latency=0.3, chunk_times=[0.3], completion=1, prompt=10, lag=0.010),
    ]
    workers = [{"worker": "w0", "cpu_s": 9.0, "wall_s": 10.0}, {"worker": "w1", "cpu_s": 2.0, "wall_s": 10.0}]
    path = write_db(str(tmp_path_factory.mktemp("run")), rows, args={"parallel": 4, "rate": None}, workers=workers)
    return analysis.load(path)


def test_summary_matches_hand_computation(run_db):
    s = analysis.summary(run_db)
    duration = 5.3  # first measured send (T0) -> last completion (T0 + 5 + 0.3)
    assert s["Test Duration (s)"] == pytest.approx(duration, abs=1e-4)
    assert s["Concurrency"] == 4
    assert s["Request Rate (req/s)"] == -1  # no pacing, written like evalscope
    assert (s["Total Requests"], s["Success Requests"], s["Failed Requests"]) == (7, 4, 3)
    assert s["Warmup Requests"] == 1
    assert s["Req Throughput (req/s)"] == pytest.approx(4 / duration, abs=1e-4)
    assert s["Avg Latency (s)"] == pytest.approx((2 + 1 + 3 + 0.3) / 4, abs=1e-4)
    assert s["Avg Input Tokens"] == pytest.approx((100 + 50 + 20 + 10) / 4, abs=1e-4)
    assert s["Avg Output Tokens"] == pytest.approx((7 + 5 + 10 + 1) / 4, abs=1e-4)
    assert s["Output Throughput (tok/s)"] == pytest.approx(23 / duration, abs=1e-4)
    assert s["Total Throughput (tok/s)"] == pytest.approx((180 + 23) / duration, abs=1e-4)
    # TTFT/TPOT over the streamed rows (0, 1, 7); the non-streamed reply's TTFT is its latency
    assert s["Avg TTFT (ms)"] == pytest.approx((500 + 200 + 300) / 3, abs=1e-4)
    # TPOT = (latency - TTFT)/(tokens - 1): row 0 1.5/6 s, row 1 0.8/4 s; row 7 has one token
    assert s["Avg TPOT (ms)"] == pytest.approx((250 + 200) / 2, abs=1e-4)
    assert s["Avg TPOT incl. TTFT (ms)"] == pytest.approx((2000 / 7 + 1000 / 5 + 300 / 1) / 3, abs=1e-4)
    # ITL: gaps of the successful rows only (row 3's partial stream is out)
    assert s["Avg ITL (ms)"] == pytest.approx((500 + 1000 + 4 * 200) / 6, abs=1e-4)
    assert s["Avg Schedule Lag (ms)"] == pytest.approx((1 + 3 + 2 + 10) / 4, abs=1e-4)
    assert s["P99 Schedule Lag (ms)"] == pytest.approx(10, abs=1e-4)
    assert s["Goodput (req/s)"] is None and s["SLO"] is None
    assert s["Max Worker CPU (%)"] == pytest.approx(90.0)
    assert any("w0" in w and "90%" in w for w in s["Warnings"])
    assert not any("w1" in w for w in s["Warnings"])


def test_no_busy_warning_from_a_run_too_short_to_measure_it(tmp_path):
    # two requests: the thread start-up alone is "104 %" of a 0.04 s wall
    workers = [{"worker": "w0", "cpu_s": 0.042, "wall_s": 0.04}, {"worker": "w1", "cpu_s": 1.8, "wall_s": 2.0}]
    path = write_db(str(tmp_path), [req(0, start=T0, latency=0.02, chunk_times=[0.01], completion=1)],
                    args={"parallel": 2, "rate": None}, workers=workers)
    s = analysis.summary(analysis.load(path))
    assert not any("w0" in w for w in s["Warnings"])
    assert any("w1" in w and "90%" in w for w in s["Warnings"])


def test_summary_keys_are_evalscopes_then_ours(run_db):
    keys = list(analysis.summary(run_db))
    evalscope = ["Test Duration (s)", "Concurrency", "Request Rate (req/s)", "Total Requests", "Success Requests",
                 "Failed Requests", "Req Throughput (req/s)", "Avg Latency (s)", "Avg Input Tokens",
                 "Avg Output Tokens", "Output Throughput (tok/s)", "Total Throughput (tok/s)", "Avg TTFT (ms)",
                 "Avg TPOT (ms)", "Avg ITL (ms)"]
    assert keys[:len(evalscope)] == evalscope
    for ours in ("Goodput (req/s)", "SLO", "Errors", "Avg Schedule Lag (ms)", "P99 Schedule Lag (ms)",
                 "Avg TPOT incl. TTFT (ms)", "Warmup Requests", "Max Worker CPU (%)", "Warnings"):
        assert ours in keys


def test_errors_group_variants_and_keep_status(run_db):
    errors = analysis.summary(run_db)["Errors"]
    assert sum(errors.values()) == 3
    five_hundred = [k for k in errors if k.startswith("HTTP 500")]
    assert len(five_hundred) == 1 and errors[five_hundred[0]] == 2
    assert errors.get("HTTP 503") == 1


def test_a_json_error_body_reads_as_its_message():
    # OpenAI/vLLM's shape, DashScope's, a bare string error; a body cut at
    # ERROR_BODY_CHARS is no JSON and stays as it was
    openai_shape = 'HTTP 404: {"error":{"message":"no route for POST /v1/x","type":"NotFoundError","code":404}}'
    assert normalize_error(openai_shape) == "HTTP 404: no route for POST /v1/x (NotFoundError)"
    dashscope = 'HTTP 400: {"code":"InvalidParameter","message":"bad input","request_id":"7f3a9b2c-1d"}'
    assert normalize_error(dashscope) == "HTTP 400: bad input (InvalidParameter)"
    assert normalize_error('HTTP 401: {"error": "invalid key"}') == "HTTP 401: invalid key"
    cut = 'HTTP 503: {"error":{"message":"upstream overloaded'
    assert normalize_error(cut) == cut
    # two requests' bodies that differ only in an id are one group
    a = normalize_error('HTTP 500: {"error":{"message":"worker 12 died (req 8f3a9b2c1d)"}}')
    b = normalize_error('HTTP 500: {"error":{"message":"worker 7 died (req 00aa11bb22)"}}')
    assert a == b == "HTTP 500: worker <n> died (req <id>)"


def test_error_normalisation():
    a = normalize_error("HTTP 500: upstream failed (request id req-00ab12cd34) after 12.5 s")
    b = normalize_error("HTTP 500: upstream failed (request id req-77ff00ee11) after 3.1 s")
    assert a == b and a.startswith("HTTP 500")
    assert normalize_error("HTTP 502: upstream failed") != normalize_error("HTTP 500: upstream failed")
    assert (normalize_error("connect to 10.0.0.7:8000 refused, object at 0x7f3a2b")
            == normalize_error("connect to 10.0.0.9:9000 refused, object at 0x11aa"))
    assert normalize_error(None, 429) == "HTTP 429"
    assert normalize_error("", None) == "unknown error"


def test_percentiles_table(run_db):
    pct = analysis.percentiles(run_db)
    assert list(pct["Percentiles"]) == list(PERCENTILE_LABELS)
    for col in ("TTFT (ms)", "ITL (ms)", "TPOT (ms)", "Latency (s)", "Input tokens", "Output tokens",
                "Output (tok/s)", "Total (tok/s)", "Schedule Lag (ms)"):
        assert col in pct.columns
    at = pct.set_index("Percentiles")
    # TTFT of streamed successes: 200, 300, 500
    assert [at.at[p, "TTFT (ms)"] for p in ("min", "1%", "50%", "99%", "max")] == pytest.approx(
        [200, 200, 300, 500, 500])
    # ITL gaps: 200 x4, 500, 1000 -> ranks ceil(.5*6)=3, ceil(.75*6)=5, ceil(.9*6)=6
    assert [at.at[p, "ITL (ms)"] for p in ("50%", "75%", "90%")] == pytest.approx([200, 500, 1000])
    # Latency: 0.3, 1, 2, 3
    assert [at.at[p, "Latency (s)"] for p in ("25%", "50%", "75%", "max")] == pytest.approx([0.3, 1.0, 2.0, 3.0])
    # per-request output rate: 7/2, 5/1, 10/3, 1/0.3
    assert at.at["max", "Output (tok/s)"] == pytest.approx(5.0)
    assert at.at["min", "Output (tok/s)"] == pytest.approx(10 / 3)


def test_goodput_with_slo(run_db):
    duration = 5.3
    # TTFT <= 400 ms and latency <= 2.5 s: rows 1 and 7 (row 0 TTFT 500, row 2 TTFT = latency 3 s)
    s = analysis.summary(run_db, slo=parse_slo("ttft=400ms,latency=2.5s"))
    assert s["Goodput (req/s)"] == pytest.approx(2 / duration, abs=1e-4)
    assert s["SLO"] == {"ttft_ms": 400.0, "latency_s": 2.5}
    assert s["SLO Attainment (%)"] == pytest.approx(100 * 2 / 7, abs=1e-4)
    # a one-token reply has no TPOT and cannot miss a TPOT SLO; row 1's TPOT is 200 ms
    assert analysis.summary(run_db, slo="ttft=400ms,tpot=210ms")["Goodput (req/s)"] == pytest.approx(
        2 / duration, abs=1e-4)
    assert analysis.summary(run_db, slo="ttft=0.4s,tpot=150ms")["Goodput (req/s)"] == pytest.approx(
        1 / duration, abs=1e-4)


def test_parse_slo():
    assert parse_slo("ttft=200ms,tpot=50ms,latency=10s") == {"ttft_ms": 200.0, "tpot_ms": 50.0, "latency_s": 10.0}
    assert parse_slo(" TTFT = 0.25s , e2el=1500ms ") == {"ttft_ms": 250.0, "latency_s": 1.5}
    for bad, fragment in (("ttft=200", "unit"), ("ttfx=2ms", "unknown"), ("ttft", "name=value"),
                          ("", "empty"), ("ttft=-5ms", "unit"), ("ttft=0ms", "above 0"),
                          ("ttft=1ms,ttft=2ms", "twice"), ("latency=10min", "unit")):
        with pytest.raises(ValueError, match=fragment):
            parse_slo(bad)


def test_rate_and_missing_run_table(tmp_path):
    rows = [req(0), req(1)]
    paced = analysis.load(write_db(str(tmp_path / "a"), rows, args={"parallel": 8, "rate": 2.5}))
    s = analysis.summary(paced)
    assert (s["Concurrency"], s["Request Rate (req/s)"]) == (8, 2.5)
    bare = analysis.load(write_db(str(tmp_path / "b"), rows, with_run=False))
    assert bare.run["args"] == {} and bare.run["workers"] == [] and bare.run["name"] is None
    s = analysis.summary(bare)
    assert s["Concurrency"] is None and s["Request Rate (req/s)"] is None
    assert s["Max Worker CPU (%)"] is None and s["Total Requests"] == 2


def test_no_success_gives_nulls_not_errors(tmp_path):
    frames = analysis.load(write_db(str(tmp_path), [req(0, success=0, error="boom", status=None)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "mean of empty slice" noise
        s = analysis.summary(frames)
        pct = analysis.percentiles(frames)
    assert s["Success Requests"] == 0 and s["Failed Requests"] == 1
    assert s["Avg Latency (s)"] is None and s["Avg TTFT (ms)"] is None and s["Avg ITL (ms)"] is None
    assert s["Errors"] == {"boom": 1}
    assert pct["TTFT (ms)"].isna().all()
