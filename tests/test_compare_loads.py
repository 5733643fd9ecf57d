"""compare at unequal loads: the first line warns when A and B ran different
loads (read from the databases' `run` table), every metric's change comes with
its interval, and two sweep folders are compared run by run at equal loads."""
from __future__ import annotations

import os
import re

import pytest

from conftest import find_dbs, run_engine
from test_analysis_dbutil import T0, req, write_db

ARGS = {"parallel": 4, "rate": None, "model": "m", "url": "http://127.0.0.1:8000/v1/chat/completions",
        "dataset": "openqa", "max_tokens": 64, "api": "openai", "stream": True, "api_key": "***"}


def _run(folder, args: dict, n: int = 120, ttft_s: float = 0.05, spacing_s: float = 0.02) -> str:
    """A run of n requests, each TTFT a little different (a deterministic spread)."""
    rows = [req(i, start=T0 + i * spacing_s, ttft=ttft_s * (1 + (i % 7) / 50), latency=0.3 + (i % 5) / 100,
                completion=16) for i in range(n)]
    write_db(str(folder), rows, args=args, name=os.path.basename(str(folder)))
    return str(folder)


def _compare(a, b, *extra) -> str:
    proc = run_engine("compare", a, b, "--resamples", 200, *extra)
    assert proc.stderr == ""
    return proc.stdout


def test_a_difference_in_load_is_the_first_line(tmp_path):
    a = _run(tmp_path / "c4", ARGS)
    b = _run(tmp_path / "c16", {**ARGS, "parallel": 16, "model": "m2", "max_tokens": 256,
                                "url": "http://user:s3cret@127.0.0.1:9000/v1/chat/completions"},
             spacing_s=0.005)  # four times the request rate: the throughputs rise, the latencies do not
    out = _compare(a, b)
    first = out.splitlines()[0]
    assert first.startswith("WARNING: A and B were run differently ("), out
    for phrase in ("concurrency 4 vs 16", "model m vs m2", "max tokens 64 vs 256",
                   "URL http://127.0.0.1:8000/v1/chat/completions vs http://***@127.0.0.1:9000/v1/chat/completions"):
        assert phrase in first, (phrase, first)
    assert "s3cret" not in out
    assert "dataset" not in first and "rate" not in first  # only what differs
    # the throughput rose; the words say so even though no latency moved
    thr = next(line for line in out.splitlines() if line.startswith("Throughput (one figure per run"))
    pct = float(re.search(r"Req Throughput \S+ -> \S+ req/s \(([+-][\d.]+)%\)", thr).group(1))
    assert pct > 100, thr  # 120 requests in ~0.9 s against ~2.7 s
    assert "Changed: nothing" not in out


def test_equal_loads_give_no_warning_and_a_missing_run_table_is_said(tmp_path):
    a = _run(tmp_path / "a", ARGS)
    b = _run(tmp_path / "b", dict(ARGS))
    out = _compare(a, b)
    assert out.splitlines()[0].startswith("A: ") and "WARNING" not in out
    rows = [req(i, start=T0 + i * 0.02) for i in range(40)]
    foreign = write_db(str(tmp_path / "foreign"), rows, with_run=False)
    first = _compare(a, foreign).splitlines()[0]
    assert first.startswith("WARNING: ") and "B has no `run` table: the load cannot be checked" in first


def _cells(out: str, label: str) -> list[str]:
    line = next(l for l in out.splitlines() if l.startswith(f"│ {label} "))
    return [c.strip() for c in line.strip("│").split("│")]


def test_every_latency_figure_has_an_interval_and_a_verdict(tmp_path):
    a = _run(tmp_path / "a", ARGS, ttft_s=0.05)
    b = _run(tmp_path / "b", ARGS, ttft_s=0.08)  # 30 ms slower first tokens
    out = _compare(a, b)
    for metric in ("TTFT (ms)", "TPOT (ms)", "ITL (ms)", "Latency (s)"):
        for stat in ("mean", "p50"):
            cells = _cells(out, f"{metric} {stat}")
            assert re.fullmatch(r"\[[-+][\d.,]+, [-+][\d.,]+\]", cells[4]), (metric, stat, cells)
            assert cells[5] in ("changed", "within noise", "not significant"), cells
    lo, hi = (float(x.replace(",", "")) for x in _cells(out, "TTFT (ms) mean")[4].strip("[]").split(", "))
    # the true difference of the means, from the rows written above
    true = sum(0.03 * (1 + (i % 7) / 50) for i in range(120)) / 120 * 1000
    assert lo < true < hi and lo > 0
    assert _cells(out, "TTFT (ms) mean")[5] == "changed"
    assert "  TTFT mean: " in out.split("Changed (")[1]


