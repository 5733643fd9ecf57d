"""Reports: console tables, per-run JSON/CSV/PNG files, one HTML page per sweep.

`write_files` is the only function here (and in `analysis`) that writes a
file; everything else builds strings and bytes.
"""
from __future__ import annotations

import base64
import copy
import datetime as _dt
import html
import json
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from analysis.loader import load, resolve_db
from analysis.metrics import (NODE_COLUMNS, NODES_KEY, RATE_UNLIMITED, TPOT_DEFINITIONS, _check_slo,
                              percentiles, summary, summary_row)

SUMMARY_JSON = "benchmark_summary.json"
ARGS_JSON = "benchmark_args.json"  # as evalscope perf: the run's arguments, no secrets
PERCENTILE_JSON = "benchmark_percentile.json"
PERCENTILE_CSV = "benchmark_percentile.csv"
REPORT_HTML = "report.html"
SWEEP_JSON = "sweep_summary.json"
SECRET_KEYS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "authorization",
                         "proxy-authorization", "password", "secret", "token"})
REDACTED = "***"
NDIGITS = 4


@dataclass
class RunResult:
    """What the reports need from one run, once its frames are dropped."""

    name: str
    db_path: str
    summary: dict
    percentiles: pd.DataFrame
    row: dict
    run: dict
    pngs: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


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


# -- building -------------------------------------------------------------------

# A run's report, once built, is kept for the sweep report that follows it in
# the same process (the engine reports each run, then the sweep of them all):
# its plots are not rendered twice.  The key holds the database's (and its
# WAL's) size and mtime, so a changed database is analysed afresh.
_RESULTS: dict[tuple, RunResult] = {}
_RESULTS_MAX = 64


def _db_state(db_path: str) -> tuple:
    state: list[Any] = [os.path.realpath(db_path)]
    for path in (db_path, db_path + "-wal"):
        try:
            st = os.stat(path)
            state += [st.st_mtime_ns, st.st_size]
        except FileNotFoundError:
            state += [None, None]
    return tuple(state)


def analyse(db_path: str, slo: Mapping[str, float] | str | None = None, plots: bool = True) -> RunResult:
    """Load one database, compute its summary and percentiles and render its
    plots to PNG bytes; the frames are dropped on return.  The result is
    shared with later calls for the same unchanged database: do not modify it."""
    slo = _check_slo(slo)
    key = (_db_state(db_path), tuple(sorted(slo.items())) if slo else None, bool(plots))
    cached = _RESULTS.get(key)
    if cached is not None:
        return cached
    result = _analyse(db_path, slo, plots)
    if len(_RESULTS) >= _RESULTS_MAX:
        _RESULTS.pop(next(iter(_RESULTS)))
    _RESULTS[key] = result
    return result


def _analyse(db_path: str, slo: Mapping[str, float] | None, plots: bool) -> RunResult:
    # The report needs no request bodies: skip decoding them (the fast path).
    frames = load(db_path, decode_messages=False, decode_requests=False, lists=False)
    summ = summary(frames, slo)
    pct = percentiles(frames)
    pngs: dict[str, bytes] = {}
    if plots:
        from analysis.plots import render_pngs, run_figures  # matplotlib only when plotting

        pngs = render_pngs(run_figures(frames))
    return RunResult(name=frames.name, db_path=frames.path, summary=summ, percentiles=pct,
                     row=summary_row(frames, summ, pct), run=frames.run, pngs=pngs, problems=frames.problems)


