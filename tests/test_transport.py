"""The transport is requests and sseclient-py, and users get what those give:
proxies from the environment or --proxy, CA bundles, client certificates,
redirects named, every failed row explained, a kept-alive connection the
server closed resent rather than failed.  Real runs against the mock."""
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from conftest import find_dbs, rows, run_engine, sent_as
from engine import events, transport
from engine.arguments import Arguments
from engine.derive import to_row
from engine.mock.launch import start_mock
from engine.records import Job, Target
from plugins.api.openai import OpenaiPlugin

# Settings from the environment are part of what is tested: each run starts
# without any of these, and says which it has.
REQUESTS_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def run(*args, env=None, check=True):
    return run_engine(*args, env=env, check=check, unset=REQUESTS_ENV)

COUNTING_SITECUSTOMIZE = '''
import multiprocessing, os
import requests.adapters, sseclient

def _log(what):
    with open(os.path.join(os.environ["COUNT_DIR"], str(os.getpid())), "a") as f:
        f.write(f"{multiprocessing.current_process().name} {what}\\n")

_send = requests.adapters.HTTPAdapter.send
def send(self, request, *args, **kwargs):
    _log("send")
    return _send(self, request, *args, **kwargs)
requests.adapters.HTTPAdapter.send = send

_init = sseclient.SSEClient.__init__
def init(self, *args, **kwargs):
    _log("sse")
    _init(self, *args, **kwargs)
sseclient.SSEClient.__init__ = init
'''


def test_workers_send_through_requests_and_streams_are_split_by_sseclient(tmp_path, mock):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(COUNTING_SITECUSTOMIZE)
    counts = tmp_path / "counts"
    counts.mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # --no-continuous-usage: otherwise the pre-flight check's own streamed
    # probe (does the server give usage per chunk?) is a 25th stream, no row
    run("--url", mock.chat_url, "--parallel", 4, "--number", 24, "--outputs-dir", tmp_path / "out",
               "--no-plots", "--no-continuous-usage", env=dict(PYTHONPATH=os.pathsep.join([str(site), root]), COUNT_DIR=str(counts)))
    seen = Counter()
    for name in os.listdir(counts):
        for line in (counts / name).read_text().splitlines():
            process, what = line.rsplit(" ", 1)
            seen[("worker" if process.startswith("servegauge-w") else "other", what)] += 1
    result = rows(find_dbs(tmp_path / "out")[0])
    assert len(result) == 24 and all(r["success"] == 1 and r["is_stream"] == 1 for r in result)
    assert seen[("worker", "send")] == 24  # every request left through HTTPAdapter.send in a worker process
    assert seen[("worker", "sse")] + seen[("other", "sse")] == 24  # every stream split by SSEClient


class ForwardProxy:
    """A few lines of stdlib: an HTTP forward proxy that records what it relays."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                seen.append((self.command, self.path, self.headers.get("X-Request-Id")))
                target = urlsplit(self.path)  # a proxy gets the absolute URL
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
                upstream.request(self.command, target.path, body or None, headers)
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.getheader("Content-Type", ""))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy():
    p = ForwardProxy()
    yield p
    p.close()


@pytest.mark.parametrize("how", ["HTTP_PROXY", "--proxy", "NO_PROXY"])
def test_a_forward_proxy_sees_every_request_unless_no_proxy_covers_the_host(tmp_path, mock, proxy, how):
    env = dict(HTTP_PROXY=proxy.url) if how != "--proxy" else {}
    if how == "NO_PROXY":
        env["NO_PROXY"] = "127.0.0.1"
    flags = ["--proxy", proxy.url] if how == "--proxy" else []
    run("--url", mock.chat_url, "--parallel", 2, "--number", 6, "--outputs-dir", tmp_path, "--no-plots",
               *flags, env=env)
    result = rows(find_dbs(tmp_path)[0])
    assert len(result) == 6 and all(r["success"] == 1 for r in result)
    relayed = {rid for method, url, rid in proxy.seen if method == "POST" and url == mock.chat_url}
    if how == "NO_PROXY":
        assert proxy.seen == []
    else:  # every request of the run, and the pre-flight check's too
        assert {r["request_id"] for r in result} <= relayed
        assert any(method == "GET" for method, _, _ in proxy.seen)


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory):
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it."""
    d = tmp_path_factory.mktemp("ca")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key", "-out", d / "ca.pem",
            "-days", "2", "-subj", "/CN=servegauge test CA")
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr",
                "-subj", f"/CN=127.0.0.1")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                "-CAcreateserial", "-out", d / f"{name}.pem", "-days", "2", "-extfile", ext)
    return d


