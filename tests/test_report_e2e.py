"""Issue 4's acceptance, end to end: a real run against the mock, its database
alone re-reported elsewhere, and the HTML report opened in headless Chromium."""
from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile

import pytest

from conftest import find_dbs, rows, run_engine

RUN_FILES = ("benchmark_args.json", "benchmark_summary.json", "benchmark_percentile.json", "benchmark_percentile.csv")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mock):
    """A real two-run sweep through `python -m engine` (plots and report.html on)."""
    out = tmp_path_factory.mktemp("sweep")
    run_engine("--url", mock.chat_url, "--parallel", 1, 4, "--number", 8, 24, "--workers", 1,
               "--outputs-dir", out, "--no-timestamp", "--name", "e2e")
    dbs = find_dbs(out)
    assert len(dbs) == 2, dbs
    (html_path,) = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files if f == "report.html"]
    return {"dbs": dbs, "html": html_path, "root": os.path.dirname(html_path)}


def _png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def _nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_a_lone_copy_of_a_real_runs_database_rebuilds_the_same_reports(sweep, tmp_path):
    db = sweep["dbs"][1]  # the parallel-4 run
    run_dir = os.path.dirname(db)
    made = sorted(f for f in os.listdir(run_dir) if not f.startswith("benchmark_data.db"))
    pngs = [f for f in made if f.endswith(".png")]
    # run_complete.json: the run's own marker for --resume (a report does not write it)
    assert made == sorted(list(RUN_FILES) + ["run_complete.json"] + pngs) and len(pngs) >= 6, made

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copyfile(db, lone / "benchmark_data.db")  # the database alone: no -wal, no reports, no run folder
    proc = run_engine("report", lone)  # the folder form, reports written next to the copy
    assert "Benchmark summary" in proc.stdout and "Percentiles" in proc.stdout
    elsewhere = tmp_path / "out"
    run_engine("report", lone / "benchmark_data.db", "--out", elsewhere, "--quiet", "--no-plots")  # the file form

    for folder, plots in ((lone, pngs), (elsewhere, [])):
        regenerated = sorted(f for f in os.listdir(folder) if f != "benchmark_data.db")
        assert regenerated == sorted(list(RUN_FILES) + plots + ["report.html"]), regenerated
        for name in RUN_FILES + tuple(plots):  # byte for byte what the run itself wrote
            with open(os.path.join(run_dir, name), "rb") as a, open(folder / name, "rb") as b:
                assert a.read() == b.read(), f"{folder / name} differs from the run's own {name}"
        page = (folder / "report.html").read_text(encoding="utf-8")
        assert "<script" not in page and page.count("<img ") == len(plots)
        assert re.search(r"<h2>Run parallel_4_number_24</h2>", page)

    # the server's /metrics, scraped during the run, are in the copy and rebuild the same server figures
    scrapes = rows(db, "SELECT COUNT(DISTINCT time) AS n FROM server_metrics")[0]["n"]
    server = json.loads((lone / "benchmark_summary.json").read_text())["Server Metrics"]
    assert server["Server"] == "vllm" and server["Scrapes"] == scrapes >= 2
    assert server["Max Running requests"] <= 4  # the run's --parallel
    page = (lone / "report.html").read_text(encoding="utf-8")
    assert "<h3>Server metrics</h3>" in page and "Server vs client latency" in page

    # and the figures are the database's, computed here without the analysis package
    measured = rows(db, "SELECT success, first_chunk_latency FROM result WHERE is_warmup = 0")
    summary = json.loads((lone / "benchmark_summary.json").read_text())
    assert summary["Total Requests"] == len(measured) == 24
    assert summary["Success Requests"] == sum(r["success"] for r in measured)
    table = {r["Percentiles"]: r for r in json.loads((lone / "benchmark_percentile.json").read_text())}
    ttft = [r["first_chunk_latency"] * 1000 for r in measured if r["success"]]
    for label, p in (("50%", 50), ("99%", 99)):
        assert table[label]["TTFT (ms)"] == pytest.approx(_nearest_rank(ttft, p), abs=1e-4)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="sb-chromium-") as profile:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=60)


# A test-only probe: the report itself ships no script.  On `load` every image
# has either decoded or failed, so `naturalWidth` tells which.
PROBE = """<img id="probe-broken" alt="probe: broken on purpose" src="data:image/png;base64,AAAA">
<script>
addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                                 w: i.naturalWidth, h: i.naturalHeight}));
  const tables = [...document.querySelectorAll("table")].map(t => [...t.rows].map(
      r => [...r.cells].map(c => c.textContent.trim())));
  const out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify({images, tables});
  document.body.appendChild(out);
});
</script>
"""


def test_the_html_report_renders_in_headless_chromium(sweep, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (CI installs Debian's `chromium`; apt-get install -y chromium)")
    page = open(sweep["html"], encoding="utf-8").read()
    assert "<script" not in page
    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = _run_chromium(binary, "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe result in the dumped DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))

    *images, broken = result["images"]
    assert broken["alt"].startswith("probe") and not broken["ok"]  # the probe does see a broken image
    on_disk = sorted(os.path.join(d, f) for d, _, files in os.walk(sweep["root"]) for f in files
                     if f.endswith(".png"))
    # the sweep's 3 + its server figure, 6 per run
    assert len(images) == len(on_disk) == 4 + 2 * 6, [i["alt"] for i in images]
    assert all(i["ok"] for i in images), [i["alt"] for i in images if not i["ok"]]
    assert sorted((i["w"], i["h"]) for i in images) == sorted(_png_size(p) for p in on_disk)

    tables = result["tables"]
    sweep_table = next(t for t in tables if t[0][0] == "Run")
    # two header rows ("TTFT (ms)" over "avg", "p50", "p99"), then one row per run
    assert len(sweep_table) == 2 + 2 and "TTFT (ms)" in sweep_table[0] and "p99" in sweep_table[1]
    percentile_tables = [t for t in tables if t[0][0] == "Percentiles"]
    assert len(percentile_tables) == 2
    for t in percentile_tables:
        assert [r[0] for r in t[1:]] == ["min", "1%", "5%", "10%", "25%", "50%", "75%", "90%", "95%", "99%",
                                         "99.9%", "max"]
        assert "TTFT (ms)" in t[0] and all(cell != "" for r in t for cell in r)
    summaries = [dict(t[1:]) for t in tables if t[0] == ["Key", "Value"]]
    assert [s["Total Requests"] for s in summaries] == ["8", "24"]

    # a screenshot of the page as a person sees it: the right size and not blank
    shot = tmp_path / "report.png"
    proc = _run_chromium(binary, "--window-size=1400,3000", f"--screenshot={shot}", check.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    assert _png_size(str(shot)) == (1400, 3000)
    from matplotlib.image import imread

    pixels = imread(str(shot))[..., :3]
    inked = (pixels < 0.8).any(axis=2).mean(axis=1)  # share of non-white pixels per screen row
    # (a blank page inks no row; this one inks about 30 %: tables, plots, white margins between)
    assert (inked > 0.01).mean() > 0.2, "the screenshot is mostly blank"
