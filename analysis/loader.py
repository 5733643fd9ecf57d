"""`analysis.load`: one result database -> pandas frames.

Reads only the database (the engine is not imported beyond the column names
in `engine.store` and the metric definitions in `engine.timing`), so a run
can be re-reported later, elsewhere, from the `benchmark_data.db` file alone.  Databases written by evalscope perf (no
`run` table, older or newer column sets) are read too.
"""
from __future__ import annotations

import json
import os
import sqlite3
import warnings
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.frames import Frames
from analysis.safe_pickle import decode_b64_pickle
from engine import timing
from engine.errors import UsageError
from engine.store import DB_NAME, RESULT_COLUMNS, RUN_COLUMNS

try:  # an optional speed-up: a JSON list of 256 floats parses ~5x faster
    import orjson

    _json_loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _json_loads = json.loads

RESULT_NAMES = tuple(n for n, _ in RESULT_COLUMNS)
RUN_NAMES = tuple(n for n, _ in RUN_COLUMNS)
_NUMERIC = tuple(n for n, t in RESULT_COLUMNS if t in ("REAL", "INTEGER"))
_BATCH = 4096


class ReportError(UsageError):
    """A path or a database the analysis cannot read; the message says which and why."""


def resolve_db(path: str | os.PathLike) -> str:
    """The database file for `path`: the file itself, or `DB_NAME` inside a folder."""
    p = Path(path)
    if p.is_dir():
        candidate = p / DB_NAME
        if not candidate.is_file():
            raise ReportError(f"{path}: no {DB_NAME} in this folder")
        return str(candidate)
    if not p.exists():
        raise ReportError(f"{path}: no such file or folder")
    if not p.is_file():
        raise ReportError(f"{path}: not a file or folder")
    return str(p)


def connect_readonly(db: str) -> sqlite3.Connection:
    """Open read-only: a report never changes the database it reads."""
    uri = Path(db).resolve().as_uri()
    last: Exception | None = None
    # `immutable` is the fallback for a copy on read-only media where SQLite
    # cannot create the WAL index next to the file.
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            con = sqlite3.connect(uri + query, uri=True)
            con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            return con
        except sqlite3.DatabaseError as exc:
            last = exc
    raise ReportError(f"{db}: not a readable SQLite database ({last})")


def _tables(con: sqlite3.Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]


def load(path: str | os.PathLike, decode_messages: bool = False, decode_requests: bool = True,
         lists: bool = True) -> Frames:
    """Read one run's database (a `benchmark_data.db` file or a folder holding one).

    decode_messages: decode `response_messages` to a list of str (slow and
        large: off by default, the column then holds None).
    decode_requests: decode `request` to the body dict (on by default).
    lists: decode `chunk_times` and `event_times` to Python lists in
        `requests`.  With False (the report's fast path) `chunk_times` is only
        decoded into the `events` frame and both columns hold None, which
        saves a Python float object per event.

    `request`/`response_messages` are unpickled with a restricted unpickler
    that admits plain builtin data only.  A row that cannot be decoded is
    skipped, listed in `Frames.problems` and summed up in one warning.
    """
    db = resolve_db(path)
    con = connect_readonly(db)
    try:
        tables = _tables(con)
        if "result" not in tables:
            raise ReportError(f"{db}: no `result` table: not a benchmark database")
        problems: list[str] = []
        requests, events = _read_results(con, db, decode_messages, decode_requests, lists, problems)
        run = _read_run(con, tables, problems)
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{db}: cannot read the database ({exc})") from None
    finally:
        con.close()
    skipped = [p for p in problems if p.startswith("rowid ")]
    if skipped:
        warnings.warn(f"{db}: skipped {len(skipped)} row(s) that could not be decoded "
                      f"(first: {skipped[0]})", RuntimeWarning, stacklevel=2)
    elif problems:
        warnings.warn(f"{db}: {problems[0]}", RuntimeWarning, stacklevel=2)
    return Frames(requests=requests, events=events, run=run, path=db, problems=problems)


