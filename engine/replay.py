"""The seam between a dataset that carries its own send times (trace replay,
plugins.replay.TimedItem) and the rest of a run.

The runner turns every dataset item into a body here: a TimedItem keeps its
offset, which travels on the Sent to the feeder (engine.run_state) and is
used there instead of the rate schedule; any other item gets None and the
schedule decides (engine.scheduler).  Either way each send time is a pure
function of the item's index: t0 + offset.

Also the two helpers every dataset loop shares (single requests in
engine.runner, first turns in engine.conversations): a body's JSON bytes,
and the count of bodies the API plugin skips in a row.
"""
from __future__ import annotations

import json
from typing import Callable

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


MAX_SKIPPED_IN_A_ROW = 100_000


def json_bytes(body: dict) -> bytes:
    """A request body as it goes on the wire."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def skip_counter(args: Arguments, what: str) -> Callable[[dict | None], bool]:
    """skipped(body): True when the API plugin skipped this item (body None);
    a dataset whose items it skips MAX_SKIPPED_IN_A_ROW times in a row is a
    UsageError rather than a run that never sends."""
    in_a_row = 0

    def skipped(body: dict | None) -> bool:
        nonlocal in_a_row
        if body is not None:
            in_a_row = 0
            return False
        in_a_row += 1
        if in_a_row > MAX_SKIPPED_IN_A_ROW:
            raise UsageError(f"--api '{args.api}' skipped every {what} of --dataset '{args.dataset}'")
        return True

    return skipped
