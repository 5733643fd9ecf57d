"""The mock server against the official clients and raw HTTP, over real loopback."""
from __future__ import annotations

import ast
import json
import pathlib
import uuid
from urllib.parse import urlsplit

import dashscope
import openai
import pytest
import requests

from engine.mock import start_mock
from engine.mock.dashscope_api import PATH as DS_PATH
from engine.mock.tokens import count_messages, output_text
from rawclient import RawConnection

TOKENS = 12


def test_the_mock_imports_nothing_of_the_client():
    """The ground truth must not depend on what it judges: of the benchmark
    client the mock imports only the engine.stamps leaf (stdlib only)."""
    allowed = {"engine.stamps"}
    mock_dir = pathlib.Path(__file__).resolve().parents[1] / "engine" / "mock"
    ours = ("engine", "plugins", "analysis", "scripts")
    found = {}
    for path in [*mock_dir.glob("*.py"), mock_dir.parent / "stamps.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in ours and not name.startswith("engine.mock") and name not in allowed:
                    found.setdefault(path.name, []).append(name)
    assert not found, found


@pytest.fixture(scope="module")
def mock():
    with start_mock(["--ttft-ms", "1", "--itl-ms", "0", "--tokens", str(TOKENS),
                     "--model-name", "mock-x"]) as m:
        yield m


@pytest.fixture(scope="module")
def slow_mock():
    with start_mock(["--ttft-ms", "100", "--itl-ms", "50", "--tokens", "5"]) as m:
        yield m


@pytest.fixture(scope="module")
def client(mock):
    return openai.OpenAI(base_url=mock.base_url + "/v1", api_key="x", max_retries=0)


def addr(mock):
    u = urlsplit(mock.base_url)
    return u.hostname, u.port


MESSAGES = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "three word prompt"}]}]


# -- OpenAI ---------------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [1, 5, TOKENS])
def test_chat_stream_matches_non_stream(client, max_tokens):
    chunks = list(client.chat.completions.create(
        model="some-model", messages=MESSAGES, max_tokens=max_tokens, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.completion_tokens == max_tokens
    assert usage.prompt_tokens == count_messages(MESSAGES) == 5
    assert usage.total_tokens == 5 + max_tokens
    content = chunks[1:-1]
    assert len(content) == max_tokens  # one token per chunk by default
    assert all(c.object == "chat.completion.chunk" and c.model == "some-model" for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert content[-1].choices[0].finish_reason == "length"
    joined = "".join(c.choices[0].delta.content for c in content)

    full = client.chat.completions.create(model="some-model", messages=MESSAGES,
                                          max_tokens=max_tokens)
    assert full.object == "chat.completion"
    assert full.choices[0].message.content == joined == output_text(max_tokens)
    assert full.choices[0].message.role == "assistant"
    assert full.usage.completion_tokens == max_tokens and full.usage.prompt_tokens == 5


def test_chat_without_max_tokens_stops_at_server_length(client):
    full = client.chat.completions.create(model="m", messages=MESSAGES)
    assert full.usage.completion_tokens == TOKENS
    assert full.choices[0].finish_reason == "stop"
    capped = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10 * TOKENS)
    assert capped.usage.completion_tokens == TOKENS
    newer = client.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=3)
    assert newer.usage.completion_tokens == 3


def test_chat_stream_without_usage(client):
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2,
                                                 stream=True))
    assert len(chunks) == 3 and all(c.usage is None for c in chunks)


def test_completions(client):
    stream = list(client.completions.create(model="m", prompt="one two three four", max_tokens=4,
                                            stream=True, stream_options={"include_usage": True}))
    assert stream[-1].usage.prompt_tokens == 4 and stream[-1].usage.completion_tokens == 4
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert [c.choices[0].finish_reason for c in stream[:-1]] == [None, None, None, "length"]
    full = client.completions.create(model="m", prompt="one two three four", max_tokens=4)
    assert full.object == "text_completion"
    assert full.choices[0].text == text == output_text(4)
    assert full.usage.prompt_tokens == 4 and full.usage.completion_tokens == 4


