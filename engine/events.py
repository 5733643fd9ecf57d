"""From the pieces of a reply body to its events, in the coordinator.

sseclient-py splits an event stream into events; each event is stamped with
the arrival of the piece that completed it.  This runs after the request is
over, outside the worker process whose other threads are still reading
their streams (splitting there, as replies end together, held the GIL those
threads need and cost late stamps; docs/benchmarks.md).  A non-streamed
body is one text; an HTTP error's first words become the row's error.
"""
from __future__ import annotations

import codecs

import sseclient

from engine.records import FinishedRecord, RawRecord

ERROR_BODY_CHARS = 200
_BOM = b"\xef\xbb\xbf"


def finish(raw: RawRecord) -> FinishedRecord:
    """The record with its body turned into events."""
    events: list[str] = []
    offsets: list[float] = []
    saw_done = False
    error = raw.error
    status = raw.status_code or 0
    latency = raw.latency_s or 0.0
    if not raw.pieces and not raw.body_complete:
        pass  # nothing arrived: no events, and the worker's reason stands
    elif raw.is_stream and 200 <= status < 300:
        for data, offset in split(raw.pieces, raw.piece_offsets_s, raw.body_complete, latency):
            if data == "[DONE]":
                saw_done = True
            else:
                events.append(data)
                offsets.append(offset)
    elif raw.body_complete:
        text = b"".join(raw.pieces).decode("utf-8", errors="replace")
        events.append(text)
        offsets.append(raw.piece_offsets_s[-1] if raw.pieces else latency)
    if raw.body_complete:
        if error is None and not 200 <= status < 300:  # the body was decoded just above, as one text
            words = " ".join(text.split())
            error = f"HTTP {status}: {words[:ERROR_BODY_CHARS] or 'no body'}"
        elif error is None and not raw.pieces:
            error = f"HTTP {status}: empty reply"
    return FinishedRecord(
        seq=raw.seq, worker=raw.worker, scheduled_time=raw.scheduled_time, start_time=raw.start_time,
        latency_s=raw.latency_s, status_code=raw.status_code, thread=raw.thread, events=tuple(events),
        event_offsets_s=tuple(offsets), error=error, transport_failed=raw.transport_failed,
        is_stream=raw.is_stream, saw_done=saw_done, attempt=raw.attempt, reconnects=raw.reconnects,
        final=raw.final)


def split(pieces, offsets_s, complete: bool, end_s: float) -> list[tuple[str, float]]:
    """(data, arrival) of each event in the pieces of an event stream.  An
    event the server did not end with a blank line still counts when the
    body ended well (stamped at its end), not when it was cut."""
    pieces = list(pieces)
    if pieces and pieces[0].startswith(_BOM):
        pieces[0] = pieces[0][len(_BOM):]
    try:
        return _split(pieces, offsets_s, complete, end_s)
    except UnicodeDecodeError:  # rare: keep the events, with U+FFFD for what is not UTF-8
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        clean = [decoder.decode(piece).encode("utf-8") for piece in pieces]
        clean[-1] += decoder.decode(b"", final=True).encode("utf-8")
        return _split(clean, offsets_s, complete, end_s)


def _split(pieces, offsets_s, complete: bool, end_s: float) -> list[tuple[str, float]]:
    at = [0.0, False]  # arrival of the piece SSEClient is reading; whether the body is used up

    def source():
        for piece, offset in zip(pieces, offsets_s):
            at[0] = offset
            yield piece
        at[0], at[1] = end_s, True

    out = []
    for event in sseclient.SSEClient(source()).events():
        if at[1] and not complete:
            break  # the tail of a body that was cut
        out.append((event.data, at[0]))
    return out
