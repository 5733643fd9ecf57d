"""The console's sweep table: after several runs (--parallel 1 4 16, or
--rate 1 5 10), one line per run, fitted to the terminal's width."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from analysis.formatting import approx, rate_text
from analysis.result import RunResult, analyse
from analysis.slo import check_slo
from analysis.tables import format_table, open_loop
from analysis.terminal import keep_columns, terminal_width, wrap

# (header, summary_row key, drop rank): rank 0 is never dropped, the highest
# rank goes first when the terminal is narrow: the tails and throughputs
# are what a sweep is read for, the medians come after.  The units are in
# the title, not the headers: ten columns then fit 100 characters.
METRIC_COLUMNS = (
    ("req/s", "Req Throughput (req/s)", 0),
    ("out tok/s", "Output Throughput (tok/s)", 1),
    ("TTFT p50", "P50 TTFT (ms)", 5),
    ("TTFT p99", "P99 TTFT (ms)", 2),
    ("TPOT p50", "P50 TPOT (ms)", 6),
    ("TPOT p99", "P99 TPOT (ms)", 3),
    ("lat p99", "P99 Latency (s)", 4),
)
GOODPUT = ("goodput", "Goodput (req/s)", 1)


def _load_cells(results: Sequence[RunResult]) -> tuple[list[str], list[list[Any]]]:
    """The load of each run: its concurrency, or (when any run was paced)
    its rate and the cap on requests in flight."""
    if any(open_loop(r.summary) for r in results):
        return (["rate req/s", "max in flight"],
                [[rate_text(r.summary.get("Request Rate (req/s)")), r.summary.get("Concurrency")] for r in results])
    return ["concurrency"], [[r.summary.get("Concurrency")] for r in results]


def _errors(row: Mapping[str, Any]) -> str:
    failed, total = row.get("Failed Requests"), row.get("Total Requests")
    return "-" if failed is None or total is None else f"{failed}/{total}"


def sweep_table(results: Sequence[RunResult], width: int | None = None) -> str:
    """One line per run: load, req/s, output tok/s, TTFT and TPOT p50/p99,
    latency p99, goodput (with an SLO) and failed/total requests; every line
    at most `width` characters (default: the terminal's)."""
    width = terminal_width() if width is None else width
    load_headers, load_rows = _load_cells(results)
    metrics = list(METRIC_COLUMNS)
    slo = next((r.summary.get("SLO") for r in results if r.summary.get("SLO")), None)
    if slo:
        metrics.append(GOODPUT)
    headers = [*load_headers, *(m[0] for m in metrics), "failed"]
    rank = [0] * len(load_headers) + [m[2] for m in metrics] + [0]
    rows = [[*load, *(approx(r.row.get(m[1])) for m in metrics), _errors(r.row)]
            for load, r in zip(load_rows, results)]
    headers, rows, dropped = keep_columns(headers, rows, rank, width)
    title = "Sweep summary, one line per run (TTFT, TPOT in ms, latency in s, of the successful requests)"
    if slo:
        title += "; goodput: requests/s meeting " + ", ".join(f"{k}={v:g}" for k, v in slo.items())
    parts = [wrap(title + ":", width), format_table(headers, rows, align="r" * len(headers))]
    if dropped:
        parts.append(wrap(f"(fitted to {width} columns: {', '.join(dropped)} left out; a wider terminal "
                          "shows them, each run's summary has them)", width))
    return "\n".join(parts)


def sweep_console_report(paths: Sequence[str], slo: Mapping[str, float] | str | None = None,
                         plots: bool = True) -> str:
    """The sweep table of these runs' databases, in the order given (the
    analyses the per-run reports made are reused, not redone)."""
    slo = check_slo(slo)
    return sweep_table([analyse(p, slo, plots) for p in paths])
