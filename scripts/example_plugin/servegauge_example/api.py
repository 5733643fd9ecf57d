"""An OpenAI-compatible API plugin that counts tokens its own way.

Some hosted APIs bill, and report, by characters instead of tokens; this
plugin stands for one: it reports the characters of the prompt and of the
generated text as its "tokens", ignoring the server's usage.  That makes its
numbers easy to tell apart from the built-in openai plugin's in a test.
"""
from __future__ import annotations

import json
from typing import Any

from engine.arguments import Arguments
from plugins import ApiPluginBase


class EchoOpenaiPlugin(ApiPluginBase):
    """OpenAI chat completions, counting characters as tokens (example third-party plugin)."""

    def build_request(self, messages: list[dict] | str, param: Arguments | None = None) -> dict | None:
        param = param or self.param
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body: dict[str, Any] = {"model": param.model, "messages": messages, "stream": param.stream}
        if param.max_tokens is not None:
            body["max_tokens"] = param.max_tokens
        body.update(param.extra_args)
        return body

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        prompt = "".join(m.get("content", "") for m in (request or {}).get("messages", [])
                         if isinstance(m.get("content"), str))
        return len(prompt), len(self.completion_text(responses))

    def completion_text(self, responses: list) -> str:
        text = []
        for payload in responses:
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            for choice in data.get("choices") or []:
                part = choice.get("delta") or choice.get("message") or {}
                text.append(part.get("content") or "")
        return "".join(text)
