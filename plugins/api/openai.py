"""OpenAI-compatible chat and completions APIs (vLLM, SGLang, TGI, llama.cpp, ...)."""
from __future__ import annotations

from typing import Any

from engine.arguments import Arguments
from plugins.base import ApiPluginBase
from plugins.bodies import fill_query_template, messages_text
from plugins.jsoncache import load_json
from plugins.openai_shapes import last_usage


class OpenaiPlugin(ApiPluginBase):
    """OpenAI-compatible /v1/chat/completions and /v1/completions, streamed or not."""

    def build_request(self, messages: list[dict] | str, param: Arguments | None = None) -> dict | None:
        param = param or self.param
        if param.query_template:
            return self._from_template(messages, param)
        path = param.url_path.rstrip("/")
        completions = isinstance(messages, str) or (
            path.endswith("/completions") and not path.endswith("/chat/completions"))
        body: dict[str, Any] = {"model": param.model}
        if completions:
            body["prompt"] = messages if isinstance(messages, str) else messages_text(messages)
        else:
            body["messages"] = messages
        body["stream"] = param.stream
        if param.stream:
            body["stream_options"] = {"include_usage": True}
            if param.continuous_usage:  # vLLM's: usage in every chunk, for tokens per chunk (ITL per token)
                body["stream_options"]["continuous_usage_stats"] = True
        # Only what the user asked for: strict servers answer 422 to fields
        # they do not know, so optional sampling fields are never defaulted.
        for key in ("max_tokens", "min_tokens", "temperature", "top_p", "top_k", "stop"):
            value = getattr(param, key)
            if value is not None:
                body[key] = value
        body.update(param.extra_args)
        return body

    def _from_template(self, messages: list[dict] | str, param: Arguments) -> dict:
        body = fill_query_template(param.query_template, param.model, messages_text(messages))
        body.update(param.extra_args)
        return body

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        return last_usage(responses, "prompt_tokens", "completion_tokens")

    def stream_incomplete(self, responses: list[str], saw_done: bool) -> str | None:
        """Servers differ: some end without `[DONE]`, but every complete
        stream says why it stopped.  Neither means the stream was cut."""
        if saw_done:
            return None
        for payload in reversed(responses):
            data = load_json(payload)
            for choice in (data.get("choices") or ()) if isinstance(data, dict) else ():
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    return None
        return "stream ended without [DONE] or a finish_reason"

