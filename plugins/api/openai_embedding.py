"""OpenAI-compatible embeddings: POST /v1/embeddings (OpenAI, vLLM, SGLang, TEI, Infinity).

One JSON body per request: the row has its latency and input tokens, no
TTFT, TPOT or ITL (`generates_tokens = False`).  The name and the request
shape are evalscope perf's `openai_embedding`.
"""
from __future__ import annotations

from typing import Any

from engine.arguments import Arguments
from plugins.base import ApiPluginBase
from plugins.bodies import fill_query_template, messages_text
from plugins.jsoncache import load_json


def embedding_input(item: Any) -> str | list[str] | None:
    """The `input` of one dataset item: a text, a batch (a list of texts),
    or the text of a list of chat messages; None for an empty item."""
    if isinstance(item, str):
        return item or None
    if isinstance(item, dict):  # an evalscope-style item: {"text": ...} / {"input": ...}
        for key in ("input", "text"):
            if isinstance(item.get(key), (str, list)) and item[key]:
                return item[key]
        return None
    if isinstance(item, list) and item and all(isinstance(t, str) for t in item):
        return list(item)
    return messages_text(item) or None


class OpenaiEmbeddingPlugin(ApiPluginBase):
    """OpenAI-compatible /v1/embeddings: latency and input tokens/s (no TTFT)."""

    generates_tokens = False

    def build_request(self, messages: Any, param: Arguments | None = None) -> dict | None:
        param = param or self.param
        text = embedding_input(messages)
        if text is None:
            return None
        if param.query_template:
            body = fill_query_template(param.query_template, param.model, text if isinstance(text, str)
                                       else "\n".join(text))
        else:
            # Only what is needed: the format defaults to "float" (as evalscope
            # receives it); the official client asks for "base64", which a
            # server may encode faster: --extra-args '{"encoding_format": "base64"}'.
            body = {"model": param.model, "input": text}
        body.update(param.extra_args)  # e.g. {"encoding_format": "base64", "dimensions": 256}
        return body

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        """(input tokens, 0): an embedding generates no tokens."""
        for payload in reversed(responses):
            data = load_json(str.__str__(payload))
            usage = data.get("usage") if isinstance(data, dict) else None
            if isinstance(usage, dict):
                prompt = usage.get("prompt_tokens")
                return (prompt if prompt is not None else usage.get("total_tokens")), 0
        return None, 0

    def output_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        return []

    def completion_text(self, responses: list[str]) -> str:
        return ""
