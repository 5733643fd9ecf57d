"""Issue 16's console, on real runs against the mock in real subprocesses:
the tables fit the terminal (`COLUMNS`), a sweep ends with one line per run,
the summary says what was tested, and --rate / --no-stream say what their
figures mean."""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import re
import sqlite3
import time
import uuid
from urllib.parse import urlsplit

import pytest

from conftest import find_dbs, run_engine
from engine import installed_version
from engine.mock.launch import start_mock
from engine.options import RATE_DEFAULT_PARALLEL

WIDE = 400  # wider than any table: everything is shown


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mock):
    """A real two-run sweep with an SLO, run in an 80-column terminal."""
    out = tmp_path_factory.mktemp("console")
    proc = run_engine("--url", mock.chat_url, "--model", "tiny", "--parallel", 1, 3, "--number", 6, 6,
                      "--slo", "ttft=10s", "--no-plots", "--outputs-dir", out, "--no-timestamp", "--name", "sw",
                      env={"COLUMNS": "80"})
    dbs = find_dbs(out)
    assert len(dbs) == 2
    return {"stdout": proc.stdout, "dbs": dbs, "root": os.path.dirname(os.path.dirname(dbs[0]))}


def _report(path, columns=None, *flags):
    env = {"COLUMNS": str(columns)} if columns else {}
    return run_engine("report", path, "--no-plots", *flags, env=env).stdout


def _too_long(text: str, width: int) -> list[str]:
    return [line for line in text.splitlines() if len(line) > width]


