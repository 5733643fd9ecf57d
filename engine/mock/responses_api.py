"""OpenAI's Responses API: POST /v1/responses, streamed or not.

Request: `input` (a string, or a list of messages whose `content` is a
string or `input_text` parts), optional `instructions`, `max_output_tokens`,
`stream`.  A stream is typed SSE events (`event: TYPE` + `data: {"type":
TYPE, ...}`), in the order OpenAI sends them:

    response.created, response.in_progress                          at 0
    [reasoning item: output_item.added, reasoning_text.delta x R,
     reasoning_text.done, output_item.done]                         (--reasoning-tokens)
    output_item.added, content_part.added (the message)
    response.output_text.delta x N                                  ttft, ttft+itl, ...
    output_text.done, content_part.done, output_item.done,
    response.completed (the whole response, with its usage)         at the last delta

No `[DONE]`: the stream ends after response.completed.  The ground truth's
content events run from the first delta to the last (the item events between
reasoning and answer included); first_answer_time is the first text delta's.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .config import MockConfig
from .plan import (JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, BadRequest, ModelNotFound, ResponsePlan, n_chunks,
                   output_length, parse_json_object)
from .tokens import count_content, output_text

if TYPE_CHECKING:
    from .http import Request
    from .truth import TruthRecord

PATH = "/v1/responses"


def _input_tokens(body: dict[str, Any]) -> int:
    value = body.get("input")
    if isinstance(value, str):
        tokens = len(value.split())
    elif isinstance(value, list) and value:
        tokens = 0
        for item in value:
            if not isinstance(item, dict):
                raise BadRequest("each item of 'input' must be an object")
            tokens += count_content(item.get("content"))
    else:
        raise BadRequest("'input' must be a non-empty string or list of messages")
    instructions = body.get("instructions")
    return tokens + (len(instructions.split()) if isinstance(instructions, str) else 0)


def _response(rid: str, created: int, model: str, status: str, output: list, usage: dict | None,
              max_output_tokens: Any) -> dict[str, Any]:
    return {"id": rid, "object": "response", "created_at": created, "status": status, "model": model,
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "temperature": 1.0, "top_p": 1.0, "max_output_tokens": max_output_tokens,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "usage": usage}


def _message(mid: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"id": mid, "type": "message", "status": status, "role": "assistant", "content": content}


def _reasoning(rsid: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if status == "completed" else []
    return {"id": rsid, "type": "reasoning", "summary": [], "content": content, "status": status}


def responses(req: Request, cfg: MockConfig, rec: TruthRecord | None) -> ResponsePlan:
    body = parse_json_object(req.body)
    model = body.get("model", cfg.model_name)
    if cfg.served_model is not None and model != cfg.served_model:
        raise ModelNotFound(model)
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string")
    input_tokens = _input_tokens(body)
    limit = body.get("max_output_tokens")
    n_tokens, finish = output_length(limit, cfg.reply_tokens(req.request_id))
    r_tokens = cfg.reasoning_tokens
    if rec is not None:
        rec.prompt_tokens, rec.completion_tokens = input_tokens, r_tokens + n_tokens
    k = cfg.tokens_per_chunk
    nr, nc = (n_chunks(r_tokens, k) if r_tokens else 0), n_chunks(n_tokens, k)
    rid, mid, rsid = "resp_" + req.request_id, "msg_" + req.request_id, "rs_" + req.request_id
    created = int(req.arrival)
    text, reasoning_text = output_text(n_tokens), output_text(r_tokens)
    usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": r_tokens + n_tokens, "output_tokens_details": {"reasoning_tokens": r_tokens},
             "total_tokens": input_tokens + r_tokens + n_tokens}
    # "incomplete" when max_output_tokens cut the answer, as OpenAI reports it
    status = "completed" if finish == "stop" else "incomplete"
    output = ([_reasoning(rsid, reasoning_text, "completed")] if r_tokens else []) + [
        _message(mid, text, "completed")]
    end_s = cfg.ttft_s + (nr + nc - 1) * cfg.itl_s
    tokens = {"tokens": (input_tokens, r_tokens + n_tokens)}  # for /metrics' counters
    final = _response(rid, created, model, status, output, usage, limit)
    if status == "incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    if not body.get("stream"):
        reply = json.dumps(final, separators=(",", ":")).encode()
        return ResponsePlan(200, JSON_CONTENT_TYPE, [reply], [end_s], content_count=1, notes=tokens)

    events: list[dict[str, Any]] = []
    due: list[float] = []

    def add(at_s: float, event: dict[str, Any]) -> None:
        event["sequence_number"] = len(events)
        events.append(event)
        due.append(at_s)

    add(0.0, {"type": "response.created", "response": _response(rid, created, model, "in_progress", [], None, limit)})
    add(0.0, {"type": "response.in_progress",
              "response": _response(rid, created, model, "in_progress", [], None, limit)})
    at = [cfg.ttft_s + i * cfg.itl_s for i in range(nr + nc)]
    index = 0
    first_delta = None
    if r_tokens:
        add(0.0, {"type": "response.output_item.added", "output_index": 0,
                  "item": _reasoning(rsid, "", "in_progress")})
        for j in range(nr):
            first_delta = len(events) if first_delta is None else first_delta
            add(at[j], {"type": "response.reasoning_text.delta", "item_id": rsid, "output_index": 0,
                        "content_index": 0, "delta": output_text(min(k, r_tokens - j * k), j * k)})
        add(at[nr - 1], {"type": "response.reasoning_text.done", "item_id": rsid, "output_index": 0,
                         "content_index": 0, "text": reasoning_text})
        add(at[nr - 1], {"type": "response.output_item.done", "output_index": 0, "item": output[0]})
        index = 1
    start = at[nr] if r_tokens else 0.0
    add(start, {"type": "response.output_item.added", "output_index": index, "item": _message(mid, "", "in_progress")})
    add(start, {"type": "response.content_part.added", "item_id": mid, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}})
    answer_start = len(events)
    first_delta = answer_start if first_delta is None else first_delta
    for j in range(nc):
        add(at[nr + j], {"type": "response.output_text.delta", "item_id": mid, "output_index": index,
                         "content_index": 0, "delta": output_text(min(k, n_tokens - j * k), j * k),
                         "logprobs": []})
    last = len(events)
    add(end_s, {"type": "response.output_text.done", "item_id": mid, "output_index": index, "content_index": 0,
                "text": text, "logprobs": []})
    add(end_s, {"type": "response.content_part.done", "item_id": mid, "output_index": index, "content_index": 0,
                "part": output[-1]["content"][0]})
    add(end_s, {"type": "response.output_item.done", "output_index": index, "item": output[-1]})
    add(end_s, {"type": "response." + status, "response": final})
    frames = [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e, separators=(",", ":")).encode())
              for e in events]
    return ResponsePlan(200, SSE_CONTENT_TYPE, frames, due, chunked=True, content_start=first_delta,
                        content_count=last - first_delta, answer_start=answer_start if r_tokens else None,
                        notes=tokens)
