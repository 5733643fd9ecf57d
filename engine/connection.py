"""requests with the clock where the bytes are: an HTTPAdapter whose
connections record when a request went out and when each read arrived.

Every request goes through `requests.adapters.HTTPAdapter.send` and urllib3's
pool, so proxies, CA bundles, client certificates and TLS are requests'.
What this module adds sits under urllib3, at the socket:

- Linux, plain TCP: the connection's socket is a `StampingSocket`, whose
  `recv_into` reads through `recvmsg_into` and keeps the kernel's receive
  stamp (SO_TIMESTAMPNS) of the last read.  A thread that waited for the GIL
  or a CPU does not move its stamp.  Read and send timeouts are kept by the
  kernel (SO_RCVTIMEO/SO_SNDTIMEO) rather than by Python, whose socket
  timeout polls before every read: one system call and one GIL hand-over
  per read instead of two.
- TLS: the plaintext is only known after decryption, so a read is stamped
  when it returns (`StampingSSLSocket`).
- Both record, at `sendall`, when the request's bytes went out: the clock
  starts there, after urllib3's bookkeeping, not before it.  On Linux over
  plain TCP the kernel's transmit stamp (SO_TIMESTAMPING) replaces the
  stamp taken before the write, read from the socket's error queue at the
  first read after it: a thread that lost the GIL between its stamp and
  the system call (about 1 % of requests with 64 threads to a process)
  otherwise started the clock up to milliseconds before the bytes left.  urllib3 writes
  a request's head and body in two calls; `StampedHTTPConnection` hands
  them to the socket as one write, as a client that cares about latency
  should (one packet, one system call, no GIL hand-over between them).

What the socket sees goes to the `Meter` of the thread that opened the
connection (`bind`): a worker thread owns its adapter, its one connection and
its meter, and reads the meter after each piece of a reply.
"""
from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

from requests import Response
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from engine import stamps

_TIMEVAL = struct.Struct("@ll")
_local = threading.local()


class Meter:
    """What the socket of one worker thread saw of the exchange under way.

    `arrival` is the mark of the last read: the kernel's ancillary data
    (decoded by `arrival_s` once the reply is over, off the hot path) or
    the epoch the read returned."""

    __slots__ = ("sent_at", "arrival", "received", "connects", "stamped", "read_timeout_s", "transmit_pending")

    def __init__(self, read_timeout_s: float = 600.0) -> None:
        self.read_timeout_s = read_timeout_s
        self.sent_at: float | None = None
        self.arrival: float | list | None = None
        self.received = 0  # bytes read since reset()
        self.connects = 0  # connections opened by this thread, ever
        self.stamped = False  # the current connection stamps its reads
        self.transmit_pending = False  # the kernel holds a transmit stamp for the last write

    def reset(self) -> None:
        self.sent_at = self.arrival = None
        self.received = 0


def bind(meter: Meter) -> None:
    """Connections this thread opens from now on report to `meter`."""
    _local.meter = meter


def arrival_s(mark: float | list) -> float:
    """Epoch seconds of a read from its mark (see Meter)."""
    if mark.__class__ is float:
        return mark
    stamp = stamps.kernel_stamp(mark)
    return time.time() if stamp is None else stamp  # no stamp (not seen on Linux): later, never earlier


def _meter() -> Meter:
    meter = getattr(_local, "meter", None)
    if meter is None:  # a thread that never bound one: its figures go nowhere
        meter = _local.meter = Meter()
    return meter


