"""DashScope's native text-generation protocol (Alibaba Cloud Model Studio).

    POST .../api/v1/services/aigc/text-generation/generation
    Authorization: Bearer $DASHSCOPE_API_KEY       (added by the engine)
    X-DashScope-SSE: enable                        (streaming only)

    {"model": "qwen-plus",
     "input": {"messages": [...]}                  (or {"prompt": "..."} for a plain string)
     "parameters": {"result_format": "message",
                    "incremental_output": true,    (streaming only)
                    "max_tokens", "temperature", "top_p", "top_k", "stop", "seed": only when given}}

A streamed reply is SSE with `event:result` events (`event:error` for an
error) and no `[DONE]` sentinel; each data payload is

    {"output": {"choices": [{"message": {"role", "content", "reasoning_content"?},
                             "finish_reason": "null" | "stop" | "length" | ...}]},
     "usage": {"input_tokens", "output_tokens", "total_tokens"},   (cumulative in every event)
     "request_id": "..."}

or, with result_format "text", {"output": {"text", "finish_reason"}, ...}.
Errors, in a body or in an event, are {"code": "InvalidApiKey", "message":
"...", "request_id": "..."}.

With `incremental_output` each event carries only the new text; without it
(the default of most DashScope models, or `--extra-args '{"parameters":
{"incremental_output": false}}'`) each event repeats the whole text so far.
This plugin reads either: only events whose text grew count as output
(TTFT, ITL, n_chunks), and the completion text is the last snapshot, not the
concatenation of snapshots.

--extra-args: merged recursively into the body.  Keys `model`, `input` and
`parameters` go where they say; any other key is a generation parameter and
goes into `parameters`, so `--extra-args '{"enable_thinking": false}'` and
`--extra-args '{"parameters": {"enable_thinking": false}}'` are the same.
"""
from __future__ import annotations

import copy
from typing import Any

from engine.arguments import Arguments
from plugins.base import ApiPluginBase
from plugins.bodies import fill_query_template, messages_text
from plugins.jsoncache import load_json
from plugins.openai_shapes import last_usage, usage_counts

TOP_LEVEL_KEYS = ("model", "input", "parameters")


class DashScopePlugin(ApiPluginBase):
    """DashScope native text-generation API (streamed with X-DashScope-SSE, incremental or cumulative)."""

    def build_request(self, messages: list[dict] | str, param: Arguments | None = None) -> dict | None:
        param = param or self.param
        if param.query_template:
            body = self._from_template(messages, param)
        else:
            inp = {"prompt": messages} if isinstance(messages, str) else {"messages": messages}
            body = {"model": param.model, "input": inp, "parameters": self._parameters(param)}
        return merge_extra_args(body, param.extra_args)

    @staticmethod
    def _parameters(param: Arguments) -> dict[str, Any]:
        parameters: dict[str, Any] = {"result_format": "message"}
        if param.stream:
            parameters["incremental_output"] = True
        # Only what the user asked for.  --seed is the run's seed (arrivals,
        # random datasets) and defaults to 0: it is sent when not 0.
        for key in ("max_tokens", "temperature", "top_p", "top_k", "stop"):
            value = getattr(param, key)
            if value is not None:
                parameters[key] = value
        if param.seed:
            parameters["seed"] = param.seed
        return parameters

    def _from_template(self, messages: list[dict] | str, param: Arguments) -> dict:
        return fill_query_template(param.query_template, param.model, messages_text(messages))

    def request_headers(self, param: Arguments) -> dict[str, str]:
        # The header, not a body field, is what switches DashScope to SSE.
        return {"X-DashScope-SSE": "enable"} if param.stream else {}

    # --- the reply ----------------------------------------------------------

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        # Usage is cumulative in every event: the last one is the total.
        return last_usage(responses, "input_tokens", "output_tokens")

    def output_event_tokens(self, responses: list[str], indexes: list[int]) -> list[int] | None:
        """DashScope's usage is cumulative in every event."""
        return usage_counts(responses, indexes, "output_tokens")

    def output_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        return _Reading(responses, self._asked_incremental(request)).output_indexes

    def answer_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        """Output events that carry answer (content, tool calls), not reasoning_content (qwen3 thinking)."""
        return _Reading(responses, self._asked_incremental(request)).answer_indexes

    def completion_text(self, responses: list[str]) -> str:
        return _Reading(responses, self._asked_incremental(None)).text

    def _asked_incremental(self, request: Any) -> bool:
        """Whether the request asked for incremental output (when the request
        is not at hand: whether this run's requests do)."""
        if isinstance(request, (str, bytes)):
            request = load_json(request)
        if not isinstance(request, dict):
            param = self.param
            request = merge_extra_args({"parameters": self._parameters(param)}, param.extra_args)
        params = request.get("parameters")
        return isinstance(params, dict) and params.get("incremental_output") is True

    def response_error(self, responses: list[str]) -> str | None:
        for payload in responses:
            data = load_json(payload)
            if isinstance(data, dict) and data.get("code") and not data.get("output"):
                message = " ".join(str(data.get("message") or "").split())[:200]
                return f"{data['code']}: {message}" if message else str(data["code"])
        return super().response_error(responses)

    def stream_incomplete(self, responses: list[str], saw_done: bool) -> str | None:
        """DashScope streams end without a sentinel: a finished reply's last
        event has a finish_reason; without one the stream was cut short."""
        generation = False
        for payload in reversed(responses):
            data = load_json(payload)
            if isinstance(data, dict) and isinstance(data.get("output"), dict):
                generation = True
                reason = _finish_reason(data["output"])
                if isinstance(reason, str) and reason not in ("", "null"):
                    return None
        return "stream ended before a finish_reason (cut short)" if generation else None


