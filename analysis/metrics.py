"""Metrics as pure functions of `Frames` (DESIGN.md "Metric definitions").

Warm-up rows are left out of everything; failed rows count in the request
totals and in `Errors`, never in a latency or token figure.
"""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

# normalize_error and parse_slo are imported from here by callers (engine.cli, tests) too
from analysis.errors import error_counts, normalize_error  # noqa: F401
from analysis.formatting import RATE_UNLIMITED, rounded
from analysis.frames import Frames, start_end
from analysis.nodes import NODES_KEY, node_rows
from analysis.slo import check_slo, parse_slo, slo_mask  # noqa: F401
from analysis.stats import PERCENTILE_LABELS, nan_mean, nearest_rank
from analysis import token_itl
from engine.arguments import redact_url
from engine.store import RAMP_UP

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
CPU_WARN_FRACTION = 0.85
# Below this a worker's CPU/wall ratio is thread start-up, not load: a run of
# a couple of requests read "busy 104 % (cpu 0.0 s / wall 0.0 s)".
CPU_WARN_MIN_WALL_S = 1.0
LAG_WARN_MS = 100.0
RECONNECT_WARN_SHARE = 0.01  # warn when more requests than this met a connection the server had closed


# -- percentiles ---------------------------------------------------------------

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
    samples = {
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
    # reasoning models only: time to first answer token, where a row has one
    ttfat = decode_rows["ttfat_ms"].to_numpy(dtype=float)
    if np.isfinite(ttfat).any():
        samples["TTFAT (ms)"] = ttfat
    return samples


# What an endpoint that generates no tokens (embeddings, rerank) has no value for.
GENERATION_METRICS = ("TTFT (ms)", "ITL (ms)", "TPOT (ms)", "TPOT incl. TTFT (ms)", "Output tokens",
                      "Output (tok/s)")


def generates_tokens(frames: Frames) -> bool:
    """False when successful requests exist and none had a first output
    (an embeddings or rerank run): the report then leaves out TTFT, TPOT
    and ITL instead of showing empty figures."""
    ok = frames.ok_mask()
    if not ok.any():
        return True
    return bool(np.isfinite(frames.requests.loc[ok, "ttft_ms"].to_numpy(dtype=float)).any())


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
    skip = () if generates_tokens(frames) else GENERATION_METRICS
    for name, values in metric_samples(frames).items():
        if name not in skip:
            table[name] = nearest_rank(values)
    if not skip:  # weighted per token: not a plain sample
        table[token_itl.COLUMN] = token_itl.percentile_column(frames)
    return pd.DataFrame(table)


# -- summary --------------------------------------------------------------------

def duration_s(frames: Frames) -> float:
    """First send -> last completion of the measured requests (NaN if none)."""
    start, end = start_end(frames.requests.loc[frames.measured_mask()])
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
    slo = check_slo(slo)
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
        "Test Duration (s)": rounded(duration),
        "Concurrency": concurrency,
        "Request Rate (req/s)": rate,
        "Total Requests": n_total,
        "Success Requests": n_ok,
        "Failed Requests": n_total - n_ok,
        "Req Throughput (req/s)": rounded(per_s(n_ok)),
        "Avg Latency (s)": rounded(nan_mean(samples["Latency (s)"])),
        "Avg Input Tokens": rounded(nan_mean(prompt)),
        "Avg Output Tokens": rounded(nan_mean(completion)),
        "Output Throughput (tok/s)": rounded(per_s(np.nansum(completion))),
        "Total Throughput (tok/s)": rounded(per_s(np.nansum(prompt) + np.nansum(completion))),
        "Avg TTFT (ms)": rounded(nan_mean(samples["TTFT (ms)"])),
        "Avg TPOT (ms)": rounded(nan_mean(samples["TPOT (ms)"])),
        "Avg ITL (ms)": rounded(nan_mean(samples["ITL (ms)"])),
        "Avg TPOT incl. TTFT (ms)": rounded(nan_mean(samples["TPOT incl. TTFT (ms)"])),
        token_itl.AVG_KEY: rounded(token_itl.mean_ms(frames)),
    }
    if "TTFAT (ms)" in samples:  # a reasoning model: its answer starts after the reasoning
        out["Avg TTFAT (ms)"] = rounded(nan_mean(samples["TTFAT (ms)"]))
    reasoning = okdf["reasoning_tokens"].to_numpy(dtype=float)
    if (reasoning > 0).any():  # a reasoning model, whose usage counts its reasoning
        out["Avg Reasoning Tokens"] = rounded(nan_mean(reasoning))
        out["Avg Answer Tokens"] = rounded(nan_mean(okdf["answer_tokens"].to_numpy(dtype=float)))
    if not generates_tokens(frames):  # embeddings, rerank: what they do is read input
        for key in ("Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)", "Avg TPOT incl. TTFT (ms)", token_itl.AVG_KEY):
            del out[key]
        out["Input Throughput (tok/s)"] = rounded(per_s(np.nansum(prompt)))
    if slo:
        meets = slo_mask(frames, slo)
        out["Goodput (req/s)"] = rounded(per_s(int(meets.sum())))
        out["SLO Attainment (%)"] = rounded(100.0 * meets.sum() / n_total) if n_total else None
    else:
        out["Goodput (req/s)"] = None
        out["SLO Attainment (%)"] = None
    out["SLO"] = slo
    lag = samples["Schedule Lag (ms)"]
    out["Avg Schedule Lag (ms)"] = rounded(nan_mean(lag))
    out["P99 Schedule Lag (ms)"] = rounded(nearest_rank(lag, ["99%"])[0])
    out["Warmup Requests"] = int((req["is_warmup"].to_numpy() == 1).sum())
    out["Ramp-up Requests"] = int((req["is_warmup"].to_numpy() == RAMP_UP).sum())  # --ramp-up: not measured either
    skipped = sum(1 for p in frames.problems if p.startswith("rowid "))
    out["Skipped Rows"] = skipped
    reconnects = int(pd.to_numeric(req.loc[measured, "reconnects"], errors="coerce").fillna(0).sum())
    out["Reconnects"] = reconnects
    out["Errors"] = error_counts(frames)
    out.update(prefix_reuse(req.loc[measured]))
    max_cpu, warnings = _client_health(frames)
    out["Max Worker CPU (%)"] = rounded(max_cpu, 1)
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
    ramped = out["Ramp-up Requests"]
    if ramped and not n_total:
        warnings.append(f"all {ramped} requests were sent during --ramp-up, so none is measured: raise "
                        "--number (or --duration) to go on past the ramp, or shorten --ramp-up")
    status = frames.run.get("status")
    if status and status != "completed":
        warnings.append(f"run status is {status!r}: the figures cover what was recorded")
    out["Warnings"] = warnings
    out["Definitions"] = ({**TPOT_DEFINITIONS, token_itl.AVG_KEY: token_itl.DEFINITION}
                          if generates_tokens(frames) else {})
    nodes = node_rows(frames)
    if nodes:  # runs whose rows name the node that sent them (--backend ray)
        out[NODES_KEY] = nodes
    return out


