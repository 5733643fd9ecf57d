"""Trace replay in the plugin SDK: what a dataset that carries its own send
times yields, and the reading of its `--dataset-args`.

A dataset plugin whose class sets `provides_arrival_schedule = True` (the
name evalscope perf uses) yields `TimedItem`s: each says when, in seconds
after the first, its request is due.  The runner then takes each send time
from the item instead of the rate schedule (engine.replay), and replays the
trace once, never cycling it.  Such a dataset needs `--open-loop`: the
trace, not the replies, paces the requests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engine.errors import DatasetError


@dataclass(frozen=True)
class TimedItem:
    """One request of a trace.

    messages   what the API plugin's build_request gets (chat messages or a
               plain string), as a dataset item without a send time;
    offset_s   when it is due: seconds after the trace's first request,
               already divided by the replay speed;
    params     Arguments fields that differ for this request (e.g.
               {"max_tokens": 7}), applied before build_request;
    body       a complete request body to send as it is (the API plugin's
               build_request is then skipped), as evalscope's workload_trace.
    """

    messages: list | str | None
    offset_s: float
    params: dict[str, Any] = field(default_factory=dict)
    body: dict | None = None


def trace_args(dataset_name: str, given: dict, defaults: dict[str, Any]) -> dict[str, Any]:
    """`--dataset-args` checked against the options a trace dataset knows
    (`defaults`): an unknown key or a bad value is one line naming it."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DatasetError(f"--dataset-args: --dataset {dataset_name} has no option {', '.join(map(repr, unknown))} "
                           f"(it takes {', '.join(sorted(defaults))})")
    out = {**defaults, **given}
    speed = out.get("speed")
    if "speed" in defaults and (isinstance(speed, bool) or not isinstance(speed, (int, float))
                                or not math.isfinite(speed) or speed <= 0):
        raise DatasetError(f"--dataset-args: \"speed\" must be a number > 0 (2.0 replays twice as fast), got {speed!r}")
    for key, default in defaults.items():
        if isinstance(default, bool) and not isinstance(out[key], bool):
            raise DatasetError(f"--dataset-args: \"{key}\" must be true or false, got {out[key]!r}")
    return out


def needs_open_loop(dataset_name: str, open_loop: bool) -> None:
    """As in evalscope perf: a trace paces its own requests, and says so with --open-loop."""
    if not open_loop:
        raise DatasetError(f"--dataset {dataset_name} replays the trace's own send times: add --open-loop "
                           "(and --parallel N to cap the requests in flight)")
