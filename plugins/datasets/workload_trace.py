"""Replay recorded requests at their recorded times: evalscope perf's
`workload_trace` file format.

Each line of the JSONL file (--dataset-path) is one request:

    {"timestamp": 12.5, "body": {"model": "m", "messages": [...], "max_tokens": 64}}

`timestamp` is seconds (any origin) or an ISO-8601 time; `body` (an object,
or a string holding one) is sent as it is, so each request keeps its own
model; `completion_tokens` (optional) is the recorded output length;
`request_id` (optional) is accepted and not used.  --dataset-args takes
"speed" (2.0 replays twice as fast), "model_override", "model_mapping"
({"recorded": "served"}) and "match_output_length" (max_tokens =
completion_tokens, with ignore_eos unless the body constrains the output).
Per-request "headers" are not supported yet.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins.base import DatasetPluginBase
from plugins.replay import TimedItem, needs_open_loop, trace_args

WHAT = "a workload trace: JSON lines with timestamp (s or ISO-8601) and body (the request)"
OPTIONS = {"speed": 1.0, "match_output_length": False, "model_override": None, "model_mapping": None}
FIELDS = {"timestamp", "body", "headers", "request_id", "completion_tokens"}


def _numeric(value: Any) -> bool:
    """Whether a timestamp is given in seconds (a number or a numeric string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def seconds(value: Any) -> float:
    """A trace timestamp as seconds: a number, a numeric string or an ISO-8601 time (UTC if no zone)."""
    if isinstance(value, bool):
        raise ValueError("is not a time")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("is not a number or an ISO-8601 string")
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    stamp = datetime.fromisoformat(text)  # ValueError names the text
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def constrained(body: dict) -> bool:
    """A body whose output a grammar ends (JSON mode, a forced tool call):
    ignore_eos would force generation past that end."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return True
    return bool(body.get("tools")) and body.get("tool_choice") not in (None, "none", "auto")


class WorkloadTraceDataset(DatasetPluginBase):
    """Recorded request bodies replayed at their times (evalscope's workload_trace JSONL); needs --open-loop."""

    provides_arrival_schedule = True

    def __init__(self, query_parameters: Arguments):
        super().__init__(query_parameters)
        needs_open_loop("workload_trace", query_parameters.open_loop)
        if not query_parameters.dataset_path:
            raise DatasetError(f"--dataset workload_trace needs --dataset-path: {WHAT}")
        self.options = trace_args("workload_trace", query_parameters.dataset_args, OPTIONS)
        mapping = self.options["model_mapping"]
        if mapping is not None and (not isinstance(mapping, dict)
                                    or not all(isinstance(v, str) for v in mapping.values())):
            raise DatasetError('--dataset-args: "model_mapping" must be an object of model names, '
                               'e.g. {"recorded": "served"}')
        override = self.options["model_override"]
        if override is not None and not isinstance(override, str):
            raise DatasetError(f'--dataset-args: "model_override" must be a model name (a string), got {override!r}')

    def records(self) -> list[tuple[float, dict, int | None]]:
        """(timestamp s, body, completion_tokens) of every line, in time order."""
        path = self.query_parameters.dataset_path
        out = []
        first_kind = ""
        for n, item in enumerate(self.dataset_json_list(path, WHAT), 1):
            where = f"line {n}"
            if not isinstance(item, dict):
                raise self.dataset_format_error(path, where, "is not a JSON object", WHAT)
            unknown = sorted(set(item) - FIELDS)
            if unknown:
                raise self.dataset_format_error(path, where, f"has unknown field(s) {', '.join(unknown)}", WHAT)
            if item.get("headers"):
                raise self.dataset_format_error(path, where, 'has "headers": per-request headers are not '
                                                "supported yet (use --headers for all requests)", WHAT)
            try:
                stamp = seconds(item.get("timestamp"))
            except ValueError as e:
                raise self.dataset_format_error(path, where, f'has a "timestamp" that {e}', WHAT) from None
            kind = "seconds" if _numeric(item.get("timestamp")) else "an ISO-8601 time"
            if out and kind != first_kind:  # their difference would be decades, not the gap
                raise self.dataset_format_error(path, where, f'has a "timestamp" in {kind}, line 1 in {first_kind}: '
                                                "give every line the same kind", WHAT)
            first_kind = kind
            body = item.get("body")
            if isinstance(body, str):
                try:
                    body = json.loads(body)
                except ValueError:
                    body = None
            if not isinstance(body, dict):
                raise self.dataset_format_error(path, where, 'has no "body" object', WHAT)
            tokens = item.get("completion_tokens")
            if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
                raise self.dataset_format_error(path, where, '"completion_tokens" is not a whole number >= 1', WHAT)
            out.append((stamp, body, tokens))
        out.sort(key=lambda r: r[0])
        return out

    def build_messages(self) -> Iterator[TimedItem]:
        o = self.options
        records = self.records()
        if not records:
            return
        first = records[0][0]
        for stamp, body, tokens in records:
            body = dict(body)
            mapping = o["model_mapping"] or {}
            if body.get("model") in mapping:
                body["model"] = mapping[body["model"]]
            elif o["model_override"] is not None:
                body["model"] = o["model_override"]
            if o["match_output_length"] and tokens is not None:
                # the recorded body's own limit, whichever name it has (vLLM and SGLang take
                # max_completion_tokens before max_tokens; the Responses API max_output_tokens)
                keys = [k for k in ("max_completion_tokens", "max_output_tokens", "max_tokens") if k in body]
                for key in keys or ["max_tokens"]:
                    body[key] = tokens
                if not constrained(body):
                    body["ignore_eos"] = True
            yield TimedItem(None, (stamp - first) / o["speed"], body=body)