def tls_run(tmp_path, url, *flags, **env):
    proc = run("--url", url, "--number", 2, "--outputs-dir", tmp_path, "--no-plots", *flags,
                      env=env, check=False)
    dbs = find_dbs(tmp_path)
    return proc, (rows(dbs[0]) if dbs else [])


def one_line_refusal(proc, folder, *words):
    """The pre-flight check's answer: exit 2, one line naming the fix, nothing made."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not os.path.exists(folder)


def test_a_private_ca_is_trusted_from_the_environment_or_ca_bundle_and_not_otherwise(tmp_path, private_ca):
    ca = str(private_ca / "ca.pem")
    with start_mock(["--tls-cert", private_ca / "server.pem", "--tls-key", private_ca / "server.key"]) as m:
        _, by_env = tls_run(tmp_path / "env", m.chat_url, REQUESTS_CA_BUNDLE=ca)
        _, by_curl_env = tls_run(tmp_path / "curl", m.chat_url, CURL_CA_BUNDLE=ca)
        _, by_flag = tls_run(tmp_path / "flag", m.chat_url, "--ca-bundle", ca)
        refused, _ = tls_run(tmp_path / "none", m.chat_url)
        _, untrusted = tls_run(tmp_path / "rows", m.chat_url, "--no-test-connection")
    for result in (by_env, by_curl_env, by_flag):
        assert len(result) == 2 and all(r["success"] == 1 for r in result)
    one_line_refusal(refused, tmp_path / "none", "does not verify", "--ca-bundle")
    assert len(untrusted) == 2  # past the pre-flight check, each request says why
    for r in untrusted:
        assert r["success"] == 0 and r["error"].startswith("TLS certificate verify failed: ") and "\n" not in r["error"]


def test_mutual_tls_needs_the_client_certificate(tmp_path, private_ca):
    ca = str(private_ca / "ca.pem")
    with start_mock(["--tls-cert", private_ca / "server.pem", "--tls-key", private_ca / "server.key",
                     "--tls-client-ca", ca]) as m:
        _, with_cert = tls_run(tmp_path / "cert", m.chat_url, "--ca-bundle", ca, "--cert",
                               private_ca / "client.pem", "--key", private_ca / "client.key")
        refused, _ = tls_run(tmp_path / "none", m.chat_url, "--ca-bundle", ca)
        _, without = tls_run(tmp_path / "rows", m.chat_url, "--ca-bundle", ca, "--no-test-connection")
    assert len(with_cert) == 2 and all(r["success"] == 1 for r in with_cert)
    # TLS 1.3 refuses a missing certificate after the handshake, as an alert or
    # a bare close: the pre-flight check names --cert when it sees the alert;
    # a bare close lets the run go on, and then no request succeeds
    if refused.returncode == 2:
        one_line_refusal(refused, tmp_path / "none", "TLS handshake", "--cert")
    else:
        assert refused.returncode == 1 and "nothing succeeded" in refused.stderr.strip().splitlines()[-1]
    assert len(without) == 2
    for r in without:  # TLS 1.3: the refusal comes after the handshake, as an alert or a bare close
        assert r["success"] == 0 and r["error"] and "\n" not in r["error"]
        assert r["error"].startswith("TLS error: ") or r["error"] in (
            "server closed the connection before replying", "connection reset by the server")


def test_every_status_the_mock_can_send_gives_a_row_that_says_why_it_failed():
    """100-599 through X-Mock-Status: each non-success row has a one-line
    reason, and a redirect names where it points."""
    plugin = OpenaiPlugin(Arguments(url="http://x/v1/chat/completions"))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    with start_mock(["--tokens", "2", "--ttft-ms", "0", "--itl-ms", "0"]) as m:
        failed = {}
        for status in range(100, 600):
            target = Target(url=m.chat_url, headers=(("X-Mock-Status", str(status)),), stream=True,
                            connect_timeout_s=5, read_timeout_s=10)
            sender = transport.Sender(target)
            try:
                record = events.finish(sender.exchange(Job(seq=status, request_id=f"s{status}", payload=body), "w0"))
            finally:
                sender.close()
            row = to_row(record, sent_as(f"s{status}"), plugin)
            assert row["success"] == 0, status  # the mock's forced replies carry an error, even a 200
            assert row["error"] and "\n" not in row["error"], (status, row["error"])
            failed[status] = row["error"]
    assert failed[307] == "HTTP 307: redirected to http://127.0.0.1:1/moved/v1/chat/completions (use that --url)"
    assert failed[204] == "HTTP 204: empty reply"
    assert failed[150].startswith("HTTP 400: ")  # the mock sends no 1xx as a final status
    assert failed[503].startswith("HTTP 503: ")


def mock_stats(mock):
    return mock._get("/stats", 5)


def test_a_kept_alive_connection_closed_by_the_server_is_resent_not_failed(tmp_path):
    with start_mock(["--fault", "close-after-reply=0.2", "--ttft-ms", "0", "--itl-ms", "0", "--tokens", "2"]) as m:
        run("--url", m.chat_url, "--parallel", 1, "--number", 1000, "--no-stream", "--outputs-dir", tmp_path,
                   "--no-plots")
        truth = sorted(m.truth(), key=lambda t: t["arrival"])
        closes = mock_stats(m)["closed_after_reply"]
    result = rows(find_dbs(tmp_path)[0])
    assert len(result) == 1000 and all(r["success"] == 1 for r in result)
    assert closes > 100
    # each close is seen by the request after it; one after the very last reply is seen by none
    seen_by_a_later_request = closes - (truth[-1]["fault"] == "close_after_reply")
    assert sum(r["reconnects"] for r in result) == seen_by_a_later_request


def test_a_server_that_drops_every_request_fails_each_after_one_resend(tmp_path):
    with start_mock(["--fault", "close-on-request"]) as m:
        proc = run("--url", m.chat_url, "--parallel", 2, "--number", 10, "--outputs-dir", tmp_path,
                          "--no-plots", check=False)
        arrivals = Counter(t["request_id"] for t in m.truth())
    result = rows(find_dbs(tmp_path)[0])
    assert len(result) == 10
    for r in result:
        assert r["success"] == 0 and r["reconnects"] == 1
        assert r["error"] in ("server closed the connection before replying", "connection reset by the server")
        assert arrivals[r["request_id"]] == 2  # it reached the server twice
    assert "reconnect" in proc.stdout.lower() or "reconnect" in proc.stderr.lower()


def test_credentials_in_the_url_are_redacted_everywhere(tmp_path, mock):
    secret = "pw-" + os.urandom(6).hex()
    parts = urlsplit(mock.chat_url)
    url = f"{parts.scheme}://user:{secret}@{parts.netloc}{parts.path}"
    proc = run("--url", url, "--parallel", 1, "--number", 3, "--outputs-dir", tmp_path)
    (db,) = find_dbs(tmp_path)
    assert all(r["success"] == 1 for r in rows(db))
    args = json.loads(sqlite3.connect(db).execute("SELECT args FROM run").fetchone()[0])
    assert args["url"] == f"{parts.scheme}://***@{parts.netloc}{parts.path}"
    for dirpath, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert secret.encode() not in f.read(), name
    assert secret not in proc.stdout + proc.stderr


def test_the_clock_starts_when_the_kernel_sent_the_request(tmp_path):
    """The send stamp is the kernel's transmit stamp, so it sits just before
    the server's kernel receive stamp for every request, even with 64 threads
    to a process fighting for its GIL between stamp and write."""
    with start_mock(["--ttft-ms", "20", "--itl-ms", "5", "--tokens", "8"]) as m:
        run("--url", m.chat_url, "--parallel", 128, "--number", 512, "--workers", 2, "--outputs-dir", tmp_path,
            "--no-plots")
        arrival = {t["request_id"]: t["arrival"] for t in m.truth()}
    gaps_ms = [(arrival[r["request_id"]] - r["start_time"]) * 1000 for r in rows(find_dbs(tmp_path)[0])]
    assert len(gaps_ms) == 512
    assert min(gaps_ms) > -0.05 and max(gaps_ms) < 0.5, (min(gaps_ms), max(gaps_ms))
