"""The console: fixed-width box tables and one run's report as text."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from analysis.formatting import cell, rate_text
from analysis.metrics import TPOT_DEFINITIONS
from analysis.nodes import NODE_COLUMNS, NODES_KEY
from analysis.result import RunResult
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


def summary_table_rows(summ: Mapping[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in summ.items():
        if key in ("Errors", "Warnings", "Definitions", NODES_KEY, SERVER_KEY, LATENCY_KEY):
            continue
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
    if summ.get(SERVER_KEY):  # the server's own /metrics over the run
        parts.append("Server metrics (scraped from the server during the run):")
        parts.append(format_table(["Server metric", "Value"], list(summ[SERVER_KEY].items())))
    if summ.get(LATENCY_KEY):
        parts.append(LATENCY_NOTE)
        rows = summ[LATENCY_KEY]
        parts.append(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    for warning in summ.get("Warnings") or []:
        parts.append(f"WARNING: {warning}")
    return "\n".join(parts)
