"""Metrics as pure functions of `Frames` (DESIGN.md "Metric definitions").

Warm-up rows are left out of everything; failed rows count in the request
totals and in `Errors`, never in a latency or token figure.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.loader import Frames
from engine.arguments import redact_url

PERCENTILE_LABELS = ("min", "1%", "5%", "10%", "25%", "50%", "75%", "90%", "95%", "99%", "99.9%", "max")

# Summary keys: evalscope perf 1.14's first, in its order, then ours.
EVALSCOPE_KEYS = (
    "Test Duration (s)", "Concurrency", "Request Rate (req/s)", "Total Requests", "Success Requests",
    "Failed Requests", "Req Throughput (req/s)", "Avg Latency (s)", "Avg Input Tokens",
    "Avg Output Tokens", "Output Throughput (tok/s)", "Total Throughput (tok/s)", "Avg TTFT (ms)",
    "Avg TPOT (ms)", "Avg ITL (ms)",
)
TPOT_DEFINITIONS = {
    "Avg TPOT (ms)": "(latency - TTFT) / (output tokens - 1), requests with more than one output token",
    "Avg TPOT incl. TTFT (ms)": "latency / output tokens, requests with at least one output token",
}
# evalscope writes the --rate it was given, -1 meaning "no pacing"; we do the
# same in JSON (dashboards expect a number) and show it as INF on screen.
RATE_UNLIMITED = -1
CPU_WARN_FRACTION = 0.85
# Below this a worker's CPU/wall ratio is thread start-up, not load: a run of
# a couple of requests read "busy 104 % (cpu 0.0 s / wall 0.0 s)".
CPU_WARN_MIN_WALL_S = 1.0
LAG_WARN_MS = 100.0
RECONNECT_WARN_SHARE = 0.01  # warn when more requests than this met a connection the server had closed
NDIGITS = 4

# SLO: name in --slo -> (key in the dict, unit of the key, frame column, NaN passes)
_SLO_SPEC = {
    "ttft": ("ttft_ms", "ms", "ttft_ms", False),
    "tpot": ("tpot_ms", "ms", "tpot_ms", True),  # one-token replies have no TPOT
    "itl": ("itl_ms", "ms", "itl_mean_ms", True),  # mean ITL of the request
    "latency": ("latency_s", "s", "latency_s", False),
    "e2el": ("latency_s", "s", "latency_s", False),  # vLLM's name for latency
}
_SLO_KEYS = {spec[0]: spec for spec in _SLO_SPEC.values()}
_SLO_VALUE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", re.IGNORECASE)


# -- percentiles ---------------------------------------------------------------

def nearest_rank(values: Iterable[float] | np.ndarray, labels: Sequence[str] = PERCENTILE_LABELS) -> list[float]:
    """Nearest-rank percentiles: the value of rank ceil(p/100 * N) (1-based) of
    the sorted non-NaN values; `min`/`max` are exact; NaN when there are none.

    The rank is computed in exact arithmetic (99.9% of 1000 is rank 999, not
    1000 as float rounding would give).
    """
    a = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    nan = np.isnan(a)
    if nan.any():
        a = a[~nan]
    n = a.size
    if n == 0:
        return [math.nan] * len(labels)
    idx = [_rank_index(label, n) for label in labels]
    part = np.partition(a, sorted(set(idx)))  # a copy: the caller's array is left alone
    return [float(part[i]) for i in idx]


def _rank_index(label: str, n: int) -> int:
    if label == "min":
        return 0
    if label == "max":
        return n - 1
    p = Fraction(str(label).rstrip("%"))
    rank = math.ceil(p * n / 100)
    return min(max(rank, 1), n) - 1


def metric_samples(frames: Frames) -> dict[str, np.ndarray]:
    """The per-request (per-gap for ITL) values behind each percentile column,
    from successful measured rows.  TTFT and TPOT use the streamed rows when
    there are any (a non-streamed reply's TTFT is its whole latency), like
    evalscope.  Computed once per frames (see `Frames.cached`); treat the
    arrays as read-only."""
    return frames.cached("metric_samples", lambda: _metric_samples(frames))


def _metric_samples(frames: Frames) -> dict[str, np.ndarray]:
    req = frames.requests
    ok = frames.ok_mask()
    okdf = req.loc[ok]
    streamed = okdf["is_stream"].to_numpy() == 1
    decode_rows = okdf.loc[streamed] if streamed.any() else okdf
    return {
        "TTFT (ms)": decode_rows["ttft_ms"].to_numpy(dtype=float),
        "ITL (ms)": itl_values(frames),
        "TPOT (ms)": decode_rows["tpot_ms"].to_numpy(dtype=float),
        "Latency (s)": okdf["latency_s"].to_numpy(dtype=float),
        "Input tokens": okdf["prompt_tokens"].to_numpy(dtype=float),
        "Output tokens": okdf["completion_tokens"].to_numpy(dtype=float),
        "Output (tok/s)": okdf["output_tok_per_s"].to_numpy(dtype=float),
        "Total (tok/s)": okdf["total_tok_per_s"].to_numpy(dtype=float),
        "Schedule Lag (ms)": okdf["schedule_lag_ms"].to_numpy(dtype=float),
        "TPOT incl. TTFT (ms)": decode_rows["tpot_incl_ttft_ms"].to_numpy(dtype=float),
    }


def itl_values(frames: Frames) -> np.ndarray:
    """Every gap (ms) between consecutive output events of successful measured requests."""
    ev = frames.events
    if ev.empty:
        return np.empty(0)
    req_idx = ev["request"].to_numpy()
    gaps = ev["gap_ms"].to_numpy()
    ok = frames.ok_mask()
    if np.all(req_idx[1:] >= req_idx[:-1]):  # as loaded: grouped by request, so repeat beats a gather
        keep = np.repeat(ok, np.bincount(req_idx, minlength=ok.size))
    else:
        keep = ok[req_idx]
    keep &= ~np.isnan(gaps)
    return gaps[keep]


def percentiles(frames: Frames) -> pd.DataFrame:
    """The percentile table: a `Percentiles` column (min, 1%, ..., 99.9%, max)
    and one column per metric (evalscope's, then ours)."""
    table = {"Percentiles": list(PERCENTILE_LABELS)}
    for name, values in metric_samples(frames).items():
        table[name] = nearest_rank(values)
    return pd.DataFrame(table)


# -- errors ----------------------------------------------------------------------

_NORMALISERS = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "0x<addr>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\[[0-9a-f:]{3,}\](?::\d+)?", re.I), "<ip>"),
    # ids: a token of 8+ word characters holding both letters and digits
    (re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{8,}\b"), "<id>"),
)
_STATUS = re.compile(r"(\bHTTP(?:/[\d.]+)?\s+|\bstatus(?:[ _]code)?\s*[=:]?\s*)([1-5]\d\d)\b", re.I)
_NUMBER = re.compile(r"(?<![\w<])\d+(?:\.\d+)?")


