"""analysis.load: decoding, derived columns, events, tolerance, and safety."""
from __future__ import annotations

import base64
import json
import os
import pickle
import sqlite3

import numpy as np
import pytest

try:
    from test_analysis_dbutil import T0, req, write_db
except ImportError:
    from tests.test_analysis_dbutil import T0, req, write_db

import analysis
from analysis.loader import ReportError


class _RunsCode:
    """Unpickled unsafely, this would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpensFile:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _b64(obj) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode("ascii")


def test_decodes_columns_and_derives(tmp_path):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    rows = [req(0, start=T0, latency=2.0, chunk_times=[0.5, 1.0, 2.0], completion=7, prompt=100, lag=0.004,
                body=body, events=['{"a": 1}', '{"a": 2}', '{"a": 3}']),
            req(1, start=T0 + 1, latency=3.0, stream=0, completion=10, prompt=20)]
    frames = analysis.load(write_db(str(tmp_path), rows), decode_messages=True)
    r = frames.requests
    assert r.loc[0, "request"] == body
    assert r.loc[0, "response_messages"] == ['{"a": 1}', '{"a": 2}', '{"a": 3}']
    assert r.loc[0, "chunk_times"] == [0.5, 1.0, 2.0]
    assert r.loc[0, "event_times"] == [0.5, 1.0, 2.0]
    assert r.loc[0, "ttft_ms"] == pytest.approx(500)
    assert r.loc[0, "latency_s"] == pytest.approx(2.0)
    assert r.loc[0, "tpot_ms"] == pytest.approx(1500 / 6)
    assert r.loc[0, "itl_mean_ms"] == pytest.approx(750)
    assert r.loc[0, "output_tok_per_s"] == pytest.approx(3.5)
    assert r.loc[0, "schedule_lag_ms"] == pytest.approx(4.0, abs=1e-3)
    # not streamed: TTFT is the latency, one event, no gap
    assert r.loc[1, "ttft_ms"] == pytest.approx(3000)
    assert np.isnan(r.loc[1, "itl_mean_ms"])
    ev = frames.events
    assert list(ev["request"]) == [0, 0, 0, 1]
    assert list(ev["offset_s"]) == pytest.approx([0.5, 1.0, 2.0, 3.0])
    gaps = list(ev["gap_ms"])
    assert np.isnan(gaps[0]) and np.isnan(gaps[3])
    assert gaps[1:3] == pytest.approx([500, 1000])
    assert frames.problems == []
    # the report's fast path: no per-row lists, same events
    fast = analysis.load(frames.path, lists=False)
    assert fast.requests["chunk_times"].isna().all()
    assert fast.events.equals(frames.events)
    assert fast.requests.loc[0, "response_messages"] is None


@pytest.mark.parametrize("payload", [_RunsCode, _OpensFile])
def test_malicious_pickle_is_refused_reported_and_skipped(tmp_path, payload):
    marker = tmp_path / "pwned"
    bad = req(1)
    bad["request"] = _b64(payload(str(marker)))
    bad_messages = req(2)
    bad_messages["response_messages"] = _b64(payload(str(marker)))
    path = write_db(str(tmp_path / "db"), [req(0), bad, bad_messages, req(3)])
    # control: the payload is live, plain pickle.loads would run it
    control = tmp_path / "control"
    pickle.loads(base64.b64decode(_b64(payload(str(control)))))
    assert control.exists()

    with pytest.warns(RuntimeWarning, match="skipped 1 row"):
        frames = analysis.load(path)
    assert not marker.exists()
    assert list(frames.requests["request_id"]) == ["r0", "r2", "r3"]
    assert len(frames.problems) == 1 and "r1" in frames.problems[0] and "refused" in frames.problems[0]
    assert analysis.summary(frames)["Skipped Rows"] == 1

    with pytest.warns(RuntimeWarning, match="skipped 2 row"):
        frames = analysis.load(path, decode_messages=True)
    assert not marker.exists()
    assert list(frames.requests["request_id"]) == ["r0", "r3"]
    assert set(frames.events["request"]) == {0, 1}  # events follow the kept rows


def test_garbled_cells_are_skipped_not_fatal(tmp_path):
    rows = [req(0), req(1), req(2)]
    rows[1]["request"] = "%%% not base64 %%%"
    rows[2]["chunk_times"] = "[0.1, oops"
    with pytest.warns(RuntimeWarning, match="skipped 2 row"):
        frames = analysis.load(write_db(str(tmp_path), rows))
    assert list(frames.requests["request_id"]) == ["r0"]


def test_bad_paths(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        analysis.load(tmp_path / "missing.db")
    with pytest.raises(ReportError, match="no benchmark_data.db"):
        analysis.load(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all " * 100)
    with pytest.raises(ReportError, match="SQLite|database"):
        analysis.load(junk)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(ReportError, match="no `result` table"):
        analysis.load(empty)


def test_evalscope_database(tmp_path):
    """evalscope perf >= 1.0: JSON request body, gaps in inter_token_latencies, no run table."""
    path = tmp_path / "benchmark_data.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE result (request TEXT, start_time REAL, inter_token_latencies TEXT, success INTEGER, "
                "response_messages TEXT, completed_time REAL, latency REAL, first_chunk_latency REAL, "
                "prompt_tokens INTEGER, completion_tokens INTEGER, max_gpu_memory_cost REAL, "
                "time_per_output_token REAL, request_id TEXT, is_stream INTEGER)")
    con.execute("INSERT INTO result VALUES (?, ?, ?, 1, ?, ?, 1.0, 0.2, 30, 5, 0, 0.2, 'e0', 1)",
                (json.dumps({"model": "m", "stream": True}), T0, json.dumps([0.1, 0.3, 0.2, 0.2]), _b64([]),
                 T0 + 1.0))
    con.commit()
    con.close()
    frames = analysis.load(path)
    assert frames.run["args"] == {}
    assert frames.requests.loc[0, "request"] == {"model": "m", "stream": True}
    assert list(frames.events["offset_s"]) == pytest.approx([0.2, 0.3, 0.6, 0.8, 1.0])
    s = analysis.summary(frames)
    assert s["Avg ITL (ms)"] == pytest.approx(200.0)
    assert s["Avg TTFT (ms)"] == pytest.approx(200.0)
    assert s["Total Requests"] == 1


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, analysis; import analysis.cli; "
            "assert 'pandas' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