def _clean(value: Any, ndigits: int = NDIGITS) -> Any:
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python, floats rounded."""
    if isinstance(value, dict):
        return {str(k): _clean(v, ndigits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, ndigits) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, ndigits)
    return value


def to_json(value: Any) -> str:
    return json.dumps(_clean(value), indent=4, ensure_ascii=False, allow_nan=False) + "\n"


def percentile_rows(pct: pd.DataFrame) -> list[dict]:
    """benchmark_percentile.json: a list of row dicts, NaN as null."""
    return _clean(pct.to_dict(orient="records"))


def run_files(result: RunResult) -> dict[str, bytes | str]:
    rounded = pd.DataFrame(percentile_rows(result.percentiles), columns=list(result.percentiles.columns))
    files: dict[str, bytes | str] = {
        SUMMARY_JSON: to_json(result.summary),
        PERCENTILE_JSON: to_json(percentile_rows(result.percentiles)),
        PERCENTILE_CSV: rounded.to_csv(index=False, lineterminator="\n"),
    }
    if result.run.get("args"):  # Arguments.public_dict() as the run table holds it
        files[ARGS_JSON] = json.dumps(redact(result.run["args"]), indent=4, ensure_ascii=False, default=str) + "\n"
    files.update({f"{name}.png": png for name, png in result.pngs.items()})
    return files


# -- console ------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
        return f"{value:,.4f}" if abs(value) >= 10000 else f"{value:.4f}"
    if isinstance(value, int):
        return str(value)
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A fixed-width box table; `align` is one letter per column, l or r
    (default: first column left, the others right)."""
    body = [[_cell(v) for v in row] for row in rows]
    head = [str(h) for h in headers]
    align = align or "l" + "r" * (len(head) - 1)
    widths = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)]
        return "│ " + " │ ".join(parts) + " │"

    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    out = [rule("┌", "┬", "┐"), line(head), rule("├", "┼", "┤")]
    out += [line(r) for r in body]
    out.append(rule("└", "┴", "┘"))
    return "\n".join(out)


def _rate_text(value: Any) -> Any:
    return "INF" if value == RATE_UNLIMITED else value


