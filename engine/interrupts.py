"""Ctrl-C and SIGTERM: requests to stop that are never lost.

The handlers (installed by the command line, `install()`) count each signal
before anything else.  Outside a run they also raise KeyboardInterrupt
(Terminated for SIGTERM), so start-up and the report stop where they are.
During a run (`deferred()`) they only count: the run's loops read the count
at safe points, so a signal never lands in the middle of writing a row, and
is never lost the way a KeyboardInterrupt raised inside a finaliser or a
callback is (Python prints it and carries on).  Code that may have missed
one asks `raise_if_requested()`.

While workers run, `wakeup(fd)` points the interpreter's C-level wake-up fd
at their stop pipe: the signal's number is written there the moment the
signal arrives, before any Python code runs, and every worker thread stops
sending at once (engine.worker.PipeGate).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from engine.errors import Terminated

_count = 0  # signals received
_terminated = False  # one of them was SIGTERM
_deferred = 0  # inside deferred(): count, do not raise


def install() -> None:
    """Handle SIGINT and SIGTERM here.  SIGINT is set explicitly because a
    shell starts background jobs with it ignored, and `kill -INT` should
    still stop a run cleanly."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def _handle(signum, frame) -> None:
    global _count, _terminated
    _count += 1
    if signum == signal.SIGTERM:
        _terminated = True
    if not _deferred:
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def requested() -> int:
    """How many stop signals arrived (0: none)."""
    return _count


def terminated() -> bool:
    return _terminated


def raise_if_requested() -> None:
    if _count:
        raise Terminated() if _terminated else KeyboardInterrupt()


def reset() -> None:
    """Forget the signals seen (tests that run several runs in one process)."""
    global _count, _terminated
    _count, _terminated = 0, False


@contextmanager
def deferred() -> Iterator[None]:
    """Signals are counted, not raised, inside this block."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1


@contextmanager
def wakeup(fd: int | None) -> Iterator[None]:
    """Inside this block a signal handled by Python also writes a byte to
    `fd` (non-blocking), at the C level, as it arrives."""
    if fd is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(old)
