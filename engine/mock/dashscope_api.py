"""DashScope native text generation: POST /api/v1/services/aigc/text-generation/generation.

Request: {"model", "input": {"messages": [...]} | {"prompt": "..."},
          "parameters": {"max_tokens", "incremental_output", "result_format", ...}}.
SSE when the request has ``X-DashScope-SSE: enable`` or accepts
text/event-stream (what the official SDK sends for stream=True).  Each event:

    id:N
    event:result
    :HTTP_STATUS/200
    data:{"output": ..., "usage": {...cumulative...}, "request_id": "..."}

result_format "message": output = {"choices": [{"message": {"content", "role"},
"finish_reason": "null"|"stop"|"length"}]}; "text" (the default):
output = {"text", "finish_reason"}.  With incremental_output each event holds
only the new text, otherwise the whole text so far.  No [DONE]: the stream
simply ends.  Errors use DashScope's {"code", "message", "request_id"} (plus an
OpenAI-style "error" object so either kind of client can read them).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .config import MockConfig
from .plan import (SSE_CONTENT_TYPE, BadRequest, ModelNotFound, ResponsePlan, chunk_schedule, json_plan,
                   output_length, parse_json_object)
from .tokens import chunk_json, count_messages, count_prompt, output_text

if TYPE_CHECKING:
    from .http import Request
    from .truth import TruthRecord

PATH = "/api/v1/services/aigc/text-generation/generation"


def error(status: int, code: str, message: str, request_id: str) -> ResponsePlan:
    return json_plan(status, {"request_id": request_id, "code": code, "message": message,
                              "error": {"message": message, "type": "BadRequestError",
                                        "code": status}})


def wants_sse(req: Request) -> bool:
    h = req.headers
    return h.get("x-dashscope-sse", "").lower() == "enable" or "text/event-stream" in h.get("accept", "")


def generation(req: Request, cfg: MockConfig, rec: TruthRecord | None) -> ResponsePlan:
    try:
        return _generation(req, cfg, rec)
    except BadRequest as e:
        return error(400, "InvalidParameter", str(e), req.request_id)
    except ModelNotFound as e:
        return error(404, "ModelNotFound", str(e), req.request_id)


def _generation(req: Request, cfg: MockConfig, rec: TruthRecord | None) -> ResponsePlan:
    body = parse_json_object(req.body)
    if cfg.served_model is not None and body.get("model") != cfg.served_model:
        raise ModelNotFound(body.get("model"))
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise BadRequest("'input' must be an object with 'messages' or 'prompt'")
    if isinstance(inp.get("messages"), list) and inp["messages"]:
        prompt_tokens = count_messages(inp["messages"])
    elif "prompt" in inp:
        prompt_tokens = count_prompt(inp["prompt"])
    else:
        raise BadRequest("'input' must contain 'messages' or 'prompt'")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    fmt = params.get("result_format", "text")
    if fmt not in ("text", "message"):
        raise BadRequest(f"result_format must be 'text' or 'message', got {fmt!r}")
    n_tokens, finish = output_length(params.get("max_tokens"), cfg.reply_tokens(req.request_id))
    if rec is not None:
        rec.prompt_tokens, rec.completion_tokens = prompt_tokens, n_tokens
    rid = req.request_id
    sizes, due = chunk_schedule(cfg, req.request_id, n_tokens)

    if not wants_sse(req):
        text = output_text(n_tokens)
        output: dict[str, Any]
        if fmt == "message":
            output = {"choices": [{"finish_reason": finish,
                                   "message": {"role": "assistant", "content": text}}]}
        else:
            output = {"text": text, "finish_reason": finish}
        reply = {"output": output, "usage": {"input_tokens": prompt_tokens,
                                             "output_tokens": n_tokens,
                                             "total_tokens": prompt_tokens + n_tokens},
                 "request_id": rid}
        return json_plan(200, reply, due[-1], notes={"tokens": (prompt_tokens, n_tokens)})

    incremental = params.get("incremental_output") is True
    rid_json = json.dumps(rid).encode()
    if fmt == "message":
        pre, mid = b'data:{"output":{"choices":[{"message":{"content":', b',"role":"assistant"},"finish_reason":"%s"}]},'
    else:
        pre, mid = b'data:{"output":{"text":', b',"finish_reason":"%s"},'
    events, end = [], 0
    for j, n in enumerate(sizes):
        start, end = end, end + n
        text = chunk_json(start, end - start) if incremental else chunk_json(0, end)
        reason = b"null" if end < n_tokens else finish.encode()
        events.append(
            b"id:%d\nevent:result\n:HTTP_STATUS/200\n" % (j + 1) + pre + text + mid % reason
            + b'"usage":{"total_tokens":%d,"output_tokens":%d,"input_tokens":%d},"request_id":%s}\n\n'
            % (prompt_tokens + end, end, prompt_tokens, rid_json))
    return ResponsePlan(200, SSE_CONTENT_TYPE, events, due,
                        chunked=True, content_start=0, content_count=len(sizes),
                        extra_headers=(("x-dashscope-request-id", rid),),
                        notes={"tokens": (prompt_tokens, n_tokens)})  # for /metrics' counters
