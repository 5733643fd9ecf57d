"""The server's own metrics, from the database's `server_metrics` table alone:
the known names of each server family (analysis.server_families) made into a
common set over time, their summary, and the server's latency histograms
held against the client's measurements.

A database without the table (older runs, --no-server-metrics, a server
without /metrics) gives None everywhere: the reports are then as before.
"""
from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from analysis.formatting import rounded
from analysis.frames import Frames, start_end, streamed
from analysis.loader import connect_readonly
from analysis.metrics import metric_samples
from analysis.server_families import COMMON, FAMILIES, SHARES
from analysis.stats import nearest_rank

SERVER_KEY = "Server Metrics"  # the summary's key for this module's figures
LATENCY_KEY = "Server vs Client Latency"
QUANTILES = ("50%", "90%", "99%")
LATENCY_NOTE = ("Server vs client latency: the server's quantiles from its own histograms over the run (bucket "
                "counts at the last scrape minus the first, interpolated within a bucket as Prometheus' "
                "histogram_quantile does, so good to the bucket's width) beside the client's (nearest rank); "
                "Client - Server is how far the client's value lies outside the server's bucket, time outside the "
                "server's clock (network, queueing in front of it, the client); inside the bucket the two agree "
                "as far as the histogram can tell. "
                "The server's counts run from the last scrape before the first measured request (warm-up and ramp-up "
                "requests that ended before it are left out).")


def read_samples(db_path: str) -> pd.DataFrame:
    """Every stored sample: time (epoch s), name, labels (JSON text), value."""
    con = connect_readonly(db_path)
    try:
        return pd.read_sql_query("SELECT time, name, labels, value FROM server_metrics ORDER BY time", con)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError):  # no such table: a run without server metrics
        return pd.DataFrame(columns=["time", "name", "labels", "value"])
    finally:
        con.close()


def family_of(samples: pd.DataFrame) -> str | None:
    """The server family most of the metric names belong to."""
    names = pd.Series(samples["name"].unique(), dtype=object)
    counts = {family: int(names.str.startswith(prefix).sum()) for family, (prefix, _) in FAMILIES.items()}
    best = max(counts, key=counts.get) if counts else None
    return best if best is not None and counts[best] > 0 else None


def _series(samples: pd.DataFrame, name: str, how: str = "sum") -> pd.Series:
    """One metric per scrape, its series (label sets) joined by `how`."""
    rows = samples.loc[samples["name"] == name]
    if rows.empty:
        return pd.Series(dtype=float)
    return rows.groupby("time")["value"].agg(how).sort_index()


def _per_interval(values: pd.Series) -> pd.Series:
    """A counter's increase over each interval; NaN where it went down (a restart)."""
    delta = values.diff()
    return delta.where(delta >= 0)


def _source_series(samples: pd.DataFrame, source: tuple) -> tuple[pd.Series, float]:
    """(the value at each scrape, the run's overall value) of one source."""
    kind = source[0]
    if kind == "gauge":
        s = _series(samples, source[1], source[2])
        return s, float(s.mean()) if len(s) else math.nan
    if kind == "rate":
        s = _series(samples, source[1])
        if len(s) < 2:
            return pd.Series(dtype=float), math.nan
        dt = pd.Series(s.index, index=s.index).diff()
        span = s.index[-1] - s.index[0]
        return _per_interval(s) / dt, (s.iloc[-1] - s.iloc[0]) / span if span > 0 else math.nan
    num, den = _series(samples, source[1]), _series(samples, source[2])
    both = pd.concat([num.rename("num"), den.rename("den")], axis=1).dropna()
    if len(both) < 2:
        return pd.Series(dtype=float), math.nan
    dn, dd = _per_interval(both["num"]), _per_interval(both["den"])
    total_den = both["den"].iloc[-1] - both["den"].iloc[0]
    overall = (both["num"].iloc[-1] - both["num"].iloc[0]) / total_den if total_den > 0 else math.nan
    return (dn / dd.where(dd > 0)), overall


