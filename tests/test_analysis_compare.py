"""compare: side by side with a bootstrap CI of the p50/p99 difference."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

try:
    from test_analysis_dbutil import ROOT, T0, req, write_db
except ImportError:
    from tests.test_analysis_dbutil import ROOT, T0, req, write_db

import analysis
from analysis.cli import compare_main
from analysis.compare import bootstrap_quantiles, format_comparison, order_statistic_intervals


def _quantiles(n: int, median: float, sigma: float) -> np.ndarray:
    """Evenly spaced quantiles of a log-normal: a smooth sample without randomness."""
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])
    return median * np.exp(sigma * z)


def _db(folder, ttft_s, latency_s, order=None):
    n = len(ttft_s)
    order = range(n) if order is None else order
    rows = []
    for k, i in enumerate(order):
        ttft, latency = float(ttft_s[i]), float(latency_s[i])
        times = list(np.linspace(ttft, latency, 8))
        rows.append(req(k, start=T0 + k * 0.1, latency=latency, chunk_times=times, completion=12, prompt=100))
    return write_db(str(folder), rows, args={"parallel": 8, "rate": None})


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cmp")
    n = 600  # a p99 verdict needs 500 values per run (compare.min_samples)
    ttft = _quantiles(n, 0.1, 0.25)
    latency = ttft + _quantiles(n, 1.0, 0.2)[::-1]
    shuffled = np.random.default_rng(7).permutation(n)
    return {
        "a": _db(base / "a", ttft, latency),
        "same": _db(base / "same", ttft, latency, order=shuffled),  # the same values, other order
        "slow": _db(base / "slow", ttft * 2.0, latency * 1.5),
    }


def _by_key(rows):
    return {(r["Metric"], r["Stat"]): r for r in rows}


def test_identical_distributions_are_not_significant(dbs):
    rows = analysis.compare_runs(analysis.load(dbs["a"]), analysis.load(dbs["same"]), n_resamples=2000, seed=1)
    ci_rows = [r for r in rows if r["Stat"] in ("p50", "p99")]
    assert len(ci_rows) == 8
    for r in ci_rows:
        assert r["Significant"] is False, r
        assert r["CI low"] <= 0 <= r["CI high"]
        assert r["Change (%)"] == pytest.approx(0, abs=1e-9)


def test_shifted_distributions_are_significant(dbs):
    a, slow = analysis.load(dbs["a"]), analysis.load(dbs["slow"])
    rows = _by_key(analysis.compare_runs(a, slow, n_resamples=2000, seed=1))
    for metric in ("TTFT (ms)", "Latency (s)", "TPOT (ms)", "ITL (ms)"):
        for stat in ("p50", "p99"):
            r = rows[(metric, stat)]
            assert r["Significant"] is True, r
            assert r["B"] > r["A"] and r["CI low"] > 0
    ttft = rows[("TTFT (ms)", "p50")]
    assert ttft["Change (%)"] == pytest.approx(100.0, abs=1e-6)  # twice as slow
    assert rows[("TTFT (ms)", "mean")]["Change (%)"] == pytest.approx(100.0, abs=1e-6)
    assert not math.isnan(rows[("Output Throughput (tok/s)", "")]["Change (%)"])


def test_bootstrap_is_seeded_and_subsamples_large_inputs():
    x = np.random.default_rng(0).exponential(1.0, 5000)
    one = bootstrap_quantiles(x, ["50%", "99%"], 200, np.random.default_rng(3))
    two = bootstrap_quantiles(x, ["50%", "99%"], 200, np.random.default_rng(3))
    assert np.array_equal(one, two)
    # m-out-of-n: resampling 500 of 5000 values, rescaled, keeps the spread of the full bootstrap
    small = bootstrap_quantiles(x, ["50%"], 2000, np.random.default_rng(4), max_n=500)[:, 0]
    full = bootstrap_quantiles(x, ["50%"], 2000, np.random.default_rng(4))[:, 0]
    assert small.std() == pytest.approx(full.std(), rel=0.3)
    assert np.median(small) == pytest.approx(np.median(full), rel=0.05)


def test_compare_command(dbs, capsys):
    import os

    assert compare_main([os.path.dirname(dbs["a"]), dbs["slow"], "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "TTFT (ms) p99" in out and "changed" in out and "+100.0%" in out
    assert "TTFT p50:" in out.split("Changed (")[1] and "B slower" in out
    code = "import sys, analysis.cli as c; sys.exit(c.compare_main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, dbs["a"], "/nonexistent/run"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_change_below_the_threshold_is_noise_and_a_small_run_gets_no_p99_verdict(tmp_path):
    n = 600
    ttft = _quantiles(n, 0.1, 0.05)  # a narrow spread: a 4% shift is well outside the interval
    latency = ttft + _quantiles(n, 1.0, 0.05)[::-1]
    order = np.random.default_rng(5).permutation(n)  # recorded in no particular order, as a run's are
    a = analysis.load(_db(tmp_path / "a", ttft, latency, order=order))
    near = analysis.load(_db(tmp_path / "near", ttft * 1.04, latency * 1.04, order=order))  # 4% slower: below 5%
    strict = _by_key(analysis.compare_runs(a, near, n_resamples=1000, seed=2, threshold=0))
    default = _by_key(analysis.compare_runs(a, near, n_resamples=1000, seed=2))
    r = strict[("TTFT (ms)", "p50")]
    assert r["CI low"] > 0 and r["Significant"] is True and r["Verdict"] == "changed"
    r = default[("TTFT (ms)", "p50")]
    assert r["CI low"] > 0 and r["Significant"] is False and r["Verdict"] == "within noise"

    few = analysis.load(_db(tmp_path / "few", ttft[order[:60]] * 3, latency[order[:60]] * 3))  # 60, far slower
    rows = _by_key(analysis.compare_runs(a, few, n_resamples=1000, seed=2))
    assert rows[("TTFT (ms)", "p50")]["Significant"] is True  # 60 values are plenty for a median
    p99 = rows[("TTFT (ms)", "p99")]
    assert p99["Significant"] is None and p99["Verdict"].startswith("too few samples")
    assert (p99["n A"], p99["n B"]) == (n, 60)
    text = format_comparison(list(rows.values()), "a", "few", 1000, 2)
    assert "No verdict, too few samples: TTFT p99 (A 600, B 60 values; needs 500)" in text
    with pytest.raises(ValueError):
        analysis.compare_runs(a, few, threshold=-1)


def test_blocks_of_consecutive_values_widen_the_interval_of_clustered_data():
    """A stall slows a stretch of requests at once: resampling one by one
    understates how much the p50 could move; blocks do not."""
    rng = np.random.default_rng(11)
    x = rng.normal(20.0, 1.0, 2000)
    x[400:700] += 15.0  # one slow stretch of 300 consecutive requests
    plain = bootstrap_quantiles(x, ["50%"], 2000, np.random.default_rng(1), block=1)[:, 0]
    blocks = bootstrap_quantiles(x, ["50%"], 2000, np.random.default_rng(1))[:, 0]
    assert blocks.std() > 1.5 * plain.std()
    shuffled = rng.permutation(x)  # the same values without the clustering: blocks change nothing
    a = bootstrap_quantiles(shuffled, ["50%"], 2000, np.random.default_rng(1), block=1)[:, 0]
    b = bootstrap_quantiles(shuffled, ["50%"], 2000, np.random.default_rng(1))[:, 0]
    assert b.std() == pytest.approx(a.std(), rel=0.25)


def test_order_statistic_intervals_cover_the_true_quantile():
    """Exact binomial ranks: over many samples the 95% interval holds the true
    median and p99 about 95% of the time (or more), and is unbounded when too few."""
    rng = np.random.default_rng(3)
    hits = np.zeros(2)
    for _ in range(400):
        x = rng.exponential(1.0, 700)
        for i, (lo, hi) in enumerate(order_statistic_intervals(x, ["50%", "99%"], 0.95)):
            hits[i] += lo <= [math.log(2), math.log(100)][i] <= hi
    assert (hits / 400 >= 0.92).all(), hits
    (lo, hi), = order_statistic_intervals(rng.exponential(1.0, 60), ["99%"], 0.95)
    assert math.isfinite(lo) and hi == math.inf
