"""The report command and API on real databases: files, regeneration, HTML, errors."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

try:
    from test_analysis_dbutil import ROOT, T0, req, write_db
except ImportError:
    from tests.test_analysis_dbutil import ROOT, T0, req, write_db

import analysis
from analysis.cli import report_main

RUN_FILES = ("benchmark_args.json", "benchmark_summary.json", "benchmark_percentile.json", "benchmark_percentile.csv")
PNGS = ("latency_distribution.png", "ttft_distribution.png", "tpot_distribution.png", "itl_distribution.png",
        "timeline.png", "ttft_vs_prompt.png")
SECRET = "sk-very-secret-0123"


def _rows(n: int, scale: float = 1.0, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        latency = scale * (0.5 + (i % 7) * 0.1)
        ttft = scale * (0.05 + (i % 5) * 0.01)
        rows.append(req(offset + i, start=T0 + i * 0.2, latency=latency, ttft=ttft, completion=4 + i % 6,
                        prompt=50 + 10 * i, lag=0.001 * (i % 3)))
    rows.append(req(offset + n, start=T0 + 1, latency=0.2, success=0, status=500, error="HTTP 500: oops 123"))
    rows.append(req(offset + n + 1, start=T0 - 5, latency=0.3, warmup=1))
    return rows


def _args(parallel: int) -> dict:
    return {"parallel": parallel, "rate": None, "api_key": SECRET, "model": "m",
            "headers": {"Authorization": f"Bearer {SECRET}", "X-Trace": "ok"}}


def _cli(*argv: str) -> subprocess.CompletedProcess:
    code = "import sys, analysis.cli as c; sys.exit(c.report_main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _check_html(path: str) -> str:
    text = open(path, encoding="utf-8").read()
    imgs = re.findall(r"<img\b[^>]*>", text)
    assert imgs, "no plots in the report"
    for tag in imgs:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag), tag
    # nothing fetched from elsewhere: no external scripts, styles, fonts or links
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "<script" not in text and "@import" not in text and "url(" not in text
    assert SECRET not in text
    return text


def test_report_from_a_lone_copy_regenerates_the_same_json(tmp_path, capsys):
    run = tmp_path / "run"
    db = write_db(str(run), _rows(30), args=_args(4))
    assert report_main([str(run), "--no-plots"]) == 0  # the first generation, next to the database
    out = capsys.readouterr()
    assert "Benchmark summary" in out.out and "Percentiles" in out.out
    for name in RUN_FILES + ("report.html",):
        assert os.path.getsize(run / name) > 0, name

    lone = tmp_path / "elsewhere"
    lone.mkdir()
    shutil.copy(db, lone / "benchmark_data.db")  # the database alone, no -wal/-shm, no reports
    again = _cli(str(lone / "benchmark_data.db"), "--quiet")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    for name in RUN_FILES + PNGS + ("report.html",):
        assert os.path.getsize(lone / name) > 0, name
    for name in ("benchmark_summary.json", "benchmark_percentile.json"):
        assert json.loads((lone / name).read_text()) == json.loads((run / name).read_text())
    assert (lone / "benchmark_percentile.csv").read_text() == (run / "benchmark_percentile.csv").read_text()

    summary = json.loads((lone / "benchmark_summary.json").read_text())
    assert summary["Total Requests"] == 31 and summary["Failed Requests"] == 1
    assert summary["Warmup Requests"] == 1
    rows = json.loads((lone / "benchmark_percentile.json").read_text())
    assert [r["Percentiles"] for r in rows][:3] == ["min", "1%", "5%"] and rows[-1]["Percentiles"] == "max"
    html = _check_html(str(lone / "report.html"))
    assert "Arguments of the run" in html and "X-Trace" in html


def test_write_run_report_api(tmp_path, capsys):
    db = write_db(str(tmp_path / "run"), _rows(12), args=_args(2))
    out = tmp_path / "out"
    summary = analysis.write_run_report(db, out_dir=str(out), slo={"ttft_ms": 80.0}, plots=False, console=False)
    assert capsys.readouterr().out == ""
    assert summary["Goodput (req/s)"] is not None and summary["SLO"] == {"ttft_ms": 80.0}
    assert sorted(os.listdir(out)) == sorted(RUN_FILES)
    assert json.loads((out / "benchmark_summary.json").read_text()) == json.loads(json.dumps(summary))
    analysis.write_run_report(db, plots=False)  # next to the database, tables on stdout
    assert "Req Throughput (req/s)" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "run" / "benchmark_summary.json")


def test_sweep_folder(tmp_path):
    sweep = tmp_path / "sweep"
    for parallel, scale in ((1, 1.0), (4, 1.3), (16, 2.0)):
        write_db(str(sweep / f"parallel_{parallel}"), _rows(15, scale), args=_args(parallel), name=f"p{parallel}")
    out = tmp_path / "out"
    assert report_main([str(sweep), "--out", str(out), "--quiet", "--slo", "ttft=100ms"]) == 0
    for parallel in (1, 4, 16):
        for name in RUN_FILES + PNGS:
            assert (out / f"parallel_{parallel}" / name).exists(), (parallel, name)
    for name in ("sweep_throughput.png", "sweep_ttft_vs_throughput.png", "sweep_tpot_vs_throughput.png",
                 "sweep_summary.json"):
        assert (out / name).exists(), name
    table = json.loads((out / "sweep_summary.json").read_text())
    assert [r["Concurrency"] for r in table] == [1, 4, 16]
    html = _check_html(str(out / "report.html"))
    assert html.count("<section") == 3 and "Sweep" in html

    path = analysis.write_sweep_report([str(sweep / "parallel_16"), str(sweep / "parallel_1")],
                                       str(tmp_path / "api"), plots=False)
    assert path.endswith("report.html") and os.path.exists(path)
    assert [r["Concurrency"] for r in json.loads((tmp_path / "api" / "sweep_summary.json").read_text())] == [1, 16]


def test_report_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.db").write_bytes(b"\x00garbage" * 200)
    write_db(str(tmp_path / "run"), _rows(3))
    for argv, message in ((["missing"], "no such file or folder"),
                          (["empty"], "no benchmark_data.db"),
                          (["junk.db"], "SQLite"),
                          (["run", "--slo", "ttft=fast"], "--slo")):
        argv = [str(tmp_path / argv[0]), *argv[1:]]
        assert report_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
    # and as a real process: one line on stderr, status 2, no traceback
    proc = _cli(str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"servegauge report: error: {tmp_path / 'missing'}: no such file or folder"]


def test_report_help_and_usage_errors(capsys):
    assert report_main(["--help"]) == 0
    assert "--slo" in capsys.readouterr().out
    assert report_main([]) == 2  # argparse's usage error


def test_degenerate_runs_still_report(tmp_path, recwarn):
    """No rows at all; one success with identical gaps plus a row whose worker died (no latency)."""
    empty = write_db(str(tmp_path / "empty"), [])
    odd = write_db(str(tmp_path / "odd"), [req(0, latency=1.0, ttft=0.1, completion=5),
                                           req(1, success=0, latency=None, error="worker died", status=None)])
    for db in (empty, odd):
        summary = analysis.write_run_report(db, plots=True, console=False)
        folder = os.path.dirname(db)
        for name in RUN_FILES + PNGS:
            assert os.path.getsize(os.path.join(folder, name)) > 0, (db, name)
    assert summary["Failed Requests"] == 1 and summary["Errors"] == {"worker died": 1}
    assert summary["Test Duration (s)"] == 1.0
    assert not [w for w in recwarn if "plot" in str(w.message)]
