"""Start the mock in a child process (tests, the default run, benchmarks).

    with start_mock(["--ttft-ms", "100"]) as mock:
        mock.chat_url, mock.truth()

A separate process, not a thread: the mock then has its own GIL and core, so
it never competes with the client being measured for the interpreter.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_PREFIX = "servegauge mock listening on "
# The directory holding the `engine` package, so the child can import it
# however the parent was started (installed or not, any cwd).
_ROOT = str(Path(__file__).resolve().parents[2])


class MockStartError(RuntimeError):
    """The mock did not come up; the message carries its exit code and stderr."""


class MockProcess:
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, stderr_file: IO[bytes]) -> None:
        self.proc = proc
        self.base_url = base_url
        self._stderr = stderr_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def chat_url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    @property
    def completions_url(self) -> str:
        return self.base_url + "/v1/completions"

    @property
    def dashscope_url(self) -> str:
        return self.base_url + "/api/v1/services/aigc/text-generation/generation"

    def _get(self, path: str, timeout_s: float) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as r:
            return json.loads(r.read())

    def truth(self, clear: bool = False, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """GET /truth: one record per request (see engine.mock.truth for the schema)."""
        return self._get("/truth?clear=1" if clear else "/truth", timeout_s)

    def stats(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """GET /stats: server-wide counters (connections, requests, events written)."""
        return self._get("/stats", timeout_s)

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM (the mock writes its truth file and exits 0), kill if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch(args: Sequence[str] = (), timeout_s: float = 10.0) -> MockProcess:
    """Start the mock and wait for its "listening" line; the caller must stop() it."""
    # stderr to a file, not a pipe: nobody reads it while the mock runs, and a
    # full pipe would block the server.
    stderr_file = tempfile.TemporaryFile()
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "engine.mock", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=stderr_file, stdin=subprocess.DEVNULL,
                            env=env,
                            # Its own session: a Ctrl-C at the terminal goes to the benchmark,
                            # which stops cleanly and then stops the mock, not to both at once.
                            start_new_session=True)
    lines: queue.Queue[bytes] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: lines.put(out.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout_s).decode(errors="replace").strip()
    except queue.Empty:
        line = None
    if line is None or not line.startswith(_PREFIX):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stderr_file.seek(0)
        err = stderr_file.read().decode(errors="replace").strip()
        stderr_file.close()
        why = (f"no 'listening' line within {timeout_s:g}s" if line is None
               else f"unexpected first line {line!r}" if line else "it exited")
        raise MockStartError(f"mock server failed to start ({why}; exit code {proc.returncode}; "
                             f"args {list(args)}); stderr:\n{err or '(empty)'}")
    return MockProcess(proc, line[len(_PREFIX):], stderr_file)


@contextmanager
def start_mock(args: Sequence[str] = (), timeout_s: float = 10.0) -> Iterator[MockProcess]:
    """Run the mock for the duration of a with-block; yields the MockProcess."""
    mock = launch(args, timeout_s)
    try:
        yield mock
    finally:
        mock.stop()
