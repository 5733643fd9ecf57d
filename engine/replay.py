"""The seam between a dataset that carries its own send times (trace replay,
plugins.replay.TimedItem) and the rest of a run.

The runner turns every dataset item into a body here: a TimedItem keeps its
offset, which travels on the Sent to the feeder (engine.run_state) and is
used there instead of the rate schedule; any other item gets None and the
schedule decides (engine.scheduler).  Either way each send time is a pure
function of the item's index: t0 + offset.
"""
from __future__ import annotations

from engine.arguments import Arguments
from engine.errors import UsageError
from plugins.replay import TimedItem


def body_and_offset(item, api, args: Arguments) -> tuple[dict | None, float | None]:
    """The request body for `item` (None: the API plugin skips it) and its
    send offset in seconds after the trace's first request (None: by the
    run's schedule)."""
    if isinstance(item, TimedItem):
        if args.rate is not None:
            raise UsageError(f"--rate contradicts --dataset {args.dataset}, which sends each request at the "
                             "trace's own time: drop --rate (--dataset-args '{\"speed\": 2.0}' replays faster)")
        if args.ramp_up:
            raise UsageError(f"--ramp-up does not apply to --dataset {args.dataset}: the trace's own times "
                             "say when each request goes")
        if item.body is not None:
            body = dict(item.body)
            body.setdefault("stream", args.stream)
            return body, item.offset_s
        return api.build_request(item.messages, args.replace(**item.params) if item.params else args), item.offset_s
    if args.open_loop and args.rate is None:
        raise UsageError("--open-loop needs --rate R (requests/s), or a dataset that carries its own send "
                         "times (--dataset workload_trace or mooncake_trace)")
    return api.build_request(item, args), None


def trace_schedule(offset_s: float, first_s: float | None) -> tuple[float, float]:
    """(offset from t0, the first offset) for a trace item: the first
    measured item goes at t0, every later one as much later as the trace
    says (warm-up items, sent before t0, are not counted)."""
    first = offset_s if first_s is None else first_s
    return max(0.0, offset_s - first), first
