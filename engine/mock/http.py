"""HTTP/1.1 over asyncio.Protocol: parse requests, write ResponsePlans on time.

One HttpConnection per TCP connection.  Keep-alive is the default (HTTP/1.1);
requests that arrive while a reply is still being written are buffered and
served in order afterwards (so pipelining works, though nothing needs it).

Why a Protocol and not StreamReader/Writer: no coroutine or future per read,
no task per request, and timed writes are one loop.call_at per due time.  On
a 2-core box the mock must stay far cheaper than the clients it serves.
"""
from __future__ import annotations

import asyncio
import sys
import time
import traceback
from typing import TYPE_CHECKING

from . import rxstamp
from .plan import ResponsePlan, openai_error, reason
from .truth import TruthRecord

if TYPE_CHECKING:
    from .server import MockServer

_TERMINATOR = b"0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Request:
    __slots__ = ("method", "path", "query", "version", "headers", "body", "request_id",
                 "arrival", "arrival_loop", "keep_alive")

    def __init__(self, method: str, path: str, query: str, version: str,
                 headers: dict[str, str], body: bytes, request_id: str,
                 arrival: float, arrival_loop: float, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers  # names lower-cased
        self.body = body
        self.request_id = request_id
        self.arrival = arrival  # time.time(), for the truth and "created"
        self.arrival_loop = arrival_loop  # loop.time(), the origin of the due times
        self.keep_alive = keep_alive


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line and headers; ValueError if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"unsupported version {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[-1] in " \t":
            raise ValueError(f"bad header line {line!r}")
        headers[name.lower()] = value.strip()
    return method, target, version, headers


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.conn_id = 0
        self.n_requests = 0
        self._buf = bytearray()
        self._head: tuple[str, str, str, dict[str, str]] | None = None
        self._need = 0  # body bytes of the request whose head we hold
        self._busy = False  # a reply is being written
        self._in_parse = False
        self._closed = False
        self._paused = False  # transport asked us to stop writing (client not reading)
        # The reply in progress:
        self._plan: ResponsePlan | None = None
        self._req: Request | None = None
        self._rec: TruthRecord | None = None
        self._head_bytes = b""
        self._i = 0
        self._first_s: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._rx: rxstamp.StampingSocket | None = None

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._rx = rxstamp.install(transport)
        stats = self.server.stats
        stats.connections_opened += 1
        stats.connections_open += 1
        self.conn_id = stats.connections_opened

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.stats.connections_open -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._plan is not None and self._rec is not None:
            self._rec.aborted = "client closed"
        self._plan = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._parse()

    def pause_writing(self) -> None:
        # The kernel buffer and ours are full: the client is not reading.  Stop
        # producing; resume_writing catches up on everything that fell due.
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._plan is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._emit()

    # -- parsing ---------------------------------------------------------------
    def _parse(self) -> None:
        self._in_parse = True
        try:
            while not self._busy and not self._closed:
                buf = self._buf
                if self._head is None:
                    while buf[:2] == b"\r\n":  # tolerated between requests (RFC 9112 2.2)
                        del buf[:2]
                    if buf and not 65 <= buf[0] <= 90:  # no method starts so: e.g. a TLS handshake
                        self._fail(400, "not an HTTP/1.1 request (TLS to a plain-HTTP port?)")
                        return
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > self.server.config.max_head_bytes:
                            self._fail(431, "request head too large")
                        return
                    head = bytes(buf[:end])
                    del buf[:end + 4]
                    if not self._take_head(head):
                        return
                if len(buf) < self._need:
                    return
                body = bytes(buf[:self._need])
                del buf[:self._need]
                self._dispatch(body)
        finally:
            self._in_parse = False

    def _take_head(self, head: bytes) -> bool:
        try:
            parsed = parse_head(head)
        except ValueError as e:
            self._fail(400, f"malformed request: {e}")
            return False
        headers = parsed[3]
        if "transfer-encoding" in headers:
            self._fail(501, "chunked request bodies are not supported; send Content-Length")
            return False
        try:
            need = int(headers.get("content-length", "0"))
            if need < 0:
                raise ValueError
        except ValueError:
            self._fail(400, "bad Content-Length")
            return False
        if need > self.server.config.max_body_bytes:
            self._fail(413, "request body too large")
            return False
        self._head, self._need = parsed, need
        if need > len(self._buf) and headers.get("expect", "").lower() == "100-continue":
            self.transport.write(_CONTINUE)  # type: ignore[union-attr]
        return True

    def _fail(self, status: int, message: str) -> None:
        """A request we cannot frame: answer and close (the stream is out of sync)."""
        plan = openai_error(status, message)
        body = plan.events[0]
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason(status).encode(), len(body), body))
        self.transport.close()  # type: ignore[union-attr]
        self._closed = True

    # -- one request -------------------------------------------------------------
    def _dispatch(self, body: bytes) -> None:
        read_at = time.time()
        arrival_loop = self.loop.time()
        # the kernel's stamp of the read that completed this request, when there is one
        arrival = self._rx.stamp if self._rx is not None and self._rx.stamp is not None else read_at
        method, target, version, headers = self._head  # type: ignore[misc]
        self._head = None
        self._need = 0
        path, _, query = target.partition("?")
        conn = headers.get("connection", "").lower()
        keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        server = self.server
        server.stats.requests += 1
        self.n_requests += 1
        rid = headers.get("x-request-id") or f"mock-{server.stats.requests}"
        req = Request(method, path, query, version, headers, body, rid, arrival, arrival_loop,
                      keep_alive)
        rec = None
        if server.truth.enabled and path not in ("/truth", "/stats", "/metrics"):
            rec = TruthRecord(rid, self.conn_id, self.n_requests, method, path, arrival, read_at)
            server.truth.add(rec)
        try:
            plan = server.respond(req, rec)
        except Exception:  # a mock bug must show, not hang the client
            traceback.print_exc(file=sys.stderr)
            plan = openai_error(500, "mock server error (see its stderr)", "InternalServerError")
        if rec is not None:
            rec.status = plan.status
            rec.stream = plan.chunked
            rec.content_start = plan.content_start
            rec.content_count = plan.content_count
            rec.answer_start = plan.answer_start
            rec.fault = plan.notes.get("fault")
            rec.queue_s = plan.notes.get("queue_s")
        self._start(req, plan, rec)

    def _start(self, req: Request, plan: ResponsePlan, rec: TruthRecord | None) -> None:
        keep_alive = req.keep_alive and not plan.close
        req.keep_alive = keep_alive
        if plan.chunked:
            framing = b"transfer-encoding: chunked"
        else:
            framing = b"content-length: %d" % len(plan.events[0])
        extra = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
                         for k, v in plan.extra_headers)
        self._head_bytes = (
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%s\r\nconnection: %s\r\n"
            b"x-request-id: %s\r\n%s\r\n"
            % (plan.status, reason(plan.status).encode(), plan.content_type.encode(), framing,
               b"keep-alive" if keep_alive else b"close", req.request_id.encode("latin-1"), extra))
        self._busy = True
        self._plan, self._req, self._rec, self._i = plan, req, rec, 0
        self._first_s: float | None = None  # arrival -> first content event written (loop clock)
        if plan.chunked and (not plan.events or plan.due_s[0] > 0):
            # Streams answer with their headers at once, as real servers do;
            # the first event follows when it is due.
            self.transport.write(self._head_bytes)  # type: ignore[union-attr]
            self._head_bytes = b""
        self._emit()

    def _emit(self) -> None:
        """Write every event that is due, then sleep until the next one."""
        self._timer = None
        plan = self._plan
        if plan is None or self._paused or self._closed:
            return
        events, due = plan.events, plan.due_s
        n = len(events) if plan.abort_after is None else min(plan.abort_after, len(events))
        i = start = self._i
        t0 = self._req.arrival_loop  # type: ignore[union-attr]
        elapsed = self.loop.time() - t0
        transport = self.transport
        write = transport.write  # type: ignore[union-attr]
        rec = self._rec
        chunked = plan.chunked
        last = len(events) - 1
        while i < n and due[i] <= elapsed:
            ev = events[i]
            data = b"%x\r\n%s\r\n" % (len(ev), ev) if chunked else ev
            if i == 0 and self._head_bytes:
                data = self._head_bytes + data
                self._head_bytes = b""
            if i == last and chunked:
                data += _TERMINATOR
            write(data)
            if rec is not None:
                rec.event_times.append(time.time())
                rec.event_direct.append(not transport.get_write_buffer_size())  # type: ignore[union-attr]
            i += 1
            if self._paused:  # write() may pause us synchronously
                break
        self._i = i
        if self._first_s is None and i > plan.content_start:  # the first content event just went out
            self._first_s = self.loop.time() - t0
        self.server.stats.events_written += i - start
        if i >= n:
            self._finish()
        elif not self._paused:
            self._timer = self.loop.call_at(t0 + due[i], self._emit)

    def _finish(self) -> None:
        plan, req, rec = self._plan, self._req, self._rec
        self._plan = self._req = self._rec = None
        self._busy = False
        assert plan is not None and req is not None
        if plan.abort_after is not None and plan.abort_after < len(plan.events):
            if rec is not None:
                rec.aborted = "server abort"
            self.transport.abort()  # type: ignore[union-attr]
            self._closed = True
            return
        if plan.chunked and not plan.events:  # headers went out in _start
            self.transport.write(_TERMINATOR)  # type: ignore[union-attr]
        if rec is not None:
            rec.end = rec.event_times[-1] if rec.event_times else time.time()
        self.server.stats.responses_completed += 1
        tokens = plan.notes.get("tokens")
        if tokens is not None and plan.status == 200:  # a generation reply written whole: /metrics counts it
            self.server.metrics.on_reply(tokens[0], tokens[1], self._first_s,
                                         self.loop.time() - req.arrival_loop)
        if plan.close_unannounced and req.keep_alive:
            self.server.stats.closed_after_reply += 1
            self.transport.close()  # type: ignore[union-attr]
            self._closed = True
        elif not req.keep_alive:
            self.transport.close()  # type: ignore[union-attr]
            self._closed = True
        elif self._buf and not self._in_parse:
            self._parse()
