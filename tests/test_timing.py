"""engine.timing: one definition of the per-request metrics, for the writer
of the database (floats) and for the analysis (numpy columns)."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import analysis
from engine import timing

try:
    from test_analysis_dbutil import req, write_db
except ImportError:  # run as a package
    from tests.test_analysis_dbutil import req, write_db


def test_floats_and_arrays_give_the_same_figures():
    latency, ttft, tokens = [1.0, 0.5, 2.25], [0.1, 0.5, 0.3], [5, 2, 9]
    one_by_one = [timing.tpot_s(lat, t, n) for lat, t, n in zip(latency, ttft, tokens)]
    at_once = timing.tpot_s(np.array(latency), np.array(ttft), np.array(tokens, dtype=float))
    assert list(at_once) == one_by_one  # the same arithmetic, bit for bit
    assert one_by_one[0] == (1.0 - 0.1) / 4
    assert list(timing.tpot_defined(np.array([0, 1, 2]))) == [False, False, True]
    assert timing.tpot_incl_ttft_s(1.0, 4) == 0.25
    assert timing.chunk_time_s([0.1, 0.2, 0.4]) == pytest.approx(0.15)
    assert timing.chunk_time_s([0.1]) is None and timing.chunk_time_s([]) is None
    assert timing.ttft_s([0.1, 0.2]) == 0.1 and timing.ttft_s([]) is None


def _stored(row: dict, tpot: float, chunk_time: float) -> dict:
    return {**row, "time_per_output_token": tpot, "chunk_time": chunk_time}


def test_analysis_reads_what_servegauge_stored(tmp_path):
    # stored figures unlike what the chunk times would give: the stored ones are read
    rows = [_stored(req(0, latency=1.0, ttft=0.2, completion=5), 0.123, 0.0456), req(1, success=0, status=500)]
    frames = analysis.load(write_db(str(tmp_path), rows))
    assert frames.requests.loc[0, "tpot_ms"] == pytest.approx(123.0)
    assert frames.requests.loc[0, "itl_mean_ms"] == pytest.approx(45.6)


def test_missing_figures_are_computed_by_the_same_definitions(tmp_path):
    rows = [req(0, latency=1.0, ttft=0.2, completion=5), req(1, latency=2.0, ttft=0.5, completion=1)]
    frames = analysis.load(write_db(str(tmp_path), rows))
    tpot = frames.requests["tpot_ms"].to_numpy()
    assert tpot[0] == timing.tpot_s(1.0, 0.2, 5) * 1000.0
    assert np.isnan(tpot[1])  # one token: no TPOT
    assert frames.requests.loc[0, "itl_mean_ms"] == pytest.approx(200.0)


def test_another_tools_figures_are_recomputed(tmp_path):
    # without servegauge's own token_source column the database is another
    # tool's, whose time_per_output_token may mean something else
    path = write_db(str(tmp_path), [_stored(req(0, latency=1.0, ttft=0.2, completion=5), 0.123, 0.0456)])
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE result DROP COLUMN token_source")
    con.commit()
    con.close()
    frames = analysis.load(path)
    assert frames.requests.loc[0, "tpot_ms"] == pytest.approx(200.0)
    assert frames.requests.loc[0, "itl_mean_ms"] == pytest.approx(200.0)
