"""The console: fixed-width box tables and one run's report as text,
fitted to the terminal's width (`analysis.terminal`)."""
from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Mapping, Sequence

from analysis.formatting import RATE_UNLIMITED, cell, rate_text
from analysis.metrics import TPOT_DEFINITIONS
from analysis.nodes import NODE_COLUMNS, NODES_KEY
from analysis.result import RunResult
from analysis.terminal import box_width, keep_columns, shorten_column, terminal_width, wrap

# Named in the lines above the summary table ("what was tested"), not in it.
TESTED_KEYS = ("URL", "Model", "Date")
NOT_STREAMED = " (= latency, not streamed)"
# The transposed percentile table keeps the percentiles most read first:
# 0 is never dropped, then the highest rank goes first.
PERCENTILE_RANK = {"50%": 0, "99%": 1, "90%": 2, "max": 3, "min": 4, "95%": 5, "75%": 6, "25%": 7,
                   "99.9%": 8, "10%": 9, "5%": 10, "1%": 11}
# The server-vs-client table drops the difference first (it is Client minus
# Server, both shown), then the bucket width.
LATENCY_RANK = {"Client - Server": 2, "Bucket": 1}
NODE_RANK = {"Avg TTFT (ms)": 3, "P50 TTFT (ms)": 2, "P90 TTFT (ms)": 4, "P99 TTFT (ms)": 1}
from analysis.server_metrics import LATENCY_KEY, LATENCY_NOTE, SERVER_KEY


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A fixed-width box table; `align` is one letter per column, l or r
    (default: first column left, the others right)."""
    body = [[cell(v) for v in row] for row in rows]
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


def open_loop(summ: Mapping[str, Any]) -> bool:
    """A run paced by --rate: --parallel is then a cap, not the load."""
    rate = summ.get("Request Rate (req/s)")
    return isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate != RATE_UNLIMITED


def concurrency_text(summ: Mapping[str, Any]) -> Any:
    """The Concurrency cell: with --rate, what --parallel then means."""
    value = summ.get("Concurrency")
    if open_loop(summ) and value is not None:
        return f"open loop, at most {value} in flight"
    return value


def summary_table_rows(summ: Mapping[str, Any], streamed: bool = True) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in summ.items():
        if key in ("Errors", "Warnings", "Definitions", NODES_KEY, SERVER_KEY, LATENCY_KEY):
            continue
        if key == "Concurrency":
            value = concurrency_text(summ)
        elif not streamed and key in ("Avg TTFT (ms)", "Avg TPOT (ms)"):
            key += NOT_STREAMED if "TTFT" in key else " (not streamed)"
        if key == "Request Rate (req/s)":
            value = rate_text(value)
        elif key == "SLO":
            if not value:
                continue
            value = ", ".join(f"{k}={v:g}" for k, v in value.items())
        elif key in ("Goodput (req/s)", "SLO Attainment (%)") and not summ.get("SLO"):
            continue
        rows.append((key, value))
    return rows


def tested_lines(result: RunResult) -> list[str]:
    """What was tested, from the database alone: the URL (without
    credentials, as the summary has it), model, API, dataset, date, and the
    version of servegauge that ran it (the run table's)."""
    summ, run = result.summary, result.run
    args = run.get("args") or {}
    dataset = args.get("dataset")
    if dataset and args.get("dataset_path"):
        dataset = f"{dataset} ({args['dataset_path']})"
    try:
        date = _dt.datetime.fromisoformat(summ["Date"]).astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (KeyError, TypeError, ValueError):
        date = None
    version = run.get("version")
    shown = [("URL", summ.get("URL")), ("Model", summ.get("Model")), ("API", args.get("api")),
             ("Dataset", dataset), ("Date", date), ("Version", f"servegauge {version}" if version else None),
             ("Database", result.db_path)]
    return [f"  {key + ':':<9} {value if value not in (None, '') else 'not recorded'}" for key, value in shown]


def percentile_table(result: RunResult, width: int | None) -> list[str]:
    """The percentile table as evalscope prints it (a row per percentile)
    when it fits; else transposed, a row per metric, with as many
    percentiles as fit (the note names those left out)."""
    pct = result.percentiles
    labels = list(pct.columns)
    if not result.streamed:  # a reply read whole: its "first token" is its last
        labels = [c + NOT_STREAMED if c == "TTFT (ms)" else c + " (not streamed)" if c == "TPOT (ms)" else c
                  for c in labels]
    rows = list(pct.itertuples(index=False, name=None))
    if width is None or box_width(labels, rows) <= width:
        return [format_table(labels, rows)]
    points = [str(p) for p in pct.iloc[:, 0]]
    headers = ["Metric", *points]
    by_metric = [[label, *pct.iloc[:, i]] for i, label in enumerate(labels) if i > 0]
    rank = [0] + [PERCENTILE_RANK.get(p, len(PERCENTILE_RANK)) for p in points]
    headers, by_metric, dropped = keep_columns(headers, by_metric, rank, width)
    out = [format_table(headers, by_metric)]
    if dropped:
        out.append(wrap(f"(fitted to {width} columns: percentiles {', '.join(dropped)} are in "
                        "benchmark_percentile.csv; a wider terminal shows them all)", width))
    return out


def console_report(result: RunResult, width: int | None = None) -> str:
    """One run's report as text, every line at most `width` characters
    (default: the terminal's, see `analysis.terminal.terminal_width`)."""
    width = terminal_width() if width is None else width
    summ = result.summary
    parts = [wrap(f"Benchmark summary: {result.name}", width)]
    parts += [wrap(line, width, indent=" " * 12) for line in tested_lines(result)]
    rows = [r for r in summary_table_rows(summ, result.streamed) if r[0] not in TESTED_KEYS]
    parts.append(format_table(["Key", "Value"], shorten_column(["Key", "Value"], rows, 1, width)))
    if summ.get("Errors"):
        parts.append("Errors by reason:")
        reasons = list(summ["Errors"].items())
        parts.append(format_table(["Reason", "Count"], shorten_column(["Reason", "Count"], reasons, 0, width),
                                  align="lr"))
    parts.append(wrap("Percentiles (successful measured requests; nearest rank):", width))
    parts += percentile_table(result, width)
    parts.append(wrap("TPOT = " + TPOT_DEFINITIONS["Avg TPOT (ms)"] + "; TPOT incl. TTFT = "
                      + TPOT_DEFINITIONS["Avg TPOT incl. TTFT (ms)"] + ".", width))
    if summ.get(NODES_KEY):  # --backend ray: which node sent what, and how fast it saw the server
        parts.append(wrap("Load generator nodes (measured requests; TTFT of the successful ones):", width))
        nodes = [[n.get(c) for c in NODE_COLUMNS] for n in summ[NODES_KEY]]
        headers, nodes, dropped = keep_columns(list(NODE_COLUMNS), nodes,
                                               [NODE_RANK.get(c, 0) for c in NODE_COLUMNS], width)
        parts.append(format_table(headers, nodes))
        if dropped:
            parts.append(wrap(f"(fitted to {width} columns: {', '.join(dropped)} left out; "
                              "benchmark_summary.json has them)", width))
    if summ.get(SERVER_KEY):  # the server's own /metrics over the run
        parts.append(wrap("Server metrics (scraped from the server during the run):", width))
        parts.append(format_table(["Server metric", "Value"], list(summ[SERVER_KEY].items())))
    if summ.get(LATENCY_KEY):
        parts.append(wrap(LATENCY_NOTE, width))
        rows = summ[LATENCY_KEY]
        headers, cells, dropped = keep_columns(list(rows[0]), [list(r.values()) for r in rows],
                                               [LATENCY_RANK.get(h, 0) for h in rows[0]], width)
        parts.append(format_table(headers, cells))
        if dropped:
            parts.append(wrap(f"(fitted to {width} columns: {', '.join(dropped)} left out; "
                              "benchmark_summary.json has them)", width))
    for warning in summ.get("Warnings") or []:
        parts.append(wrap(f"WARNING: {warning}", width, indent="  "))
    return "\n".join(parts)
