"""The HTML report of a wide sweep (18 columns: a rate sweep with --slo, long
run names) laid out by headless Chromium at 1400 and 1000 px: no table is
wider than its container, and the page does not scroll sideways."""
from __future__ import annotations

import html
import json
import re

import pytest

from test_analysis_dbutil import T0, req, write_db
from test_report_e2e import _chromium, _run_chromium

from analysis.report import write_sweep_report

# A test-only probe, run by Chromium after layout: each table's container's
# scrollWidth against its clientWidth (a table wider than its box makes the
# first larger), and the document's.
PROBE = """<script>
addEventListener("load", () => {
  const tables = [...document.querySelectorAll("table")].map(t => ({
    first: t.rows[0].cells[0].textContent.trim(), rows: t.rows.length,
    cells: [...t.rows].map(r => r.cells.length),
    scroll: t.parentElement.scrollWidth, client: t.parentElement.clientWidth,
    right: t.getBoundingClientRect().right}));
  const doc = document.documentElement;
  const out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify({tables, scroll: doc.scrollWidth, client: doc.clientWidth,
                                    width: innerWidth});
  document.body.appendChild(out);
});
</script>
"""


# a server's error body as it comes, one unbroken JSON string
LONG_ERROR = 'HTTP 503: {"error":{"message":"' + "upstream_overloaded_" * 12 + '","type":"ServiceUnavailable"}}'


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("wide")
    paths = []
    for k, rate in enumerate((2.5, 10, 12.5)):
        rows = [req(i, start=T0 + i / rate, latency=0.8 + (i % 9) / 20, ttft=0.05 + (i % 5) / 100, completion=40,
                    prompt=1000 + i, success=0 if i % 17 == 3 else 1, error=LONG_ERROR if i % 17 == 3
                    else None, status=503 if i % 17 == 3 else 200) for i in range(60)]
        name = f"parallel_256_number_10000_rate_{rate:g}"
        paths.append(write_db(str(base / name), rows, name=name,
                              args={"parallel": 256, "rate": rate, "number": 10000, "model": "qwen2.5-7b-instruct",
                                    "url": "http://127.0.0.1:8000/v1/chat/completions"}))
    page = write_sweep_report(paths, str(base / "sweep"), slo="ttft=200ms,tpot=50ms", plots=False)
    return open(page, encoding="utf-8").read()


@pytest.mark.parametrize("width", [1400, 1000])
def test_no_table_overflows_its_container(report, tmp_path, width):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (CI installs Debian's `chromium`; apt-get install -y chromium)")
    assert "<script" not in report
    check = tmp_path / "check.html"
    check.write_text(report.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = _run_chromium(binary, f"--window-size={width},2000", "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe result in the dumped DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))
    assert result["width"] == width

    tables = result["tables"]
    too_wide = [t for t in tables if t["scroll"] > t["client"] or t["right"] > result["client"]]
    assert too_wide == [], too_wide
    assert result["scroll"] <= result["client"], result
    (sweep,) = [t for t in tables if t["first"] == "Run"]
    # every column of the sweep is there: two header rows, then one row per run of 18 cells (with Goodput)
    assert sweep["rows"] == 2 + 3 and sweep["cells"][2:] == [18, 18, 18], sweep
    assert len(tables) > 1 + 3 * 3  # and the runs' own tables
