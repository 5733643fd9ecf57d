"""Reports: a run's files (JSON, CSV, PNG), a sweep's page, and the writer.

`write_files` is the only function here (and in `analysis`) that writes a
file; the tables (`analysis.tables`), the page (`analysis.html_report`)
and the plots build strings and bytes.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
from typing import Mapping, Sequence

import pandas as pd

from analysis.formatting import RATE_UNLIMITED, clean, natural_key, to_json
from analysis.html_report import render_html
from analysis.loader import resolve_db
from analysis.redaction import redact
from analysis.result import RunResult, analyse
from analysis.slo import check_slo
from analysis.tables import console_report

SUMMARY_JSON = "benchmark_summary.json"
ARGS_JSON = "benchmark_args.json"  # as evalscope perf: the run's arguments, no secrets
PERCENTILE_JSON = "benchmark_percentile.json"
PERCENTILE_CSV = "benchmark_percentile.csv"
REPORT_HTML = "report.html"
SWEEP_JSON = "sweep_summary.json"


# -- the one writer ----------------------------------------------------------------

def write_files(out_dir: str, files: Mapping[str, bytes | str]) -> dict[str, str]:
    """Write `files` (name -> content) into `out_dir`, each atomically
    (a reader never sees half a file); return name -> path."""
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, content in files.items():
        path = os.path.join(out_dir, name)
        tmp = f"{path}.tmp{os.getpid()}"
        data = content.encode("utf-8") if isinstance(content, str) else content
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        written[name] = path
    return written


# -- files ---------------------------------------------------------------------------

def percentile_rows(pct: pd.DataFrame) -> list[dict]:
    """benchmark_percentile.json: a list of row dicts, NaN as null."""
    return clean(pct.to_dict(orient="records"))


def run_files(result: RunResult) -> dict[str, bytes | str]:
    table = pd.DataFrame(percentile_rows(result.percentiles), columns=list(result.percentiles.columns))
    files: dict[str, bytes | str] = {
        SUMMARY_JSON: to_json(result.summary),
        PERCENTILE_JSON: to_json(percentile_rows(result.percentiles)),
        PERCENTILE_CSV: table.to_csv(index=False, lineterminator="\n"),
    }
    if result.run.get("args"):  # Arguments.public_dict() as the run table holds it
        files[ARGS_JSON] = json.dumps(redact(result.run["args"]), indent=4, ensure_ascii=False, default=str) + "\n"
    files.update({f"{name}.png": png for name, png in result.pngs.items()})
    return files


# -- sweep --------------------------------------------------------------------------

def sweep_frame(results: Sequence[RunResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row for r in results])


def sweep_outputs(results: Sequence[RunResult], plots: bool = True, preface: str = "") -> dict[str, bytes | str]:
    """report.html (+ sweep plots and table when there are several runs)."""
    sweep = sweep_frame(results)
    files: dict[str, bytes | str] = {}
    pngs: dict[str, bytes] = {}
    if len(results) > 1:
        if plots:
            from analysis.plot_style import render_pngs
            from analysis.sweep_plots import sweep_figures

            pngs = render_pngs(sweep_figures(sweep))
            files.update({f"{name}.png": png for name, png in pngs.items()})
        files[SWEEP_JSON] = to_json(sweep.to_dict(orient="records"))
    files[REPORT_HTML] = render_html(results, sweep, pngs, preface=preface)
    return files


def order_results(results: Sequence[RunResult]) -> list[RunResult]:
    """By concurrency, then rate, then name (natural order)."""
    def key(r: RunResult):
        c = r.summary.get("Concurrency")
        rate = r.summary.get("Request Rate (req/s)")
        rate = math.inf if rate == RATE_UNLIMITED else rate
        return (c if isinstance(c, (int, float)) else math.inf,
                rate if isinstance(rate, (int, float)) else math.inf, natural_key(r.name))
    return sorted(results, key=key)


# -- public API ------------------------------------------------------------------------

def write_run_report(db_path: str, out_dir: str | None = None, slo: dict | None = None, plots: bool = True,
                     console: bool = True) -> dict:
    """Write one run's benchmark_args.json, benchmark_summary.json,
    benchmark_percentile.json/.csv (and PNG plots) next to its database or
    into `out_dir`; print the tables when `console`; return the summary dict."""
    db = resolve_db(db_path)
    slo = check_slo(slo)
    result = analyse(db, slo, plots)
    write_files(out_dir or os.path.dirname(os.path.abspath(db)), run_files(result))
    if console:
        print(console_report(result), file=sys.stdout, flush=True)
    return copy.deepcopy(result.summary)  # the caller's to change; the cached result stays as built


def write_sweep_report(paths: list[str], out_dir: str, slo: dict | None = None, plots: bool = True,
                       preface: str = "") -> str:
    """Write one self-contained report.html for several runs (databases or
    run folders) into `out_dir`, with the sweep table (sweep_summary.json)
    and plots; return its path.  Runs are ordered by concurrency, then rate.  `preface`:
    HTML put first, under the title (an SLA search's answer)."""
    if not paths:
        raise ValueError("write_sweep_report: no runs given")
    slo = check_slo(slo)
    results = order_results([analyse(resolve_db(p), slo, plots=plots) for p in paths])
    written = write_files(out_dir, sweep_outputs(results, plots=plots, preface=preface))
    return written[REPORT_HTML]