def test_two_sweep_folders_are_paired_by_concurrency(tmp_path):
    for side, loads in (("A", (1, 4, 16)), ("B", (4, 16, 64))):
        for c in loads:
            _run(tmp_path / side / f"c{c}_{side}", {**ARGS, "parallel": c})
    out = _compare(tmp_path / "A", tmp_path / "B")
    head = out.split("\n\n")[0]
    assert "WARNING" not in head, head
    assert "2 pairs (concurrency 4, concurrency 16)" in head
    assert re.search(r"^Only in A, not compared: concurrency 1 \(\S*c1_A\S*\)$", head, re.M), head
    assert re.search(r"^Only in B, not compared: concurrency 64 \(\S*c64_B\S*\)$", head, re.M), head
    blocks = re.split(r"^=== (.+) ===$", out, flags=re.M)[1:]
    assert [blocks[0], blocks[2]] == ["concurrency 4", "concurrency 16"]
    for c, block in zip((4, 16), (blocks[1], blocks[3])):
        lines = block.strip().splitlines()
        assert lines[0].startswith(f"A: c{c}_A ") and lines[1].startswith(f"B: c{c}_B "), lines[:2]


def test_paced_sweeps_pair_by_rate_and_a_pair_at_another_model_is_warned(tmp_path):
    for side, rates in (("A", (5, 10)), ("B", (10, 20))):
        for r in rates:
            model = "m2" if (side, r) == ("B", 10) else "m"
            _run(tmp_path / side / f"r{r}", {**ARGS, "parallel": 64, "rate": float(r), "model": model})
    out = _compare(tmp_path / "A", tmp_path / "B")
    first = out.splitlines()[0]
    assert first.startswith("WARNING: 1 of the 1 pairs were run differently (at rate 10 req/s: model m vs m2)")
    assert "Only in A, not compared: rate 5 req/s" in out and "Only in B, not compared: rate 20 req/s" in out
    assert "=== rate 10 req/s ===" in out


def test_sweeps_without_a_common_load_are_one_line(tmp_path):
    _run(tmp_path / "A" / "c1", {**ARGS, "parallel": 1})
    _run(tmp_path / "A" / "c2", {**ARGS, "parallel": 2})
    _run(tmp_path / "B" / "c8", {**ARGS, "parallel": 8})
    proc = run_engine("compare", tmp_path / "A", tmp_path / "B", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "no load in common" in line and "concurrency 8" in line and "Traceback" not in line


def test_real_sweeps_against_the_mock_pair_by_load(tmp_path, mock):
    for side, loads in (("a", ("1", "2")), ("b", ("2", "4"))):
        run_engine("--url", mock.chat_url, "--parallel", *loads, "--number", 6, 6, "--workers", 1, "--no-plots",
                   "--outputs-dir", tmp_path / side, "--no-timestamp", "--name", side)
    assert len(find_dbs(tmp_path / "a")) == len(find_dbs(tmp_path / "b")) == 2
    out = _compare(tmp_path / "a", tmp_path / "b")
    assert out.splitlines()[0].startswith("Sweeps paired by load: ") and "1 pair (concurrency 2)" in out
    assert "Only in A, not compared: concurrency 1 (" in out and "Only in B, not compared: concurrency 4 (" in out
    block = out.split("=== concurrency 2 ===")[1]
    assert re.search(r"^A: parallel_2_number_6 .*a/", block, re.M) and re.search(r"^B: parallel_2_number_6 .*b/",
                                                                                   block, re.M)


def test_a_sweep_against_one_run_compares_the_run_of_its_load(tmp_path):
    for c in (1, 4, 16):
        _run(tmp_path / "sweep" / f"c{c}", {**ARGS, "parallel": c})
    one = _run(tmp_path / "one" / "c4_new", {**ARGS, "parallel": 4})
    out = _compare(tmp_path / "sweep", one)
    assert "1 pair (concurrency 4)" in out and "WARNING" not in out
    assert re.search(r"^Only in A, not compared: concurrency 1 \(.*\), concurrency 16 \(.*\)$", out, re.M), out
    assert "Only in B" not in out
    block = out.split("=== concurrency 4 ===")[1].strip().splitlines()
    assert block[0].startswith("A: c4 ") and block[1].startswith("B: c4_new "), block[:2]
