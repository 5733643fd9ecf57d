"""`servegauge report --export csv|parquet`: the `result` table, one row per
request attempt, for people who read runs in a notebook.

Every scalar column of the table as stored (seconds, as evalscope names
them), then the per-request metrics in the units their names say
(`ttft_ms`, `latency_ms`, `tpot_ms`, ...) as `analysis.load` derives them.
Warm-up rows and failed rows are kept (`is_warmup`, `success`, `error`):
filter them as the summary does.  The raw columns (the request body, the
reply's events, every event's arrival) are left out unless `raw`: they are
most of the database's size and rarely what a notebook wants.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from analysis.loader import ReportError, load
from engine.store import RESULT_COLUMNS

FORMATS = ("csv", "parquet")
EXPORT_STEM = "benchmark_requests"  # + .csv / .parquet, next to the run's other reports
RAW_COLUMNS = ("request", "response_messages", "chunk_times", "event_times")
DERIVED_COLUMNS = ("ttft_ms", "latency_ms", "tpot_ms", "tpot_incl_ttft_ms", "itl_mean_ms", "output_tok_per_s",
                   "total_tok_per_s", "schedule_lag_ms")
PARQUET_HINT = "--export parquet needs pyarrow: pip install 'servegauge[parquet]' (or use --export csv)"


def export_frame(db_path: str, raw: bool = False) -> pd.DataFrame:
    """One run's `result` table as a DataFrame: `run` (its name), the stored
    columns, the derived ones; with `raw`, the raw columns as JSON text."""
    frames = load(db_path, decode_messages=raw, decode_requests=raw, lists=raw)
    df = frames.requests
    df["latency_ms"] = df["latency_s"] * 1000.0
    stored = [n for n, _ in RESULT_COLUMNS if raw or n not in RAW_COLUMNS]
    out = df[[*stored, *DERIVED_COLUMNS]].copy()
    if raw:  # JSON text: one cell a CSV reader and Parquet both keep as it was
        for name in RAW_COLUMNS:
            out[name] = [_json(v) for v in out[name]]
    out.insert(0, "run", frames.name)
    return out


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def check_format(fmt: str) -> None:
    """Refuse, before anything is read or written, a format that cannot be
    written here."""
    if fmt not in FORMATS:
        raise ReportError(f"--export {fmt}: give one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (pandas writes Parquet through it; an extra, not a dependency)
        except ImportError:
            raise ReportError(PARQUET_HINT) from None


def export_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """The file's content: CSV (UTF-8, full float precision) or Parquet."""
    check_format(fmt)
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n").encode("utf-8")
    return df.to_parquet(engine="pyarrow", index=False)


def export_name(fmt: str) -> str:
    return f"{EXPORT_STEM}.{fmt}"