def summary_table_rows(summ: Mapping[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in summ.items():
        if key in ("Errors", "Warnings", "Definitions", NODES_KEY):
            continue
        if key == "Request Rate (req/s)":
            value = _rate_text(value)
        elif key == "SLO":
            if not value:
                continue
            value = ", ".join(f"{k}={v:g}" for k, v in value.items())
        elif key in ("Goodput (req/s)", "SLO Attainment (%)") and not summ.get("SLO"):
            continue
        rows.append((key, value))
    return rows


def console_report(result: RunResult) -> str:
    summ = result.summary
    parts = [f"Benchmark summary: {result.name}  ({result.db_path})",
             format_table(["Key", "Value"], summary_table_rows(summ))]
    if summ.get("Errors"):
        parts.append("Errors by reason:")
        parts.append(format_table(["Reason", "Count"], list(summ["Errors"].items())))
    parts.append("Percentiles (successful measured requests; nearest rank):")
    pct = result.percentiles
    parts.append(format_table(list(pct.columns), pct.itertuples(index=False, name=None)))
    parts.append("TPOT = " + TPOT_DEFINITIONS["Avg TPOT (ms)"] + "; TPOT incl. TTFT = "
                 + TPOT_DEFINITIONS["Avg TPOT incl. TTFT (ms)"] + ".")
    if summ.get(NODES_KEY):  # --backend ray: which node sent what, and how fast it saw the server
        parts.append("Load generator nodes (measured requests; TTFT of the successful ones):")
        parts.append(format_table(list(NODE_COLUMNS), [[n.get(c) for c in NODE_COLUMNS] for n in summ[NODES_KEY]]))
    for warning in summ.get("Warnings") or []:
        parts.append(f"WARNING: {warning}")
    return "\n".join(parts)


# -- HTML ---------------------------------------------------------------------------

def redact(value: Any) -> Any:
    """Drop secrets from the run's arguments, whatever the nesting."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower().replace("_", "-") in _SECRET_NORMAL and v not in (None, "", REDACTED)
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and re.match(r"(?i)\s*bearer\s+\S", value):
        return REDACTED
    return value


_SECRET_NORMAL = frozenset(k.replace("_", "-") for k in SECRET_KEYS)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;
color:#222;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:40px}
h3{margin-top:24px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px}th{background:#f4f4f4;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.wrap{overflow-x:auto}.grid{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
img{max-width:100%;height:auto;border:1px solid #eee;margin:8px 0}
.warn{background:#fff4e5;border-left:4px solid #ff9800;padding:6px 10px;margin:6px 0}
.muted{color:#666;font-size:13px}nav a{margin-right:12px}code{font-size:12px}
"""


def _short(value: Any) -> str:
    """A table cell for the page: about four significant digits (the JSON
    files keep the full figures), thousands separated."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        value = float(value)
        if value.is_integer():
            return f"{int(value):,}"
        magnitude = math.floor(math.log10(abs(value)))
        return f"{value:,.{min(4, max(1, 3 - magnitude))}f}"
    return _cell(value)


def _num_td(value: Any) -> str:
    text = html.escape(_short(value))
    numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_num_td(v) for v in row) + "</tr>" for row in rows)
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _when(epoch: Any) -> str:
    try:
        return _dt.datetime.fromtimestamp(float(epoch), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def _run_section(i: int, res: RunResult) -> str:
    summ, run = res.summary, res.run
    parts = [f'<section id="run-{i}"><h2>Run {html.escape(res.name)}</h2>']
    meta = [("database", res.db_path), ("status", run.get("status")), ("backend", run.get("backend")),
            ("version", run.get("version")), ("started", _when(run.get("start_time"))),
            ("ended", _when(run.get("end_time")))]
    parts.append('<p class="muted">' + " · ".join(f"{k}: <code>{html.escape(str(v))}</code>"
                                                   for k, v in meta if v not in (None, "-")) + "</p>")
    for warning in summ.get("Warnings") or []:
        parts.append(f'<div class="warn">⚠ {html.escape(warning)}</div>')
    parts.append('<div class="grid"><div><h3>Summary</h3>')
    parts.append(html_table(["Key", "Value"], summary_table_rows(summ)))
    parts.append("</div>")
    if summ.get("Errors"):
        parts.append("<div><h3>Errors by reason</h3>")
        parts.append(html_table(["Reason", "Count"], list(summ["Errors"].items())))
        parts.append("</div>")
    parts.append("</div>")
    parts.append("<h3>Percentiles</h3><p class=\"muted\">Successful measured requests, nearest rank. "
                 + html.escape("TPOT = " + TPOT_DEFINITIONS["Avg TPOT (ms)"] + "; TPOT incl. TTFT = "
                               + TPOT_DEFINITIONS["Avg TPOT incl. TTFT (ms)"] + ".") + "</p>")
    pct = res.percentiles
    parts.append(html_table(list(pct.columns), pct.itertuples(index=False, name=None)))
    if summ.get(NODES_KEY):
        parts.append("<h3>Load generator nodes</h3>")
        parts.append(html_table(list(NODE_COLUMNS), [[n.get(c) for c in NODE_COLUMNS] for n in summ[NODES_KEY]]))
    if res.pngs:
        parts.append("<h3>Plots</h3>")
        parts += [_img(png, f"{res.name}: {name}") for name, png in res.pngs.items()]
    args = redact(run.get("args") or {})
    if args:
        rows = [(k, v if isinstance(v, (int, float, str)) or v is None else json.dumps(v, default=str))
                for k, v in sorted(args.items())]
        parts.append("<details><summary>Arguments of the run</summary>")
        parts.append(html_table(["Argument", "Value"], rows))
        parts.append("</details>")
    workers = run.get("workers") or []
    if workers:
        keys = ["worker", "cpu_s", "wall_s"] + sorted({k for w in workers for k in w} - {"worker", "cpu_s", "wall_s"})
        parts.append("<details><summary>Client workers</summary>")
        parts.append(html_table(keys, [[w.get(k) if not isinstance(w.get(k), (dict, list))
                                        else json.dumps(w.get(k)) for k in keys] for w in workers]))
        parts.append("</details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(results: Sequence[RunResult], sweep: pd.DataFrame | None,
                sweep_pngs: Mapping[str, bytes]) -> str:
    title = "servegauge report" + (f": {results[0].name}" if len(results) == 1 else f": sweep of {len(results)} runs")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} '
             "from the result databases alone. Warm-up requests are left out of every figure; "
             "failed requests count in the totals and errors only.</p>"]
    if len(results) > 1:
        parts.append("<nav>" + "".join(f'<a href="#run-{i}">{html.escape(r.name)}</a>'
                                       for i, r in enumerate(results)) + "</nav>")
    if sweep is not None and len(results) > 1:
        parts.append("<h2>Sweep</h2>")
        table = sweep.copy()
        if "Request Rate (req/s)" in table:
            table["Request Rate (req/s)"] = [_rate_text(v) for v in table["Request Rate (req/s)"]]
        table = table.astype(object).where(pd.notna(table), None)
        table = table.loc[:, [c for c in table.columns if table[c].notna().any()]]  # e.g. Goodput without --slo
        parts.append(html_table(list(table.columns), table.itertuples(index=False, name=None)))
        parts += [_img(png, name) for name, png in sweep_pngs.items()]
    parts += [_run_section(i, r) for i, r in enumerate(results)]
    parts.append("</body></html>")
    return "\n".join(parts)


# -- sweep --------------------------------------------------------------------------

def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def sweep_frame(results: Sequence[RunResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row for r in results])


def sweep_outputs(results: Sequence[RunResult], plots: bool = True) -> dict[str, bytes | str]:
    """report.html (+ sweep plots and table when there are several runs)."""
    sweep = sweep_frame(results)
    files: dict[str, bytes | str] = {}
    pngs: dict[str, bytes] = {}
    if len(results) > 1:
        if plots:
            from analysis.plots import render_pngs
            from analysis.sweep_plots import sweep_figures

            pngs = render_pngs(sweep_figures(sweep))
            files.update({f"{name}.png": png for name, png in pngs.items()})
        files[SWEEP_JSON] = to_json(sweep.to_dict(orient="records"))
    files[REPORT_HTML] = render_html(results, sweep, pngs)
    return files


def order_results(results: Sequence[RunResult]) -> list[RunResult]:
    """By concurrency, then rate, then name (natural order)."""
    def key(r: RunResult):
        c = r.summary.get("Concurrency")
        rate = r.summary.get("Request Rate (req/s)")
        rate = math.inf if rate == RATE_UNLIMITED else rate
        return (c if isinstance(c, (int, float)) else math.inf,
                rate if isinstance(rate, (int, float)) else math.inf, _natural(r.name))
    return sorted(results, key=key)


# -- public API ------------------------------------------------------------------------

def write_run_report(db_path: str, out_dir: str | None = None, slo: dict | None = None, plots: bool = True,
                     console: bool = True) -> dict:
    """Write one run's benchmark_args.json, benchmark_summary.json,
    benchmark_percentile.json/.csv (and PNG plots) next to its database or
    into `out_dir`; print the tables when `console`; return the summary dict."""
    db = resolve_db(db_path)
    slo = _check_slo(slo)
    result = analyse(db, slo, plots)
    write_files(out_dir or os.path.dirname(os.path.abspath(db)), run_files(result))
    if console:
        print(console_report(result), file=sys.stdout, flush=True)
    return copy.deepcopy(result.summary)  # the caller's to change; the cached result stays as built


def write_sweep_report(paths: list[str], out_dir: str, slo: dict | None = None, plots: bool = True) -> str:
    """Write one self-contained report.html for several runs (databases or
    run folders) into `out_dir`, with the sweep table (sweep_summary.json)
    and plots; return its path.  Runs are ordered by concurrency, then rate."""
    if not paths:
        raise ValueError("write_sweep_report: no runs given")
    slo = _check_slo(slo)
    results = order_results([analyse(resolve_db(p), slo, plots=plots) for p in paths])
    written = write_files(out_dir, sweep_outputs(results, plots=plots))
    return written[REPORT_HTML]
