"""One HTTP exchange, timed: Job in, RequestRecord out.

The worker thread owns the socket and the clock.  Everything that is not
the request itself (building, serialising, preparing) happens before the
clock starts.  The worker keeps the body as it came, in pieces with their
arrival times (`Sender.exchange`); the coordinator splits it into SSE events,
each stamped with the arrival of the bytes that completed it (`finish`), and
parses their JSON.
This module is also the one place where transport exceptions become our own
one-line reasons.
"""
from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

import dataclasses

from engine import sse, wire
from engine.records import Job, RequestRecord, Target

MAX_RESPONSE_BYTES = 64 * 2**20  # no completion is this large: stop reading, keep what came
ERROR_BODY_CHARS = 200


def describe_error(exc: BaseException, target: Target) -> str:
    """A short, stable, one-line reason for a transport failure."""
    if isinstance(exc, wire.BodyTooLarge):
        return f"response larger than {MAX_RESPONSE_BYTES // 2**20} MiB: stopped reading"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verify failed (use --insecure to accept a self-signed certificate)"
    if isinstance(exc, ssl.SSLError):
        return "TLS error: " + _one_line(exc)
    if isinstance(exc, wire.ConnectTimeout):
        return f"connect timeout after {target.connect_timeout_s:g}s"
    if isinstance(exc, (wire.ReadTimeout, socket.timeout, TimeoutError)):
        return f"read timeout: no data for {target.read_timeout_s:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: no server listening at the --url"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve the host name of the --url"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset by the server"
    if isinstance(exc, wire.ServerClosed):
        return "server closed the connection mid-response"
    if isinstance(exc, wire.BadResponse):
        return "not a readable HTTP reply: " + _one_line(exc)
    if isinstance(exc, OSError):
        return "connection failed: " + _one_line(exc)
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class Sender:
    """One per worker thread: its own keep-alive connection, and the request
    prepared once by requests (headers, auth, URL), so each job only adds
    its id, length and body to bytes made in advance."""

    def __init__(self, target: Target):
        if not target.request_head:
            target = prepared(target)
        self.target = target
        self.connection = wire.Connection(target.url, target.connect_timeout_s, target.read_timeout_s,
                                          target.verify_tls, ca_bundle=target.ca_bundle)
        self._head = target.request_head

    def close(self) -> None:
        self.connection.close()

    def warm(self) -> None:
        """Open the connection before the first job: TCP (and TLS) set-up is
        not the server's answer to a request, and 256 threads connecting at
        once wait for the GIL between connect and send, which would count as
        the first requests' TTFT.  A server that cannot be reached fails the
        first request instead, with the reason."""
        try:
            self.connection.open()
        except Exception:
            self.connection.close()

    def request_bytes(self, job: Job) -> bytes:
        return b"%sX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            self._head, job.request_id.encode("ascii"), len(job.payload), job.payload)

    def send(self, job: Job, worker: str) -> RequestRecord:
        """Send one job when it is due and record what arrived, and when."""
        return finish(self.exchange(job, worker))

    def exchange(self, job: Job, worker: str) -> RequestRecord:
        """As `send`, but the body is left in pieces for `finish`: a worker
        thread goes straight back to its next request, and the splitting
        runs in the coordinator, outside the GIL that the worker's other
        threads need to read their sockets."""
        target = self.target
        request = self.request_bytes(job)
        scheduled = job.scheduled_time or time.time()  # the worker thread waited until it was due

        pieces: list[tuple[bytes, float]] = []
        status = error = retry_after = None
        transport_failed = is_sse = complete = False
        start_time = time.time()
        try:
            start_time = self.connection.send(request)
            reply = self.connection.reply()
            status = reply.status
            if status == 429 or status >= 500:
                retry_after = _seconds(reply.headers.get("retry-after"))
            is_sse = "text/event-stream" in reply.headers.get("content-type", "")
            pieces, end, failure = reply.read_body(MAX_RESPONSE_BYTES)
            if failure is not None:
                raise failure
            complete = True
        except Exception as exc:  # any failure of the exchange is a result, not a crash
            self.connection.close()  # what is left on it is unknown
            end = time.time()
            error = describe_error(exc, target)
            transport_failed = True
        return RequestRecord(
            seq=job.seq, worker=worker, scheduled_time=scheduled, start_time=start_time,
            latency_s=end - start_time, status_code=status, error=error, transport_failed=transport_failed,
            is_stream=is_sse, retry_after_s=retry_after, pieces=tuple(piece for piece, _ in pieces),
            piece_offsets_s=tuple(stamp - start_time for _, stamp in pieces), body_complete=complete,
        )


def finish(record: RequestRecord) -> RequestRecord:
    """The record with its body turned into events: each SSE event stamped
    with the arrival of the piece that completed it, or a non-stream body as
    one text (an HTTP error's first words become the error)."""
    if not record.pieces and not record.body_complete:
        return record  # nothing arrived, or already finished
    events: list[str] = []
    offsets: list[float] = []
    saw_done = False
    error = record.error
    status = record.status_code or 0
    latency = record.latency_s or 0.0
    if record.is_stream and status < 400:
        splitter = sse.EventSplitter()
        for piece, offset in zip(record.pieces, record.piece_offsets_s):
            saw_done |= _keep(splitter.feed(piece), offset, events, offsets)
        if record.body_complete:  # an event the server did not end still counts, a cut one does not
            saw_done |= _keep(splitter.close(), latency, events, offsets)
    elif record.body_complete:
        text = b"".join(record.pieces).decode("utf-8", errors="replace")
        events.append(text)
        offsets.append(record.piece_offsets_s[-1] if record.pieces else latency)
        if status >= 400:
            error = f"HTTP {status}: {' '.join(text.split())[:ERROR_BODY_CHARS]}"
    return dataclasses.replace(record, events=tuple(events), event_offsets_s=tuple(offsets), saw_done=saw_done,
                               error=error, pieces=(), piece_offsets_s=(), body_complete=False)


def _keep(datas: list[str], offset_s: float, events: list[str], offsets: list[float]) -> bool:
    """Append the events that arrived together; True if one was [DONE]."""
    done = False
    for data in datas:
        if data == "[DONE]":
            done = True
        else:
            events.append(data)
            offsets.append(offset_s)
    return done


def prepared(target: Target) -> Target:
    """The target with its request head made by requests (headers, auth,
    URL quoting), once, in the coordinator.  The body is identity-encoded
    unless the user asked otherwise: nothing here decompresses a reply."""
    import requests  # the coordinator's: worker processes never import it

    session = requests.Session()
    session.trust_env = False  # no proxy or netrc lookups from the environment
    headers = {"Accept-Encoding": "identity", **dict(target.headers)}
    request = session.prepare_request(requests.Request("POST", target.url, data=b"", headers=headers))
    session.close()
    parts = urlsplit(request.url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != (443 if parts.scheme == "https" else 80):
        host = f"{host}:{parts.port}"
    lines = [f"POST {request.path_url} HTTP/1.1", f"Host: {host}"]
    per_job = {"host", "content-length", "x-request-id", "transfer-encoding"}
    lines += [f"{name}: {value}" for name, value in request.headers.items() if name.lower() not in per_job]
    text = "\r\n".join(lines) + "\r\n"
    try:
        head = text.encode("latin-1")  # what HTTP/1.1 header bytes are
    except UnicodeEncodeError:
        head = text.encode("utf-8")
    return dataclasses.replace(target, request_head=head, ca_bundle=requests.certs.where())


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing for a benchmark
        return None
