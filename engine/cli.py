"""`python -m engine` / `servegauge`: thin commands, `main(argv) -> int`.

    servegauge [RUN FLAGS]          benchmark an endpoint (no --url: the built-in mock)
    servegauge mock [FLAGS]         run the mock server
    servegauge plugins              list API and dataset plugins
    servegauge report PATH          rebuild reports from a database, run or sweep folder
    servegauge compare A B          compare two runs

Errors the user can fix print one line and exit 2; tracebacks only with --debug.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback

from engine import interrupts
from engine.errors import Terminated, UsageError

SUBCOMMANDS = ("mock", "plugins", "report", "compare")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command killed by it


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            code = _subcommand(argv[0], argv[1:])
        else:
            code = _run(argv)
        sys.stdout.flush()  # a reader that left shows here, not in Python's flush at exit
        return code
    except UsageError as e:
        if debug:
            traceback.print_exc()
        if not getattr(e, "reported", False):  # a PluginFailed's line is already on stderr
            print(f"servegauge: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as stop:
        print("servegauge: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # `servegauge plugins | head`: the reader left, which is not an error
        # to report.  Point stdout at /dev/null so the flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as e:  # our bug or the environment's: one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"servegauge: error: {type(e).__name__}: {e} (run again with --debug for the traceback)",
                  file=sys.stderr)
        return 1


def console_main() -> None:
    from engine.layout import refuse_shadowed

    refuse_shadowed()
    sys.exit(main())


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "mock":
        from engine.mock.cli import main as mock_main
        from engine.usage import CommandParser

        # The mock imports nothing of the client: our parser class is lent to it.
        return mock_main(argv, parser_class=CommandParser)
    if name == "plugins":
        from engine.plugins_cmd import main as plugins_main

        return plugins_main(argv)
    from analysis import cli as analysis_cli

    return analysis_cli.report_main(argv) if name == "report" else analysis_cli.compare_main(argv)


def _run(argv: list[str]) -> int:
    # SIGTERM stops a run the way Ctrl-C does: keep and report what was
    # measured.  Installed first, so no signal finds Python's default.
    interrupts.install()
    from engine.options import parse_run_args

    parsed = parse_run_args(argv)
    if parsed is None:  # --help
        return 0
    runs, extra = parsed
    from plugins import registry

    for spec in extra.plugin_modules:
        registry.import_plugin_module(spec)
    if runs[0].url:
        return _sweep(runs, extra)
    from engine.endpoints import mock_path
    from engine.mock.launch import start_mock

    # No --url: benchmark the built-in mock server so a newcomer sees a whole run.
    with start_mock() as mock:
        print(f"servegauge: no --url given: benchmarking the built-in mock server at {mock.base_url}",
              file=sys.stderr)
        runs = [r.replace(url=mock.base_url + mock_path(r.api),
                          model=r.model or "mock-model") for r in runs]
        return _sweep(runs, extra)


def _sweep(runs, extra) -> int:
    from engine import resume
    from engine.runner import Interrupted, check_inputs, run_folder, run_one
    from engine.store import DB_NAME

    conversational = check_inputs(runs[0])  # the user's own mistakes first: they need no server
    if extra.test_connection:  # a wrong URL, key or model: one line and exit 2, before anything is made
        from engine import preflight

        runs = preflight.check(runs)
    runs = _server_metrics(runs)
    first = runs[0]
    label = (first.name or first.model or "run").replace("/", "_").replace(os.sep, "_")
    stamp = "" if first.no_timestamp else time.strftime("%Y%m%d_%H%M%S")
    sweep_dir = extra.resume or os.path.join(first.outputs_dir, stamp, label)
    if extra.sla is not None:
        return _tune(first, extra, sweep_dir)
    runs = [r.replace(sweep_dir=sweep_dir) for r in runs]
    # --max-error-rate stops the sweep once its verdict is certain: more
    # failures than the rate allows of every request the sweep will send.
    # (Not known for conversations: --number counts them, failures count turns.)
    planned = None if conversational or any(r.number is None for r in runs) else \
        sum(r.number + r.warmup_num for r in runs)
    db_paths = []
    failed = total = 0
    code = 0
    nothing = None  # the line for a run where nothing succeeded
    result = None  # the last run made (with --resume, every run may have completed before)
    for i, args in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] parallel {args.parallel}" + (f" rate {args.rate:g}" if args.rate else "")
        if extra.resume and resume.is_complete(run_folder(args), DB_NAME):
            print(f"servegauge: {label}: completed before, kept (--resume)", file=sys.stderr)
            db_paths.append(os.path.join(run_folder(args), DB_NAME))
            marker = resume.read_marker(run_folder(args))  # its counts still weigh in --max-error-rate
            failed += int(marker.get("failed") or 0)
            total += int(marker.get("requests") or 0)
            continue
        if extra.resume and (aside := resume.set_aside(run_folder(args))):
            print(f"servegauge: {label}: incomplete, set aside as {aside}; running it again", file=sys.stderr)
        budget = None
        if extra.max_error_rate is not None and planned is not None:
            budget = math.floor(extra.max_error_rate * planned) - failed
        try:
            result = run_one(args, label=label, max_failed=budget)
        except Interrupted as stop:
            result = stop.result
            code = EXIT_TERMINATED if stop.terminated else EXIT_INTERRUPTED
        except KeyboardInterrupt as stop:  # before this run had made anything
            code = EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
            break
        db_paths.append(result.db_path)
        failed += result.failed
        total += result.requests
        _report(result.db_path, extra)
        if code or result.status != "completed":
            break
        resume.mark_complete(os.path.dirname(result.db_path), result.requests, result.failed)  # last: --resume
        nothing = _nothing_succeeded(result.db_path)
        if nothing:
            break
    if len(db_paths) > 1:  # the sweep at a glance, one line per run
        from analysis import sweep_console_report

        print(sweep_console_report(db_paths, slo=extra.slo, plots=extra.plots), flush=True)
    if db_paths and extra.plots:
        from analysis import write_sweep_report

        html = write_sweep_report(db_paths, sweep_dir, slo=extra.slo)
        print(f"servegauge: sweep report: {html}", file=sys.stderr)
    if db_paths:
        print(f"servegauge: results in {sweep_dir}", file=sys.stderr)
    if interrupts.requested():  # also one that a finaliser swallowed on its way
        print("servegauge: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if interrupts.terminated() else EXIT_INTERRUPTED
    if code:
        return code
    if nothing:
        print(f"servegauge: {nothing}", file=sys.stderr)
        return 1
    if extra.max_error_rate is not None and total and failed / total > extra.max_error_rate:
        stopped = ": stopped once that was certain" if result is not None and result.status == "stopped" else ""
        print(f"servegauge: {failed}/{total} requests failed, above --max-error-rate {extra.max_error_rate:g}"
              f"{stopped}", file=sys.stderr)
        return 1
    return 0


def _tune(base, extra, out_dir: str) -> int:
    """--sla-auto-tune: engine.sla_tune's search over ordinary runs in `out_dir`, then the answer
    (first), the table of every point, sla_search.json, the plot and the report."""
    from analysis import write_run_report, write_sweep_report
    from analysis.report import write_files
    from analysis.sla import judge_point
    from analysis.sla_report import SLA_JSON, answers, points_table, search_json, sla_html, sla_pngs
    from analysis.formatting import to_json
    from engine import resume, sla_tune
    from engine.runner import Interrupted, run_folder, run_one
    from engine.store import DB_NAME

    sla = extra.sla
    db_paths: list[str] = []

    def run_point(args, label: str) -> str:
        folder = run_folder(args)
        db = os.path.join(folder, DB_NAME)
        if extra.resume and resume.is_complete(folder, DB_NAME):
            print(f"servegauge: {label}: completed before, kept", file=sys.stderr)
        else:  # without --resume an existing folder stops the search (run_one never overwrites)
            if extra.resume and (aside := resume.set_aside(folder)):
                print(f"servegauge: {label}: incomplete, set aside as {aside}; running it again", file=sys.stderr)
            result = run_one(args, label=label)
            write_run_report(db, slo=extra.slo, plots=False, console=False)
            if result.status == "completed":
                resume.mark_complete(folder, result.requests, result.failed)
        db_paths.append(db)
        return db

    def judge(value, dbs, group):
        return judge_point(value, dbs, group, sla.confidence)

    try:
        searches = sla_tune.tune(base, sla, out_dir, run_point, judge,
                                 say=lambda line: print(line, file=sys.stderr, flush=True))
    except Interrupted as stop:
        print(f"servegauge: search interrupted: continue it with --resume {out_dir} and the same flags",
              file=sys.stderr)
        return EXIT_TERMINATED if stop.terminated else EXIT_INTERRUPTED
    lines = answers(searches, sla.variable, sla.confidence, sla.lower)
    table = points_table(searches, sla.variable)
    print("\n".join(lines + ["", table]), flush=True)  # the answer first
    settings = {k: getattr(sla, k) for k in ("start", "lower", "upper", "num_runs", "max_runs",
                                             "number_multiplier", "fixed_parallel", "rate_tolerance")}
    files = {SLA_JSON: to_json(search_json(searches, sla.variable, sla.confidence, sla.lower, settings))}
    pngs = sla_pngs(searches, sla.variable) if extra.plots else {}
    files.update({f"{name}.png": png for name, png in pngs.items()})
    write_files(out_dir, files)
    if extra.plots and db_paths:
        html = write_sweep_report(sorted(set(db_paths)), out_dir, slo=extra.slo,
                                  preface=sla_html(lines, table, pngs))
        print(f"servegauge: report: {html}", file=sys.stderr)
    print(f"servegauge: results in {out_dir}", file=sys.stderr)
    return 0


def _server_metrics(runs):
    """Where the sweep's server metrics come from, decided (and said) once."""
    from engine import server_metrics

    first = server_metrics.resolve(runs[0])
    return [r.replace(server_metrics=first.server_metrics, no_server_metrics=first.no_server_metrics)
            for r in runs]


def _nothing_succeeded(db_path: str) -> str | None:
    """The one line for a run whose measured requests all failed, or None."""
    import sqlite3
    from collections import Counter

    from analysis.metrics import normalize_error

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:  # each request's last attempt
        rows = conn.execute("SELECT success, error, status_code, MAX(attempt) FROM result WHERE is_warmup = 0 "
                            "GROUP BY request_id").fetchall()
    finally:
        conn.close()
    if not rows or any(success == 1 for success, *_ in rows):
        return None
    reasons = Counter(normalize_error(error, status) for _, error, status, _ in rows)
    reason, n = reasons.most_common(1)[0]
    if len(reason) > 160:
        reason = reason[:159] + "…"
    return (f"nothing succeeded: {len(rows)}/{len(rows)} requests failed (100%); "
            f"most often ({n}): {reason}")


def _report(db_path: str, extra) -> None:
    from analysis import write_run_report

    write_run_report(db_path, slo=extra.slo, plots=extra.plots, console=True)


if __name__ == "__main__":  # pragma: no cover
    console_main()
