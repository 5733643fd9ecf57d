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
from analysis.compare import bootstrap_quantiles


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
    n = 300
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
    assert "TTFT (ms) p99" in out and "significant" in out and "+100.0%" in out
    code = "import sys, analysis.cli as c; sys.exit(c.compare_main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, dbs["a"], "/nonexistent/run"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
