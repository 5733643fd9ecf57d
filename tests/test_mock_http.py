"""HTTP/1.1 framing, the CLI, the launcher and the truth file of the mock server."""
from __future__ import annotations

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.mock import MockConfig, MockStartError, start_mock
from engine.mock.cli import main
from engine.mock.tokens import output_text
from rawclient import RawConnection, build_request

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def mock():
    with start_mock(["--ttft-ms", "0", "--itl-ms", "0", "--tokens", "4"]) as m:
        yield m


def addr(m):
    u = urlsplit(m.base_url)
    return u.hostname, u.port


def truth_of(m, rid, until, what, timeout_s=10.0):
    """The mock's truth record of request `rid` once `until(record)` holds,
    polled (the server is another process); fails, saying what, after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        recs = [r for r in m.truth() if r["request_id"] == rid]
        if recs and until(recs[0]):
            return recs[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"the mock did not record {what} within {timeout_s} s: {recs}")
        time.sleep(0.01)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=6))
def test_request_split_anywhere(mock, cuts):
    """A request arriving in arbitrary fragments is parsed the same."""
    raw = build_request("POST", "/v1/chat/completions", BODY)
    points = sorted({c % len(raw) for c in cuts} - {0})
    with RawConnection(*addr(mock)) as conn:
        prev = 0
        for p in points + [len(raw)]:
            conn.sock.sendall(raw[prev:p])
            prev = p
            time.sleep(0.001)  # spaces the fragments out (input shaping, not a wait for a state)
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.json()["choices"][0]["message"]["content"] == output_text(2)


def test_pipelined_requests_answered_in_order(mock):
    raws = [build_request("POST", "/v1/chat/completions", dict(BODY, max_tokens=n),
                          {"X-Request-Id": f"pipe-{n}"}) for n in (1, 2, 3)]
    with RawConnection(*addr(mock)) as conn:
        conn.sock.sendall(b"".join(raws))
        got = [conn.read_response() for _ in raws]
    assert [r.json()["usage"]["completion_tokens"] for r in got] == [1, 2, 3]
    assert [r.headers["x-request-id"] for r in got] == ["pipe-1", "pipe-2", "pipe-3"]


def test_connection_close_and_http10(mock):
    for version, headers in (("HTTP/1.1", "Connection: close\r\n"), ("HTTP/1.0", "")):
        with socket.create_connection(addr(mock), timeout=5) as s:
            s.sendall(f"GET /health {version}\r\nHost: x\r\n{headers}\r\n".encode())
            data = b""
            while chunk := s.recv(65536):  # ends only because the server closes
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"connection: close" in data


def test_expect_100_continue(mock):
    body = json.dumps(BODY).encode()
    with socket.create_connection(addr(mock), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("raw,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /v1/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
])
def test_unframeable_requests_get_an_error_and_close(mock, raw, status):
    with socket.create_connection(addr(mock), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["message"]


def test_client_closing_mid_stream_is_recorded_and_harmless():
    with start_mock(["--ttft-ms", "0", "--itl-ms", "20", "--tokens", "50"]) as m:
        rid = "gone-" + uuid.uuid4().hex
        with RawConnection(*addr(m)) as conn:
            conn.send(build_request("POST", "/v1/chat/completions", dict(BODY, stream=True,
                                    max_tokens=50), {"X-Request-Id": rid}))
            conn.sock.recv(100)
        rec = truth_of(m, rid, lambda r: r["aborted"] is not None, "the client's close")
        assert requests.get(m.base_url + "/health", timeout=5).status_code == 200
        assert rec["aborted"] == "client closed" and rec["end"] is None
        assert len(rec["content_times"]) < 50


def test_schedule_does_not_drift_under_concurrency():
    """40 concurrent streams: every event is written within a few ms of
    read + ttft + i*itl (the reply's timing counts from when the server read
    the request), i.e. delays do not accumulate."""
    n_streams, n_tokens = 40, 20
    with start_mock(["--ttft-ms", "30", "--itl-ms", "10", "--tokens", str(n_tokens)]) as m:
        conns = [RawConnection(*addr(m)) for _ in range(n_streams)]
        raw = build_request("POST", "/v1/chat/completions", dict(BODY, stream=True, max_tokens=n_tokens))
        for c in conns:
            c.send(raw)
        for c in conns:
            assert len(c.read_response().chunks) == n_tokens + 2
            c.close()
        recs = m.truth()
    assert len(recs) == n_streams
    assert all(r["arrival"] <= r["read"] for r in recs)
    lateness = [t - r["read"] - (0.03 + 0.01 * i)
                for r in recs for i, t in enumerate(r["content_times"])]
    lateness.sort()
    assert lateness[0] >= 0
    # Generous bounds: other processes may share the 2 cores.  Accumulated
    # sleeps would be ~1 ms late per event, i.e. 20 ms by the last one.
    assert lateness[len(lateness) // 2] < 0.003, lateness[len(lateness) // 2]
    assert lateness[int(0.99 * len(lateness))] < 0.015, lateness[-1]


def test_no_truth_flag():
    with start_mock(["--no-truth", "--ttft-ms", "0"]) as m:
        requests.post(m.chat_url, json=BODY, timeout=5)
        assert m.truth() == []
        assert m.stats()["requests"] >= 1


def test_truth_file_written_on_sigterm(tmp_path):
    path = tmp_path / "truth.json"
    with start_mock(["--truth-file", str(path), "--ttft-ms", "0"]) as m:
        requests.post(m.chat_url, json=BODY, headers={"X-Request-Id": "tf-1"}, timeout=5)
        assert m.stop() == 0
    records = json.loads(path.read_text())
    assert [r["request_id"] for r in records] == ["tf-1"]
    assert records[0]["end"] >= records[0]["arrival"]


def test_launcher_reports_startup_failure():
    with pytest.raises(MockStartError, match="unrecognized arguments"):
        with start_mock(["--no-such-flag"]):
            pass


@pytest.mark.parametrize("argv", [["--tokens", "0"], ["--ttft-ms", "-1"], ["--port", "70000"],
                                  ["--tokens-per-chunk", "x"], ["--itl-ms", "nan"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_config_validates():
    with pytest.raises(ValueError):
        MockConfig(tokens=0)
    assert MockConfig(itl_ms=5).itl_s == 0.005


def test_launcher_urls(mock):
    assert mock.chat_url == mock.base_url + "/v1/chat/completions"
    assert mock.base_url.startswith("http://127.0.0.1:")
    assert isinstance(mock.pid, int)


def test_backpressure_pauses_and_resumes():
    """A client that does not read: the server stops producing at the transport's
    high-water mark (memory stays bounded), then catches up once it reads.
    The reply (~12 MB) is larger than the kernel buffers can absorb (~4 MB of
    send buffer, ~128 KB receive window while nobody reads)."""
    n_tokens, per_chunk = 2_000_000, 500
    n_events = n_tokens // per_chunk + 1  # content events + [DONE]
    with start_mock(["--ttft-ms", "0", "--itl-ms", "0", "--tokens", str(n_tokens),
                     "--tokens-per-chunk", str(per_chunk)]) as m:
        rid = "bp-" + uuid.uuid4().hex
        with RawConnection(*addr(m)) as conn:
            conn.send(build_request("POST", "/v1/completions",
                                    {"model": "m", "prompt": "p", "stream": True},
                                    {"X-Request-Id": rid}))
            # the kernel's buffers are full once a write leaves bytes in the transport's buffer
            rec = truth_of(m, rid, lambda r: r["event_direct"] and not r["event_direct"][-1],
                           "a write the kernel could not take")
            assert rec["end"] is None and 0 < len(rec["event_times"]) < n_events
            resp = conn.read_response()
        assert len(resp.chunks) == n_events
        assert b"".join(resp.chunks).count(b"data: ") == n_events
        (rec,) = [r for r in m.truth() if r["request_id"] == rid]
        assert rec["end"] is not None and len(rec["event_times"]) == n_events
        assert not all(rec["event_direct"])