def _tables(text: str) -> list[list[list[str]]]:
    """Every box table in `text`: its lines (header first) as lists of cells."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("┌"):
            current = []
        elif line.startswith("└") and current is not None:
            tables.append(current)
            current = None
        elif current is not None and line.startswith("│"):
            current.append([c.strip() for c in line.strip("│").split("│")])
    return tables


def _table_after(text: str, title: str) -> list[list[str]]:
    tail = text[text.index(title):]
    return _tables(tail)[0]


def _number(text: str) -> float:
    return math.nan if text == "-" else float(text.replace(",", ""))


def _percentile_csv(db: str) -> dict[str, dict[str, float]]:
    """benchmark_percentile.csv: metric -> percentile label -> value."""
    with open(os.path.join(os.path.dirname(db), "benchmark_percentile.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    metrics = [k for k in rows[0] if k != "Percentiles"]
    return {m: {r["Percentiles"]: (float(r[m]) if r[m] else math.nan) for r in rows} for m in metrics}


def _close(shown: float, expected: float) -> bool:
    if math.isnan(expected):
        return math.isnan(shown)
    return abs(shown - expected) <= 1e-3 * max(1.0, abs(expected))


def test_the_tables_fit_80_and_100_columns_and_a_wide_terminal_shows_them_whole(sweep):
    assert not _too_long(sweep["stdout"], 80), _too_long(sweep["stdout"], 80)
    run_dir = os.path.dirname(sweep["dbs"][1])
    expected = _percentile_csv(sweep["dbs"][1])
    for width in (80, 100):
        text = _report(run_dir, width)
        assert not _too_long(text, width), _too_long(text, width)
        # narrow: a row per metric, the percentiles that fit, the same figures as the CSV
        table = _table_after(text, "Percentiles")
        header, body = table[0], table[1:]
        assert header[0] == "Metric" and "50%" in header and "99%" in header
        assert [row[0] for row in body] == list(expected)
        for row in body:
            for label, value in zip(header[1:], row[1:]):
                assert _close(_number(value), expected[row[0]][label]), (row[0], label, value)
        assert "benchmark_percentile.csv" in text  # says where the left-out percentiles are
    # a terminal wide enough, or output into a pipe with no COLUMNS: evalscope's full table
    for text in (_report(run_dir, WIDE), _report(run_dir)):
        table = _table_after(text, "Percentiles")
        assert table[0] == ["Percentiles", *expected]
        assert [row[0] for row in table[1:]] == list(next(iter(expected.values())))
        for row in table[1:]:
            for metric, value in zip(table[0][1:], row[1:]):
                assert _close(_number(value), expected[metric][row[0]]), (metric, row[0], value)


def test_a_sweep_ends_with_one_line_per_run_that_fits(sweep):
    outputs = [(sweep["stdout"], 80), (_report(sweep["root"], 100, "--slo", "ttft=10s"), 100),
               (_report(sweep["root"], WIDE, "--slo", "ttft=10s"), None)]
    summaries = [json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
                 for db in sweep["dbs"]]  # as the report just wrote them, with the same SLO as the run
    for text, width in outputs:
        table = _table_after(text, "Sweep summary")
        header, body = table[0], table[1:]
        assert len(body) == 2, table
        if width:
            assert not _too_long(text, width), _too_long(text, width)
        else:
            assert header == ["concurrency", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50",
                              "TPOT p99", "lat p99", "goodput", "failed"]
        col = {name: i for i, name in enumerate(header)}
        for row, summ, db in zip(body, summaries, sweep["dbs"]):
            assert int(row[col["concurrency"]]) == summ["Concurrency"]
            assert _close(_number(row[col["req/s"]]), summ["Req Throughput (req/s)"])
            assert row[col["failed"]] == f"{summ['Failed Requests']}/{summ['Total Requests']}"
            if "goodput" in col:
                assert _close(_number(row[col["goodput"]]), summ["Goodput (req/s)"])
            if "TTFT p99" in col:
                assert _close(_number(row[col["TTFT p99"]]), _percentile_csv(db)["TTFT (ms)"]["99%"])


def test_the_summary_starts_with_what_was_tested(tmp_path, mock):
    key, password = "sk-" + uuid.uuid4().hex, "pw" + uuid.uuid4().hex
    parts = urlsplit(mock.chat_url)
    url = parts._replace(netloc=f"bench:{password}@{parts.netloc}").geturl()
    before = time.time()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\nCount to three.\n")
    proc = run_engine("--url", url, "--model", "tiny-model", "--api-key", key, "--number", 3, "--no-plots",
                      "--dataset", "line_by_line", "--dataset-path", prompts, "--outputs-dir", tmp_path / "out",
                      env={"COLUMNS": "100"})
    (db,) = find_dbs(tmp_path / "out")
    assert key not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr
    con = sqlite3.connect(db)
    (version,) = con.execute("SELECT version FROM run").fetchone()
    con.close()
    assert version == installed_version()
    assert proc.stdout.startswith("Benchmark summary:")
    fields = _tested(proc.stdout)
    assert list(fields) == ["URL", "Model", "API", "Dataset", "Date", "Version", "Database"]
    assert fields["URL"] == f"{parts.scheme}://***@{parts.netloc}{parts.path}"
    assert fields["Model"] == "tiny-model" and fields["API"] == "openai"
    assert fields["Dataset"] == f"line_by_line ({prompts})"
    assert fields["Version"] == f"servegauge {version}"
    date = dt.datetime.strptime(fields["Date"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.timezone.utc)
    assert before - 1 <= date.timestamp() <= time.time()
    # the report rebuilt from the database alone says the same
    assert _tested(_report(db, 100)) == fields


def _tested(text: str) -> dict[str, str]:
    """The "what was tested" lines above the summary table: name -> value."""
    head = text[:text.index("┌")]
    return dict(re.findall(r"(?m)^  (\w+): +(.*)$", head))


def test_rate_says_open_loop_and_no_stream_labels_ttft(tmp_path, mock, sweep):
    proc = run_engine("--url", mock.chat_url, "--rate", 40, 80, "--number", 4, 4, "--no-stream", "--no-plots",
                      "--outputs-dir", tmp_path, env={"COLUMNS": str(WIDE)})
    summary = dict((row[0], row[1]) for row in _tables(proc.stdout)[0][1:])
    assert summary["Concurrency"] == f"open loop, at most {RATE_DEFAULT_PARALLEL} in flight"
    assert "Avg TTFT (ms) (= latency, not streamed)" in summary
    percentiles = _table_after(proc.stdout, "Percentiles")
    assert "TTFT (ms) (= latency, not streamed)" in percentiles[0]
    narrow = _report(os.path.dirname(find_dbs(tmp_path)[0]), 80)
    assert _table_after(narrow, "Percentiles")[1][0] == "TTFT (ms) (= latency, not streamed)"
    sweep_rows = _table_after(proc.stdout, "Sweep summary")
    assert sweep_rows[0][:2] == ["rate req/s", "max in flight"]
    assert [r[:2] for r in sweep_rows[1:]] == [["40", str(RATE_DEFAULT_PARALLEL)], ["80", str(RATE_DEFAULT_PARALLEL)]]
    # a closed loop's concurrency is the load, and a streamed TTFT is a first token's
    closed = dict((row[0], row[1]) for row in _tables(_report(os.path.dirname(sweep["dbs"][0]), WIDE))[0][1:])
    assert closed["Concurrency"] == "1" and "Avg TTFT (ms)" in closed
    assert "not streamed" not in sweep["stdout"]


def test_errors_and_warnings_fit_a_narrow_terminal(tmp_path):
    """Failures add the errors-by-reason table (long reasons) and warnings
    (long prose): at 60 columns they are cut and wrapped, not left wide."""
    with start_mock(["--ttft-ms", "5", "--itl-ms", "1", "--tokens", "8", "--fault", "http500=0.5",
                     "--fault-seed", "3"]) as faulty:
        proc = run_engine("--url", faulty.chat_url, "--number", 8, "--no-plots", "--outputs-dir", tmp_path,
                          env={"COLUMNS": "60"}, check=False)
    assert "Errors by reason" in proc.stdout, proc.stdout + proc.stderr
    reasons = _table_after(proc.stdout, "Errors by reason")
    assert reasons[0] == ["Reason", "Count"] and reasons[1][0].startswith("HTTP 500")
    assert not _too_long(proc.stdout, 60), _too_long(proc.stdout, 60)
    wide = _report(os.path.dirname(find_dbs(tmp_path)[0]), WIDE)
    full = _table_after(wide, "Errors by reason")[1][0]
    assert len(full) > 60 and full.startswith(reasons[1][0].rstrip("…"))  # the whole reason when there is room


def test_the_ray_node_table_fits_too(sweep):
    """The node table of --backend ray, on a real run's report with two
    nodes' rows as `analysis.nodes` shapes them (no Ray needed here)."""
    import dataclasses

    from analysis.nodes import NODE_COLUMNS, NODES_KEY
    from analysis.result import analyse
    from analysis.tables import console_report

    result = analyse(sweep["dbs"][1], plots=False)
    nodes = [{"Node": f"10.0.0.{i}", "Requests": 3, "Failed": 0, "Avg TTFT (ms)": 21.5 + i,
              "P50 TTFT (ms)": 21.0 + i, "P90 TTFT (ms)": 22.25 + i, "P99 TTFT (ms)": 23.5 + i} for i in (5, 6)]
    result = dataclasses.replace(result, summary={**result.summary, NODES_KEY: nodes})
    narrow = console_report(result, width=80)
    assert not _too_long(narrow, 80), _too_long(narrow, 80)
    table = _table_after(narrow, "Load generator nodes")
    header = table[0]
    assert header[:3] == ["Node", "Requests", "Failed"] and "P99 TTFT (ms)" in header  # the tail kept longest
    assert len(header) < len(NODE_COLUMNS) and header == [c for c in NODE_COLUMNS if c in header]
    assert "left out" in narrow[narrow.index("Load generator nodes"):]
    assert [row[0] for row in table[1:]] == ["10.0.0.5", "10.0.0.6"]
    wide = _table_after(console_report(result, width=WIDE), "Load generator nodes")
    assert wide[0] == list(NODE_COLUMNS)