def prefix_reuse(req: pd.DataFrame) -> dict[str, Any]:
    """How many requests began with a prefix an earlier request had sent,
    and what share of all prompt text such prefixes were (engine.prefix_reuse
    stored both per row; older databases have neither: None)."""
    if "shared_prefix_chars" not in req or "prompt_chars" not in req:
        return {"Shared Prefix Requests": None, "Prefix Reuse (%)": None}
    shared = pd.to_numeric(req["shared_prefix_chars"], errors="coerce")
    chars = pd.to_numeric(req["prompt_chars"], errors="coerce")
    known = shared.notna() & chars.notna()
    if not known.any():
        return {"Shared Prefix Requests": None, "Prefix Reuse (%)": None}
    total = float(chars[known].sum())
    return {"Shared Prefix Requests": int((shared[known] > 0).sum()),
            "Prefix Reuse (%)": rounded(100.0 * float(shared[known].sum()) / total) if total else None}


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
        return rounded(at.at[label, col]) if col in at.columns else None

    return {
        "Run": frames.name,
        "Concurrency": summ["Concurrency"],
        "Request Rate (req/s)": summ["Request Rate (req/s)"],
        "Total Requests": summ["Total Requests"],
        "Failed Requests": summ["Failed Requests"],
        "Req Throughput (req/s)": summ["Req Throughput (req/s)"],
        "Output Throughput (tok/s)": summ["Output Throughput (tok/s)"],
        "Goodput (req/s)": summ.get("Goodput (req/s)"),
        "Avg TTFT (ms)": summ.get("Avg TTFT (ms)"),
        "P50 TTFT (ms)": p("TTFT (ms)", "50%"),
        "P99 TTFT (ms)": p("TTFT (ms)", "99%"),
        "Avg TPOT (ms)": summ.get("Avg TPOT (ms)"),
        "P50 TPOT (ms)": p("TPOT (ms)", "50%"),
        "P99 TPOT (ms)": p("TPOT (ms)", "99%"),
        "P50 ITL (ms)": p("ITL (ms)", "50%"),
        "P99 ITL (ms)": p("ITL (ms)", "99%"),
        "Avg Latency (s)": summ["Avg Latency (s)"],
        "P99 Latency (s)": p("Latency (s)", "99%"),
    }
