"""Events are stamped when their bytes arrive, whatever the body framing.

A raw socket server (written here, so the framing is exactly what the test
says) sends SSE events 100 ms apart; the worker's transport must stamp them
100 ms apart, for a chunked body and for a close-delimited one."""
import json
import socket
import threading
import time

import pytest

from conftest import sent_as
from engine import events, transport
from engine.derive import to_row
from engine.arguments import Arguments
from engine.records import Job, Target
from plugins.api.openai import OpenaiPlugin

GAP_S = 0.1


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def read_request(conn) -> None:
    """Read the whole request, so closing the socket later is a clean FIN."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)


def serve_raw(pieces: list[bytes], gap_s: float = GAP_S):
    """Accept one connection, read the request, write `pieces` gap_s apart
    (exactly these bytes: head and framing included), then close."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            read_request(conn)
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(gap_s)
                conn.sendall(piece)
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def serve_once(framing: str, events: list[bytes], gap_s: float = GAP_S):
    """Accept one connection, read the request, answer with `events` spaced by gap_s."""
    head = SSE_HEAD + (b"Transfer-Encoding: chunked\r\n\r\n" if framing == "chunked" else b"Connection: close\r\n\r\n")
    pieces = [chunk(event) if framing == "chunked" else event for event in events]
    pieces[0] = head + pieces[0]
    if framing == "chunked":
        pieces[-1] += b"0\r\n\r\n"
    return serve_raw(pieces, gap_s)


def openai_events(n):
    out = [b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n']
    out += [b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i for i in range(n)]
    out += [b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % n]
    return out


def send(port, stream=True):
    target = Target(url=f"http://127.0.0.1:{port}/v1/chat/completions", headers=(), stream=stream,
                    connect_timeout_s=5, read_timeout_s=5)
    job = Job(seq=0, request_id="r0", payload=b"{}")
    sender = transport.Sender(target)
    try:
        return events.finish(sender.exchange(job, "w0"))
    finally:
        sender.close()


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_events_sent_100ms_apart_are_stamped_100ms_apart(framing):
    port, thread = serve_once(framing, openai_events(4))
    record = send(port)
    thread.join(5)
    assert record.error is None and record.status_code == 200 and record.saw_done
    assert len(record.events) == 6  # role chunk, 4 content, usage ([DONE] not kept)
    offsets = record.event_offsets_s
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    # every gap between separately sent events is the server's 100 ms
    for gap in gaps:
        assert gap == pytest.approx(GAP_S, abs=0.02), gaps


def test_ttft_skips_role_only_and_empty_deltas():
    events = [b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":""}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n',
              # no [DONE]: this server ends with a finish_reason, and usage in the last chunk with choices
              b'data: {"choices":[{"delta":{"content":" there"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n']
    port, thread = serve_once("chunked", events)
    record = send(port)
    thread.join(5)
    plugin = OpenaiPlugin(Arguments(url="http://x/v1/chat/completions"))
    row = to_row(record, sent_as("r0"), plugin)
    # the first two events arrive 0 and 100 ms after the headers; output starts with the third
    assert row["first_chunk_latency"] == pytest.approx(record.event_offsets_s[2])
    assert row["first_chunk_latency"] - record.event_offsets_s[0] == pytest.approx(2 * GAP_S, abs=0.03)
    assert row["n_chunks"] == 2
    assert (row["prompt_tokens"], row["completion_tokens"], row["token_source"]) == (5, 2, "usage")
    assert row["success"] == 1
    # usage inside the last chunk that also carries choices is found too
    assert json.loads(row["chunk_times"]) == pytest.approx(list(record.event_offsets_s[2:]))


def test_a_stream_cut_before_it_says_why_it_stopped_is_a_failure():
    events = [b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":" the"}}]}\n\n']
    port, thread = serve_once("close", events, gap_s=0.01)
    record = send(port)
    thread.join(5)
    row = to_row(record, sent_as("r0"), OpenaiPlugin(Arguments(url="http://x/v1/chat/completions")))
    assert row["success"] == 0 and row["error"] == "stream ended without [DONE] or a finish_reason"
    assert row["n_chunks"] == 2  # what arrived is kept


def test_connection_refused_is_a_recorded_failure():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    record = send(port)
    assert record.transport_failed and record.status_code is None
    assert record.error.startswith("connection refused")


EVENTS = openai_events(2)  # role, w0, w1, usage + [DONE]


def test_chunk_extensions_and_trailers_are_read_and_the_last_byte_ends_the_latency():
    pieces = [SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x;note=x\r\n%s\r\n" % (len(e), e) for e in EVENTS),
        b"0\r\n", b"X-Trailer: yes\r\n\r\n"]  # the body ends one gap later, two reads after the last event
    port, thread = serve_raw(pieces)
    record = send(port)
    thread.join(5)
    assert record.error is None and record.saw_done and len(record.events) == 4
    assert record.latency_s - record.event_offsets_s[-1] == pytest.approx(2 * GAP_S, abs=0.05)


def test_a_sized_body_is_stamped_piece_by_piece():
    body = b"".join(EVENTS)
    cut = len(EVENTS[0]) + len(EVENTS[1])  # role and w0 in the first write, the rest one gap later
    pieces = [SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:cut], body[cut:]]
    port, thread = serve_raw(pieces)
    record = send(port)
    thread.join(5)
    assert record.error is None and record.saw_done and len(record.events) == 4
    offsets = record.event_offsets_s
    assert offsets[1] - offsets[0] == pytest.approx(0, abs=0.02)
    assert offsets[2] - offsets[1] == pytest.approx(GAP_S, abs=0.05)


@pytest.mark.parametrize("bad, reason", [
    (b"zz\r\n", "not a readable HTTP reply: InvalidChunkLength(got length b'zz\\r\\n', 0 bytes read)"),
    # urllib3 reads a negative size, or a chunk without its CRLF, on to the
    # end of the connection, which then ends mid-body
    (b"-1\r\n", "server closed the connection mid-response"),
    (b"5\r\nhelloXX", "server closed the connection mid-response"),
])
def test_broken_chunk_framing_fails_the_request_and_keeps_what_came_before(bad, reason):
    pieces = [SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(EVENTS[0]) + chunk(EVENTS[1]), bad]
    port, thread = serve_raw(pieces)
    record = send(port)
    thread.join(5)
    assert record.transport_failed
    assert record.error == reason
    assert len(record.events) == 2  # the role chunk and w0 arrived whole before the bad frame
