"""One keep-alive HTTP/1.1 connection of a worker thread: a request's bytes
out in one write, the reply read back with the time each piece arrived.

Why not requests' own exchange: `HTTPAdapter.send` and what lies under it
(urllib3's pool, http.client's header writing, the email-parser header
reading, cookie extraction) cost 670 us of CPU per non-streamed request on
our 2-core reference machine, 900 us with 32 threads sharing a GIL; a whole
engine.transport.Sender exchange over this module costs 160 and 130 us
(docs/benchmarks.md, "Measurement fidelity").  At thousands of
requests a second that difference is the whole machine, and every microsecond
a worker spends is one a neighbouring stream waits to be stamped.  requests
still builds each thread's request (headers, auth, URL, body encoding): see
engine.transport.

Arrival times come from the kernel where it can give them (Linux, plain
TCP): SO_TIMESTAMPNS stamps each segment as the network stack receives it,
so a thread that was waiting for the GIL or the CPU does not move its stamp.
A read that returns several segments at once carries the stamp of the
latest.  Elsewhere (TLS, other systems) a piece is stamped when the read
returns.
"""
from __future__ import annotations

import functools
import select
import socket
import ssl
import struct
import sys
import time
from typing import Callable
from urllib.parse import urlsplit

READ_SIZE = 65536  # an upper bound: a read returns whatever has arrived
MAX_HEAD_BYTES = 65536
# Linux's SO_TIMESTAMPNS (also the control message type); Python does not name it.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("@qq")
_TIMEVAL = struct.Struct("@ll")
ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The SO_TIMESTAMPNS receive stamp (epoch seconds) in what recvmsg
    returned alongside the data, if there is one."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanos = _TIMESPEC.unpack_from(value)
            return seconds + nanos * 1e-9
    return None


class ConnectTimeout(Exception):
    """No connection (or TLS handshake) within the connect timeout."""


class ReadTimeout(Exception):
    """Nothing arrived (or nothing could be written) within the read timeout."""


class ServerClosed(Exception):
    """The server closed the connection before the reply was complete."""


class BadResponse(Exception):
    """Bytes that are not an HTTP/1.1 reply we can read."""


class Reply:
    """The head of a reply, and its body as (bytes, arrival epoch) pieces."""

    __slots__ = ("status", "headers", "_conn", "arrival", "_buffer", "_reusable")

    def __init__(self, status: int, headers: dict[str, str], conn: "Connection", buffer: bytes, stamp: float,
                 reusable: bool):
        self.status, self.headers, self._conn = status, headers, conn
        self.arrival = stamp  # when the head arrived
        self._buffer, self._reusable = buffer, reusable

    def read_body(self, max_bytes: int) -> tuple[list[tuple[bytes, float]], float, BaseException | None]:
        """Read the body to its end, then return it de-chunked as (piece,
        arrival) pairs cut at read boundaries, the arrival of the read that
        ended it, and the failure that stopped it early (None if it ended
        well; the pieces are then what arrived before it).

        While bytes arrive, a read only appends them and its (undecoded)
        stamp and finds the chunk frames they complete: everything else
        (decoding stamps, cutting, splitting events) runs once the reply is
        over.  A thread is woken for each event, and what it runs then holds
        the GIL the other threads of its process wait for: with 2 x 128
        threads at load c this split took the worker's CPU per event from
        62-64 to 57-60 us."""
        raw = bytearray(self._buffer)  # the body's bytes as they came off the wire
        ends, stamps = [len(raw)], [self.arrival]  # where each read left `raw`, and when it arrived
        frames = _frames_for(self.status, self.headers)
        failure = None
        complete = False
        try:
            read = self._conn.reader()
            complete = frames.scan(raw)
            while not complete:
                got = read()
                data = got[0]
                if not data:
                    if frames.until_close:
                        complete = True
                        break
                    raise ServerClosed()
                raw += data
                ends.append(len(raw))
                stamps.append(got[1])
                if len(raw) > max_bytes:
                    raise BodyTooLarge(max_bytes)
                complete = frames.scan(raw)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            failure = ReadTimeout()
        except Exception as exc:  # kept: what arrived before it still counts
            failure = exc
        self._conn.release(complete and self._reusable and not frames.until_close)
        stamps = [_arrival(source) for source in stamps]
        return _cut(raw, frames.spans(len(raw)), ends, stamps), stamps[-1], failure


