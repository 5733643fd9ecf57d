"""`python -m engine compare` on real runs against the mock: two runs of the same
load show no TTFT change, a slower mock shows one, in words and with its size."""
from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import find_dbs, rows, run_engine
from engine.mock.launch import start_mock

# The mock's time to first token, the only thing that differs.  The gap is wide
# because a busy machine stretches the fast runs' tail towards the slow one's:
# at a load average of 8 on 2 cores the fast p99 reached 129 ms (20 ms mock).
FAST_MS, SLOW_MS = 20, 100
N = 520  # requests per run: a p99 verdict needs 500 values (analysis.compare.min_samples)
RATE = 100  # requests/s: about five seconds a run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    timing = ["--itl-ms", "5", "--tokens", "4"]
    with start_mock(["--ttft-ms", str(FAST_MS), *timing]) as fast, \
            start_mock(["--ttft-ms", str(SLOW_MS), *timing]) as slow:
        targets = {"a1": fast, "a2": fast, "b": slow}

        def run(name: str) -> None:
            run_engine("--url", targets[name].chat_url, "--rate", RATE, "--parallel", 16, "--number", N,
                       "--workers", 1, "--no-plots", "--no-timestamp", "--outputs-dir", base / name)

        # All three at once, paced to the same rate so they span the same seconds:
        # whatever else the machine does meanwhile (other test suites) weighs on
        # each of them alike, as it would not on a rerun minutes later.
        with ThreadPoolExecutor(len(targets)) as pool:
            list(pool.map(run, targets))
    return {name: find_dbs(base / name)[0] for name in targets}


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


def test_two_runs_of_the_same_load_show_no_ttft_change(runs):
    assert len(_ttft_ms(runs["a1"])) == len(_ttft_ms(runs["a2"])) == N
    out = _compare(runs["a1"], runs["a2"])
    for stat in ("p50", "p99"):
        metric, a, b, change, ci, verdict = _table_row(out, f"TTFT (ms) {stat}")
        assert verdict in ("not significant", "within noise"), out
    changed = out.split("Changed")[1].split("\n")
    assert not any(l.strip().startswith("TTFT ") for l in changed), out
    same = next(l for l in out.splitlines() if l.startswith("No significant change: "))
    assert "TTFT p50 (" in same and "TTFT p99 (" in same


def test_a_slower_first_token_is_reported_as_a_change_with_its_size(runs):
    out = _compare(runs["a1"], runs["b"])
    assert out.splitlines()[0].startswith("A: ") and f"{N:,} successful requests" in out.splitlines()[0]
    changed = out.split("Changed (")[1]
    fast, slow = _ttft_ms(runs["a1"]), _ttft_ms(runs["b"])
    for stat, p in (("p50", 50), ("p99", 99)):
        assert _table_row(out, f"TTFT (ms) {stat}")[-1] == "changed", out
        # "  TTFT p50: 22.39 -> 102.2 ms, +356.4% (+79.81 ms; 95% CI +79.66 to +79.96): B slower"
        line = re.search(rf"^  TTFT {stat}: (\S+) -> (\S+) ms, ([+-][\d.]+)% \(([+-][\d.,]+) ms; "
                         rf"95% CI ([+-][\d.,]+) to ([+-][\d.,]+)\): B slower$", changed, re.M)
        assert line, changed
        a, b, pct, diff, lo, hi = (float(g.replace(",", "")) for g in line.groups())
        # the figures are the databases' own (rounded to four digits for the eye) ...
        assert a == pytest.approx(_nearest_rank(fast, p), rel=2e-3)
        assert b == pytest.approx(_nearest_rank(slow, p), rel=2e-3)
        assert pct == pytest.approx((b - a) / a * 100, abs=0.2)
        assert diff == pytest.approx(b - a, rel=2e-3, abs=0.02)
        assert 0 < lo <= diff <= hi
    # ... and the mock's 80 ms show up at the median (a busy client adds to the fast run's share)
    a, b = _nearest_rank(fast, 50), _nearest_rank(slow, 50)
    assert b - a == pytest.approx(SLOW_MS - FAST_MS, rel=0.5)