def _decode_request(text: Any) -> Any:
    if text is None:
        return None
    if isinstance(text, str) and text.lstrip().startswith("{"):
        # evalscope >= 1.0 stores the body as JSON text, not a pickle
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
    body = decode_b64_pickle(text)
    return body


def _decode_messages(text: Any) -> list[str] | None:
    if text is None:
        return None
    value = decode_b64_pickle(text)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"not a list but {type(value).__name__}")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value]


def _batches(cur: sqlite3.Cursor):
    """`fetchmany` batches.  (Reading on a helper thread to overlap I/O with
    decoding was tried: slower, as building the rows needs the GIL.)"""
    while True:
        batch = cur.fetchmany(_BATCH)
        if not batch:
            return
        yield batch


def _json_list(text: Any) -> list:
    """A JSON list cell -> list (NULL or empty text -> [])."""
    if text is None or text == "":
        return []
    value = _json_loads(text)
    if not isinstance(value, list):
        raise ValueError(f"not a JSON list but {type(value).__name__}")
    return value


def _floats(values: list) -> np.ndarray:
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("not a flat list of numbers")
    return arr


def _read_results(con: sqlite3.Connection, db: str, decode_messages: bool, decode_requests: bool,
                  lists: bool, problems: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    present = _columns(con, "result")
    skip = set()
    if not decode_messages:
        skip.add("response_messages")
    if not decode_requests:
        skip.add("request")
    if not lists:
        skip.add("event_times")
    select = ", ".join(f"NULL AS {c}" if c in skip else c for c in present)
    cur = con.execute(f"SELECT rowid, {select} FROM result ORDER BY rowid")

    pos = {c: i + 1 for i, c in enumerate(present)}  # +1: rowid comes first
    i_req, i_msg = pos.get("request"), pos.get("response_messages")
    i_ct, i_ev = pos.get("chunk_times"), pos.get("event_times")
    i_itl = pos.get("inter_token_latencies") if i_ct is None else None  # evalscope >= 0.17
    i_ttft, i_id = pos.get("first_chunk_latency"), pos.get("request_id")

    def problem(raw: tuple, what: str, exc: Exception) -> None:
        rid = f" (request_id {raw[i_id]})" if i_id is not None and raw[i_id] is not None else ""
        problems.append(f"rowid {raw[0]}{rid}: {what}: {exc}")

    rows: list[list] = []
    parts: list[np.ndarray] = []  # event offsets, one array per batch
    lengths: list[int] = []
    for batch in _batches(cur):
        batch_rows, batch_raw, times = [], [], []
        for raw in batch:
            row = list(raw)
            what = "request"
            try:
                if i_req is not None and decode_requests:
                    row[i_req] = _decode_request(row[i_req])
                what = "response_messages"
                if i_msg is not None and decode_messages:
                    row[i_msg] = _decode_messages(row[i_msg])
                what = "chunk_times"
                if i_ct is not None:
                    offsets = _json_list(row[i_ct])
                    row[i_ct] = offsets if lists else None
                elif i_itl is not None:
                    what = "inter_token_latencies"
                    # evalscope stores the gaps; the first output came at TTFT
                    gaps = _floats(_json_list(row[i_itl]))
                    t0 = row[i_ttft] if i_ttft is not None else None
                    if t0 is None and not gaps.size:
                        offsets = []
                    else:
                        offsets = (float(t0 or 0.0) + np.concatenate(([0.0], np.cumsum(gaps)))).tolist()
                else:
                    offsets = []
                what = "event_times"
                if i_ev is not None and lists:
                    row[i_ev] = _json_list(row[i_ev])
            except Exception as exc:  # one bad row never stops the report
                problem(raw, what, exc)
                continue
            batch_rows.append(row)
            batch_raw.append(raw)
            times.append(offsets)
        # One C loop per batch turns the offsets into floats; on a bad value,
        # find the row(s) row by row.
        sizes = [len(t) for t in times]
        try:
            values = np.fromiter(chain.from_iterable(times), dtype=np.float64, count=sum(sizes))
        except (TypeError, ValueError):
            keep, arrays = [], []
            for k, t in enumerate(times):
                try:
                    arrays.append(_floats(t))
                    keep.append(k)
                except (TypeError, ValueError) as exc:
                    problem(batch_raw[k], "chunk_times", exc)
            batch_rows = [batch_rows[k] for k in keep]
            sizes = [sizes[k] for k in keep]
            values = np.concatenate(arrays) if arrays else np.empty(0)
        rows.extend(batch_rows)
        lengths.extend(sizes)
        parts.append(values)
        del batch, batch_raw, times

    names = ["_rowid", *present]
    df = pd.DataFrame.from_records(rows, columns=names) if rows else pd.DataFrame(columns=names)
    del rows
    df = df.drop(columns="_rowid")
    for name in RESULT_NAMES:  # evalscope databases lack some of ours
        if name not in df.columns:
            df[name] = None
    for name in _NUMERIC:
        df[name] = pd.to_numeric(df[name], errors="coerce")
    for name in ("success", "is_warmup"):
        df[name] = df[name].fillna(0).astype(np.int64)
    if df["is_stream"].isna().any():
        guess = [_stream_flag(b) for b in df["request"]] if decode_requests else 1
        df["is_stream"] = df["is_stream"].fillna(pd.Series(guess, index=df.index, dtype="float64"))
    df["is_stream"] = df["is_stream"].fillna(1).astype(np.int64)

    lengths = np.asarray(lengths, dtype=np.int64)
    values = np.concatenate(parts) if parts else np.empty(0)
    del parts
    values = _relative_offsets(values, lengths, df)
    events = _events_frame(values, lengths)
    # token_source is servegauge's own column: evalscope's databases lack it
    _derive(df, events, lengths, ours="token_source" in present)
    return df, events


def _stream_flag(body: Any) -> float:
    if isinstance(body, dict) and "stream" in body:
        return float(bool(body["stream"]))
    return np.nan


def _relative_offsets(values: np.ndarray, lengths: np.ndarray, df: pd.DataFrame) -> np.ndarray:
    """Old evalscope versions stored chunk arrival as clock readings, not
    offsets since send; shift those rows so their first event is at TTFT."""
    if not values.size:
        return values
    starts = np.cumsum(lengths) - lengths
    has = lengths > 0
    first = np.full(lengths.size, np.nan)
    first[has] = values[starts[has]]
    latency = df["latency"].to_numpy(dtype=float)
    # an offset since send cannot exceed the request's latency; a clock reading does
    with np.errstate(invalid="ignore"):
        absolute = has & np.isfinite(latency) & (first > latency + 0.5)
    if not absolute.any():
        return values
    ttft = np.nan_to_num(df["first_chunk_latency"].to_numpy(dtype=float), nan=0.0)
    shift = np.where(absolute, ttft - first, 0.0)
    return values + np.repeat(shift, lengths)


def _events_frame(values: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    request = np.repeat(np.arange(lengths.size, dtype=np.int32), lengths)
    gaps = np.empty_like(values)
    if values.size:
        np.subtract(values[1:], values[:-1], out=gaps[1:])
        gaps *= 1000.0
        gaps[(np.cumsum(lengths) - lengths)[lengths > 0]] = np.nan  # a request's first event
    return pd.DataFrame({"request": request, "offset_s": values, "gap_ms": gaps}, copy=False)


def _derive(df: pd.DataFrame, events: pd.DataFrame, lengths: np.ndarray, ours: bool) -> None:
    """The derived columns, by `engine.timing`'s definitions.  TPOT and the
    mean gap are read from the database (`time_per_output_token`,
    `chunk_time`) when servegauge wrote it (`ours`), computed where it holds
    none (failed rows) or the database is another tool's, which may define
    those columns otherwise."""
    lat = df["latency"].to_numpy(dtype=float)
    ttft = df["first_chunk_latency"].to_numpy(dtype=float)
    stream = df["is_stream"].to_numpy() == 1
    # non-streamed: TTFT = latency; not for our rows of endpoints that generate
    # nothing (embeddings, rerank: no output event, n_chunks 0)
    generated = ~(df["n_chunks"].to_numpy(dtype=float) == 0) if ours else True
    ttft = np.where(np.isnan(ttft) & ~stream & generated, lat, ttft)
    ct = df["completion_tokens"].to_numpy(dtype=float)
    pt = df["prompt_tokens"].to_numpy(dtype=float)
    offsets = events["offset_s"].to_numpy()
    ends = np.cumsum(lengths)
    has_gap = timing.mean_gap_defined(lengths)
    first, last = np.zeros(lengths.size), np.zeros(lengths.size)
    first[has_gap] = offsets[ends[has_gap] - lengths[has_gap]]
    last[has_gap] = offsets[ends[has_gap] - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(timing.tpot_defined(ct), timing.tpot_s(lat, ttft, ct), np.nan)
        mean_gap = np.where(has_gap, timing.mean_gap_s(first, last, lengths), np.nan)
        if ours:
            tpot = _stored_or(df["time_per_output_token"], tpot)
            mean_gap = _stored_or(df["chunk_time"], mean_gap)
        df["ttft_ms"] = ttft * 1000.0
        df["latency_s"] = lat
        df["tpot_ms"] = tpot * 1000.0
        df["tpot_incl_ttft_ms"] = np.where(timing.tpot_incl_ttft_defined(ct), timing.tpot_incl_ttft_s(lat, ct) * 1000.0,
                                           np.nan)
        df["itl_mean_ms"] = mean_gap * 1000.0
        df["output_tok_per_s"] = np.where(lat > 0, ct / lat, np.nan)
        df["total_tok_per_s"] = np.where(lat > 0, (pt + ct) / lat, np.nan)
        # reasoning models (engine.derive): first answer token, and the answer's share of the output
        df["ttfat_ms"] = df["first_answer_latency"].to_numpy(dtype=float) * 1000.0
        df["answer_tokens"] = ct - df["reasoning_tokens"].to_numpy(dtype=float)
        df["schedule_lag_ms"] = (df["start_time"].to_numpy(dtype=float)
                                 - df["scheduled_time"].to_numpy(dtype=float)) * 1000.0


def _stored_or(column: pd.Series, computed: np.ndarray) -> np.ndarray:
    stored = column.to_numpy(dtype=float)
    return np.where(np.isnan(stored), computed, stored)


def _read_run(con: sqlite3.Connection, tables: set[str], problems: list[str]) -> dict:
    run: dict[str, Any] = {name: None for name in RUN_NAMES}
    run["args"], run["workers"] = {}, []
    if "run" not in tables:
        return run
    cols = _columns(con, "run")
    row = con.execute("SELECT * FROM run ORDER BY rowid DESC LIMIT 1").fetchone()
    if row is None:
        return run
    run.update(zip(cols, row))
    for key, default in (("args", {}), ("workers", [])):
        value = run.get(key)
        if value is None:
            run[key] = default
        elif isinstance(value, (str, bytes)):
            try:
                run[key] = json.loads(value)
            except ValueError as exc:
                problems.append(f"run.{key}: not JSON ({exc})")
                run[key] = default
    if not isinstance(run["args"], dict):
        run["args"] = {}
    workers = []
    for w in run["workers"] if isinstance(run["workers"], list) else []:
        if isinstance(w, dict):
            workers.append({"worker": w.get("worker"), "cpu_s": w.get("cpu_s"),
                            "wall_s": w.get("wall_s"), **w})
    run["workers"] = workers
    return run
