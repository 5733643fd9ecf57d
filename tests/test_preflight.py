"""The pre-flight check (engine.preflight): each misconfiguration a new user
makes is one line on stderr naming the fix, exit 2, nothing created, within
--connect-timeout + 1 s; a model left out is taken from /v1/models."""
import http.server
import json
import os
import socket
import threading
import time

import pytest

from conftest import find_dbs, rows, run_engine

CONNECT_TIMEOUT = 1.0


def misconfigured(tmp_path, *args, env=None):
    """Run; check exit 2, one line, nothing created, in time; return the line."""
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_engine(*args, "--outputs-dir", out, "--connect-timeout", CONNECT_TIMEOUT, check=False, env=env)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert elapsed < CONNECT_TIMEOUT + 1.0, elapsed
    assert not out.exists()
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("servegauge: error: ")
    return line[len("servegauge: error: "):]


@pytest.fixture(scope="module")
def picky_mock():
    """A mock that serves one model, and answers 404 for any other."""
    from engine.mock.launch import start_mock

    with start_mock(["--served-model", "qwen-7b", "--tokens", "4"]) as server:
        yield server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_wrong_path_names_the_endpoint(tmp_path, mock):
    line = misconfigured(tmp_path, "--url", mock.base_url + "/v1", "--model", "m")
    assert line == (f"{mock.base_url}/v1 answered HTTP 404: --api openai expects the endpoint /v1/chat/completions "
                    f"or /v1/completions, e.g. --url {mock.base_url}/v1/chat/completions")


def test_a_wrong_path_for_dashscope(tmp_path, mock):
    line = misconfigured(tmp_path, "--api", "dashscope", "--url", mock.base_url + "/v1/chat", "--model", "m")
    assert "--api dashscope expects the endpoint /api/v1/services/aigc/text-generation/generation" in line


def test_a_server_that_is_down(tmp_path):
    port = free_port()
    line = misconfigured(tmp_path, "--url", f"http://127.0.0.1:{port}/v1/chat/completions")
    assert line.startswith(f"connection refused at 127.0.0.1:{port}: nothing listens there")


def test_a_host_that_does_not_resolve(tmp_path):
    line = misconfigured(tmp_path, "--url", "http://servegauge-no-such-host.invalid:8000/v1/chat/completions")
    assert line == "cannot resolve the host 'servegauge-no-such-host.invalid' of --url (DNS): check its spelling"


def test_https_to_a_plain_http_port(tmp_path, mock):
    url = mock.chat_url.replace("http://", "https://")
    line = misconfigured(tmp_path, "--url", url)
    assert line == f"{mock.base_url[len('http://'):]} speaks plain HTTP, not TLS: use --url {mock.chat_url}"


def test_a_connect_timeout_says_so_within_it(tmp_path):
    # a listener whose backlog is full: the kernel drops further SYNs, so connecting hangs
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        line = misconfigured(tmp_path, "--url", f"http://127.0.0.1:{port}/v1/chat/completions")
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert line == (f"no connection to 127.0.0.1:{port} within 1 s (--connect-timeout): is the host up, "
                    "and the port open to you?")


