"""Fault injection: what real servers pushed past their limits do.

MockServer.respond builds the normal ResponsePlan for a request, then hands
it to FaultPolicy.shape(request, plan), whose result is what gets written;
the protocol modules and the writer in http.py stay unaware of faults.

Each fault has a probability (`--fault NAME=P`, P = 1 when omitted); for
each generation request the first fault whose draw hits is applied.  Draws
come from a seeded generator so a run is repeatable.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from .config import MockConfig
from .plan import ResponsePlan, openai_error

if TYPE_CHECKING:
    from .http import Request

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/api/v1/services/aigc/text-generation/generation",
                    "/v1/responses", "/v1/embeddings", "/v1/rerank", "/rerank", "/v2/rerank")
DRIP_GAP_S = 0.001  # between the single bytes of a dripped event


def _content_mid(plan: ResponsePlan) -> int:
    """Index of an event in the middle of the content: some output has gone out."""
    return plan.content_start + max(1, plan.content_count // 2)


def http500(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    return openai_error(500, "mock fault: internal server error")


def http429(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    out = openai_error(429, "mock fault: rate limit exceeded, retry later")
    return replace(out, extra_headers=(("Retry-After", f"{cfg.retry_after_s:g}"),))


def disconnect(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """The connection dies mid-stream (or before any byte of a body)."""
    return replace(plan, abort_after=_content_mid(plan) if plan.chunked else 0)


def bad_json(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    if not plan.chunked:
        return replace(plan, events=[b"{not json"])
    events = list(plan.events)
    events[_content_mid(plan)] = b"data: {not json\n\n"
    return replace(plan, events=events)


def stall(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """Everything from the middle of the output on comes stall_s late."""
    k = _content_mid(plan) if plan.chunked else 0
    due = plan.due_s[:k] + [d + cfg.stall_s for d in plan.due_s[k:]]
    return replace(plan, due_s=due)


def no_done(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """The body ends cleanly after half the output: no finish_reason, no [DONE]."""
    if not plan.chunked:
        return plan
    k = _content_mid(plan)
    return replace(plan, events=plan.events[:k], due_s=plan.due_s[:k],
                   content_count=k - plan.content_start)


def error_event(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """vLLM's way to report an engine failure after the 200: an error object in the stream."""
    if not plan.chunked:
        return http500(plan, cfg)
    k = _content_mid(plan)
    error = (b'data: {"error":{"object":"error","message":"mock fault: engine failed mid-generation",'
             b'"type":"InternalServerError","code":500}}\n\n')
    return replace(plan, events=plan.events[:k] + [error], due_s=plan.due_s[:k + 1],
                   content_count=k - plan.content_start)


def drip(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """Every event arrives one byte per HTTP chunk; a correct client still
    reassembles each event and stamps it when its last byte arrives."""
    if not plan.chunked:
        return plan
    events, due = [], []
    for event, at in zip(plan.events, plan.due_s):
        for j in range(len(event)):
            events.append(event[j:j + 1])
            due.append(at + j * DRIP_GAP_S)
    return replace(plan, events=events, due_s=due, content_start=0, content_count=0, answer_start=None)


def huge_body(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """A reply far larger than any completion: the client must not drown in it."""
    filler = b"x" * cfg.huge_body_bytes
    if plan.chunked:
        events = list(plan.events)
        events.insert(plan.content_start, b": " + filler + b"\n\n")  # an SSE comment line
        due = list(plan.due_s)
        due.insert(plan.content_start, due[plan.content_start])
        answer = plan.answer_start + 1 if plan.answer_start is not None else None
        return replace(plan, events=events, due_s=due, content_start=plan.content_start + 1, answer_start=answer)
    return replace(plan, events=[b'{"padding":"' + filler + b'"}'])


def close_after_reply(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """The whole reply, then the kept-alive connection is closed without a
    word (cpp-httplib and others close idle connections between replies): a
    request sent on it meanwhile races the close."""
    return replace(plan, close_unannounced=True)


def close_on_request(plan: ResponsePlan, cfg: MockConfig) -> ResponsePlan:
    """The request is read, then the connection dropped: no byte of a reply."""
    return replace(plan, abort_after=0)


FAULTS: dict[str, Callable[[ResponsePlan, MockConfig], ResponsePlan]] = {
    "http500": http500, "http429": http429, "disconnect": disconnect, "bad-json": bad_json,
    "stall": stall, "no-done": no_done, "error-event": error_event, "drip": drip, "huge-body": huge_body,
    "close-after-reply": close_after_reply, "close-on-request": close_on_request,
}


class FaultPolicy:
    """No faults: every plan goes out as built."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config

    def shape(self, request: Request, plan: ResponsePlan) -> ResponsePlan:
        return plan


class RandomFaults(FaultPolicy):
    """Applies the configured faults to generation requests that succeeded."""

    def __init__(self, config: MockConfig) -> None:
        super().__init__(config)
        self._rng = random.Random(config.fault_seed)
        self._faults = [(FAULTS[name], p) for name, p in config.faults]

    def shape(self, request: Request, plan: ResponsePlan) -> ResponsePlan:
        if plan.status != 200 or request.path not in GENERATION_PATHS:
            return plan
        for fault, probability in self._faults:
            if self._rng.random() < probability:
                out = fault(plan, self.config)
                out.notes["fault"] = fault.__name__
                return out
        return plan


def policy_for(config: MockConfig) -> FaultPolicy:
    return RandomFaults(config) if config.faults else FaultPolicy(config)
