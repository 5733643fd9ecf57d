"""Ground truth: what the server did, per request, to judge a client's timestamps.

Recording costs two list appends per event (a float and a bool); nothing is
formatted until someone asks for it (GET /truth, --truth-file).

Schema of one record (GET /truth returns a JSON list of these):
  request_id          X-Request-Id of the request (or "mock-<n>" when absent)
  conn_id             server-wide number of the TCP connection (1, 2, ...)
  conn_seq            1 for the first request on that connection, 2 for the next...
  method, path        e.g. "POST", "/v1/chat/completions"
  stream              true when the reply is chunked SSE
  status              HTTP status sent
  arrival             when the last bytes of the request reached the server: the
                      kernel's receive stamp (Linux, plain TCP), else = read
  read                time.time() when the server's loop read the whole request
                      and began the reply (the reply's timing counts from here)
  event_times         time.time() right after transport.write of each event
                      (for a non-streamed reply: the one body)
  event_direct        per event: true if the transport's buffer was empty after
                      the write, i.e. the bytes went straight to the kernel
  content_times       the subset of event_times of output-carrying events
  first_content_time  content_times[0] or null
  first_answer_time   a reasoning reply (--reasoning-tokens): the event_times of its
                      first answer event (after the reasoning), else null
  end                 time.time() after the last byte was handed to the
                      transport (null while in flight)
  aborted             null, or why the reply did not complete ("client closed")
  prompt_tokens, completion_tokens   what the usage said (null if not a generation)
  fault               the --fault applied to this request (e.g. "close_after_reply"), or null
  queue_s             seconds the reply waited for a slot under --slots (0 without a wait), or null
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


class TruthRecord:
    __slots__ = ("request_id", "conn_id", "conn_seq", "method", "path", "stream", "status",
                 "arrival", "read", "event_times", "event_direct", "content_start", "content_count",
                 "answer_start", "end", "aborted", "prompt_tokens", "completion_tokens", "fault", "queue_s")

    def __init__(self, request_id: str, conn_id: int, conn_seq: int, method: str, path: str,
                 arrival: float, read: float | None = None) -> None:
        self.request_id = request_id
        self.conn_id = conn_id
        self.conn_seq = conn_seq
        self.method = method
        self.path = path
        self.arrival = arrival
        self.read = arrival if read is None else read
        self.stream = False
        self.status = 0
        self.event_times: list[float] = []
        self.event_direct: list[bool] = []
        self.content_start = 0
        self.content_count = 0
        self.answer_start: int | None = None
        self.end: float | None = None
        self.aborted: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.fault: str | None = None
        self.queue_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        content = self.event_times[self.content_start:self.content_start + self.content_count]
        return {
            "request_id": self.request_id, "conn_id": self.conn_id, "conn_seq": self.conn_seq,
            "method": self.method, "path": self.path, "stream": self.stream,
            "status": self.status, "arrival": self.arrival, "read": self.read,
            "event_times": list(self.event_times), "event_direct": list(self.event_direct),
            "content_times": content,
            "first_content_time": content[0] if content else None,
            "first_answer_time": (self.event_times[self.answer_start]
                                  if self.answer_start is not None and self.answer_start < len(self.event_times)
                                  else None),
            "end": self.end, "aborted": self.aborted,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "fault": self.fault,
            "queue_s": self.queue_s,
        }


class TruthLog:
    """Records in arrival order.  In-flight requests are listed too (end null)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._records: list[TruthRecord] = []

    def add(self, record: TruthRecord) -> None:
        self._records.append(record)

    def snapshot(self, clear: bool = False) -> list[dict[str, Any]]:
        """The records as dicts; with clear, also forget them (in-flight ones too)."""
        records = self._records
        if clear:
            self._records = []
        return [r.to_dict() for r in records]

    def write_file(self, path: str) -> None:
        """Write atomically so a reader never sees half a file."""
        data = json.dumps(self.snapshot())
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".truth-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


class ServerStats:
    """Counters that stay on with --no-truth (the benchmark reads them)."""

    __slots__ = ("started", "connections_opened", "connections_open", "requests",
                 "responses_completed", "events_written", "closed_after_reply")

    def __init__(self, started: float) -> None:
        self.started = started
        self.connections_opened = 0
        self.connections_open = 0
        self.requests = 0
        self.responses_completed = 0
        self.events_written = 0
        self.closed_after_reply = 0  # kept-alive connections closed unannounced (close-after-reply)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}
