"""The HTML page: one self-contained report.html for a run or a sweep of
runs (tables, plots inlined as PNG, warnings, the arguments without secrets)."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import numbers
import re
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from analysis.formatting import rate_text, short
from analysis.metrics import TPOT_DEFINITIONS
from analysis.nodes import NODE_COLUMNS, NODES_KEY
from analysis.redaction import redact
from analysis.result import RunResult
from analysis.server_metrics import LATENCY_KEY, LATENCY_NOTE, SERVER_KEY
from analysis.tables import summary_table_rows

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;
color:#222;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:40px}
h3{margin-top:24px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px}th{background:#f4f4f4;text-align:left;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td{overflow-wrap:anywhere}
.wrap{overflow-x:auto;max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.grid>div{min-width:0;max-width:100%}
.sweep table{font-size:12px}.sweep th,.sweep td{padding:3px 5px}.sweep th{font-weight:600}
.sweep td:first-child{min-width:7em}
img{max-width:100%;height:auto;border:1px solid #eee;margin:8px 0}
.warn{background:#fff4e5;border-left:4px solid #ff9800;padding:6px 10px;margin:6px 0}
.muted{color:#666;font-size:13px}nav a{margin-right:12px}code{font-size:12px}
"""


def _num_td(value: Any) -> str:
    text = html.escape(short(value))
    numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table in a container that scrolls sideways rather than overflow the
    page, should even its narrowest layout be too wide."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_num_td(v) for v in row) + "</tr>" for row in rows)
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


_STAT = re.compile(r"^(Avg|P\d+(?:\.\d+)?) (.+)$")
_GROUPED = {"Total Requests": ("Requests", "total"), "Failed Requests": ("Requests", "failed"),
            "Req Throughput (req/s)": ("Throughput", "req/s"),
            "Output Throughput (tok/s)": ("Throughput", "output tok/s"),
            "Goodput (req/s)": ("Throughput", "goodput req/s")}


def _group(header: str) -> tuple[str, str] | None:
    """("TTFT (ms)", "p99") for "P99 TTFT (ms)": the header over several
    columns and the column's own; None for a column of its own."""
    found = _STAT.match(header)
    return (found.group(2), found.group(1).lower()) if found else _GROUPED.get(header)


def sweep_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The sweep's table, narrow enough for a 1000 px window: "Avg TTFT (ms)",
    "P50 TTFT (ms)", "P99 TTFT (ms)" are one "TTFT (ms)" header over "avg",
    "p50", "p99" (each with its full name as a tooltip), so a column is as
    wide as its numbers, not its name."""
    top, sub = [], []
    i = 0
    while i < len(headers):
        group = _group(str(headers[i]))
        if group is None:
            top.append(f'<th rowspan="2">{html.escape(str(headers[i]))}</th>')
            i += 1
            continue
        j = i
        while j < len(headers) and (g := _group(str(headers[j]))) is not None and g[0] == group[0]:
            sub.append(f'<th title="{html.escape(str(headers[j]))}">{html.escape(g[1])}</th>')
            j += 1
        top.append(f'<th colspan="{j - i}">{html.escape(group[0])}</th>')
        i = j
    def cell(k: int, v: Any) -> str:  # a run's name breaks after an underscore, not inside a number
        if headers[k] == "Run" and isinstance(v, str):
            return "<td>" + html.escape(v).replace("_", "_<wbr>") + "</td>"
        return _num_td(v)

    body = "".join("<tr>" + "".join(cell(k, v) for k, v in enumerate(row)) + "</tr>" for row in rows)
    head = "<tr>" + "".join(top) + "</tr>" + ("<tr>" + "".join(sub) + "</tr>" if sub else "")
    return f'<div class="wrap sweep"><table><thead>{head}</thead><tbody>{body}</tbody></table></div>'


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
    if summ.get(SERVER_KEY):  # the server's own /metrics over the run
        parts.append("<h3>Server metrics</h3>")
        parts.append(html_table(["Server metric", "Value"], list(summ[SERVER_KEY].items())))
    if summ.get(LATENCY_KEY):
        rows = summ[LATENCY_KEY]
        parts.append(f'<h3>Server vs client latency</h3><p class="muted">{html.escape(LATENCY_NOTE)}</p>')
        parts.append(html_table(list(rows[0]), [list(r.values()) for r in rows]))
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
                sweep_pngs: Mapping[str, bytes], preface: str = "") -> str:
    title = "servegauge report" + (f": {results[0].name}" if len(results) == 1 else f": sweep of {len(results)} runs")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} '
             "from the result databases alone. Warm-up requests are left out of every figure; "
             "failed requests count in the totals and errors only.</p>"]
    if preface:  # e.g. an SLA search's answer: what the reader came for, first
        parts.append(preface)
    if len(results) > 1:
        parts.append("<nav>" + "".join(f'<a href="#run-{i}">{html.escape(r.name)}</a>'
                                       for i, r in enumerate(results)) + "</nav>")
    if sweep is not None and len(results) > 1:
        parts.append("<h2>Sweep</h2>")
        table = sweep.copy()
        if "Request Rate (req/s)" in table:
            table["Request Rate (req/s)"] = [rate_text(v) for v in table["Request Rate (req/s)"]]
        table = table.astype(object).where(pd.notna(table), None)
        table = table.loc[:, [c for c in table.columns if table[c].notna().any()]]  # e.g. Goodput without --slo
        parts.append(sweep_table(list(table.columns), table.itertuples(index=False, name=None)))
        parts += [_img(png, name) for name, png in sweep_pngs.items()]
    parts += [_run_section(i, r) for i, r in enumerate(results)]
    parts.append("</body></html>")
    return "\n".join(parts)