def test_models_and_health(client, mock):
    models = client.models.list()
    assert [m.id for m in models.data] == ["mock-x"]
    r = requests.get(mock.base_url + "/health", timeout=5)
    assert r.status_code == 200


def test_tokens_per_chunk():
    with start_mock(["--ttft-ms", "0", "--itl-ms", "0", "--tokens", "7",
                     "--tokens-per-chunk", "3"]) as m:
        c = openai.OpenAI(base_url=m.base_url + "/v1", api_key="x", max_retries=0)
        chunks = list(c.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        deltas = [ch.choices[0].delta.content for ch in chunks[1:]]
        assert deltas == [output_text(3), output_text(3, 3), output_text(1, 6)]


# -- DashScope ------------------------------------------------------------------
@pytest.fixture
def ds(mock):
    old = dashscope.base_http_api_url
    dashscope.base_http_api_url = mock.base_url + "/api/v1"
    yield dashscope
    dashscope.base_http_api_url = old


# The SDK turns incremental_output=False into incremental requests it merges
# itself, except for models named *omni*/*tts*: those exercise the server's
# own cumulative mode.
@pytest.mark.parametrize("model", ["qwen-plus", "qwen-omni-mock"])
@pytest.mark.parametrize("incremental", [True, False])
def test_dashscope_sdk_stream(ds, model, incremental):
    rs = list(ds.Generation.call(model=model, messages=MESSAGES, api_key="x",
                                 result_format="message", stream=True,
                                 incremental_output=incremental, max_tokens=6))
    assert all(r.status_code == 200 for r in rs)
    texts = [r.output.choices[0].message.content for r in rs]
    if incremental:
        final = "".join(texts)
    else:
        final = texts[-1]
        assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    assert final == output_text(6)
    assert len(rs) == 6
    assert [r.usage.output_tokens for r in rs] == [1, 2, 3, 4, 5, 6]
    assert rs[-1].usage.input_tokens == 5 and rs[-1].usage.total_tokens == 11
    assert rs[-1].output.choices[0].finish_reason == "length"
    assert rs[0].output.choices[0].finish_reason == "null"


def test_dashscope_sdk_non_stream(ds):
    r = ds.Generation.call(model="qwen-plus", messages=MESSAGES, api_key="x",
                           result_format="message", max_tokens=3)
    assert r.status_code == 200
    assert r.output.choices[0].message.content == output_text(3)
    assert r.output.choices[0].finish_reason == "length"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (5, 3)
    r = ds.Generation.call(model="qwen-plus", prompt="a b c", api_key="x")
    assert r.output.text == output_text(TOKENS) and r.output.finish_reason == "stop"
    assert r.usage.input_tokens == 3


@pytest.mark.parametrize("sse_header", [{"X-DashScope-SSE": "enable"},
                                        {"Accept": "text/event-stream"}])
def test_dashscope_raw_cumulative_text_format(mock, sse_header):
    rid = uuid.uuid4().hex
    with RawConnection(*addr(mock)) as conn:
        _, resp = conn.request("POST", DS_PATH, {
            "model": "qwen", "input": {"prompt": "x y"},
            "parameters": {"max_tokens": 3}},  # incremental_output defaults to false
            {**sse_header, "X-Request-Id": rid})
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = [c.decode() for c in resp.chunks]
    assert events[0].startswith("id:1\nevent:result\n:HTTP_STATUS/200\ndata:{")
    datas = [json.loads(e.split("\ndata:", 1)[1]) for e in events]
    assert [d["output"]["text"] for d in datas] == [output_text(i) for i in (1, 2, 3)]
    assert [d["output"]["finish_reason"] for d in datas] == ["null", "null", "length"]
    assert all(d["request_id"] == rid for d in datas)
    assert datas[-1]["usage"] == {"total_tokens": 5, "output_tokens": 3, "input_tokens": 2}


def test_dashscope_error_shape(mock):
    r = requests.post(mock.dashscope_url, data=b"{nope", timeout=5)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "InvalidParameter" and body["message"]
    assert body["error"]["type"] == "BadRequestError"


# -- errors ---------------------------------------------------------------------
def test_404_and_400_shapes(mock):
    r = requests.get(mock.base_url + "/v1/nothing", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFoundError"
    r = requests.post(mock.chat_url, data=b'{"model": ', timeout=5)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "BadRequestError" and "JSON" in err["message"]
    r = requests.post(mock.chat_url, json={"model": "m", "messages": MESSAGES, "max_tokens": 0},
                      timeout=5)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    r = requests.post(mock.chat_url, json={"model": "m"}, timeout=5)
    assert r.status_code == 400
    r = requests.get(mock.chat_url, timeout=5)
    assert r.status_code == 405


def test_openai_client_raises_on_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])


