"""Goodput, vLLM's way (`--goodput ttft:250 tpot:62.5 e2el:2000`) and ours
(`--slo`): one SLO, two spellings, checked on a hand-built database whose
answer is worked out below by hand, not by our code."""
from __future__ import annotations

import json
import os

import pytest

try:
    from test_analysis_dbutil import T0, req, write_db
except ImportError:  # tests imported as a package
    from tests.test_analysis_dbutil import T0, req, write_db

import analysis
from analysis.cli import report_main
from analysis.slo import parse_goodput, parse_slo
from engine.errors import UsageError
from engine.options import parse_run_args

GOODPUT = ["ttft:250", "tpot:62.5", "e2el:2000"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    # Binary-exact times, so "at the limit" is exactly at it.  TPOT = (latency - TTFT) / (tokens - 1).
    rows = [
        req(0, start=T0 + 0, ttft=0.25, latency=1.5, completion=21),    # TTFT 250 = limit, TPOT 62.5 = limit: good
        req(1, start=T0 + 1, ttft=0.1, latency=2.5, completion=25),     # latency 2.5 s > 2 s: not good
        req(2, start=T0 + 2, ttft=0.3, latency=0.5, completion=5),      # TTFT 300 > 250: not good
        req(3, start=T0 + 3, ttft=0.125, latency=1.0, completion=8),    # TPOT 0.875/7 = 125 > 62.5: not good
        req(4, start=T0 + 4, ttft=0.2, latency=0.2, completion=1),      # one token: TPOT counts 0: good
        req(5, start=T0 + 5, latency=0.05, success=0, status=500, error="HTTP 500: boom"),  # failed: not good
        req(6, start=T0 - 10, ttft=0.01, latency=0.02, completion=2, warmup=1),  # warm-up: not counted at all
        req(7, start=T0 + 7, ttft=0.0625, latency=1.0625, completion=33),  # TPOT 31.25: good
        req(8, start=T0 + 8, ttft=0.25, latency=2.0, completion=57),    # latency 2 s = limit, TPOT 31.25: good
    ]
    return write_db(str(tmp_path_factory.mktemp("goodput")), rows)


# By hand: good = rows 0, 4, 7, 8 (4 requests); measured = rows 0-5, 7, 8 (8 requests,
# the failure included, the warm-up not); duration = first send T0 -> last end T0 + 8 + 2.0 = 10 s.
GOOD, MEASURED, DURATION_S = 4, 8, 10.0


def test_goodput_counts_requests_meeting_every_limit(db):
    s = analysis.summary(analysis.load(db), slo=parse_goodput(GOODPUT))
    assert s["Total Requests"] == MEASURED
    assert s["Goodput (req/s)"] == pytest.approx(GOOD / DURATION_S, abs=1e-4)
    assert s["SLO Attainment (%)"] == pytest.approx(100.0 * GOOD / MEASURED, abs=1e-4)


def test_both_spellings_are_one_slo(db):
    goodput = parse_goodput(GOODPUT)
    assert goodput == parse_slo("ttft=250ms,tpot=62.5ms,e2el=2s") == {
        "ttft_ms": 250.0, "tpot_ms": 62.5, "latency_s": 2.0}
    frames = analysis.load(db)
    a = analysis.summary(frames, slo=goodput)
    b = analysis.summary(frames, slo="ttft=250ms,tpot=62.5ms,latency=2000ms")
    assert (a["Goodput (req/s)"], a["SLO Attainment (%)"]) == (b["Goodput (req/s)"], b["SLO Attainment (%)"])


def test_one_limit_alone(db):
    # TTFT <= 250 alone: rows 0, 1, 3, 4, 7, 8 (row 2 is 300 ms; row 5 failed)
    s = analysis.summary(analysis.load(db), slo=parse_goodput("ttft:250"))
    assert s["Goodput (req/s)"] == pytest.approx(6 / DURATION_S, abs=1e-4)
    assert s["SLO Attainment (%)"] == pytest.approx(100.0 * 6 / MEASURED, abs=1e-4)


def test_report_command_takes_goodput(db, tmp_path, capsys):
    out = tmp_path / "out"
    assert report_main([db, "--out", str(out), "--no-plots", "--quiet", "--goodput", *GOODPUT]) == 0
    with open(os.path.join(out, "benchmark_summary.json")) as f:
        summ = json.load(f)
    assert summ["Goodput (req/s)"] == pytest.approx(GOOD / DURATION_S, abs=1e-4)
    assert summ["SLO"] == {"ttft_ms": 250.0, "tpot_ms": 62.5, "latency_s": 2.0}
    assert report_main([db, "--out", str(out), "--no-plots", "--quiet", "--goodput", "itl:5"]) == 2
    err = capsys.readouterr().err
    assert "--goodput: unknown goodput key 'itl'" in err and len(err.strip().splitlines()) <= 2
    # the path after the list flag's values (as `servegauge report --goodput ttft:300 RUN` is typed)
    again = tmp_path / "again"
    assert report_main(["--out", str(again), "--no-plots", "--quiet", "--goodput", *GOODPUT, db]) == 0
    with open(os.path.join(again, "benchmark_summary.json")) as f:
        assert json.load(f)["Goodput (req/s)"] == summ["Goodput (req/s)"]
    assert report_main(["--goodput", *GOODPUT]) == 2
    assert "give the PATH" in capsys.readouterr().err


def test_run_command_takes_goodput_and_refuses_both_spellings():
    _, extra = parse_run_args(["--goodput", "ttft:300", "e2el:2000", "--number", "1"])
    assert extra.slo == {"ttft_ms": 300.0, "latency_s": 2.0}
    with pytest.raises(UsageError, match="--slo or --goodput, not both"):
        parse_run_args(["--goodput", "ttft:300", "--slo", "ttft=300ms"])
    with pytest.raises(UsageError, match=r"--goodput: bad goodput value '-1' for tpot"):
        parse_run_args(["--goodput", "tpot:-1"])


@pytest.mark.parametrize("bad, fragment", [
    (["ttft=300"], "KEY:VALUE"), (["ttfx:3"], "unknown goodput key"), (["ttft:abc"], "milliseconds >= 0"),
    (["ttft:1", "ttft:2"], "twice"), (["e2el:1", "tpot:1", "e2el:3"], "twice"), ([], "empty"),
    (["ttft:inf"], "milliseconds >= 0"), (["ttft:nan"], "milliseconds >= 0"),
])
def test_bad_goodput_says_what_to_fix(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_goodput(bad)
