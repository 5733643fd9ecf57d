"""Any bytes a server sends give a recorded success or failure: never a
crash of the worker thread, never an exception out of the coordinator's
row building.  Each example is a real HTTP exchange over loopback."""
import queue
import socket
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import sent_as
from engine import events, transport
from engine.arguments import Arguments
from engine.derive import to_row
from engine.records import Job, Target
from plugins.api.openai import OpenaiPlugin


class ByteServer:
    """Answers each connection with the next queued (head, body), then closes."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.listener.accept()
            head, body = self.replies.get()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    conn.sendall(head + body)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1024)
                except OSError:
                    pass


SERVER = None
PLUGIN = OpenaiPlugin(Arguments(url="http://x/v1/chat/completions"))

sse_lines = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"data: [DONE]\n\n", b"data: {}\n\n", b": comment\n\n", b"\r\n\r\n", b"data:\n\n",
                     b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n', b'data: {"error": {"message": 1}}\n\n',
                     b'data: {"choices":[],"usage":{"prompt_tokens":"a","completion_tokens":null}}\n\n',
                     b'data: {"choices":[{"delta":null}]}\n\n', b"data: \xff\xfe\n\n", b"event: x\nid: 1\n\n"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(sse_lines, max_size=8), chunked=st.booleans(), status=st.sampled_from([200, 200, 500]),
       content_type=st.sampled_from([b"text/event-stream", b"application/json"]))
def test_any_bytes_give_a_recorded_result(parts, chunked, status, content_type):
    global SERVER
    if SERVER is None:
        SERVER = ByteServer()
    body = b"".join(parts)
    head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\n" % (status, content_type)
    if chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n"
    else:
        head += b"Connection: close\r\n\r\n"
    SERVER.replies.put((head, body))
    target = Target(url=f"http://127.0.0.1:{SERVER.port}/v1/chat/completions", headers=(), stream=True,
                    connect_timeout_s=5, read_timeout_s=5)
    sender = transport.Sender(target)
    record = events.finish(sender.exchange(Job(seq=0, request_id="r", payload=b"{}"), "w0"))
    sender.close()
    row = to_row(record, sent_as("r"), PLUGIN)
    assert row["success"] in (0, 1)
    if row["success"] == 0:
        assert row["error"] and "\n" not in row["error"]
    else:
        assert row["status_code"] == 200
