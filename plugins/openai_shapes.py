"""What OpenAI-shaped replies look like: the text and the output an event
carries, and the token counts its usage reports.  The defaults of
ApiPluginBase and the built-in API plugins read replies through these."""
from __future__ import annotations

from typing import Any

from plugins.jsoncache import load_json


def openai_event_text(data: Any) -> str:
    """Text an OpenAI-shaped chunk or body carries (content + reasoning)."""
    if not isinstance(data, dict):
        return ""
    out = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        part = choice.get("delta") or choice.get("message") or {}
        if isinstance(part, dict):
            for key in ("content", "reasoning_content", "reasoning"):
                value = part.get(key)
                if isinstance(value, str):
                    out.append(value)
        text = choice.get("text")
        if isinstance(text, str):
            out.append(text)
    return "".join(out)


_OUTPUT_KEYS = ("content", "reasoning_content", "reasoning", "tool_calls")


def openai_event_has_output(data: Any) -> bool:
    """Content, reasoning or a tool call in a chunk (or a completions text)."""
    return _event_has(data, _OUTPUT_KEYS)


def _event_has(data: Any, keys: tuple[str, ...]) -> bool:
    """Any of `keys` non-empty in a choice's delta (or message), or a
    completions text.  Called once per event of every request, so it asks
    only what it must."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        part = choice.get("delta") or choice.get("message")
        if isinstance(part, dict):
            for key in keys:
                if part.get(key):
                    return True
        text = choice.get("text")
        if isinstance(text, str) and text:
            return True
    return False


def usage_counts(responses: list, indexes: list[int], completion_key: str) -> list[int] | None:
    """Output tokens in each of the events at `indexes` (the output events),
    from the running `usage` in every event (vLLM's
    stream_options.continuous_usage_stats, DashScope always): each output
    event's count minus the previous output event's, the first's minus 0, so
    tokens of an event between two output events go to the later one.  None
    when an output event has no count, or the counts go down."""
    out, before = [], 0
    for i in indexes:
        data = load_json(responses[i])
        usage = data.get("usage") if isinstance(data, dict) else None
        done = usage.get(completion_key) if isinstance(usage, dict) else None
        if isinstance(done, bool) or not isinstance(done, int) or done < before:
            return None
        out.append(done - before)
        before = done
    return out


_ANSWER_KEYS = ("content", "tool_calls")


def openai_event_has_answer(data: Any) -> bool:
    """Answer output in a chunk: content, a tool call or a completions text,
    not reasoning (`reasoning_content`, vLLM's `reasoning`)."""
    return _event_has(data, _ANSWER_KEYS)


def last_reasoning_tokens(responses: list) -> int | None:
    """Reasoning tokens from the last usage that reports them: chat's
    `completion_tokens_details.reasoning_tokens`, or the Responses API's
    `output_tokens_details.reasoning_tokens` (inside `response`).  Usage
    ends a reply, so only its last events are read: a stream without usage
    costs no second pass over every event."""
    for payload in reversed(responses[-3:]):
        data = load_json(str.__str__(payload) if isinstance(payload, str) else payload)
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("response"), dict):
            data = data["response"]
        usage = data.get("usage")
        if not isinstance(usage, dict):
            continue
        for key in ("completion_tokens_details", "output_tokens_details"):
            details = usage.get(key)
            if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
                return details["reasoning_tokens"]
    return None


def last_usage(responses: list, prompt_key: str, completion_key: str) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from the last event whose `usage` has a
    completion count: usage comes in its own final chunk, or inside the last
    chunk with choices, or (DashScope) cumulative in every event."""
    for payload in reversed(responses):
        # a Payload as plain str: the coordinator's parse of it is cached under that key
        data = load_json(str.__str__(payload) if isinstance(payload, str) else payload)
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict) and usage.get(completion_key) is not None:
            return usage.get(prompt_key), usage.get(completion_key)
    return None, None
