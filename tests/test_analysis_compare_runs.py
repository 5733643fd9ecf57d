"""`python -m engine compare` on runs: two runs of the same load show no TTFT
change, a slower server shows one, in words and with its size.

The verdicts are checked on hand-built databases shaped like runs against the
mock (its first token after FAST_MS or SLOW_MS, plus what a client adds), so
they are the same on every machine, busy or not; one pair of real runs checks
that compare reads what the engine writes."""
from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

from conftest import find_dbs, rows, run_engine
from engine.mock.launch import start_mock
from test_analysis_dbutil import T0, req, write_db

# The mock's time to first token, the only thing that differs.
FAST_MS, SLOW_MS = 20, 100
N = 520  # requests per run: a p99 verdict needs 500 values (analysis.compare.min_samples)
RATE = 50  # requests/s, as the runs were paced
ITL_MS = 5  # --itl-ms 5 --tokens 2: two output events a request


def _run_db(folder, mock_ms: float, seed: int) -> str:
    """A run of N requests against a mock whose first token takes mock_ms:
    each TTFT is that plus what a client that is not starved adds, ~2 ms
    with a tail (log-normal), drawn with its own seed as a rerun would be."""
    rng = np.random.default_rng(seed)
    added_ms = 1.0 + rng.lognormal(mean=0.0, sigma=0.5, size=N)
    result = []
    for k in range(N):
        ttft = (mock_ms + added_ms[k]) / 1000
        times = [ttft, ttft + ITL_MS / 1000]
        result.append(req(k, start=T0 + k / RATE, latency=times[-1] + 0.0002, chunk_times=times, completion=2))
    write_db(str(folder), result, args={"parallel": 32, "rate": RATE, "number": N, "model": "m"})
    return str(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    dbs = {"a1": _run_db(base / "a1", FAST_MS, seed=1), "a2": _run_db(base / "a2", FAST_MS, seed=2),
           "b": _run_db(base / "b", SLOW_MS, seed=3)}
    dbs = {name: find_dbs(folder)[0] for name, folder in dbs.items()}
    return {"dbs": dbs, "same": _compare(dbs["a1"], dbs["a2"]), "slower": _compare(dbs["a1"], dbs["b"])}


def _ttft_ms(db: str) -> list[float]:
    return sorted(r["first_chunk_latency"] * 1000 for r in
                  rows(db, "SELECT first_chunk_latency FROM result WHERE success = 1 AND is_warmup = 0"))


def _nearest_rank(ordered: list[float], p: float) -> float:
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _compare(a: str, b: str) -> str:
    proc = run_engine("compare", os.path.dirname(a), os.path.dirname(b))
    assert proc.stderr == ""
    return proc.stdout


def _table_row(out: str, label: str) -> list[str]:
    line = next(l for l in out.splitlines() if l.startswith(f"│ {label} "))
    return [c.strip() for c in line.strip("│").split("│")]


@pytest.mark.parametrize("stat", ["p50", "p99"])
def test_two_runs_of_the_same_load_show_no_ttft_change(runs, stat):
    assert len(_ttft_ms(runs["dbs"]["a1"])) == len(_ttft_ms(runs["dbs"]["a2"])) == N
    out = runs["same"]
    verdict = _table_row(out, f"TTFT (ms) {stat}")[-1]
    assert verdict in ("not significant", "within noise"), out
    assert f"  TTFT {stat}:" not in out.split("Changed")[1].split("No significant change")[0], out
    same = next(l for l in out.splitlines() if l.startswith("No significant change: "))
    assert f"TTFT {stat} (" in same


@pytest.mark.parametrize("stat", ["p50", "p99"])
def test_a_slower_first_token_is_reported_as_a_change_with_its_size(runs, stat):
    out = runs["slower"]
    assert out.splitlines()[0].startswith("A: ") and f"{N:,} successful requests" in out.splitlines()[0]
    changed = out.split("Changed (")[1]
    fast, slow = _ttft_ms(runs["dbs"]["a1"]), _ttft_ms(runs["dbs"]["b"])
    p = int(stat[1:])
    assert _table_row(out, f"TTFT (ms) {stat}")[-1] == "changed", out
    # "  TTFT p50: 22.39 -> 102.2 ms, +356.4% (+79.81 ms; 95% CI +79.66 to +79.96): B slower"
    line = re.search(rf"^  TTFT {stat}: (\S+) -> (\S+) ms, ([+-][\d.]+)% \(([+-][\d.,]+) ms; "
                     rf"95% CI ([+-][\d.,]+) to ([+-][\d.,]+)\): B slower$", changed, re.M)
    assert line, changed
    a, b, pct, diff, lo, hi = (float(g.replace(",", "")) for g in line.groups())
    # the figures are the databases' own (rounded to four digits for the eye) ...
    assert a == pytest.approx(_nearest_rank(fast, p), rel=2e-3)
    assert b == pytest.approx(_nearest_rank(slow, p), rel=2e-3)
    assert pct == pytest.approx((b - a) / a * 100, rel=2e-3, abs=0.1)
    assert diff == pytest.approx(b - a, rel=2e-3, abs=0.02)
    assert 0 < lo <= diff <= hi
    assert b - a == pytest.approx(SLOW_MS - FAST_MS, rel=0.1)  # ... and the server's 80 ms show up


def test_compare_reads_what_the_engine_writes(tmp_path):
    """Two real runs, against a mock that gives the first token after FAST_MS
    and one that gives it after SLOW_MS: the median's verdict and its figures
    are the databases' own.  (An 80 ms difference at the median: only a
    machine too busy to run anything fails it.)"""
    timing = ["--itl-ms", str(ITL_MS), "--tokens", "2"]
    dbs = {}
    for name, ms in (("fast", FAST_MS), ("slow", SLOW_MS)):
        with start_mock(["--ttft-ms", str(ms), *timing]) as mock:
            run_engine("--url", mock.chat_url, "--parallel", 8, "--number", 60, "--no-plots", "--no-timestamp",
                       "--outputs-dir", tmp_path / name)
        (dbs[name],) = find_dbs(tmp_path / name)
    out = _compare(dbs["fast"], dbs["slow"])
    # two mock servers, two ports: compare says first that the URLs differ
    warning, first = out.splitlines()[:2]
    assert warning.startswith("WARNING: A and B were run differently (URL http://127.0.0.1:"), warning
    assert first.startswith("A: ") and "60 successful requests" in first
    assert _table_row(out, "TTFT (ms) p50")[-1] == "changed", out
    line = re.search(r"^  TTFT p50: (\S+) -> (\S+) ms, .*\): B slower$", out.split("Changed (")[1], re.M)
    assert line, out
    a, b = (float(g.replace(",", "")) for g in line.groups())
    assert a == pytest.approx(_nearest_rank(_ttft_ms(dbs["fast"]), 50), rel=2e-3)
    assert b == pytest.approx(_nearest_rank(_ttft_ms(dbs["slow"]), 50), rel=2e-3)
