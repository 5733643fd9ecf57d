"""SLA conditions (evalscope perf's --sla-params) and a load point's verdict
with confidence, from the databases of the point's runs.

A condition is `{"p99_ttft": "<=0.3"}`: a metric (avg/p50/p90/p99 of latency,
ttft, tpot, itl, in seconds as evalscope's; rps, tps) and an operator
(`<=`, `<`, `>=`, `>` and a number; or `max`/`min`).  A group (one JSON
object) holds when all its conditions hold; each group is searched on its own.

A point's verdict pools the requests of all its runs and puts an interval
around each metric at the chosen confidence:
- a percentile: the wider of the block bootstrap interval and the
  distribution-free order-statistic one (analysis.compare's code).  With
  too few values for an end of the distribution-free interval (a p99 of
  fewer than ~370 values has no finite upper end at 95 %), that end is
  the bootstrap's, and the point says so (`few`);
- a mean: the normal interval of the mean (mean ± z·sd/√n);
- rps/tps: the runs' own figures, mean ± z·sd/√runs (one run: no spread known).
PASS when the whole interval meets the threshold, FAIL when none of it does,
UNSURE ("too close to call") otherwise.  A point with any failed request
fails, as in evalscope.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np

from analysis.compare import bootstrap_quantiles, mean_standard_error, order_statistic_intervals
from analysis.loader import load
from analysis.metrics import metric_samples, summary
from analysis.stats import nearest_rank

PASS, FAIL, UNSURE = "pass", "fail", "too close to call"
STATS = ("avg", "p50", "p90", "p99")
# metric -> (metric_samples key, its unit in seconds' terms, display unit, display scale)
SAMPLED = {"latency": ("Latency (s)", 1.0, "s", 1.0), "ttft": ("TTFT (ms)", 1e-3, "ms", 1e3),
           "tpot": ("TPOT (ms)", 1e-3, "ms", 1e3), "itl": ("ITL (ms)", 1e-3, "ms", 1e3)}
THROUGHPUT = {"rps": ("Req Throughput (req/s)", "req/s"), "tps": ("Output Throughput (tok/s)", "tok/s")}
OPERATORS = ("<=", ">=", "<", ">")
N_RESAMPLES = 1000
_CONDITION = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Condition:
    metric: str  # e.g. "p99_ttft", "rps"
    op: str  # <=, <, >=, >, max, min
    threshold: float | None = None  # seconds for latencies; None for max/min

    @property
    def extreme(self) -> bool:
        return self.op in ("max", "min")

    def text(self) -> str:
        """`p99 TTFT ≤ 300 ms`, `rps ≥ 5 req/s`, `tps max`."""
        name, unit, scale = describe(self.metric)
        if self.extreme:
            return f"{name} {self.op}"
        sign = {"<=": "≤", ">=": "≥"}.get(self.op, self.op)
        return f"{name} {sign} {self.threshold * scale:g} {unit}"


def describe(metric: str) -> tuple[str, str, float]:
    """(display name, display unit, scale from seconds) of a metric name."""
    if metric in THROUGHPUT:
        return metric, THROUGHPUT[metric][1], 1.0
    stat, _, base = metric.partition("_")
    _, _, unit, scale = SAMPLED[base]
    return f"{stat} {base.upper() if base != 'latency' else base}", unit, scale


def parse_sla_params(text: str) -> list[tuple[Condition, ...]]:
    """--sla-params -> groups of conditions; ValueError names what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"is not valid JSON ({e}); e.g. '[{{\"p99_ttft\": \"<=0.3\"}}]'") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(g, dict) and g for g in data):
        raise ValueError("must be a JSON list of objects of conditions, e.g. '[{\"p99_ttft\": \"<=0.3\"}]'")
    groups = []
    for group in data:
        conditions = tuple(_condition(str(k), v) for k, v in group.items())
        if any(c.extreme for c in conditions) and (len(conditions) > 1 or len(data) > 1):
            raise ValueError("max/min must be the only condition of the only group, e.g. '[{\"tps\": \"max\"}]'")
        groups.append(conditions)
    return groups


def _condition(metric: str, rule) -> Condition:
    known = [f"{s}_{m}" for m in SAMPLED for s in STATS] + list(THROUGHPUT)
    if metric not in known:
        raise ValueError(f"unknown metric '{metric}'; use one of {', '.join(known)}")
    rule = str(rule).strip()
    if rule in ("max", "min"):
        return Condition(metric, rule)
    m = _CONDITION.match(rule)
    if not m:
        raise ValueError(f"'{metric}': '{rule}' is not an operator and a number (<=, <, >=, >) nor max/min")
    value = float(m.group(2))
    if not math.isfinite(value):
        raise ValueError(f"'{metric}': '{rule}' is not a finite number")
    return Condition(metric, m.group(1), value)


@dataclass(frozen=True)
class Judged:
    """One condition at one point: the estimate and its interval (seconds for
    latencies), the values behind it, and the verdict."""

    condition: Condition
    estimate: float
    low: float
    high: float
    n: int
    verdict: str
    few: bool = False  # an end of the interval rests on the bootstrap alone (too few values)


@dataclass(frozen=True)
class PointVerdict:
    value: float
    runs: int
    requests: int
    failed: int
    judged: tuple[Judged, ...] = field(default_factory=tuple)
    verdict: str = FAIL

    def to_dict(self) -> dict:
        return {"value": self.value, "runs": self.runs, "requests": self.requests, "failed": self.failed,
                "verdict": self.verdict,
                "conditions": [{"metric": j.condition.metric, "op": j.condition.op,
                                "threshold": j.condition.threshold, "estimate": _num(j.estimate),
                                "low": _num(j.low), "high": _num(j.high), "n": j.n, "verdict": j.verdict,
                                "few_values": j.few} for j in self.judged]}


