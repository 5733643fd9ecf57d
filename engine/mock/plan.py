"""A response as data: what to write, and when, relative to the request's arrival.

Handlers (openai_api, dashscope_api, the server's own endpoints) build a
ResponsePlan; the connection (http.HttpConnection) writes it on schedule.
Because the plan is plain data, a fault policy (faults.FaultPolicy) can
rewrite it per request -- swap it for a 500/429, drop [DONE], corrupt one
event, stretch the due times into a stall, cut the stream with abort_after --
without the protocol code or the writer knowing about faults.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


class BadRequest(Exception):
    """The request is unusable; the handler turns it into a 400 reply."""


class ModelNotFound(Exception):
    """--served-model is set and the request names another model: 404."""

    def __init__(self, model: object):
        super().__init__(f"The model `{model}` does not exist.")


@dataclass(slots=True)
class ResponsePlan:
    status: int
    content_type: str
    # Chunked: each element is one SSE event (its payload, unframed), written as
    # one HTTP chunk by one transport.write.  Not chunked: exactly one element,
    # the whole body, sent with Content-Length.
    events: list[bytes]
    # Seconds after arrival at which each event is due; non-decreasing.
    # Absolute targets (arrival + offset) keep a loaded server from drifting.
    due_s: list[float]
    chunked: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()
    # Which events carry output (for the ground truth's first_content_time).
    content_start: int = 0
    content_count: int = 0
    # A reasoning reply: index of the first answer event (the content events
    # before it carry reasoning), for the ground truth's first_answer_time.
    answer_start: int | None = None
    # Close the connection after the reply, whatever the client asked.
    close: bool = False
    # Close it after the reply without saying so (the reply says keep-alive),
    # as servers that close idle connections between replies do.
    close_unannounced: bool = False
    # Fault seam: write only this many events, then drop the connection
    # without the terminating chunk (a server dying mid-stream).
    abort_after: int | None = None
    # Free-form notes a fault policy may leave for the truth record.
    notes: dict[str, Any] = field(default_factory=dict)


def json_plan(status: int, obj: Any, delay_s: float = 0.0, **kw: Any) -> ResponsePlan:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return ResponsePlan(status, JSON_CONTENT_TYPE, [body], [delay_s], content_count=1, **kw)


def openai_error(status: int, message: str, type_: str | None = None) -> ResponsePlan:
    """OpenAI's (and current vLLM's) error body."""
    type_ = type_ or _error_type(status)
    return json_plan(status, {"error": {"message": message, "type": type_, "param": None, "code": status}})


def _error_type(status: int) -> str:
    return {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowed",
            413: "RequestTooLarge", 429: "RateLimitError"}.get(status, "InternalServerError")


_REASONS = {s.value: s.phrase for s in HTTPStatus}


def reason(status: int) -> str:
    """Reason phrase; a dict lookup, as HTTPStatus(status) costs a few us per reply."""
    return _REASONS.get(status, "Unknown")


def content_due(n_content: int, ttft_s: float, itl_s: float) -> list[float]:
    """Due offsets of the content events: ttft, ttft+itl, ... (never accumulated)."""
    return [ttft_s + i * itl_s for i in range(n_content)]


def chunk_schedule(cfg, request_id: str, n_tokens: int) -> tuple[list[int], list[float]]:
    """(tokens per content event, due offsets) of one reply."""
    sizes = cfg.chunk_sizes(request_id, n_tokens)
    return sizes, chunk_due(cfg, sizes)


def chunk_due(cfg, sizes: list[int]) -> list[float]:
    """Due offsets of content events of these sizes.  Fixed-size chunks are
    due at ttft + i*itl (`content_due`); variable ones (a tokens-per-chunk
    range) when their tokens are done: a chunk of n tokens comes n per-token
    intervals (cfg.token_interval_s) after the one before, so the gap per
    token is steady while the gap per event is not."""
    if cfg.tokens_per_chunk_max is None:
        return content_due(len(sizes), cfg.ttft_s, cfg.itl_s)
    done = [0]
    for n in sizes[1:]:
        done.append(done[-1] + n)  # whole tokens: the offsets are never accumulated in floats
    return [cfg.ttft_s + k * cfg.token_interval_s for k in done]


def n_chunks(n_tokens: int, tokens_per_chunk: int) -> int:
    return -(-n_tokens // tokens_per_chunk)


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object")
    return obj


def output_length(max_tokens: Any, cfg_tokens: int) -> tuple[int, str]:
    """Tokens to generate and the finish reason: "length" when the client's
    max_tokens is what stopped us, "stop" when the mock's own length did."""
    if max_tokens is None:
        return cfg_tokens, "stop"
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if max_tokens <= cfg_tokens:
        return max_tokens, "length"
    return cfg_tokens, "stop"