def normalize_error(error: Any, status_code: Any = None, limit: int = 300) -> str:
    """One group name per kind of failure, Locust-style: ids, addresses and
    numbers are blanked so "HTTP 500: ... req 8f3a ..." variants group
    together, while HTTP status codes are kept."""
    text = "" if error is None or (isinstance(error, float) and math.isnan(error)) else str(error)
    text = " ".join(text.split())
    if not text:
        try:
            code = int(status_code)
        except (TypeError, ValueError):
            return "unknown error"
        return f"HTTP {code}"
    for pattern, repl in _NORMALISERS:
        text = pattern.sub(repl, text)
    kept: list[str] = []

    def _protect(m: re.Match) -> str:  # a private-use character holds its place
        kept.append(m.group(0))
        return chr(0xE000 + len(kept) - 1)

    text = _STATUS.sub(_protect, text)
    text = _NUMBER.sub("<n>", text)
    text = re.sub("[\ue000-\uf8ff]", lambda m: kept[ord(m.group(0)) - 0xE000], text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def error_counts(frames: Frames) -> dict[str, int]:
    """Failed measured requests by normalised reason, most frequent first."""
    req = frames.requests
    failed = req.loc[frames.measured_mask() & (req["success"].to_numpy() != 1)]
    if failed.empty:
        return {}
    counts: dict[str, int] = {}
    pairs = pd.DataFrame({"e": failed["error"].astype(object), "s": failed["status_code"].astype(object)})
    for (error, status), n in pairs.value_counts(dropna=False, sort=False).items():
        reason = normalize_error(error, status)  # once per distinct message, not per row
        counts[reason] = counts.get(reason, 0) + int(n)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# -- SLO / goodput -------------------------------------------------------------

def parse_slo(text: str) -> dict[str, float]:
    """`ttft=200ms,tpot=50ms,latency=10s` -> {"ttft_ms": 200.0, "tpot_ms": 50.0, "latency_s": 10.0}.

    Names: ttft, tpot, itl (a request's mean gap), latency (or e2el).  Every
    value needs a unit, ms or s.  Raises ValueError saying what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty SLO: give e.g. ttft=200ms,tpot=50ms,latency=10s")
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep:
            raise ValueError(f"bad SLO item {part!r}: expected name=value, e.g. ttft=200ms")
        if name not in _SLO_SPEC:
            raise ValueError(f"unknown SLO {name!r}: use {', '.join(sorted(_SLO_SPEC))}")
        m = _SLO_VALUE.match(value)
        if not m:
            raise ValueError(f"bad SLO value {value.strip()!r} for {name}: "
                             "give a positive number with a unit, ms or s (e.g. 200ms, 0.2s)")
        number, unit = float(m.group(1)), m.group(2).lower()
        if number <= 0:
            raise ValueError(f"bad SLO value {value.strip()!r} for {name}: must be above 0")
        key, key_unit = _SLO_SPEC[name][0], _SLO_SPEC[name][1]
        seconds = number / 1000.0 if unit == "ms" else number
        converted = seconds * 1000.0 if key_unit == "ms" else seconds
        if key in out:
            raise ValueError(f"SLO {name} given twice")
        out[key] = round(converted, 9)
    if not out:
        raise ValueError("empty SLO: give e.g. ttft=200ms,tpot=50ms,latency=10s")
    return out


def _check_slo(slo: Mapping[str, float] | str | None) -> dict[str, float] | None:
    if slo is None:
        return None
    if isinstance(slo, str):
        return parse_slo(slo)
    out = {}
    for key, value in dict(slo).items():
        if key not in _SLO_KEYS:
            raise ValueError(f"unknown SLO key {key!r}: use {', '.join(sorted(_SLO_KEYS))} "
                             "(or pass the text form to parse_slo)")
        out[key] = float(value)
    return out or None


def slo_mask(frames: Frames, slo: Mapping[str, float] | str) -> np.ndarray:
    """True for successful measured requests that meet every SLO."""
    slo = _check_slo(slo) or {}
    req = frames.requests
    meets = frames.ok_mask().copy()
    for key, limit in slo.items():
        _, _, column, nan_passes = _SLO_KEYS[key]
        values = req[column].to_numpy(dtype=float)
        ok = values <= limit
        if nan_passes:
            ok |= np.isnan(values)
        meets &= ok
    return meets


# -- summary --------------------------------------------------------------------

def _r(value: Any, ndigits: int = NDIGITS) -> float | None:
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, ndigits)


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def duration_s(frames: Frames) -> float:
    """First send -> last completion of the measured requests (NaN if none)."""
    req = frames.requests.loc[frames.measured_mask()]
    start = req["start_time"].to_numpy(dtype=float)
    end = req["completed_time"].to_numpy(dtype=float)
    end = np.where(np.isnan(end), start + req["latency"].to_numpy(dtype=float), end)
    if not np.isfinite(start).any() or not np.isfinite(end).any():
        return math.nan
    return float(np.nanmax(end) - np.nanmin(start))


def load_settings(run: Mapping[str, Any]) -> tuple[Any, Any]:
    """(Concurrency, Request Rate) as evalscope writes them, from the run's args."""
    args = run.get("args") or {}
    concurrency = args.get("parallel")
    if "rate" not in args:
        rate = None
    else:
        rate = args.get("rate")
        rate = RATE_UNLIMITED if rate is None or (isinstance(rate, (int, float)) and rate <= 0) else rate
    return concurrency, rate


def summary(frames: Frames, slo: Mapping[str, float] | str | None = None) -> dict[str, Any]:
    """The benchmark summary: evalscope perf 1.14's keys, then ours.

    NaN (a metric with no sample) is None, so JSON has null.
    """
    slo = _check_slo(slo)
    req = frames.requests
    measured = frames.measured_mask()
    ok = frames.ok_mask()
    okdf = req.loc[ok]
    samples = metric_samples(frames)
    duration = duration_s(frames)
    n_total, n_ok = int(measured.sum()), int(ok.sum())
    per_s = (lambda x: x / duration) if duration and duration > 0 else (lambda x: math.nan)
    prompt = okdf["prompt_tokens"].to_numpy(dtype=float)
    completion = okdf["completion_tokens"].to_numpy(dtype=float)
    concurrency, rate = load_settings(frames.run)

    out: dict[str, Any] = {
        "Test Duration (s)": _r(duration),
        "Concurrency": concurrency,
        "Request Rate (req/s)": rate,
        "Total Requests": n_total,
        "Success Requests": n_ok,
        "Failed Requests": n_total - n_ok,
        "Req Throughput (req/s)": _r(per_s(n_ok)),
        "Avg Latency (s)": _r(_mean(samples["Latency (s)"])),
        "Avg Input Tokens": _r(_mean(prompt)),
        "Avg Output Tokens": _r(_mean(completion)),
        "Output Throughput (tok/s)": _r(per_s(np.nansum(completion))),
        "Total Throughput (tok/s)": _r(per_s(np.nansum(prompt) + np.nansum(completion))),
        "Avg TTFT (ms)": _r(_mean(samples["TTFT (ms)"])),
        "Avg TPOT (ms)": _r(_mean(samples["TPOT (ms)"])),
        "Avg ITL (ms)": _r(_mean(samples["ITL (ms)"])),
        "Avg TPOT incl. TTFT (ms)": _r(_mean(samples["TPOT incl. TTFT (ms)"])),
    }
    if slo:
        meets = slo_mask(frames, slo)
        out["Goodput (req/s)"] = _r(per_s(int(meets.sum())))
        out["SLO Attainment (%)"] = _r(100.0 * meets.sum() / n_total) if n_total else None
    else:
        out["Goodput (req/s)"] = None
        out["SLO Attainment (%)"] = None
    out["SLO"] = slo
    lag = samples["Schedule Lag (ms)"]
    out["Avg Schedule Lag (ms)"] = _r(_mean(lag))
    out["P99 Schedule Lag (ms)"] = _r(nearest_rank(lag, ["99%"])[0])
    out["Warmup Requests"] = int((req["is_warmup"].to_numpy() != 0).sum())
    skipped = sum(1 for p in frames.problems if p.startswith("rowid "))
    out["Skipped Rows"] = skipped
    reconnects = int(pd.to_numeric(req.loc[measured, "reconnects"], errors="coerce").fillna(0).sum())
    out["Reconnects"] = reconnects
    out["Errors"] = error_counts(frames)
    max_cpu, warnings = _client_health(frames)
    out["Max Worker CPU (%)"] = _r(max_cpu, 1)
    if skipped:
        warnings.append(f"{skipped} row(s) could not be decoded and were left out "
                        f"(first: {frames.problems[0]})")
    p99_lag = out["P99 Schedule Lag (ms)"]
    if p99_lag is not None and p99_lag > LAG_WARN_MS:
        warnings.append(f"p99 schedule lag is {p99_lag:.0f} ms: requests left later than the "
                        "schedule meant (client or --parallel too small for the rate)")
    if n_total and reconnects > RECONNECT_WARN_SHARE * n_total:
        warnings.append(f"the server closed kept-alive connections under {reconnects} of {n_total} requests "
                        f"({100.0 * reconnects / n_total:.1f} %): each was sent again on a new connection "
                        "(see the reconnects column); a server dropping connections is worth a look")
    out.update(tested(frames))
    warnings += token_warnings(okdf, (frames.run.get("args") or {}).get("tokenizer_path"))
    status = frames.run.get("status")
    if status and status != "completed":
        warnings.append(f"run status is {status!r}: the figures cover what was recorded")
    out["Warnings"] = warnings
    out["Definitions"] = dict(TPOT_DEFINITIONS)
    nodes = node_rows(frames)
    if nodes:  # runs whose rows name the node that sent them (--backend ray)
        out[NODES_KEY] = nodes
    return out


def tested(frames: Frames) -> dict[str, Any]:
    """What was benchmarked, and when: the URL (without credentials), the
    model and the run's start as ISO 8601 UTC (None when not recorded)."""
    args = frames.run.get("args") or {}
    url = args.get("url")
    start = frames.run.get("start_time")
    if start is None and not frames.requests.empty:
        start = np.nanmin(frames.requests["start_time"].to_numpy(dtype=float))
    try:
        date = _dt.datetime.fromtimestamp(float(start), _dt.timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        date = None
    return {"URL": redact_url(url) if isinstance(url, str) and url else None, "Model": args.get("model") or None,
            "Date": date}


def token_warnings(okdf: pd.DataFrame, tokenizer_path: Any = None) -> list[str]:
    """Token counts the server did not give: output counted as events (a
    server sending several tokens per event makes them too few and TPOT too
    large), input tokens unknown.  With the share of successful requests."""
    n = len(okdf)
    if not n:
        return []
    out = []
    if "token_source" in okdf.columns:
        events = int((okdf["token_source"] == "events").sum())
        if events:
            out.append(f"output tokens of {_share(events, n)} were counted as output events (token_source "
                       "'events'): no usage in the replies and no --tokenizer-path. A server that sends several "
                       "tokens per event makes output tokens and throughput too low and TPOT too high; ask for "
                       "usage (OpenAI: stream_options.include_usage) or pass --tokenizer-path")
    unknown = int(np.isnan(okdf["prompt_tokens"].to_numpy(dtype=float)).sum())
    if unknown:
        why = "no usage in the replies" if tokenizer_path else "no usage and no tokenizer"
        out.append(f"{why}: input tokens unknown" + ("" if unknown == n else f" for {_share(unknown, n)}")
                   + " (Avg Input Tokens and Total Throughput count only known input tokens)")
    return out


def _share(k: int, n: int) -> str:
    return f"{k} of {n} successful requests ({100.0 * k / n:.1f} %)"


# -- load-generator nodes (--backend ray) ------------------------------------------

NODES_KEY = "Load Generator Nodes"
NODE_COLUMNS = ("Node", "Requests", "Failed", "Avg TTFT (ms)", "P50 TTFT (ms)", "P90 TTFT (ms)", "P99 TTFT (ms)")


def node_of(worker: Any) -> str | None:
    """The node in a row's `worker`: "10.0.0.5/w3" -> "10.0.0.5"; None for a
    local worker ("w3") or no worker."""
    if not isinstance(worker, str) or "/" not in worker:
        return None
    return worker.rsplit("/", 1)[0]


def node_rows(frames: Frames) -> list[dict[str, Any]]:
    """One row per load-generator node: its measured requests, failures and
    TTFT (as the TTFT percentiles count it), so a slow client node is
    visible.  Empty when no row names a node (the local backend)."""
    req = frames.requests
    if "worker" not in req.columns or req.empty:
        return []
    nodes = req["worker"].map(node_of)
    if nodes.isna().all():
        return []
    measured = frames.measured_mask()
    ok = frames.ok_mask()
    streamed = req["is_stream"].to_numpy() == 1
    ttft_rows = ok & streamed if (ok & streamed).any() else ok
    ttft = req["ttft_ms"].to_numpy(dtype=float)
    names = nodes.fillna("-").to_numpy(dtype=object)
    rows = []
    for node in sorted(set(names[measured]), key=str):
        mine = names == node
        values = ttft[mine & ttft_rows]
        p50, p90, p99 = nearest_rank(values, ["50%", "90%", "99%"])
        rows.append(dict(zip(NODE_COLUMNS, (node, int((mine & measured).sum()), int((mine & measured & ~ok).sum()),
                                            _r(_mean(values)), _r(p50), _r(p90), _r(p99)))))
    return rows


def _client_health(frames: Frames) -> tuple[float, list[str]]:
    warnings: list[str] = []
    max_cpu = math.nan
    for w in frames.run.get("workers") or []:
        try:
            cpu, wall = float(w.get("cpu_s")), float(w.get("wall_s"))
        except (TypeError, ValueError):
            continue
        if not wall > 0 or math.isnan(cpu):
            continue
        fraction = cpu / wall
        max_cpu = fraction * 100.0 if math.isnan(max_cpu) else max(max_cpu, fraction * 100.0)
        if fraction > CPU_WARN_FRACTION and wall >= CPU_WARN_MIN_WALL_S:
            warnings.append(
                f"worker {w.get('worker')} was busy {fraction:.0%} of the run "
                f"(cpu {cpu:.1f} s / wall {wall:.1f} s): latencies may include client-side delay"
            )
    return max_cpu, warnings


def summary_row(frames: Frames, summ: Mapping[str, Any] | None = None,
                pct: pd.DataFrame | None = None) -> dict[str, Any]:
    """One row of a sweep table: the load, the throughputs and the tail latencies."""
    summ = summ if summ is not None else summary(frames)
    pct = pct if pct is not None else percentiles(frames)
    at = pct.set_index("Percentiles")

    def p(col: str, label: str) -> float | None:
        return _r(at.at[label, col]) if col in at.columns else None

    return {
        "Run": frames.name,
        "Concurrency": summ["Concurrency"],
        "Request Rate (req/s)": summ["Request Rate (req/s)"],
        "Total Requests": summ["Total Requests"],
        "Failed Requests": summ["Failed Requests"],
        "Req Throughput (req/s)": summ["Req Throughput (req/s)"],
        "Output Throughput (tok/s)": summ["Output Throughput (tok/s)"],
        "Goodput (req/s)": summ.get("Goodput (req/s)"),
        "Avg TTFT (ms)": summ["Avg TTFT (ms)"],
        "P50 TTFT (ms)": p("TTFT (ms)", "50%"),
        "P99 TTFT (ms)": p("TTFT (ms)", "99%"),
        "Avg TPOT (ms)": summ["Avg TPOT (ms)"],
        "P50 TPOT (ms)": p("TPOT (ms)", "50%"),
        "P99 TPOT (ms)": p("TPOT (ms)", "99%"),
        "P50 ITL (ms)": p("ITL (ms)", "50%"),
        "P99 ITL (ms)": p("ITL (ms)", "99%"),
        "Avg Latency (s)": summ["Avg Latency (s)"],
        "P99 Latency (s)": p("Latency (s)", "99%"),
    }
