"""An example API plugin to copy from: `--api custom`.

It speaks the OpenAI chat-completions protocol (so it runs against the
built-in mock, or vLLM, SGLang, ...), in as few lines as a plugin needs.
Copy this file, rename the class, change the body and the parsing to the
API you benchmark, and either

* register it as an entry point in your own package's setup.cfg:

      [options.entry_points]
      servegauge.api =
          my_api = my_package.my_module:MyApiPlugin

* or decorate the class with `@register_api("my_api")` and pass the file
  with `--plugin-module my_file.py`.

A plugin only formats and parses.  It never opens a socket: the worker sends
the body, stamps every SSE event as it arrives, and hands the raw payloads
back to the plugin after the request is over (so parsing costs nothing in
the measurement).  See docs/plugins.md.
"""
from __future__ import annotations

import json
from typing import Any

from engine.arguments import Arguments
from plugins import ApiPluginBase


class CustomApiPlugin(ApiPluginBase):
    """Example API plugin (OpenAI chat completions in a few lines): copy it to write your own."""

    # Shown by `servegauge plugins` (the class docstring's first line would do too).
    description = "Example API plugin (OpenAI chat completions in a few lines): copy it to write your own."

    def __init__(self, param: Arguments):
        # `param` is the run's Arguments (frozen).  Do the one-time work here:
        # check options, load what you need.  An exception raised here stops
        # the run with a one-line error naming this plugin.
        super().__init__(param)

    def build_request(self, messages: list[dict] | str, param: Arguments | None = None) -> dict | None:
        # One dataset item -> the JSON body of one request.  `messages` is a
        # list of OpenAI chat messages, or a plain string for completion-style
        # datasets.  Return None to skip an item.  Send only the options the
        # user gave: strict servers reject fields they do not know.
        param = param or self.param
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body: dict[str, Any] = {"model": param.model, "messages": messages, "stream": param.stream}
        if param.stream:
            body["stream_options"] = {"include_usage": True}  # ask for token counts in the last event
        if param.max_tokens is not None:
            body["max_tokens"] = param.max_tokens
        if param.temperature is not None:
            body["temperature"] = param.temperature
        body.update(param.extra_args)  # --extra-args '{"ignore_eos": true}'
        return body

    def request_headers(self, param: Arguments) -> dict[str, str]:
        # Headers your protocol needs beyond Content-Type and the API key
        # (the engine adds `Authorization: Bearer <key>` itself).  Optional.
        return {}

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        # (prompt_tokens, completion_tokens) of one finished request.
        # `responses` holds each SSE `data:` payload (for a stream), or the one
        # body (when not streamed), as a plugins.Payload: the JSON text as a
        # str, also readable with .decode() and .get('usage') (see
        # docs/plugins.md); `request` is the body sent.
        # Return None for a count you cannot read: servegauge then counts the
        # completion with --tokenizer-path, or else counts output events.
        for payload in reversed(responses):
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            usage = data.get("usage") if isinstance(data, dict) else None
            if usage:
                return usage.get("prompt_tokens"), usage.get("completion_tokens")
        return None, None

    # The base class also has these, written for the OpenAI shapes; override
    # them when your protocol differs (see plugins/api/dashscope.py):
    #
    #   output_event_indexes(responses, request) -> [i, ...]
    #       which events carry output: TTFT and ITL are measured on them.
    #   completion_text(responses) -> str
    #       the generated text, counted with --tokenizer-path when the
    #       server sends no usage.
    #   response_error(responses) -> str | None
    #       a one-line reason when a 200 reply carries an error.

    def completion_text(self, responses: list[str]) -> str:
        # An override, to show the shape: the content of each chunk's delta
        # (stream) or of the message (one body).
        parts = []
        for payload in responses:
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            for choice in (data.get("choices") or []) if isinstance(data, dict) else []:
                part = choice.get("delta") or choice.get("message") or {}
                parts.append(part.get("content") or "")
        return "".join(parts)