def timeline(samples: pd.DataFrame, family: str | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """The common set over time (index: scrape time, epoch s; a column per
    metric the server has) and each one's overall value for the run."""
    family = family or family_of(samples)
    if family is None:
        return pd.DataFrame(), {}
    table = FAMILIES[family][1]
    columns: dict[str, pd.Series] = {}
    overall: dict[str, float] = {}
    for key, _, _ in COMMON:
        for source in table.get(key, ()):
            s, whole = _source_series(samples, source)
            if s.notna().any():
                columns[key], overall[key] = s, whole
                break
    return pd.DataFrame(columns), overall


# -- histograms -------------------------------------------------------------------

def histogram_quantile(q: float, bounds: np.ndarray, cumulative: np.ndarray) -> float:
    """Prometheus' histogram_quantile: linear interpolation within the bucket
    holding rank q * total, from 0 below the first bound; the highest finite
    bound when that rank falls in the +Inf bucket.  `bounds` sorted, ending
    with +Inf; `cumulative` the counts at or below each bound."""
    b = rank_bucket(q, bounds, cumulative)
    if b is None:
        return math.nan
    if math.isinf(bounds[b]):
        return float(bounds[-2])
    start = 0.0 if b == 0 else float(bounds[b - 1])
    end = float(bounds[b])
    if b == 0 and end <= 0:
        return end
    rank = q * cumulative[-1]
    before = 0.0 if b == 0 else float(cumulative[b - 1])
    inside = float(cumulative[b]) - before
    return start + (end - start) * ((rank - before) / inside if inside > 0 else 1.0)


def rank_bucket(q: float, bounds: np.ndarray, cumulative: np.ndarray) -> int | None:
    """The index of the bucket holding rank q * total (None: no histogram)."""
    if len(bounds) < 2 or not math.isinf(bounds[-1]) or not cumulative[-1] > 0:
        return None
    b = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
    return min(b, len(bounds) - 1)


def bucket_deltas(samples: pd.DataFrame, base: str,
                  window: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The histogram `base` over the run: each bucket's count at the last scrape
    minus the first, summed over its series; None when it is not there, or
    went down (a restart).  With `window` (first send, last end of the
    measured requests), from the last scrape at or before its start, so
    warm-up and ramp-up requests that ended before it are not counted."""
    rows = samples.loc[samples["name"] == base + "_bucket"]
    if rows.empty or rows["time"].nunique() < 2:
        return None
    le = rows["labels"].map(lambda text: json.loads(text).get("le"))
    rows = rows.assign(le=pd.to_numeric(le.replace({"+Inf": "inf"}), errors="coerce")).dropna(subset=["le"])
    first, last = rows["time"].min(), rows["time"].max()
    if window is not None:
        before = rows.loc[rows["time"] <= window[0], "time"]
        first = before.max() if len(before) else first
    if not last > first:
        return None
    at_first = rows.loc[rows["time"] == first].groupby("le")["value"].sum()
    at_last = rows.loc[rows["time"] == last].groupby("le")["value"].sum()
    delta = (at_last - at_first.reindex(at_last.index).fillna(0.0)).sort_index()
    if (delta < 0).any():  # the server restarted during the run: its counts began again
        return None
    return delta.index.to_numpy(dtype=float), delta.to_numpy(dtype=float)


def latency_rows(samples: pd.DataFrame, family: str | None, frames: Frames) -> list[dict[str, Any]]:
    """The server's TTFT / end-to-end quantiles over the run beside the
    client's (nearest rank of the successful measured requests) and the
    difference: what the client saw beyond what the server reports (network,
    queueing in front of the server, the client itself)."""
    if family is None:
        return []
    table = FAMILIES[family][1]
    client = metric_samples(frames)
    out = []
    histograms = [("e2e_histogram", "Latency (s)", 1.0)]
    if streamed(frames):  # unstreamed, the client's "TTFT" is the whole latency: no first token to compare
        histograms.insert(0, ("ttft_histogram", "TTFT (ms)", 1000.0))
    for key, column, scale in histograms:
        base = table.get(key)
        hist = bucket_deltas(samples, base, _load_window(frames)) if base else None
        if hist is None or not hist[1][-1] > 0:
            continue
        ours = nearest_rank(client[column], QUANTILES)
        for label, mine in zip(QUANTILES, ours):
            q = float(label.rstrip("%")) / 100
            theirs = histogram_quantile(q, *hist) * scale
            bucket = _bucket(hist[0], rank_bucket(q, *hist), scale)
            out.append({"Metric": column, "Percentile": label, "Server": rounded(theirs),
                        "Client": rounded(mine), "Client - Server": _beyond(mine, bucket),
                        "Bucket": "-" if bucket is None else f"{bucket[0]:g}-{bucket[1]:g}"})
    return out


def _bucket(bounds: np.ndarray, b: int | None, scale: float) -> tuple[float, float] | None:
    """Bucket `b`'s (low, high], scaled: the server quantile's resolution
    (high is inf for the +Inf bucket, whose quantile reads as its low end)."""
    if b is None:
        return None
    return (0.0 if b == 0 else bounds[b - 1] * scale), bounds[b] * scale


def _load_window(frames: Frames) -> tuple[float, float] | None:
    measured = frames.requests.loc[frames.measured_mask()]
    start, end = start_end(measured)
    if not np.isfinite(start).any() or not np.isfinite(end).any():
        return None
    return float(np.nanmin(start)), float(np.nanmax(end))


def _beyond(client: float, bucket: tuple[float, float] | None) -> Any:
    """How far the client's quantile lies outside the server's bucket: the
    part of the difference the histogram can vouch for.  Inside the bucket
    the two agree as far as the server's resolution can tell (a number there
    would only measure the interpolation)."""
    if bucket is None or math.isnan(client):
        return "-"
    low, high = bucket
    if low <= client <= high:
        return "within bucket"
    return rounded(client - (high if client > high else low))


# -- the summary ---------------------------------------------------------------

def server_summary(frames: Frames, samples: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The summary's server figures: mean and max of each common metric over
    the scrapes during the load (a rate or ratio: over the intervals ending
    in it), the run's prefix-hit and spec-decode acceptance rates, and the
    server-vs-client latency rows; None without server metrics."""
    samples = read_samples(frames.path) if samples is None else samples
    if samples.empty:
        return None
    family = family_of(samples)
    series, overall = timeline(samples, family)
    series = _during_load(series, frames)
    out: dict[str, Any] = {"Server": family or "unknown", "Scrapes": int(samples["time"].nunique()),
                           "Metric Names": int(samples["name"].nunique())}
    for key, label, unit in COMMON:
        if key not in series:
            continue
        values = series[key].to_numpy(dtype=float)
        factor = 100.0 if key in SHARES else 1.0
        suffix = f" ({unit})" if unit else ""
        out[f"Mean {label}{suffix}"] = rounded(np.nanmean(values) * factor)
        out[f"Max {label}{suffix}"] = rounded(np.nanmax(values) * factor)
        if key in ("prefix_hit_rate", "spec_accept_rate"):
            out[f"{label} over the run{suffix}"] = rounded(overall[key] * factor)
    return {SERVER_KEY: out, LATENCY_KEY: latency_rows(samples, family, frames)}


def _during_load(series: pd.DataFrame, frames: Frames) -> pd.DataFrame:
    """The scrapes between the first measured send and the last end: the
    idle scrapes just before and after the load would pull every mean down."""
    window = _load_window(frames)
    if series.empty or window is None:
        return series
    inside = series.loc[(series.index >= window[0]) & (series.index <= window[1])]
    return inside if len(inside) else series


def sweep_columns(server: dict[str, Any] | None) -> dict[str, Any]:
    """The sweep table's server columns: the means and maxima."""
    if not server:
        return {}
    return {f"Server {k}": v for k, v in server[SERVER_KEY].items() if k.startswith(("Mean ", "Max "))}