def _arrival(source: float | list) -> float:
    """A read's arrival from what Connection.reader returned with it."""
    if source.__class__ is float:
        return source
    stamp = kernel_stamp(source)
    return time.time() if stamp is None else stamp  # no stamp (not seen on Linux): later, never earlier


class BodyTooLarge(Exception):
    """The body grew past the size the caller allows."""


def _frames_for(status: int, headers: dict[str, str]) -> "_Sized | _Chunked":
    if status in (204, 304):
        return _Sized(0)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _Chunked()
    if "content-length" in headers:
        try:
            return _Sized(int(headers["content-length"]))
        except ValueError:
            raise BadResponse(f"Content-Length {headers['content-length']!r}") from None
    return _Sized(None)  # no length: the body runs until the server closes


class _Sized:
    """A body of known length, or (length None) one that ends at close."""

    __slots__ = ("length", "until_close")

    def __init__(self, length: int | None):
        self.length, self.until_close = length, length is None

    def scan(self, raw: bytearray) -> bool:
        return self.length is not None and len(raw) >= self.length

    def spans(self, have: int) -> list[tuple[int, int]]:
        return [(0, have if self.length is None else min(have, self.length))]


class _Chunked:
    """Chunk frames (size line, data, CRLF) found as the raw body grows;
    `scan` is called after every read and only looks at new bytes."""

    __slots__ = ("_pos", "_spans")
    until_close = False

    def __init__(self):
        self._pos = 0  # where the next size line starts
        self._spans: list[tuple[int, int]] = []  # (start, size) of each chunk's data in the raw body

    def scan(self, raw: bytearray) -> bool:
        pos, have = self._pos, len(raw)
        while pos <= have:
            if pos and raw[pos - 2:pos] != b"\r\n":
                raise BadResponse("chunk not followed by CRLF")
            end = raw.find(b"\r\n", pos)
            if end < 0:
                if have - pos > MAX_HEAD_BYTES:
                    raise BadResponse("chunk size line too long")
                break
            try:
                size = int(raw[pos:end].split(b";", 1)[0], 16)
            except ValueError:
                size = -1
            if size < 0:
                raise BadResponse(f"chunk size {bytes(raw[pos:end][:20])!r}")
            if size == 0:  # trailer lines, then the empty line that ends the body
                line = end + 2
                while (end := raw.find(b"\r\n", line)) > line:
                    line = end + 2
                if end == line:
                    self._pos = pos
                    return True
                break
            self._spans.append((end + 2, size))
            pos = end + 2 + size + 2
        self._pos = pos
        return False

    def spans(self, have: int) -> list[tuple[int, int]]:
        return self._spans


def _cut(raw: bytearray, spans: list[tuple[int, int]], ends: list[int],
         stamps: list[float]) -> list[tuple[bytes, float]]:
    """The data of each span, cut where a read ended, with that read's stamp
    (the bytes that complete an event are stamped when they arrived)."""
    pieces = []
    data = bytes(raw)  # one copy; slicing bytes is one allocation a piece
    have = len(data)
    k = 0  # spans and reads both run forward
    for start, size in spans:
        stop = start + size
        if stop > have:
            stop = have
        while ends[k] <= start:
            k += 1
        while start < stop:
            cut = ends[k]
            if cut >= stop:
                pieces.append((data[start:stop], stamps[k]))
                break
            pieces.append((data[start:cut], stamps[k]))
            start = cut
            k += 1
    return pieces