# -- timing and ground truth --------------------------------------------------------
def test_timing_matches_config_and_truth(slow_mock):
    rid = "timing-" + uuid.uuid4().hex
    with RawConnection(*addr(slow_mock)) as conn:
        t_send, resp = conn.request("POST", "/v1/chat/completions", {
            "model": "m", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": True}}, {"X-Request-Id": rid})
    assert resp.status == 200
    assert len(resp.chunks) == 1 + 5 + 2  # role, content, usage, [DONE]
    # The role chunk comes at once, content at ttft + i*itl.
    assert resp.chunk_times[0] - t_send < 0.03
    content_t = resp.chunk_times[1:6]
    assert 0.07 < content_t[0] - t_send < 0.13
    gaps = [b - a for a, b in zip(content_t, content_t[1:])]
    assert all(0.02 < g < 0.08 for g in gaps), gaps

    (rec,) = [r for r in slow_mock.truth() if r["request_id"] == rid]
    assert rec["stream"] and rec["status"] == 200 and rec["path"] == "/v1/chat/completions"
    assert len(rec["event_times"]) == 8 and len(rec["content_times"]) == 5
    assert rec["first_content_time"] == rec["content_times"][0]
    assert rec["end"] == rec["event_times"][-1]
    assert rec["prompt_tokens"] == 5 and rec["completion_tokens"] == 5
    # Server side, each event is on its absolute schedule (timer slack only).
    for i, t in enumerate(rec["content_times"]):
        assert 0 <= t - rec["read"] - (0.1 + 0.05 * i) < 0.02
    # ... and the client saw each event shortly after the server wrote it.
    for server_t, client_t in zip(rec["event_times"], resp.chunk_times):
        assert -0.005 < client_t - server_t < 0.03
    assert 0 <= rec["arrival"] - t_send < 0.02
    assert rec["arrival"] <= rec["read"] < rec["arrival"] + 0.02  # bytes in the kernel, then read by the loop


def test_non_stream_delay(slow_mock):
    with RawConnection(*addr(slow_mock)) as conn:
        t_send, resp = conn.request("POST", "/v1/chat/completions",
                                    {"model": "m", "messages": MESSAGES, "max_tokens": 3})
    # ttft + (n_chunks - 1) * itl = 100 + 2 * 50 ms
    assert 0.17 < resp.head_time - t_send < 0.26
    assert resp.json()["usage"]["completion_tokens"] == 3


def test_keep_alive_reuses_one_connection(mock):
    ids = [f"ka-{uuid.uuid4().hex}" for _ in range(5)]
    with requests.Session() as s:
        for i, rid in enumerate(ids):
            r = s.post(mock.chat_url, json={"model": "m", "messages": MESSAGES, "max_tokens": 2,
                                            "stream": i % 2 == 0},
                       headers={"X-Request-Id": rid}, timeout=5)
            assert r.status_code == 200
            r.content  # noqa: B018 -- read it all so the connection goes back to the pool
    recs = {r["request_id"]: r for r in mock.truth()}
    assert len({recs[rid]["conn_id"] for rid in ids}) == 1
    assert [recs[rid]["conn_seq"] for rid in ids] == [1, 2, 3, 4, 5]


def test_truth_clear(mock):
    requests.get(mock.base_url + "/health", timeout=5)
    assert mock.truth(clear=True)
    assert mock.truth() == []