class _KeyServer(http.server.BaseHTTPRequestHandler):
    """401 without a key, 403 with a wrong one; lists two models."""

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _check(self):
        auth = self.headers.get("Authorization")
        if not auth:
            return self._answer(401, {"error": {"message": "no key"}}) or False
        if auth != "Bearer good-key":
            return self._answer(403, {"error": {"message": f"bad key {auth}"}}) or False
        return True

    def do_GET(self):
        if self._check():
            self._answer(200, {"object": "list", "data": [{"id": "model-a"}, {"id": "model-b"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._check():
            self._answer(200, {"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def key_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeyServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_to_a_plain_http_server_that_waits(tmp_path, key_server):
    """A plain-HTTP server that waits for a request line a TLS hello never
    ends: the handshake times out within --connect-timeout, then the port is
    seen to answer plain HTTP."""
    port = key_server.rsplit(":", 1)[1]
    line = misconfigured(tmp_path, "--url", f"https://127.0.0.1:{port}/v1/chat/completions", "--model", "model-a")
    assert line == f"127.0.0.1:{port} speaks plain HTTP, not TLS: use --url {key_server}/v1/chat/completions"


def test_no_key(tmp_path, key_server):
    line = misconfigured(tmp_path, "--url", key_server + "/v1/chat/completions", "--model", "model-a",
                         env={"OPENAI_API_KEY": ""})
    assert line == (f"{key_server}/v1/models answered HTTP 401: it needs an API key and none was sent: set "
                    "OPENAI_API_KEY or pass --api-key")


@pytest.mark.parametrize("where", ["env", "flag"])
def test_a_refused_key_says_where_it_came_from_never_what_it_is(tmp_path, key_server, where):
    secret = "sk-wrong-0123456789"
    args = ["--url", key_server + "/v1/chat/completions", "--model", "model-a"]
    if where == "flag":
        line = misconfigured(tmp_path, *args, "--api-key", secret, env={"OPENAI_API_KEY": ""})
        assert line.endswith("answered HTTP 403: the server refused the key given with --api-key: "
                             "check it is right for this server")
    else:
        line = misconfigured(tmp_path, *args, env={"OPENAI_API_KEY": secret})
        assert line.endswith("answered HTTP 403: the server refused the key in OPENAI_API_KEY: "
                             "check it is right for this server")
    assert secret not in line


def test_no_model_and_several_served(tmp_path, key_server):
    line = misconfigured(tmp_path, "--url", key_server + "/v1/chat/completions", env={"OPENAI_API_KEY": "good-key"})
    assert line == (f"--model is missing and {key_server}/v1/models lists 2 models: choose one with --model "
                    "(model-a, model-b)")


def test_a_model_that_is_not_served(tmp_path, picky_mock):
    line = misconfigured(tmp_path, "--url", picky_mock.chat_url, "--model", "qwen-70b")
    assert line == (f"model 'qwen-70b' is not served at {picky_mock.base_url} (HTTP 404): it serves qwen-7b; "
                    "pass one with --model")


def test_no_model_uses_the_one_served(tmp_path, picky_mock):
    proc = run_engine("--url", picky_mock.chat_url, "--number", 3, "--outputs-dir", tmp_path, "--no-plots")
    assert "servegauge: no --model given: using 'qwen-7b', the one model the server lists" in proc.stderr
    (db,) = find_dbs(tmp_path)
    assert os.path.basename(os.path.dirname(os.path.dirname(db))) == "qwen-7b"  # the folder is named after it
    assert [r["success"] for r in rows(db)] == [1, 1, 1]


def test_without_the_check_the_run_goes_ahead(tmp_path, picky_mock):
    proc = run_engine("--url", picky_mock.chat_url, "--model", "qwen-70b", "--number", 2, "--no-test-connection",
                      "--outputs-dir", tmp_path, "--no-plots", check=False)
    assert proc.returncode == 1  # every request got the mock's 404: nothing succeeded
    (db,) = find_dbs(tmp_path)
    assert [r["status_code"] for r in rows(db)] == [404, 404]


def test_the_check_is_one_models_list_and_one_short_request(picky_mock, tmp_path):
    picky_mock.truth(clear=True)
    run_engine("--url", picky_mock.chat_url, "--model", "qwen-7b", "--number", 2, "--outputs-dir", tmp_path,
               "--no-plots")
    truth = picky_mock.truth()
    assert [t["path"] for t in truth[:2]] == ["/v1/models", "/v1/chat/completions"]
    assert truth[1]["request_id"].startswith("servegauge-preflight-") and truth[1]["completion_tokens"] == 1
    assert len(truth) == 4
