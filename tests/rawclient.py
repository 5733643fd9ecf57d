"""A minimal blocking HTTP/1.1 client over a raw socket, for the mock server's tests.

It stamps each HTTP chunk with time.time() of the recv that completed it, and
does nothing else per chunk, so it measures what arrived when without the
overhead (or the buffering) of a full HTTP library.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""  # non-chunked body
    chunks: list[bytes] = field(default_factory=list)  # chunked: each HTTP chunk's data
    chunk_times: list[float] = field(default_factory=list)  # time.time() per chunk
    head_time: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


def build_request(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                  host: str = "127.0.0.1") -> bytes:
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}"]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class RawConnection:
    """One keep-alive connection; request() sends and reads one full response."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = host
        self._buf = bytearray()
        self._pos = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # self._buf[self._pos:] is unread; advancing _pos instead of slicing keeps
    # reading a multi-megabyte reply linear rather than quadratic.
    def _recv(self) -> None:
        if self._pos > 65536:
            del self._buf[:self._pos]
            self._pos = 0
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        self._buf += data

    def _find(self, sep: bytes) -> int:
        while (i := self._buf.find(sep, self._pos)) < 0:
            self._recv()
        return i

    def _take(self, end: int, skip: int = 0) -> bytes:
        data = bytes(self._buf[self._pos:end])
        self._pos = end + skip
        return data

    def _line(self) -> bytes:
        return self._take(self._find(b"\r\n"), 2)

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            self._recv()
        return self._take(self._pos + n)

    def send(self, raw: bytes) -> float:
        """Send raw bytes; returns time.time() just before sending."""
        t = time.time()
        self.sock.sendall(raw)
        return t

    def read_response(self) -> RawResponse:
        head = self._take(self._find(b"\r\n\r\n"), 4).decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        resp = RawResponse(status, headers, head_time=time.time())
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._line().split(b";")[0], 16)
                data = self._exactly(size + 2)[:size]
                if size == 0:
                    break
                resp.chunks.append(data)
                resp.chunk_times.append(time.time())
        else:
            resp.body = self._exactly(int(headers.get("content-length", "0")))
        return resp

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[float, RawResponse]:
        """(send time, response)."""
        t = self.send(build_request(method, path, body, headers, self.host))
        return t, self.read_response()
