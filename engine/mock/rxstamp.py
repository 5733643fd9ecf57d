"""When a request's bytes reached the server, by the kernel's clock.

The mock's loop reads a burst of requests one after another: at 256 streams
the last of a burst is read tens of milliseconds after it arrived.  That wait
is the server's (a real server queues the same way), so the ground truth
stamps a request's arrival with the kernel's receive time of its bytes
(SO_TIMESTAMPNS, Linux) and keeps the moment the loop read it separately.
Elsewhere, and under TLS, arrival is the read time, as before.
"""
from __future__ import annotations

import socket

from engine.stamps import ANCILLARY_BYTES, SO_TIMESTAMPNS, enable, kernel_stamp


class StampingSocket:
    """Stands in for the transport's socket: the same socket, whose recv
    also keeps the kernel's stamp of what it returned."""

    __slots__ = ("_sock", "stamp")

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.stamp: float | None = None

    def recv(self, size: int) -> bytes:
        data, ancillary, _, _ = self._sock.recvmsg(size, ANCILLARY_BYTES)
        stamp = kernel_stamp(ancillary)
        if stamp is not None:
            self.stamp = stamp
        return data

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def install(transport) -> StampingSocket | None:
    """Stamp what this plain-TCP asyncio transport reads, if the system can.
    The selector transport reads with `self._sock.recv` (CPython 3.10-3.13);
    anything else (TLS, another loop) is left as it is."""
    sock = getattr(transport, "_sock", None)
    if SO_TIMESTAMPNS is None or type(sock) is not socket.socket or sock.type != socket.SOCK_STREAM:
        return None
    if not enable(sock):
        return None
    stamping = StampingSocket(sock)
    transport._sock = stamping
    return stamping