def merge_extra_args(body: dict, extra: dict) -> dict:
    """--extra-args into a DashScope body: `model`/`input`/`parameters` at the
    top level, anything else into `parameters`; dicts merge recursively."""
    if not extra:
        return body
    top = {k: v for k, v in extra.items() if k in TOP_LEVEL_KEYS}
    rest = {k: v for k, v in extra.items() if k not in TOP_LEVEL_KEYS}
    if rest:
        top = _merge(top, {"parameters": rest})
    return _merge(body, top)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _finish_reason(output: dict) -> Any:
    choices = output.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0].get("finish_reason")
    return output.get("finish_reason")


def _event_fields(data: Any) -> tuple[str, str, Any] | None:
    """(reasoning, content, tool_calls) of one event, or None if it is not a
    generation event (an error, a heartbeat, something else)."""
    if not isinstance(data, dict) or not isinstance(data.get("output"), dict):
        return None
    output = data["output"]
    choices = output.get("choices")
    if isinstance(choices, list):
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            return "", "", None
        return (_text(message.get("reasoning_content")), _text(message.get("content")),
                message.get("tool_calls") or None)
    return "", _text(output.get("text")), None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # multimodal models: [{"text": ...}, ...]
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class _Reading:
    """One stream read as incremental or as cumulative snapshots.

    Cumulative when every event's reasoning and content start with the
    previous event's (a snapshot chain).  When the request asked for
    incremental output, the chain must also be at least three events long
    and grow at half of its steps or more: real deltas almost never extend
    each other over a whole stream, and repeated ones ("ha", "ha") do not
    grow, while snapshots grow at nearly every step.
    """

    def __init__(self, responses: list[str], asked_incremental: bool):
        events = []  # (index, reasoning, content, tool_calls)
        for i, payload in enumerate(responses):
            fields = _event_fields(load_json(payload))
            if fields is not None and (fields[0] or fields[1] or fields[2]):
                events.append((i, *fields))
        chain, steps, grew = True, len(events) - 1, 0
        for (_, r0, c0, _), (_, r1, c1, _) in zip(events, events[1:]):
            if not (r1.startswith(r0) and c1.startswith(c0)):
                chain = False
                break
            grew += len(r1) + len(c1) > len(r0) + len(c0)
        self.cumulative = steps >= 1 and chain and (not asked_incremental or (steps >= 2 and 2 * grew >= steps))
        if not self.cumulative:
            self.output_indexes = [e[0] for e in events]
            self.answer_indexes = [i for i, _, c, calls in events if c or calls]
            self.text = "".join(r + c for _, r, c, _ in events)
            return
        self.output_indexes, self.answer_indexes = [], []
        seen_r = seen_c = ""
        seen_calls = None
        for i, r, c, calls in events:
            answer = len(c) > len(seen_c) or bool(calls and calls != seen_calls)
            if answer or len(r) > len(seen_r):
                self.output_indexes.append(i)
            if answer:
                self.answer_indexes.append(i)
            seen_r, seen_c, seen_calls = r, c, calls
        self.text = seen_r + seen_c