class StampingSocket(socket.socket):
    """A connected plain TCP socket whose reads keep the kernel's stamp."""

    __slots__ = ("meter", "transmit")

    @classmethod
    def adopt(cls, sock: socket.socket, meter: Meter) -> "StampingSocket":
        new = cls(sock.family, sock.type, sock.proto, sock.detach())
        new.meter = meter
        new.transmit = stamps.enable_transmit(new)
        socket.socket.settimeout(new, None)  # blocking: the kernel keeps the timeouts
        timeout_s = meter.read_timeout_s
        seconds = int(timeout_s)
        timeval = _TIMEVAL.pack(seconds, max(int((timeout_s - seconds) * 1e6), 0 if seconds else 1))
        new.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        new.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return new

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        meter = self.meter
        if meter.transmit_pending:  # the request is out: when exactly, the kernel says
            meter.transmit_pending = False
            sent = stamps.transmit_stamp(self)
            if sent is not None:
                meter.sent_at = sent
        view = memoryview(buffer)[:nbytes] if nbytes else buffer
        try:
            n, ancillary, _, _ = self.recvmsg_into((view,), stamps.ANCILLARY_BYTES, flags)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("timed out") from None
        meter.arrival = ancillary or time.time()
        meter.received += n
        return n

    def sendall(self, data, flags: int = 0) -> None:
        meter = self.meter
        meter.sent_at = time.time()  # until the kernel's transmit stamp is read
        meter.transmit_pending = self.transmit
        try:
            super().sendall(data, flags)
        except BlockingIOError:  # SO_SNDTIMEO ran out: the server reads nothing
            raise TimeoutError("timed out") from None

    def settimeout(self, value: float | None) -> None:
        """urllib3 sets the connect timeout before each request and the read
        timeout after it: four system calls a request for nothing, since a
        connected socket only reads and writes.  The read timeout (the
        meter's) is set once, in `adopt`, for both."""

    def gettimeout(self) -> float | None:
        return self.meter.read_timeout_s


class StampingSSLSocket(ssl.SSLSocket):
    """A TLS socket after its handshake: reads stamped when they return."""

    meter: Meter

    def recv_into(self, buffer, nbytes=None, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        meter = self.meter
        meter.arrival = time.time()
        meter.received += n
        return n

    def sendall(self, data, flags: int = 0) -> None:
        self.meter.sent_at = time.time()
        super().sendall(data, flags)


class StampedHTTPConnection(HTTPConnection):
    # urllib3 sends a request's head, then its body: while a request with a
    # body is written, the head is held back and goes out with the body.
    _hold = False
    _head: bytes | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        meter = _meter()
        meter.connects += 1
        meter.stamped = False
        if stamps.enable(sock) and hasattr(sock, "recvmsg_into"):
            meter.stamped = True
            return StampingSocket.adopt(sock, meter)
        return sock

    def request(self, method, url, body=None, headers=None, **kwargs) -> None:
        self._hold, self._head = isinstance(body, bytes) and bool(body), None
        try:
            super().request(method, url, body, headers, **kwargs)
        finally:
            head, self._hold, self._head = self._head, False, None
        if head is not None:  # the body never came (cannot happen with bytes)
            super().send(head)

    def send(self, data) -> None:
        if self._hold:
            if self._head is None:
                self._head = data  # the head: wait for the body
                return
            data, self._hold, self._head = self._head + data, False, None
        super().send(data)


class StampedHTTPSConnection(StampedHTTPConnection, HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = HTTPConnection._new_conn(self)  # plain: TLS wraps it in connect()
        _meter().connects += 1
        return sock

    def connect(self) -> None:
        super().connect()
        meter = _meter()
        meter.stamped = False
        sock = self.sock
        if type(sock) is ssl.SSLSocket:  # not TLS inside a TLS proxy (urllib3's SSLTransport)
            sock.__class__ = StampingSSLSocket
            sock.meter = meter
            meter.stamped = True


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = StampedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = StampedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class StampingAdapter(HTTPAdapter):
    """requests' adapter, its pools making stamped connections (SOCKS
    proxies keep urllib3's own, unstamped: the worker then stamps reads as
    they return).

    A worker thread's adapter sends every request to one URL with the same
    settings, so what `send` works out per request from them (the pool, the
    request target) is worked out once; and the Response it builds skips
    what a benchmark does not use (cookie extraction, encoding sniffing):
    together about a tenth of the client's CPU per non-streamed request."""

    def __init__(self, *args, **kwargs) -> None:
        self._pool_for: tuple | None = None
        self._url_for: tuple | None = None
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        key = (request.url, verify, cert, id(proxies))
        cached = self._pool_for
        if cached is not None and cached[0] == key and cached[1].pool is not None:
            return cached[1]
        pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        self._pool_for = (key, pool)
        return pool

    def request_url(self, request, proxies) -> str:
        key = (request.url, id(proxies))
        cached = self._url_for
        if cached is None or cached[0] != key:
            cached = self._url_for = (key, super().request_url(request, proxies))
        return cached[1]

    def build_response(self, req, resp) -> Response:
        response = Response()
        response.status_code = resp.status
        response.headers = resp.headers  # urllib3's: case-insensitive already
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        self._pool_for = self._url_for = None
        super().close()
