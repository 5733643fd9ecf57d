"""Compare two runs: key metrics side by side, with a bootstrap 95% confidence
interval for the difference (B − A) of the p50 and p99.

The bootstrap resamples each run's values with replacement (seeded,
vectorised in batches).  Above `max_n` values (ITL has one per output event)
each resample draws `max_n` of them and the spread is scaled back by
sqrt(max_n / n) (the m-out-of-n bootstrap; percentiles shrink as 1/sqrt(n)),
which keeps a 25-million-gap comparison to a few seconds.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from analysis.loader import Frames
from analysis.metrics import _rank_index, metric_samples, nearest_rank, summary

COMPARED = ("TTFT (ms)", "TPOT (ms)", "ITL (ms)", "Latency (s)")
THROUGHPUTS = ("Req Throughput (req/s)", "Output Throughput (tok/s)", "Total Throughput (tok/s)")
QUANTILES = ("50%", "99%")
MAX_N = 20_000
_BATCH_CELLS = 4_000_000  # resample values held at once (32 MB of float64)


def bootstrap_quantiles(values: np.ndarray, labels: Sequence[str], n_resamples: int,
                        rng: np.random.Generator, max_n: int = MAX_N) -> np.ndarray:
    """(n_resamples, len(labels)) nearest-rank quantiles of bootstrap resamples."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    out = np.empty((n_resamples, len(labels)))
    if n == 0:
        out.fill(np.nan)
        return out
    m = min(n, max_n)
    ks = [_rank_index(label, m) for label in labels]
    kth = sorted(set(ks))
    batch = max(1, _BATCH_CELLS // m)
    for s in range(0, n_resamples, batch):
        b = min(batch, n_resamples - s)
        sample = x[rng.integers(0, n, size=(b, m))]
        sample.partition(kth, axis=1)
        out[s:s + b] = sample[:, ks]
    if m < n:
        point = np.asarray(nearest_rank(x, labels))
        out = point + (out - point) * math.sqrt(m / n)
    return out


def compare_runs(a: Frames, b: Frames, n_resamples: int = 2000, seed: int = 0, max_n: int = MAX_N) -> list[dict[str, Any]]:
    """Rows of {Metric, Stat, A, B, Change (%), CI low, CI high, Significant}.

    Change is (B − A) / A.  For p50/p99 the CI is the bootstrap 95% interval
    of B − A; Significant is True when it excludes 0 (None without data).
    """
    rng = np.random.default_rng(seed)
    sa, sb = metric_samples(a), metric_samples(b)
    rows: list[dict[str, Any]] = []
    for metric in COMPARED:
        xa, xb = _finite(sa[metric]), _finite(sb[metric])
        rows.append(_row(metric, "mean", _mean(xa), _mean(xb)))
        pa, pb = nearest_rank(xa, QUANTILES), nearest_rank(xb, QUANTILES)
        if xa.size and xb.size:
            diff = (bootstrap_quantiles(xb, QUANTILES, n_resamples, rng, max_n)
                    - bootstrap_quantiles(xa, QUANTILES, n_resamples, rng, max_n))
            lo, hi = np.percentile(diff, [2.5, 97.5], axis=0)
        else:
            lo = hi = [math.nan] * len(QUANTILES)
        for i, q in enumerate(QUANTILES):
            row = _row(metric, "p" + q.rstrip("%"), pa[i], pb[i])
            if xa.size and xb.size:
                row.update({"CI low": float(lo[i]), "CI high": float(hi[i]),
                            "Significant": bool(lo[i] > 0 or hi[i] < 0)})
            rows.append(row)
    suma, sumb = summary(a), summary(b)
    for key in THROUGHPUTS:
        rows.append(_row(key, "", suma.get(key), sumb.get(key)))
    return rows


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _row(metric: str, stat: str, a: Any, b: Any) -> dict[str, Any]:
    a = math.nan if a is None else float(a)
    b = math.nan if b is None else float(b)
    change = (b - a) / a * 100.0 if a and not math.isnan(a) and not math.isnan(b) else math.nan
    return {"Metric": metric, "Stat": stat, "A": a, "B": b, "Change (%)": change,
            "CI low": math.nan, "CI high": math.nan, "Significant": None}


def format_comparison(rows: Sequence[dict[str, Any]], a: str, b: str, n_resamples: int, seed: int) -> str:
    from analysis.report import format_table

    def num(v: float) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:,.3f}"

    table = []
    for r in rows:
        label = f"{r['Metric']} {r['Stat']}".strip()
        change = r["Change (%)"]
        ci = "" if math.isnan(r["CI low"]) else f"[{r['CI low']:+,.3f}, {r['CI high']:+,.3f}]"
        verdict = {True: "significant", False: "n.s.", None: ""}[r["Significant"]]
        table.append((label, num(r["A"]), num(r["B"]), "-" if math.isnan(change) else f"{change:+.1f}%", ci, verdict))
    head = [f"A: {a}", f"B: {b}", f"bootstrap: {n_resamples} resamples, seed {seed}; 95% CI of B − A "
            "for p50/p99, significant when it excludes 0"]
    return "\n".join(head + [format_table(["Metric", "A", "B", "Change", "95% CI of B − A", "Verdict"], table,
                                          align="lrrrrl")])
