"""Server-sent events, split incrementally from the pieces of a reply body.

A leaf the worker's hot loop calls once per piece that arrives, so it does
as little as it can: one split per piece, one branch per line.  It follows
the WHATWG event-stream rules that matter to a client that only reads data:
lines end at CRLF, LF or CR; `data:` lines (one optional space after the
colon) are joined with LF; a blank line dispatches the event if it had any
data line; comments and other fields are skipped; a leading BOM is dropped;
bytes that are not UTF-8 become U+FFFD (the coordinator then reports the
event as invalid JSON, with the event's text).  sseclient-py, which did this
job before, is kept as the reference the tests compare against
(tests/test_sse.py): it costs twice as much per event.
"""
from __future__ import annotations

_BOM = b"\xef\xbb\xbf"


class EventSplitter:
    __slots__ = ("_tail", "_data", "_skip_lf", "_started")

    def __init__(self):
        self._tail = b""  # an unfinished line
        self._data: list[bytes] | None = None  # data lines of the event being read
        self._skip_lf = False  # the last piece ended in CR: a leading LF completes that CRLF
        self._started = False

    def feed(self, piece: bytes) -> list[str]:
        """The data of every event this piece completes, in order."""
        # What servers send nearly always: one whole `data: ...` event per
        # piece.  Five C calls instead of the line loop below (it is called
        # for every event of every request, all at once when a wave of
        # streams ends); the result is the same.
        if (self._started and not self._tail and self._data is None and not self._skip_lf
                and piece[:6] == b"data: " and piece[-2:] == b"\n\n" and piece.count(b"\n") == 2
                and b"\r" not in piece):
            return [piece[6:-2].decode("utf-8", "replace")]
        if not self._started:
            if len(self._tail) + len(piece) < len(_BOM) and _BOM.startswith(self._tail + piece):
                self._tail += piece  # too short to tell whether it is a BOM
                return []
            piece, self._tail = self._tail + piece, b""
            if piece.startswith(_BOM):
                piece = piece[len(_BOM):]
            self._started = True
        if self._skip_lf:
            self._skip_lf = False
            if piece[:1] == b"\n":
                piece = piece[1:]
        if b"\r" in piece:
            self._skip_lf = piece[-1:] == b"\r"
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (self._tail + piece).split(b"\n") if self._tail else piece.split(b"\n")
        self._tail = lines.pop()
        events = []
        data = self._data
        for line in lines:
            if not line:
                if data is not None:
                    events.append(b"\n".join(data).decode("utf-8", "replace"))
                    data = None
            elif line[:4] == b"data":
                value = line[4:]
                if value[:1] == b":":
                    value = value[2:] if value[1:2] == b" " else value[1:]
                elif value:  # a field named e.g. "database": not ours
                    continue
                if data is None:
                    data = [value]
                else:
                    data.append(value)
        self._data = data
        return events

    def close(self) -> list[str]:
        """At the end of the body: an event the server did not end with a
        blank line still counts, as it did with sseclient-py."""
        return self.feed(b"\n\n") if self._tail or self._data is not None else []