class Connection:
    """One thread's connection to the server, reopened when the server has
    closed it.  Not thread-safe: one per worker thread."""

    def __init__(self, url: str, connect_timeout_s: float, read_timeout_s: float, verify_tls: bool,
                 ca_bundle: str | None = None):
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self._context: ssl.SSLContext | None = None
        if self.tls:
            self._context = ssl.create_default_context(cafile=ca_bundle)
            if not verify_tls:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self._sock: socket.socket | None = None
        self._kernel_stamps = False

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def release(self, reusable: bool) -> None:
        """After a reply: keep the connection, or close it when its state is
        unknown (an unfinished body) or the server asked to."""
        if not reusable:
            self.close()

    def open(self) -> None:
        """Connect now, if not connected (a failure raises, as in send)."""
        if self._sock is None:
            self._connect()

    def send(self, data: bytes) -> float:
        """Write one request; return the epoch when it went out (or when the
        connect it needed began: a new connection is part of what the
        request costs)."""
        sock = self._sock
        if sock is not None and _closed_by_peer(sock):
            self.close()
            sock = None
        started = time.time()
        if sock is None:
            sock = self._connect()
        try:
            sock.sendall(data)
        except BlockingIOError:  # SO_SNDTIMEO ran out: the server reads nothing
            self.close()
            raise ReadTimeout() from None
        except BaseException:
            self.close()
            raise
        return started

    def reply(self) -> Reply:
        """Read the head of the reply (skipping any 1xx)."""
        try:
            buf, stamp = b"", 0.0
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise BadResponse(f"reply head larger than {MAX_HEAD_BYTES // 1024} KiB")
                    data, stamp = self.receive()
                    if not data:
                        raise ServerClosed()
                    buf += data
                    continue
                version, status, headers = _parse_head(buf[:end])
                buf = buf[end + 4:]
                if 100 <= status < 200:  # 100 Continue and the like: the real head follows
                    continue
                connection = headers.get("connection", "").lower()
                reusable = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
                return Reply(status, headers, self, buf, stamp, reusable)
        except BaseException:
            self.close()
            raise

    def reader(self) -> Callable[[], tuple]:
        """The cheapest read this connection allows, for a loop that reads a
        whole body: each call returns a tuple whose first item is what
        arrived (b"" at end of stream) and whose second gives its arrival
        (see `_arrival`): the kernel's ancillary data, decoded only once the
        body is over, or the epoch the read returned.  With kernel stamps a
        read timeout raises BlockingIOError (SO_RCVTIMEO)."""
        sock = self._sock
        if sock is None:
            raise ServerClosed()
        if self._kernel_stamps:
            return functools.partial(sock.recvmsg, READ_SIZE, ANCILLARY_BYTES)
        return lambda: (sock.recv(READ_SIZE), time.time())

    def receive(self) -> tuple[bytes, float]:
        """What has arrived (b"" at end of stream), and when."""
        try:
            got = self.reader()()
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise ReadTimeout() from None
        return got[0], _arrival(got[1])

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except socket.timeout:
            raise ConnectTimeout() from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._kernel_stamps = False
            if self._context is not None:
                try:
                    sock = self._context.wrap_socket(sock, server_hostname=self.host)
                except socket.timeout:
                    raise ConnectTimeout() from None
                sock.settimeout(self.read_timeout_s)
            elif SO_TIMESTAMPNS is not None:
                # Linux, plain TCP: the kernel stamps arrivals and enforces the
                # read timeout itself.  Python's own timeout would poll before
                # every read: two more system calls and one more GIL hand-over
                # per event, which at 256 streams is a tenth of the CPU.
                sock.settimeout(None)
                timeout = _TIMEVAL.pack(int(self.read_timeout_s), int(self.read_timeout_s % 1 * 1e6))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self._kernel_stamps = True
            else:
                sock.settimeout(self.read_timeout_s)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    """A kept connection the server has since closed (or written to out of
    turn) reads as ready: reconnect rather than send into it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/"):
        raise BadResponse(f"status line {lines[0][:40]!r}")
    try:
        status = int(rest[:3])
    except ValueError:
        raise BadResponse(f"status line {lines[0][:40]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, status, headers
