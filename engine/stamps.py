"""Kernel receive stamps (Linux SO_TIMESTAMPNS): turning on, and decoding.

A leaf shared by the benchmark client (engine.connection) and the mock
server (engine.mock.rxstamp), which imports nothing else of the client: the
ground truth and what it judges read the kernel's clock the same way, and
neither depends on the other.
"""
from __future__ import annotations

import socket
import struct
import sys

# Linux's SO_TIMESTAMPNS (also the control message type); Python does not name it.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("@qq")
ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what this socket receives; False where it cannot."""
    if SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive stamp (epoch seconds) in what recvmsg returned alongside
    the data, if there is one.  For a read that returned several segments
    it is the latest segment's."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanos = _TIMESPEC.unpack_from(value)
            return seconds + nanos * 1e-9
    return None