def _num(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def judge_point(value: float, db_paths: Sequence[str], group: Sequence[Condition], confidence: float = 0.95,
                seed: int = 0) -> PointVerdict:
    """The verdict of one load point on one group of conditions, from its
    runs' databases (pooled).  Seeded: the same databases give the same verdict."""
    frames = [load(p) for p in db_paths]
    requests = sum(int(f.measured_mask().sum()) for f in frames)
    failed = requests - sum(int(f.ok_mask().sum()) for f in frames)
    rng = np.random.default_rng(seed)
    judged = tuple(_judge(c, frames, confidence, rng) for c in group)
    if failed:
        verdict = FAIL  # as evalscope: a point with a failed request does not meet the SLA
    elif any(j.verdict == FAIL for j in judged):
        verdict = FAIL
    elif all(j.verdict == PASS for j in judged):
        verdict = PASS
    else:
        verdict = UNSURE
    return PointVerdict(value, len(db_paths), requests, failed, judged, verdict)


def _judge(c: Condition, frames, confidence: float, rng: np.random.Generator) -> Judged:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    few = False
    if c.metric in THROUGHPUT:
        per_run = np.array([summary(f).get(THROUGHPUT[c.metric][0]) or math.nan for f in frames], dtype=float)
        per_run = per_run[np.isfinite(per_run)]
        n = per_run.size
        est = float(per_run.mean()) if n else math.nan
        half = z * float(per_run.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        low, high = est - half, est + half
        few = n < 2
    else:
        stat, _, base = c.metric.partition("_")
        key, to_s, _, _ = SAMPLED[base]
        x = np.concatenate([np.asarray(metric_samples(f)[key], dtype=float) for f in frames]) * to_s
        x = x[np.isfinite(x)]
        n = x.size
        if n == 0:
            return Judged(c, math.nan, math.nan, math.nan, 0, FAIL)
        if stat == "avg":
            est = float(x.mean())
            # the wider of compare's standard error (batch means: neighbours in
            # time are alike) and the plain one, as percentiles take the wider
            # of two intervals: a verdict should not rest on the narrower
            se = max(mean_standard_error(x), float(x.std(ddof=1)) / math.sqrt(n)) if n > 1 else math.inf
            half = z * se
            low, high = est - half, est + half
        else:
            label = f"{stat[1:]}%"
            est = nearest_rank(x, [label])[0]
            boot = bootstrap_quantiles(x, [label], N_RESAMPLES, rng)[:, 0]
            b_lo, b_hi = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
            (o_lo, o_hi), = order_statistic_intervals(x, [label], confidence)
            few = not (math.isfinite(o_lo) and math.isfinite(o_hi))
            low = min(b_lo, o_lo) if math.isfinite(o_lo) else float(b_lo)
            high = max(b_hi, o_hi) if math.isfinite(o_hi) else float(b_hi)
    est, low, high = float(est), float(low), float(high)
    if c.extreme:
        return Judged(c, est, low, high, n, PASS if math.isfinite(est) else FAIL, few)
    return Judged(c, est, low, high, n, _verdict(c, low, high), few)


def _verdict(c: Condition, low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNSURE
    t = c.threshold
    meets = {"<=": high <= t, "<": high < t, ">=": low >= t, ">": low > t}[c.op]
    misses = {"<=": low > t, "<": low >= t, ">=": high < t, ">": high <= t}[c.op]
    return PASS if meets else FAIL if misses else UNSURE


# -- words -------------------------------------------------------------------------

def point_text(p: PointVerdict, confidence: float | None = None) -> str:
    """`p99 = 271 ms [248, 292]` for each condition (with `95 %: ` in front when given)."""
    parts = []
    for j in p.judged:
        name, unit, scale = describe(j.condition.metric)
        stat = name.split(" ")[0] if "_" in j.condition.metric else name
        if not math.isfinite(j.estimate):
            parts.append(f"{stat}: no values")
            continue
        parts.append(f"{stat} = {_fmt(j.estimate * scale)} {unit} [{_fmt(j.low * scale)}, {_fmt(j.high * scale)}]"
                     + (" (few values)" if j.few else ""))
    text = ", ".join(parts)
    if p.failed:
        text += f"; {p.failed} of {p.requests} requests failed"
    return (f"{confidence * 100:g} %: " if confidence else "") + text


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def answer_text(variable: str, group: Sequence[Condition], best: PointVerdict | None, fail: PointVerdict | None,
                confidence: float, lower: float) -> str:
    """The one-line answer: "max parallel 48 meets p99 TTFT ≤ 300 ms (95 %: p99 = 271 ms [248, 292]);
    56 does not (p99 = 344 ms [317, 371])"."""
    conds = " and ".join(c.text() for c in group)
    if len(group) == 1 and group[0].extreme:
        if best is None:
            return f"{conds}: no point succeeded"
        return (f"{conds}: {variable} {best.value:g}, the least load within noise of the best "
                f"({point_text(best, confidence)})")
    if best is None:
        tail = f" ({point_text(fail)})" if fail is not None else ""
        return f"no {variable} meets {conds}: even {lower:g} does not{tail}"
    out = f"max {variable} {best.value:g} meets {conds} ({point_text(best, confidence)})"
    if fail is not None:
        why = "is too close to call, so not counted as meeting it" if fail.verdict == UNSURE else "does not"
        out += f"; {fail.value:g} {why} ({point_text(fail)})"
    else:
        out += " (the upper bound: higher loads were not tried)"
    return out
