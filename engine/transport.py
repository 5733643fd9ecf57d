"""One HTTP exchange, timed: Job in, RequestRecord out.

The worker thread owns the socket and the clock.  Everything that is not
the request itself (building, serialising, preparing) happens before the
clock starts; every SSE event is stamped with the arrival time of the bytes
that completed it, and parsed into JSON only later, by the coordinator.
This module is also the one place where transport exceptions become our own
one-line reasons.
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
from time import perf_counter

import requests
import sseclient
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from engine.records import Job, RequestRecord, Target

READ_SIZE = 65536  # an upper bound only: read1 returns whatever has arrived
MAX_RESPONSE_BYTES = 64 * 2**20  # no completion is this large: stop reading, keep what came


class ResponseTooLarge(Exception):
    pass
ERROR_BODY_CHARS = 200


class StampedSource:
    """Iterates over the bytes of a response body as they arrive, remembering
    when the latest piece came.  read1 returns as soon as any bytes are
    there, for chunked, length-delimited and close-delimited bodies alike, so
    nothing waits for a buffer to fill."""

    __slots__ = ("_read1", "last_arrival", "nbytes")

    def __init__(self, raw):
        self._read1 = raw.read1
        self.last_arrival = 0.0
        self.nbytes = 0

    def __iter__(self):
        read1 = self._read1
        while True:
            data = read1(READ_SIZE)
            if not data:
                return
            self.last_arrival = perf_counter()
            self.nbytes += len(data)
            if self.nbytes > MAX_RESPONSE_BYTES:
                raise ResponseTooLarge()
            yield data

    def close(self) -> None:  # sseclient's interface
        pass


# When this thread's request was written: (perf_counter, epoch).  Set by the
# connection at its first write of a request, read by the Sender.
_sent = threading.local()


def _stamp_send() -> None:
    if getattr(_sent, "at", None) is None:
        _sent.at = (perf_counter(), time.time())


class _OneWrite:
    """Headers and body in one send(), and the clock started right there.

    urllib3 writes headers and body separately; on loopback each write costs
    a wake-up of the server, which cannot start before the second, so one
    write takes that delay out of TTFT.  And the request's clock starts at
    that write (or at the connect it triggers on a new connection), not
    before urllib3's own bookkeeping: under load, with many threads sharing
    one GIL, that bookkeeping can wait milliseconds for the interpreter, and
    that wait is the client's, not the server's."""

    _holding = False
    _held: bytes | None = None

    def endheaders(self, message_body=None, *, encode_chunked=False):
        self._holding = True  # http.client sends the header block from here
        try:
            super().endheaders(message_body, encode_chunked=encode_chunked)
        finally:
            self._holding = False

    def send(self, data):
        if self._holding and isinstance(data, bytes):
            self._held = data
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        _stamp_send()
        super().send(data)

    def getresponse(self):
        if self._held is not None:  # a request without a body
            data, self._held = self._held, None
            _stamp_send()
            super().send(data)
        return super().getresponse()


class _HTTPConnection(_OneWrite, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def make_session() -> requests.Session:
    """One per worker thread: one keep-alive connection, no retries (they
    would distort the measurement), no proxy or netrc lookups from the
    environment (requests reads os.environ on every send otherwise)."""
    session = requests.Session()
    session.trust_env = False
    adapter = _Adapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def describe_error(exc: BaseException, target: Target) -> str:
    """A short, stable, one-line reason for a transport failure."""
    chain = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__ or (e.args[0] if e.args and isinstance(e.args[0], BaseException) else None)
        if e is not None and any(e is c for c in chain):
            break
    if isinstance(exc, ResponseTooLarge):
        return f"response larger than {MAX_RESPONSE_BYTES // 2**20} MiB: stopped reading"
    kinds = [type(c) for c in chain]
    text = " ".join(str(c) for c in chain)
    if any(issubclass(k, (ssl.SSLCertVerificationError,)) for k in kinds) or "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate verify failed (use --insecure to accept a self-signed certificate)"
    if any(issubclass(k, ssl.SSLError) for k in kinds):
        return "TLS error: " + _one_line(chain[-1])
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connect timeout after {target.connect_timeout_s:g}s"
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, socket.timeout,
                        TimeoutError)) or "Read timed out" in text:
        return f"read timeout: no data for {target.read_timeout_s:g}s"
    if any(issubclass(k, ConnectionRefusedError) for k in kinds) or "Connection refused" in text:
        return "connection refused: no server listening at the --url"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolutionError" in text:
        return "cannot resolve the host name of the --url"
    if any(issubclass(k, ConnectionResetError) for k in kinds) or "Connection reset" in text:
        return "connection reset by the server"
    if (any(issubclass(k, (urllib3.exceptions.ProtocolError, urllib3.exceptions.IncompleteRead)) for k in kinds)
            or "IncompleteRead" in text or "RemoteDisconnected" in text or "closed connection" in text):
        return "server closed the connection mid-response"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed: " + _one_line(chain[-1])
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class Sender:
    """One per worker thread: its own keep-alive connection, and the request
    prepared once, so each job only swaps in its body and id.

    It calls the mounted requests adapter directly: Session.send would add
    cookie extraction, hooks and redirect bookkeeping to every request, none
    of which a benchmark wants on the clock or on the CPU."""

    def __init__(self, target: Target):
        self.target = target
        self.session = make_session()
        headers = dict(target.headers)
        headers["X-Request-Id"] = ""
        self._template = self.session.prepare_request(
            requests.Request("POST", target.url, data=b"", headers=headers))
        self._adapter = self.session.get_adapter(target.url)
        if not target.verify_tls:  # the user chose --insecure: once is enough to say so
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._timeout = (target.connect_timeout_s, target.read_timeout_s)

    def close(self) -> None:
        self.session.close()

    def prepare(self, job: Job) -> requests.PreparedRequest:
        prepared = self._template.copy()
        prepared.body = job.payload
        prepared.headers["Content-Length"] = str(len(job.payload))
        prepared.headers["X-Request-Id"] = job.request_id
        return prepared

    def send(self, job: Job, worker: str) -> RequestRecord:
        """Send one job when it is due and record what arrived, and when."""
        target = self.target
        prepared = self.prepare(job)
        if job.scheduled_time is not None:
            scheduled = job.scheduled_time
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
        else:
            scheduled = time.time()

        events: list[str] = []
        offsets: list[float] = []
        status = error = retry_after = None
        transport_failed = is_sse = saw_done = False
        start_time = time.time()
        t0 = perf_counter()
        _sent.at = None
        try:
            response = self._adapter.send(prepared, stream=True, timeout=self._timeout,
                                          verify=target.verify_tls, cert=None, proxies={})
            if _sent.at is not None:  # the moment the request went out
                t0, start_time = _sent.at
            status = response.status_code
            if status == 429 or status >= 500:
                retry_after = _seconds(response.headers.get("Retry-After"))
            source = StampedSource(response.raw)
            try:
                is_sse = "text/event-stream" in response.headers.get("Content-Type", "")
                if is_sse and status < 400:
                    for event in sseclient.SSEClient(source).events():
                        if event.data == "[DONE]":
                            saw_done = True
                            continue
                        events.append(event.data)
                        offsets.append(source.last_arrival - t0)
                else:
                    text = b"".join(source).decode("utf-8", errors="replace")
                    events.append(text)
                    offsets.append((source.last_arrival or perf_counter()) - t0)
                    if status >= 400:
                        error = f"HTTP {status}: {' '.join(text.split())[:ERROR_BODY_CHARS]}"
            finally:
                response.close()
            end = source.last_arrival or perf_counter()
        except Exception as exc:  # any failure of the exchange is a result, not a crash
            end = perf_counter()
            if _sent.at is not None:
                t0, start_time = _sent.at
            error = describe_error(exc, target)
            transport_failed = True
        return RequestRecord(
            seq=job.seq, worker=worker, scheduled_time=scheduled, start_time=start_time,
            latency_s=end - t0, status_code=status, events=tuple(events), event_offsets_s=tuple(offsets),
            error=error, transport_failed=transport_failed, is_stream=is_sse, saw_done=saw_done,
            retry_after_s=retry_after,
        )


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing for a benchmark
        return None
