"""The --sla-* flags of the run command (named as in evalscope perf) and
--resume, parsed into `SlaOptions`.  Kept apart from engine.options, which
builds the runs: this builds the search around them."""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

from engine.errors import UsageError

DEFAULT_NUM_RUNS = 3  # evalscope's
DEFAULT_LOWER = 1
DEFAULT_UPPER = 65536  # evalscope's
DEFAULT_MULTIPLIER = 2.0  # evalscope's: number = round(value * 2)
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RATE_TOLERANCE = 0.1


@dataclass(frozen=True)
class SlaOptions:
    variable: str
    groups: tuple  # of tuples of analysis.sla.Condition
    start: float
    lower: float
    upper: float
    num_runs: int
    max_runs: int
    number_multiplier: float
    fixed_parallel: int  # --parallel of every point of a rate search
    confidence: float
    rate_tolerance: float


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number > 0") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"'{text}' is not a number > 0")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 1")
    return value


def _level(text: str) -> float:
    value = _positive(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a confidence between 0 and 1, e.g. 0.95")
    return value


def add_flags(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("SLA auto-tune (evalscope perf's flags; docs/sla.md)")
    s.add_argument("--sla-auto-tune", action="store_true",
                   help="find the largest --parallel or --rate that meets --sla-params")
    s.add_argument("--sla-variable", choices=("parallel", "rate"), default="parallel",
                   help="what the search varies (default parallel); it starts from --parallel / --rate")
    s.add_argument("--sla-params", metavar="JSON",
                   help="JSON list of groups of conditions, e.g. '[{\"p99_ttft\": \"<=0.3\"}]' (seconds); "
                        "each group is searched on its own")
    s.add_argument("--sla-num-runs", type=_whole, default=DEFAULT_NUM_RUNS,
                   help=f"runs per point, pooled (default {DEFAULT_NUM_RUNS})")
    s.add_argument("--sla-max-runs", type=_whole,
                   help="runs a point too close to call may grow to (default twice --sla-num-runs)")
    s.add_argument("--sla-lower-bound", type=_positive, default=DEFAULT_LOWER, help="lowest value tried (default 1)")
    s.add_argument("--sla-upper-bound", type=_positive, default=DEFAULT_UPPER,
                   help=f"highest value tried (default {DEFAULT_UPPER})")
    s.add_argument("--sla-fixed-parallel", type=_whole,
                   help="--parallel of every point when --sla-variable rate (default: as --rate without --parallel)")
    s.add_argument("--sla-number-multiplier", type=_positive,
                   help=f"requests per run = round(value x this) (default {DEFAULT_MULTIPLIER:g})")
    s.add_argument("--sla-confidence", type=_level, default=DEFAULT_CONFIDENCE,
                   help="confidence of each verdict; a point whose interval straddles the threshold is "
                        "'too close to call' (default 0.95)")
    s.add_argument("--sla-rate-tolerance", type=_positive, default=DEFAULT_RATE_TOLERANCE,
                   help="for --sla-variable rate: stop bisecting when the interval is this share of the rate "
                        "(default 0.1)")
    p.add_argument("--resume", metavar="OUTPUT_DIR",
                   help="continue an interrupted sweep or search in this folder: completed runs are kept, "
                        "incomplete ones set aside and run again")


def parse(ns: argparse.Namespace, parse_groups) -> SlaOptions | None:
    """SlaOptions when --sla-auto-tune was given (None otherwise); UsageError on a bad combination.
    `parse_groups` is analysis.sla.parse_sla_params, lent by engine.options (only the command
    line's modules import analysis)."""
    if ns.resume is not None:
        if not os.path.isdir(ns.resume):
            raise UsageError(f"--resume '{ns.resume}' is not a folder: give the output folder of the sweep to continue")
        if not any("benchmark_data.db" in files for _, _, files in os.walk(ns.resume)):
            raise UsageError(f"--resume '{ns.resume}' holds no run to continue: give the folder the sweep or search "
                             "printed as 'results in ...' (or run without --resume)")
    if not ns.sla_auto_tune:
        if ns.sla_params:
            raise UsageError("--sla-params needs --sla-auto-tune")
        return None
    if not ns.sla_params:
        raise UsageError("--sla-auto-tune needs --sla-params, e.g. '[{\"p99_ttft\": \"<=0.3\"}]'")
    try:
        groups = parse_groups(ns.sla_params)
    except ValueError as e:
        raise UsageError(f"--sla-params {e}") from None
    if ns.sla_lower_bound > ns.sla_upper_bound:
        raise UsageError("--sla-lower-bound is larger than --sla-upper-bound")
    if ns.sla_variable == "parallel" and max(1, math.ceil(ns.sla_lower_bound)) > math.floor(ns.sla_upper_bound):
        raise UsageError(f"no whole number of parallel requests lies between --sla-lower-bound {ns.sla_lower_bound:g} "
                         f"and --sla-upper-bound {ns.sla_upper_bound:g}")
    if ns.sla_max_runs is not None and ns.sla_max_runs < ns.sla_num_runs:
        raise UsageError("--sla-max-runs is smaller than --sla-num-runs")
    given = ns.parallel if ns.sla_variable == "parallel" else ns.rate
    if given and len(given) > 1:
        raise UsageError(f"--sla-auto-tune starts from one --{ns.sla_variable} value, not a list")
    if ns.max_error_rate is not None:  # said, not ignored: a point with any failure fails already
        raise UsageError("--sla-auto-tune fails a point on any failed request: drop --max-error-rate")
    if ns.number or ns.duration:  # said, not ignored: the search sizes every run itself
        raise UsageError("--sla-auto-tune sizes each run itself (requests = value x --sla-number-multiplier): "
                         "drop --number/--duration, or set --sla-number-multiplier")
    if ns.sla_variable == "parallel" and ns.rate:
        raise UsageError("--sla-variable parallel is a closed loop: drop --rate (or use --sla-variable rate)")
    from engine.options import RATE_DEFAULT_PARALLEL

    fixed = ns.sla_fixed_parallel or (ns.parallel[0] if ns.parallel and ns.sla_variable == "rate" else None)
    return SlaOptions(
        variable=ns.sla_variable, groups=tuple(groups), start=float(given[0]) if given else 1.0,
        lower=ns.sla_lower_bound, upper=ns.sla_upper_bound, num_runs=ns.sla_num_runs,
        max_runs=ns.sla_max_runs or 2 * ns.sla_num_runs,
        number_multiplier=ns.sla_number_multiplier or DEFAULT_MULTIPLIER, fixed_parallel=fixed or RATE_DEFAULT_PARALLEL,
        confidence=ns.sla_confidence, rate_tolerance=ns.sla_rate_tolerance)
