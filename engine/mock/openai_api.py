"""OpenAI-compatible endpoints, byte-for-byte in vLLM's shapes.

Streams (chat): a role chunk at once, then content chunks at ttft, ttft+itl,
..., finish_reason on the last content chunk, an optional usage chunk
(stream_options.include_usage), then ``data: [DONE]``; with vLLM's
stream_options.continuous_usage_stats every chunk carries the usage so far.  Completions streams
have no role chunk (vLLM sends none).  With --reasoning-tokens, chat streams
send the reasoning first (delta.reasoning_content, as DeepSeek and vLLM do),
one event per chunk at the same gaps, then the answer.  Events are assembled from pre-encoded
byte pieces: json.dumps per event would be most of the server's CPU.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .config import MockConfig
from .plan import (JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, BadRequest, ModelNotFound, ResponsePlan,
                   chunk_due, json_plan, output_length, parse_json_object)
from .tokens import chunk_json, count_messages, count_prompt

if TYPE_CHECKING:
    from .http import Request
    from .truth import TruthRecord

_DONE = b"data: [DONE]\n\n"


@lru_cache(maxsize=256)
def _json_str(value: str) -> bytes:
    """JSON literal of a string; cached since clients send the same model name."""
    return json.dumps(value).encode()


def _request_fields(req: Request, cfg: MockConfig, chat: bool) -> tuple[dict[str, Any], int]:
    body = parse_json_object(req.body)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        prompt_tokens = count_messages(messages)
    else:
        if "prompt" not in body:
            raise BadRequest("'prompt' is required")
        prompt_tokens = count_prompt(body["prompt"])
    model = body.get("model", cfg.model_name)
    if cfg.served_model is not None and model != cfg.served_model:
        raise ModelNotFound(model)
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string")
    return body, prompt_tokens


def completion(req: Request, cfg: MockConfig, rec: TruthRecord | None, chat: bool) -> ResponsePlan:
    """POST /v1/chat/completions (chat=True) and POST /v1/completions."""
    body, prompt_tokens = _request_fields(req, cfg, chat)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    n_tokens, finish = output_length(max_tokens, cfg.reply_tokens(req.request_id))
    if rec is not None:
        rec.prompt_tokens, rec.completion_tokens = prompt_tokens, n_tokens
    sizes = cfg.chunk_sizes(req.request_id, n_tokens)
    nc = len(sizes)
    rid = ("chatcmpl-" if chat else "cmpl-") + req.request_id
    model = body.get("model", cfg.model_name)
    created = int(req.arrival)
    obj = ("chat.completion.chunk" if chat else "text_completion") if body.get("stream") else (
        "chat.completion" if chat else "text_completion")
    rid_json, model_json = json.dumps(rid).encode(), _json_str(model)
    # A reasoning model (chat only): R reasoning tokens before the answer, in
    # events of their own, counted in the usage as vLLM and OpenAI do.
    r_tokens = cfg.reasoning_tokens if chat else 0
    r_sizes = cfg.chunk_sizes(req.request_id + "/reasoning", r_tokens) if r_tokens else []
    nr = len(r_sizes)
    due = chunk_due(cfg, r_sizes + sizes)
    if r_tokens and rec is not None:
        rec.completion_tokens = r_tokens + n_tokens
    usage_json = _usage(prompt_tokens, r_tokens + n_tokens, r_tokens)
    if not body.get("stream"):
        # Templated, not json.dumps of a dict: this is most of the cost of a
        # short non-streamed reply.  The shape is vLLM's.
        text = chunk_json(0, n_tokens)
        reasoning = (b'"%s":%s,' % (cfg.reasoning_field.encode(), chunk_json(0, r_tokens))) if r_tokens else b""
        choice = (b'{"index":0,"message":{"role":"assistant",%s"content":%s,"tool_calls":[]}' % (reasoning, text)
                  if chat else b'{"index":0,"text":%s' % text)
        reply = (b'{"id":%s,"object":"%s","created":%d,"model":%s,"choices":[%s,"logprobs":null,'
                 b'"finish_reason":"%s","stop_reason":null}],"usage":%s}'
                 % (rid_json, obj.encode(), created, model_json, choice, finish.encode(), usage_json))
        # The whole answer is ready when the last chunk would have been sent.
        return ResponsePlan(200, JSON_CONTENT_TYPE, [reply], [due[-1]], content_count=1,
                            notes={"tokens": (prompt_tokens, r_tokens + n_tokens)})

    opts = body.get("stream_options")
    include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
    # vLLM's continuous_usage_stats (only with include_usage, as vLLM): every
    # chunk carries the usage so far, completion_tokens counting up.
    continuous = include_usage and bool(opts.get("continuous_usage_stats"))

    def close(done: int) -> bytes:
        return b',"usage":%s}\n\n' % _usage(prompt_tokens, done) if continuous else b"}\n\n"

    head = b'data: {"id":%s,"object":"%s","created":%d,"model":%s,"choices":' % (
        rid_json, obj.encode(), created, model_json)
    if chat:
        pre, mid = head + b'[{"index":0,"delta":{"content":', b'},"logprobs":null,"finish_reason":'
    else:
        pre, mid = head + b'[{"index":0,"text":', b',"logprobs":null,"finish_reason":'
    tail = b'null,"stop_reason":null}]' if not chat else b'null}]'
    events, start = [], 0
    if nr:
        rpre = head + b'[{"index":0,"delta":{"%s":' % cfg.reasoning_field.encode()
        for n in r_sizes:
            events.append(rpre + chunk_json(start, n) + mid + tail + close(start + n))
            start += n
    for j, n in enumerate(sizes):
        end = b'"%s","stop_reason":null}]' % finish.encode() if j == nc - 1 else tail
        events.append(pre + chunk_json(start - r_tokens, n) + mid + end + close(start + n))
        start += n
    content_start = 0
    if chat:
        events.insert(0, head + b'[{"index":0,"delta":{"role":"assistant","content":""},'
                               b'"logprobs":null,"finish_reason":null}]' + close(0))
        due.insert(0, 0.0)
        content_start = 1
    end_s = due[-1]
    if include_usage:
        events.append(head + b'[],"usage":%s}\n\n' % usage_json)
        due.append(end_s)
    events.append(_DONE)
    due.append(end_s)
    return ResponsePlan(200, SSE_CONTENT_TYPE, events, due, chunked=True,
                        content_start=content_start, content_count=nr + nc,
                        answer_start=content_start + nr if nr else None,
                        notes={"tokens": (prompt_tokens, r_tokens + n_tokens)})  # for /metrics' counters


def _usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> bytes:
    """vLLM's usage object; with reasoning, its share in completion_tokens_details."""
    if reasoning_tokens:
        return (b'{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d,'
                b'"completion_tokens_details":{"reasoning_tokens":%d}}'
                % (prompt_tokens, prompt_tokens + completion_tokens, completion_tokens, reasoning_tokens))
    return b'{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d}' % (
        prompt_tokens, prompt_tokens + completion_tokens, completion_tokens)


def models(req: Request, cfg: MockConfig, started: float) -> ResponsePlan:
    """GET /v1/models: one model, the one the mock pretends to serve."""
    return json_plan(200, {"object": "list", "data": [
        {"id": cfg.listed_model, "object": "model", "created": int(started),
         "owned_by": "servegauge", "root": cfg.listed_model, "parent": None,
         "max_model_len": 1 << 20, "permission": []}]})
