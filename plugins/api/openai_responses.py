"""OpenAI's Responses API: POST /v1/responses (OpenAI, vLLM, SGLang; evalscope
perf's `openai_responses`).

A stream is typed events; output is carried by the `*.delta` events, so TTFT
is the first non-empty one.  Reasoning models send `response.reasoning_text.delta`
(or reasoning summary deltas) before the answer's `response.output_text.delta`:
TTFT is then the first reasoning token, and the row's first_answer_latency the
first answer token.  Token counts come from the usage of `response.completed`
(`response.incomplete` when max_output_tokens cut it short).
"""
from __future__ import annotations

from typing import Any

from engine.arguments import Arguments
from plugins.base import ApiPluginBase
from plugins.bodies import fill_query_template, messages_text
from plugins.jsoncache import load_json

ANSWER_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta",
                           "response.function_call_arguments.delta"})
REASONING_DELTAS = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})
OUTPUT_DELTAS = ANSWER_DELTAS | REASONING_DELTAS
FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def _type(payload: Any) -> str | None:
    data = load_json(payload)
    return data.get("type") if isinstance(data, dict) else None


def _delta(payload: Any, types: frozenset) -> bool:
    data = load_json(payload)
    return isinstance(data, dict) and data.get("type") in types and bool(data.get("delta"))


class OpenaiResponsesPlugin(ApiPluginBase):
    """OpenAI Responses API (/v1/responses), streamed or not; TTFT on the first output delta."""

    def build_request(self, messages: Any, param: Arguments | None = None) -> dict | None:
        param = param or self.param
        if param.query_template:
            body = fill_query_template(param.query_template, param.model, messages_text(messages))
            body.update(param.extra_args)
            return body
        if isinstance(messages, str):
            value: Any = messages
        else:  # chat messages are valid Responses input items as they are
            value = [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in messages
                     if isinstance(m, dict)]
        if not value:
            return None
        body = {"model": param.model, "input": value, "stream": param.stream}
        # Only what the user asked for, under the Responses API's names.
        if param.max_tokens is not None:
            body["max_output_tokens"] = param.max_tokens
        for key in ("temperature", "top_p"):
            if getattr(param, key) is not None:
                body[key] = getattr(param, key)
        body.update(param.extra_args)
        return body

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        for payload in reversed(responses):
            data = load_json(str.__str__(payload))
            if not isinstance(data, dict):
                continue
            if isinstance(data.get("response"), dict):  # a stream's final event
                data = data["response"]
            usage = data.get("usage")
            if isinstance(usage, dict) and usage.get("output_tokens") is not None:
                return usage.get("input_tokens"), usage.get("output_tokens")
        return None, None

    def output_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        return [i for i, payload in enumerate(responses) if _delta(payload, OUTPUT_DELTAS)]

    def answer_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        return [i for i, payload in enumerate(responses) if _delta(payload, ANSWER_DELTAS)]

    def response_error(self, responses: list[str]) -> str | None:
        for i, payload in enumerate(responses):
            data = load_json(payload)
            if not isinstance(data, dict):
                return f"invalid JSON in event {i + 1}: {' '.join(str(payload).split())[:60]}"
            kind = data.get("type")
            error = None
            if kind == "error":
                error = data.get("message") or data.get("error") or data
            elif kind == "response.failed" or (kind is None and data.get("status") == "failed"):
                inner = data.get("response", data)
                error = (inner.get("error") or {}).get("message") if isinstance(inner, dict) else None
                error = error or "response.failed"
            elif kind is None and data.get("error"):  # a non-streamed body, or an OpenAI error object
                err = data["error"]
                error = err.get("message", err) if isinstance(err, dict) else err
            if error:
                return "error event in stream: " + " ".join(str(error).split())[:200]
        return None

    def stream_incomplete(self, responses: list[str], saw_done: bool) -> str | None:
        """A Responses stream has no [DONE]: it is whole when it ends with its final event."""
        if any(_type(payload) in FINAL_EVENTS for payload in reversed(responses[-3:])):
            return None
        return "stream ended without response.completed"

    def completion_text(self, responses: list[str]) -> str:
        parts = []
        for payload in responses:
            data = load_json(payload)
            if isinstance(data, dict) and data.get("type") in OUTPUT_DELTAS and isinstance(data.get("delta"), str):
                parts.append(data["delta"])
        return "".join(parts)
