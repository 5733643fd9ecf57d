"""Compare two runs: key metrics side by side, with a bootstrap 95% confidence
interval for the difference (B − A) of the p50 and p99.

The bootstrap resamples each run's values with replacement, in blocks of
consecutive values (seeded, vectorised in batches; see `bootstrap_quantiles`).
Above `max_n` values (ITL has one per output event) each resample draws
`max_n` of them and the spread is scaled back by
sqrt(max_n / n) (the m-out-of-n bootstrap; percentiles shrink as 1/sqrt(n)),
which keeps a 25-million-gap comparison to a few seconds.

The interval reported is the wider of that and a distribution-free one:
each run's 97.5% order-statistic interval of the quantile (binomial ranks),
their difference then covering B − A at least 95% of the time (Bonferroni).
The bootstrap alone is too sure of a p99 resting on a handful of values:
two runs of one load at the same time against the mock, on a busy machine,
got p99 TTFTs of 69 and 83 ms with a bootstrap interval of +3 to +18 ms.

A p50/p99 counts as changed when the interval excludes 0 *and* the change is
at least `threshold` percent.  The threshold is the noise floor: two runs of
the same load on the same machine differ by a few percent (measured against
the mock: p50 TTFT moved 2-3% between identical runs of 520 requests, with
intervals that excluded 0), so a bare interval would call every rerun a
change.  And a quantile needs data beyond it: with fewer than `MIN_TAIL`
values expected above it in either run (p99 of fewer than 500 requests) its
bootstrap interval is not trustworthy (the p99 of 60 values is their maximum)
and no verdict is given.

A mean gets an interval too, from batch means (consecutive values in batches
as long as the bootstrap's blocks, the spread of the batch means giving the
standard error; normal approximation), and a verdict by the same rule.  Every
metric's change is reported with its interval, changed or not: the
throughputs, one figure per run, have none and say so.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from analysis.formatting import approx
from analysis.frames import Frames
from analysis.metrics import metric_samples, summary
from analysis.stats import nearest_rank, rank_index
from analysis.tables import format_table

COMPARED = ("TTFT (ms)", "TPOT (ms)", "ITL (ms)", "Latency (s)")
THROUGHPUTS = ("Req Throughput (req/s)", "Output Throughput (tok/s)", "Total Throughput (tok/s)")
QUANTILES = ("50%", "99%")
MAX_N = 20_000
MAX_BLOCK = 64
MIN_TAIL = 5  # values expected beyond a quantile before its interval is trusted
MIN_MEAN_N = 10  # values per run before a mean's interval is trusted
MIN_BATCHES = 10  # batch means needed for their spread; fewer: the values' own spread
Z_95 = 1.959963984540054
DEFAULT_THRESHOLD = 5.0  # percent: smaller changes are run-to-run noise
_BATCH_CELLS = 4_000_000  # resample values held at once (32 MB of float64)


def block_length(m: int) -> int:
    """Values per bootstrap block: about sqrt(m), at most MAX_BLOCK."""
    return int(min(MAX_BLOCK, max(1, round(math.sqrt(m)))))


def bootstrap_quantiles(values: np.ndarray, labels: Sequence[str], n_resamples: int,
                        rng: np.random.Generator, max_n: int = MAX_N, block: int | None = None) -> np.ndarray:
    """(n_resamples, len(labels)) nearest-rank quantiles of bootstrap resamples.

    `values` in the order they were recorded.  A resample is made of runs of
    `block` consecutive values (default `block_length`; circular, so the
    first and last values are drawn as often as the rest): requests close in
    time share the client's and the server's state of the moment (a stall, a
    batch), and drawing them one by one would make the interval too narrow.
    (Against the mock on a busy machine, two runs of one load at the same
    time got a p50 TTFT interval that excluded 0 in 3 of 12 pairs one by one,
    in none with blocks.)  block=1 is the plain bootstrap."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    out = np.empty((n_resamples, len(labels)))
    if n == 0:
        out.fill(np.nan)
        return out
    m = min(n, max_n)
    size = min(n, max(1, int(block) if block is not None else block_length(m)))
    n_blocks = math.ceil(m / size)
    steps = np.arange(size)
    ks = [rank_index(label, m) for label in labels]
    kth = sorted(set(ks))
    batch = max(1, _BATCH_CELLS // (n_blocks * size))
    for s in range(0, n_resamples, batch):
        b = min(batch, n_resamples - s)
        if size == 1:
            idx = rng.integers(0, n, size=(b, m))
        else:
            starts = rng.integers(0, n, size=(b, n_blocks, 1))
            idx = (starts + steps).reshape(b, n_blocks * size)[:, :m]
            idx %= n
        sample = x[idx]
        del idx
        sample.partition(kth, axis=1)
        out[s:s + b] = sample[:, ks]
    if m < n:
        point = np.asarray(nearest_rank(x, labels))
        out = point + (out - point) * math.sqrt(m / n)
    return out


def mean_standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of values recorded in order: from the
    means of consecutive batches of `block_length` values (neighbours in time
    are alike, as for the bootstrap's blocks), or from the values themselves
    when that gives fewer than MIN_BATCHES batches."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 2:
        return math.nan
    size = block_length(n)
    k = n // size
    if size > 1 and k >= MIN_BATCHES:
        return float(x[:k * size].reshape(k, size).mean(axis=1).std(ddof=1) / math.sqrt(k))
    return float(x.std(ddof=1) / math.sqrt(n))


def _binom_ppf(prob: float, n: int, p: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= prob (exact, from the
    log-pmf within 12 standard deviations of the mean)."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    mean, sd = n * p, math.sqrt(n * p * (1.0 - p))
    lo, hi = max(0, int(mean - 12 * sd) - 2), min(n, int(mean + 12 * sd) + 2)
    ks = np.arange(lo, hi + 1)
    lg = np.frompyfunc(math.lgamma, 1, 1)
    logpmf = (math.lgamma(n + 1) - lg(ks + 1).astype(float) - lg(n - ks + 1).astype(float)
              + ks * math.log(p) + (n - ks) * math.log1p(-p))
    pmf = np.exp(logpmf - logpmf.max())
    cdf = np.cumsum(pmf) / pmf.sum()
    return int(ks[min(int(np.searchsorted(cdf, prob - 1e-12)), ks.size - 1)])


def order_statistic_intervals(values: np.ndarray, labels: Sequence[str], level: float) -> list[tuple[float, float]]:
    """Distribution-free intervals for quantiles of the population the values
    were drawn from: two order statistics each, their ranks from the binomial
    distribution (exact for independent draws; an end is infinite when the
    values are too few to bound it).  One partition for all the labels."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    tail = (1.0 - level) / 2.0
    ranks = []
    for label in labels:
        p = float(label.rstrip("%")) / 100.0
        # 1-based ranks: P(Bin <= r - 1) < tail and P(Bin <= t - 1) >= 1 - tail
        ranks.append((_binom_ppf(tail, n, p), _binom_ppf(1.0 - tail, n, p) + 1) if n else (0, 1))
    inside = sorted({k - 1 for pair in ranks for k in pair if 1 <= k <= n})
    part = np.partition(x, inside) if inside else x
    return [(float(part[r - 1]) if 1 <= r <= n else -math.inf, float(part[t - 1]) if 1 <= t <= n else math.inf)
            for r, t in ranks]


def min_samples(label: str) -> int:
    """Values a run needs for a verdict on this quantile: MIN_TAIL expected
    beyond it (10 for the p50, 500 for the p99)."""
    q = float(label.rstrip("%")) / 100.0
    return math.ceil(MIN_TAIL / min(q, 1.0 - q) - 1e-9)


def compare_runs(a: Frames, b: Frames, n_resamples: int = 2000, seed: int = 0, max_n: int = MAX_N,
                 threshold: float = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    """Rows of {Metric, Stat, A, B, Change (%), CI low, CI high, Significant,
    Verdict, n A, n B}.

    Change is (B − A) / A.  For p50/p99 the CI is the bootstrap 95% interval
    of B − A, for the mean the batch-means one; Significant is True when it
    excludes 0 and |Change| is at least `threshold` percent, False when not,
    None without a verdict (no data, or too few values: see `min_samples`,
    MIN_MEAN_N; the row's Need says how many).  Verdict says which
    in words: "changed", "within noise", "not significant", "too few samples".
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be a percentage >= 0, not {threshold!r}")
    rng = np.random.default_rng(seed)
    sa, sb = metric_samples(a), metric_samples(b)
    rows: list[dict[str, Any]] = []
    for metric in COMPARED:
        xa, xb = _finite(sa[metric]), _finite(sb[metric])
        row = _row(metric, "mean", _mean(xa), _mean(xb), xa.size, xb.size)
        if xa.size and xb.size:
            half = Z_95 * math.hypot(mean_standard_error(xa), mean_standard_error(xb))
            diff_mean = row["B"] - row["A"]
            row.update({"CI low": diff_mean - half, "CI high": diff_mean + half})
            _judge(row, MIN_MEAN_N, "mean", threshold)
        rows.append(row)
        pa, pb = nearest_rank(xa, QUANTILES), nearest_rank(xb, QUANTILES)
        if xa.size and xb.size:
            diff = (bootstrap_quantiles(xb, QUANTILES, n_resamples, rng, max_n)
                    - bootstrap_quantiles(xa, QUANTILES, n_resamples, rng, max_n))
            lo, hi = np.percentile(diff, [2.5, 97.5], axis=0)
            # never narrower than the distribution-free interval
            exact_a, exact_b = (order_statistic_intervals(x, QUANTILES, 0.975) for x in (xa, xb))
            for i, ((a_lo, a_hi), (b_lo, b_hi)) in enumerate(zip(exact_a, exact_b)):
                lo[i], hi[i] = min(lo[i], b_lo - a_hi), max(hi[i], b_hi - a_lo)
        for i, q in enumerate(QUANTILES):
            row = _row(metric, "p" + q.rstrip("%"), pa[i], pb[i], xa.size, xb.size)
            if xa.size and xb.size:
                row.update({"CI low": float(lo[i]), "CI high": float(hi[i])})
                _judge(row, min_samples(q), "p" + q.rstrip("%"), threshold)
            rows.append(row)
    suma, sumb = summary(a), summary(b)
    for key in THROUGHPUTS:
        rows.append(_row(key, "", suma.get(key), sumb.get(key), suma.get("Success Requests"),
                         sumb.get("Success Requests")))
    return rows


def _judge(row: dict[str, Any], need: int, stat: str, threshold: float) -> None:
    """Significant and Verdict of a row with its interval (see `compare_runs`)."""
    row["Need"] = need
    lo, hi = row["CI low"], row["CI high"]
    if min(row["n A"], row["n B"]) < need or math.isnan(lo) or math.isnan(hi):
        row["Verdict"] = f"too few samples ({stat} needs {need:,} per run)"
        return
    excludes_zero = bool(lo > 0 or hi < 0)
    big = abs(row["Change (%)"]) >= threshold if not math.isnan(row["Change (%)"]) else excludes_zero
    row["Significant"] = excludes_zero and big
    row["Verdict"] = "changed" if row["Significant"] else "within noise" if excludes_zero else "not significant"


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _row(metric: str, stat: str, a: Any, b: Any, n_a: Any = None, n_b: Any = None) -> dict[str, Any]:
    a = math.nan if a is None else float(a)
    b = math.nan if b is None else float(b)
    change = (b - a) / a * 100.0 if a and not math.isnan(a) and not math.isnan(b) else math.nan
    return {"Metric": metric, "Stat": stat, "A": a, "B": b, "Change (%)": change,
            "CI low": math.nan, "CI high": math.nan, "Significant": None, "Verdict": "",
            "n A": n_a, "n B": n_b}


def _unit(metric: str) -> str:
    return metric[metric.rfind("(") + 1:-1] if metric.endswith(")") else ""


def _name(metric: str) -> str:
    return metric[:metric.rfind(" (")] if metric.endswith(")") else metric


def load_warning(differences: Sequence[str], what: str = "A and B") -> str:
    """The loud first line of a comparison of runs not run alike (load, model, URL...)."""
    return (f"WARNING: {what} were run differently ({'; '.join(differences)}): every difference below may come "
            "from that. For a like-for-like comparison give runs of one load and target "
            "(two sweep folders are paired by load).")


def format_comparison(rows: Sequence[dict[str, Any]], a: str, b: str, n_resamples: int, seed: int,
                      threshold: float = DEFAULT_THRESHOLD, load_differences: Sequence[str] = ()) -> str:
    """The table, then in words: what changed and by how much, what did not,
    and what had too few values to tell; every change with its interval.
    `load_differences` (see `analysis.compare_loads`): when A and B ran at
    different loads, the first line says so, loudly."""
    table = []
    for r in rows:
        label = f"{r['Metric']} {r['Stat']}".strip()
        change = r["Change (%)"]
        ci = "" if math.isnan(r["CI low"]) else f"[{approx(r['CI low'], True)}, {approx(r['CI high'], True)}]"
        verdict = r.get("Verdict", "")
        if verdict.startswith("too few"):
            verdict = "too few samples"
        if not r["Stat"]:
            ci, verdict = "one figure per run", "no interval"
        table.append((label, approx(r["A"]), approx(r["B"]), "-" if math.isnan(change) else f"{change:+.1f}%", ci,
                      verdict))
    head = [load_warning(load_differences)] if load_differences else []
    head += [f"A: {a}", f"B: {b}",
             f"95% CI of B − A: p50/p99 by block bootstrap ({n_resamples} resamples, seed {seed}; never narrower "
             f"than the distribution-free interval), means by batch means; changed = the CI excludes 0 and "
             f"|change| >= {threshold:g}%"]
    out = head + [format_table(["Metric", "A", "B", "Change", "95% CI of B − A", "Verdict"], table,
                               align="lrrrrl")]

    changed = [r for r in rows if r.get("Significant") is True]
    same = [r for r in rows if r.get("Significant") is False]
    unsure = [r for r in rows if str(r.get("Verdict", "")).startswith("too few")]
    if changed:
        out.append(f"Changed ({len(changed)}):")
        for r in changed:
            unit = _unit(r["Metric"])
            direction = "slower" if r["B"] > r["A"] else "faster"
            out.append(f"  {_name(r['Metric'])} {r['Stat']}: {approx(r['A'])} -> {approx(r['B'])} {unit}, "
                       f"{r['Change (%)']:+.1f}% ({approx(r['B'] - r['A'], True)} {unit}; "
                       f"95% CI {approx(r['CI low'], True)} to {approx(r['CI high'], True)}): B {direction}")
    elif same:  # the latencies only: the throughputs are said below, changed or not
        out.append("Changed: no latency mean, p50 or p99 moved beyond the noise.")
    else:
        out.append("Changed: no verdict (no latency figure had enough values in both runs).")
    if same:
        out.append("No significant change: " + ", ".join(
            f"{_name(r['Metric'])} {r['Stat']} ({r['Change (%)']:+.1f}%, 95% CI "
            f"{approx(r['CI low'], True)} to {approx(r['CI high'], True)} {_unit(r['Metric'])}"
            + (", within noise" if r["Verdict"] == "within noise" else "") + ")" for r in same))
    if unsure:
        out.append("No verdict, too few samples: " + ", ".join(
            f"{_name(r['Metric'])} {r['Stat']} (A {r['n A']:,}, B {r['n B']:,} values; needs {r['Need']:,})"
            for r in unsure))
    thr = [r for r in rows if r["Stat"] == "" and not math.isnan(r["Change (%)"])]
    if thr:
        out.append("Throughput (one figure per run, no interval): " + ", ".join(
            f"{_name(r['Metric'])} {approx(r['A'])} -> {approx(r['B'])} {_unit(r['Metric'])} ({r['Change (%)']:+.1f}%)"
            for r in thr))
    return "\n".join(out)
