"""Rerank: POST /v1/rerank or /rerank, query + documents (vLLM, Jina, Cohere
and TEI-style servers; evalscope perf's `openai_rerank`).

One JSON body per request: latency and input tokens, no TTFT, TPOT or ITL.
"""
from __future__ import annotations

from typing import Any

from engine.arguments import Arguments
from plugins.base import ApiPluginBase
from plugins.bodies import messages_text
from plugins.jsoncache import load_json

# evalscope's random_rerank reads these from --extra-args: never sent
DATASET_KNOBS = ("num_documents", "document_length_ratio")


def rerank_pair(item: Any) -> tuple[str, list] | None:
    """(query, documents) of one dataset item: {"query", "documents"} (also
    evalscope's "passages"/"texts"), a list of strings (the query, then the
    documents), or chat messages (the first the query, the rest documents;
    one message is its own document)."""
    if isinstance(item, dict):
        documents = item.get("documents") or item.get("passages") or item.get("texts")
        query = item.get("query")
        if isinstance(query, str) and isinstance(documents, list) and documents:
            return query, documents
        return None
    if isinstance(item, str):
        return (item, [item]) if item else None
    if isinstance(item, list) and item:
        texts = item if all(isinstance(t, str) for t in item) else [messages_text([m]) for m in item]
        return texts[0], (texts[1:] or texts[:1])
    return None


class OpenaiRerankPlugin(ApiPluginBase):
    """Rerank (/v1/rerank, /rerank): query + documents, latency and input tokens/s (no TTFT)."""

    generates_tokens = False

    def build_request(self, messages: Any, param: Arguments | None = None) -> dict | None:
        param = param or self.param
        pair = rerank_pair(messages)
        if pair is None:
            return None
        body: dict[str, Any] = {"model": param.model, "query": pair[0], "documents": pair[1]}
        # e.g. {"top_n": 3, "return_documents": false}; not random_rerank's own knobs
        body.update({k: v for k, v in param.extra_args.items() if k not in DATASET_KNOBS})
        return body

    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any):
        """(input tokens, 0) from vLLM's/Jina's `usage` or Cohere's billed units."""
        for payload in reversed(responses):
            data = load_json(str.__str__(payload))
            if not isinstance(data, dict):
                continue
            usage = data.get("usage")
            if isinstance(usage, dict):
                prompt = usage.get("prompt_tokens")
                return (prompt if prompt is not None else usage.get("total_tokens")), 0
            meta = data.get("meta")
            units = meta.get("billed_units") if isinstance(meta, dict) else None
            if isinstance(units, dict) and units.get("input_tokens") is not None:
                return units["input_tokens"], 0
        return None, 0

    def output_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        return []

    def completion_text(self, responses: list[str]) -> str:
        return ""
