"""`Frames`: one run's data as `analysis.load` returns it, and the row masks
every metric starts from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Frames:
    """One run's data, as read from its database.

    requests: one row per request (every `result` column, decoded, plus the
        derived columns `ttft_ms`, `latency_s`, `tpot_ms`, `tpot_incl_ttft_ms`,
        `itl_mean_ms`, `output_tok_per_s`, `total_tok_per_s`, `schedule_lag_ms`).
    events: one row per output-carrying event: `request` (the position of the
        request in `requests`), `offset_s` (arrival, seconds since send) and
        `gap_ms` (since the request's previous output event; NaN for its first).
        The ITL samples are the `gap_ms` values.
    run: the `run` table's row (`args` and `workers` JSON-decoded); keys are
        present with None/{}/[] when the database has no `run` table.
    problems: one line per row that could not be decoded and was skipped.
    """

    requests: pd.DataFrame
    events: pd.DataFrame
    run: dict
    path: str = ""
    problems: list[str] = field(default_factory=list)
    # Samples the metrics derive (e.g. every ITL gap) are computed once per
    # pair of frames; edit the frames in place and call clear_cache().
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    def cached(self, key: str, compute):
        """`compute()` once per (key, requests, events) objects."""
        ident = (key, id(self.requests), id(self.events))
        if ident not in self._cache:
            self._cache[ident] = compute()
        return self._cache[ident]

    @property
    def name(self) -> str:
        """The run's name, else the name of the folder holding the database."""
        return str(self.run.get("name") or Path(self.path).resolve().parent.name or self.path)

    def measured_mask(self) -> np.ndarray:
        """True for rows that count in the metrics (not warm-up)."""
        return (self.requests["is_warmup"].to_numpy() == 0)

    def ok_mask(self) -> np.ndarray:
        """True for measured rows that succeeded (the latency metrics' rows)."""
        return self.measured_mask() & (self.requests["success"].to_numpy() == 1)


def streamed(frames: "Frames") -> bool:
    """Whether the run's TTFT is a first token's (some successful request
    was streamed); with none successful, what the run asked for."""
    ok = frames.ok_mask()
    if ok.any():
        return bool((frames.requests["is_stream"].to_numpy()[ok] == 1).any())
    return (frames.run.get("args") or {}).get("stream") is not False


def start_end(requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each request's send and end (epoch s): `completed_time`, else send + latency."""
    start = requests["start_time"].to_numpy(dtype=float)
    end = requests["completed_time"].to_numpy(dtype=float)
    end = np.where(np.isnan(end), start + requests["latency"].to_numpy(dtype=float), end)
    return start, end
