"""From a FinishedRecord (engine.events) and the job it answers to one row
of the `result` table.

Runs in the coordinator, after the request is over: JSON is parsed here, not
while the stream is timed.  The API plugin says which events carry output
and how many tokens there were; the definitions are DESIGN.md's.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from engine import timing
from engine.records import FinishedRecord, Sent
from engine.store import encode_pickle
from plugins.payload import as_payloads

TokenCounter = Callable[[str], int]


def to_row(record: FinishedRecord, sent: Sent, plugin, count_tokens: TokenCounter | None = None,
           watch: ParseWatch | None = None) -> dict[str, Any]:
    body = sent.body
    events = list(record.events)
    latency = record.latency_s
    error = record.error
    ok_status = record.status_code is not None and 200 <= record.status_code < 300
    if error is None and ok_status:
        error = plugin.response_error(events) or _stream_incomplete(record, plugin, events)
    success = error is None and ok_status and not record.transport_failed

    # Offsets are stored to 0.1 us (see _seconds_text), and the row's own
    # figures are taken from the stored text, so they equal what it says.
    event_texts = _seconds_text(record.event_offsets_s)
    answer_latency = None
    out: list[int] = []  # the output events' indexes (streams of a plugin that generates)
    if not getattr(plugin, "generates_tokens", True):
        chunk_texts = []  # embeddings, rerank: one result, no first token to time
    elif record.is_stream:
        out = plugin.output_event_indexes(events, request=body) if events else []
        chunk_texts = [event_texts[i] for i in out]
        answer_latency = _first_answer_s(plugin, events, body, out, event_texts)
    else:  # one body: the first output is the whole reply
        chunk_texts = _seconds_text([latency] if (events and ok_status and latency is not None) else [])
    chunk_times = [float(text) for text in chunk_texts]
    ttft = timing.ttft_s(chunk_times)
    n_chunks = len(chunk_times)

    prompt_tokens = completion_tokens = reasoning_tokens = None
    source = None
    if events and ok_status:
        try:
            # Payloads, not the events: the stored list stays plain str.
            prompt_tokens, completion_tokens = plugin.parse_responses(as_payloads(events), request=body)
        except Exception as exc:  # a plugin bug must not lose the row
            error = error or ("parse_responses failed: " + _one_line(exc))[:300]
            success = False
            if watch is not None:
                watch.failed(exc, events)
        else:
            if watch is not None:
                watch.calls += 1
        reader = getattr(plugin, "reasoning_tokens", None)
        reasoning_tokens = _safe(reader, events) if reader is not None else None
        if completion_tokens is not None:
            source = "usage"
        elif count_tokens is not None:
            completion_tokens, source = count_tokens(plugin.completion_text(events)), "tokenizer"
        elif n_chunks:
            completion_tokens, source = n_chunks, "events"

    chunk_tokens = None
    if record.is_stream and events and ok_status and out:
        counter = getattr(plugin, "output_event_tokens", None)
        try:
            counts = counter(events, out) if counter is not None else None
        except Exception:  # a plugin bug costs the per-token figure, not the row
            counts = None
        if counts is not None and len(counts) == n_chunks:
            chunk_tokens = "[" + ",".join(str(int(n)) for n in counts) + "]"

    tpot = None
    if success and ttft is not None and completion_tokens and timing.tpot_defined(completion_tokens):
        tpot = timing.tpot_s(latency, ttft, completion_tokens)
    chunk_time = timing.chunk_time_s(chunk_times)
    return {
        "request": sent.request_b64,
        "response_messages": encode_pickle(events),
        "success": int(success),
        "start_time": record.start_time,
        "completed_time": record.start_time + latency if latency is not None else None,
        "latency": latency,
        "first_chunk_latency": ttft,
        "chunk_times": _json_list(chunk_texts),
        "n_chunks": n_chunks,
        "chunk_time": chunk_time,
        "time_per_output_token": tpot,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "token_source": source,
        "status_code": record.status_code,
        "error": error,
        "scheduled_time": record.scheduled_time,
        "request_id": sent.job.request_id,
        "is_stream": int(record.is_stream),
        "is_warmup": int(sent.job.is_warmup),
        "worker": record.worker,
        "event_times": _json_list(event_texts),
        "attempt": record.attempt,
        "reconnects": record.reconnects,
        "chunk_tokens": chunk_tokens,
        "conversation_id": sent.job.conversation_id,
        "turn": sent.job.turn or None,
        "thread": record.thread if record.thread >= 0 else None,
        "first_answer_latency": answer_latency,
        "reasoning_tokens": reasoning_tokens,
    }


def _first_answer_s(plugin, events: list[str], body, out: list[int], event_texts: list[str]) -> float | None:
    """Send -> first answer event, only for a stream that also carried
    reasoning (the output events are not all answer events); None otherwise,
    and for a reasoning stream cut before its answer."""
    finder = getattr(plugin, "answer_event_indexes", None)
    if finder is None or not out:
        return None
    # Reasoning comes before the answer: when the first output is already
    # answer there is none, and the common stream costs one event, not a pass.
    if _safe(finder, [events[out[0]]], body) != []:
        return None
    answers = _safe(finder, events, body)
    return float(event_texts[answers[0]]) if answers else None


def _safe(method, *args):
    """An optional plugin hook; a bug in one costs its figure, not the row."""
    try:
        return method(*args)
    except Exception:
        return None


def _seconds_text(values) -> list[str]:
    """Offsets in seconds as text, to 0.1 us: finer than an epoch stamp's own
    resolution (~0.24 us as a double), and a third of what json.dumps costs,
    which writes each float's shortest round-trip form (~1 us a float, for
    every event of every request)."""
    return ["%.7f" % value for value in values]


def _json_list(texts: list[str]) -> str:
    return "[" + ", ".join(texts) + "]"


def _stream_incomplete(record: FinishedRecord, plugin, events: list[str]) -> str | None:
    checker = getattr(plugin, "stream_incomplete", None)
    if record.is_stream and checker is not None:
        return checker(events, record.saw_done)
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class ParseWatch:
    """The API plugin's parse_responses across one run.  Its first failure
    is said at once, in one line on stderr (not only in the error table at
    the end); when it has failed on each of the first CHECK_FIRST requests,
    `hopeless()` says so, once, so that the run stops before it burns a long
    benchmark."""

    CHECK_FIRST = 20
    PAYLOAD_CHARS = 200

    def __init__(self, plugin, name: str, say: Callable[[str], None] | None = None):
        cls = type(plugin)
        self.label = f"api plugin '{name}' ({cls.__module__}.{cls.__qualname__})"
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.calls = self.failures = 0
        self.line: str | None = None  # the one line said at the first failure
        self._stopped = False

    def failed(self, exc: BaseException, events: list[str]) -> None:
        self.calls += 1
        self.failures += 1
        if self.line is None:
            head = " ".join(str(events[-1]).split())[:self.PAYLOAD_CHARS]
            self.line = (f"servegauge: {self.label} parse_responses failed: {_one_line(exc)[:300]} "
                         f"(rows marked failed; the run stops if it fails on each of the first "
                         f"{self.CHECK_FIRST} requests); payload {len(events)} of {len(events)}: {head}")
            self.say(self.line)

    def hopeless(self) -> bool:
        """True once, when each of the first CHECK_FIRST calls failed."""
        if not self._stopped and self.calls == self.failures == self.CHECK_FIRST:
            self._stopped = True
            return True
        return False
