"""`servegauge report` and `servegauge compare` (also `python -m engine report|compare`).

Both return an exit status instead of exiting: 0 done, 2 for a path or input
that cannot be used (one line on stderr, no traceback unless --debug).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import traceback
from typing import Callable, Sequence

from engine.errors import UsageError
from engine.store import DB_NAME, SET_ASIDE_MARK
from engine.usage import CommandParser


def _parse(parser: CommandParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The flags, or the exit status: 0 after --help, 2 after a bad flag (one line)."""
    try:
        args = parser.parse(argv)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0 if args is None else args


def _guard(args: argparse.Namespace, prog: str, body: Callable[[], int]) -> int:
    from analysis.loader import ReportError

    try:
        return body()
    except (ReportError, OSError, sqlite3.DatabaseError) as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)",
              file=sys.stderr)
        return 1


def find_databases(path: str) -> list[str]:
    """A database file, a run folder (holding benchmark_data.db), or a sweep
    folder with run folders below it, each holding one."""
    from analysis.loader import ReportError
    from analysis.formatting import natural_key

    if not os.path.exists(path):
        raise ReportError(f"{path}: no such file or folder")
    if os.path.isfile(path):
        return [path]
    own = os.path.join(path, DB_NAME)
    if os.path.isfile(own):
        return [own]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if SET_ASIDE_MARK not in d)  # runs --resume set aside and redid
        if DB_NAME in files:
            found.append(os.path.join(root, DB_NAME))
    if not found:
        raise ReportError(f"{path}: no {DB_NAME} in this folder or below it")
    return sorted(found, key=natural_key)


def report_main(argv: Sequence[str] | None = None) -> int:
    """servegauge report PATH [--out DIR] [--slo ... | --goodput ...] [--no-plots]"""
    parser = CommandParser(
        prog="servegauge report",
        description="Rebuild the reports of a run or a sweep from its database(s) alone: "
                    "benchmark_summary.json, benchmark_percentile.json/.csv and PNG plots per run, "
                    "and one self-contained report.html.")
    parser.add_argument("path", nargs="?", help=f"a {DB_NAME}, a run folder, or a sweep folder of run folders")
    parser.add_argument("--out", metavar="DIR",
                        help="write here instead of next to each database (a sweep keeps its layout below DIR)")
    parser.add_argument("--slo", metavar="SPEC", help="e.g. ttft=200ms,tpot=50ms,latency=10s: adds Goodput")
    parser.add_argument("--goodput", nargs="+", metavar="KEY:MS",
                        help="the SLO as vLLM spells it, in ms, e.g. ttft:300 tpot:50 e2el:2000 (instead of --slo)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (faster)")
    parser.add_argument("--quiet", action="store_true", help="do not print the tables")
    parser.add_argument("--export", choices=("csv", "parquet"), metavar="csv|parquet",
                        help="also write each run's result table, one row per request with ttft_ms, tpot_ms, "
                             "latency_ms, ..., as benchmark_requests.csv or .parquet (Parquet needs "
                             "pip install 'servegauge[parquet]')")
    parser.add_argument("--export-raw", action="store_true",
                        help="with --export: keep the large raw columns too (request body, reply events, "
                             "event arrival times), as JSON text")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    prog = "servegauge report"
    if args.path is None and args.goodput and ":" not in args.goodput[-1]:
        args.path = args.goodput.pop()  # `--goodput ttft:300 RUN`: the list flag took the path too
    if args.path is None:
        print(f"{prog}: error: give the PATH of a {DB_NAME}, a run folder or a sweep folder "
              f"(see {prog} --help)", file=sys.stderr)
        return 2
    if args.export_raw and not args.export:
        print(f"{prog}: error: --export-raw needs --export csv|parquet", file=sys.stderr)
        return 2

    def body() -> int:
        from analysis.loader import ReportError
        from analysis.report import REPORT_HTML, order_results, run_files, sweep_outputs, write_files
        from analysis.result import analyse
        from analysis.slo import slo_from_flags
        from analysis.tables import console_report

        try:
            slo = slo_from_flags(args.slo, args.goodput)
        except ValueError as exc:
            raise ReportError(str(exc)) from None
        if args.export:
            from analysis.export import check_format

            check_format(args.export)  # e.g. no pyarrow: one line before any work
        dbs = find_databases(args.path)
        if len(dbs) == 1:
            root_out = args.out or os.path.dirname(os.path.abspath(dbs[0]))
        else:
            root_out = args.out or args.path
        results = []
        for db in dbs:
            if args.out and len(dbs) > 1:
                rel = os.path.relpath(os.path.dirname(os.path.abspath(db)), os.path.abspath(args.path))
                out = os.path.normpath(os.path.join(args.out, rel))
            else:
                out = root_out if len(dbs) == 1 else os.path.dirname(os.path.abspath(db))
            result = analyse(db, slo, plots=not args.no_plots)
            write_files(out, run_files(result))
            if not args.quiet:
                print(console_report(result), flush=True)
                print(f"wrote the reports of {result.name} to {out}", file=sys.stderr)
            if args.export:
                from analysis.export import export_bytes, export_frame, export_name

                name = export_name(args.export)
                exported = write_files(out, {name: export_bytes(export_frame(db, args.export_raw), args.export)})
                print(f"export: {exported[name]}", file=sys.stderr)
            results.append(result)
        results = order_results(results)
        if len(results) > 1 and not args.quiet:
            from analysis.sweep_table import sweep_table

            print(sweep_table(results), flush=True)
        written = write_files(root_out, sweep_outputs(results, plots=not args.no_plots))
        print(f"report: {written[REPORT_HTML]}", file=sys.stderr)
        return 0

    return _guard(args, prog, body)


def compare_main(argv: Sequence[str] | None = None) -> int:
    """servegauge compare PATH_A PATH_B [--resamples N] [--seed S] [--threshold PCT]"""
    parser = CommandParser(
        prog="servegauge compare",
        description="Compare two runs side by side: means, p50 and p99 of TTFT, TPOT, ITL and latency with "
                    "the relative change and a 95% confidence interval of each difference (B − A), "
                    "the throughputs, then in words what changed and by how much; the first line warns when "
                    "A and B ran at different loads. Two sweep folders are compared run by run at equal "
                    "concurrency (or rate). A mean, p50 or p99 has changed when its interval excludes 0 "
                    "and it moved by at least --threshold percent; a p99 needs 500 successful requests per "
                    "run for a verdict.")
    parser.add_argument("path_a", metavar="PATH_A",
                        help=f"run A: a {DB_NAME} or its run folder; or a sweep folder, its runs paired with B's by "
                             "load (concurrency, or rate)")
    parser.add_argument("path_b", metavar="PATH_B", help="run B (or sweep B), compared against A")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--threshold", type=float, default=None, metavar="PCT",
                        help="smallest change, in percent, reported as a change when the CI excludes 0 "
                             "(default 5: reruns of the same load differ by a few percent)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args

    def body() -> int:
        from analysis.compare import DEFAULT_THRESHOLD
        from analysis.compare_loads import compare_databases
        from analysis.loader import ReportError

        if args.resamples < 100:
            raise ReportError("--resamples: give at least 100")
        threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
        if not (threshold >= 0 and threshold < float("inf")):
            raise ReportError("--threshold: give a percentage >= 0, e.g. 5")
        dbs_a, dbs_b = find_databases(args.path_a), find_databases(args.path_b)
        print(compare_databases(dbs_a, dbs_b, args.path_a, args.path_b, args.resamples, args.seed, threshold))
        return 0

    return _guard(args, "servegauge compare", body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(report_main(sys.argv[1:]))
