"""Kernel stamps (Linux): receive stamps (SO_TIMESTAMPNS) and transmit
stamps (SO_TIMESTAMPING), turning on, and decoding.

A leaf shared by the benchmark client (engine.connection) and the mock
server (engine.mock.rxstamp), which imports nothing else of the client: the
ground truth and what it judges read the kernel's clock the same way, and
neither depends on the other.
"""
from __future__ import annotations

import socket
import struct
import sys

# Linux's SO_TIMESTAMPNS and SO_TIMESTAMPING (also their control message
# types); Python names neither.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
SO_TIMESTAMPING = 37 if sys.platform.startswith("linux") else None
# Software stamps of transmitted data, reported without the data itself:
# SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY.
_TX_FLAGS = (1 << 1) | (1 << 4) | (1 << 11)
_TIMESPEC = struct.Struct("@qq")
ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
_ERRQUEUE_ANCILLARY = 512


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


def enable_transmit(sock: socket.socket) -> bool:
    """Ask the kernel to stamp when what this TCP socket sends leaves (for
    TCP, the last byte of each send call); False where it cannot."""
    if SO_TIMESTAMPING is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _TX_FLAGS)
    except OSError:
        return False
    return True


def transmit_stamp(sock: socket.socket) -> float | None:
    """The latest transmit stamp waiting on the socket's error queue (epoch
    seconds), draining the queue; None when there is none."""
    stamp = None
    while True:
        try:
            _, ancillary, _, _ = sock.recvmsg(0, _ERRQUEUE_ANCILLARY, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except OSError:  # BlockingIOError: the queue is empty
            return stamp
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(value) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack_from(value)  # the first of three: the software stamp
                if seconds or nanos:
                    stamp = seconds + nanos * 1e-9
