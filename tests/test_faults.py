"""Every fault a real server commits, against the mock: the run goes on,
each request gets its row with the status and a one-line reason, partial
output is kept, and the summary counts failures by reason."""
import base64
import json
import os
import pickle
import subprocess

import pytest

from conftest import find_dbs, rows, run_engine

N = 4
TOKENS = 10


def run_with_fault(tmp_path, fault, *engine_args, mock_args=()):
    from engine.mock.launch import start_mock

    with start_mock(["--ttft-ms", "5", "--itl-ms", "2", "--tokens", str(TOKENS), "--fault", fault, *mock_args]) as m:
        proc = run_engine("--url", m.chat_url, "--number", N, "--parallel", 2, "--outputs-dir", tmp_path,
                          "--no-plots", *engine_args, check=False)
    (db,) = find_dbs(tmp_path)
    summary = json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
    return proc, rows(db), summary


def events_of(row):
    return pickle.loads(base64.b64decode(row["response_messages"]))


# fault, status, error prefix, output kept (events that carry output)
CASES = [
    ("http500", 500, "HTTP 500: ", 0),
    ("http429", 429, "HTTP 429: ", 0),
    ("disconnect", 200, "server closed the connection mid-response", TOKENS // 2),
    ("bad-json", 200, "invalid JSON in event ", TOKENS - 1),
    ("no-done", 200, "stream ended without [DONE] or a finish_reason", TOKENS // 2),
    ("error-event", 200, "error event in stream: mock fault: engine failed mid-generation", TOKENS // 2),
    ("huge-body", 200, "response larger than 64 MiB: stopped reading", 0),
]


@pytest.mark.parametrize("fault,status,error,kept", CASES, ids=[c[0] for c in CASES])
def test_fault_gives_a_failed_row_per_request(tmp_path, fault, status, error, kept):
    proc, result, summary = run_with_fault(tmp_path, fault)
    # failures are results: each is recorded, the report written; as nothing succeeded, exit 1 says so
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"servegauge: nothing succeeded: {N}/{N} requests "
                                                           f"failed (100%); most often ({N}): {error[:12]}")
    assert len(result) == N
    for row in result:
        assert row["success"] == 0 and row["status_code"] == status
        assert row["error"].startswith(error) and "\n" not in row["error"]
        assert row["n_chunks"] == kept  # the output received before the fault is kept
        if kept:
            assert row["first_chunk_latency"] is not None
    assert summary["Failed Requests"] == N
    assert sum(summary["Errors"].values()) == N and len(summary["Errors"]) == 1


def test_stall_longer_than_read_timeout(tmp_path):
    proc, result, _ = run_with_fault(tmp_path, "stall", "--read-timeout", "0.5", mock_args=["--stall-s", "3"])
    assert proc.returncode == 1  # nothing succeeded
    assert len(result) == N
    for row in result:
        assert row["success"] == 0 and row["status_code"] == 200
        assert row["error"] == "read timeout: no data for 0.5s"
        assert row["n_chunks"] == TOKENS // 2 and 0.5 <= row["latency"] < 2.5


def test_slow_drip_is_reassembled_and_stamped_on_the_last_byte(tmp_path):
    proc, result, _ = run_with_fault(tmp_path, "drip")
    assert proc.returncode == 0
    for row in result:
        assert row["success"] == 1, row["error"]
        assert row["n_chunks"] == TOKENS and row["completion_tokens"] == TOKENS
        texts = [json.loads(e) for e in events_of(row)]
        assert "".join(t["choices"][0]["delta"].get("content", "") for t in texts if t["choices"]).split()


def test_no_server_listening(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    # without the pre-flight check (tests/test_preflight.py): every request is sent and recorded
    proc = run_engine("--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--number", 3,
                      "--outputs-dir", tmp_path, "--no-plots", "--no-test-connection", check=False)
    assert proc.returncode == 1  # nothing succeeded
    assert proc.stderr.strip().splitlines()[-1] == ("servegauge: nothing succeeded: 3/3 requests failed (100%); "
                                                    "most often (3): connection refused: no server listening at "
                                                    "<ip>")
    result = rows(find_dbs(tmp_path)[0])
    assert len(result) == 3
    assert all(r["status_code"] is None and r["error"].startswith("connection refused") for r in result)


def test_retries_record_every_attempt(tmp_path):
    # every other answer is a 429 (seeded), Retry-After 0: with --retries 3 every request succeeds
    proc, result, _ = run_with_fault(tmp_path, "http429=0.5", "--retries", "3",
                                     mock_args=["--retry-after-s", "0", "--fault-seed", "3"])
    assert proc.returncode == 0
    finals = {}
    for row in result:
        finals.setdefault(row["request_id"], []).append(row)
    assert len(finals) == N  # one request id per request, a row per attempt
    for attempts in finals.values():
        attempts.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in attempts] == list(range(len(attempts)))
        assert all(r["status_code"] == 429 for r in attempts[:-1])
    assert len(result) > N  # some were retried
    assert sum(r["success"] for r in result) == N


def test_max_error_rate_fails_the_command(tmp_path):
    proc, result, _ = run_with_fault(tmp_path, "http500", "--max-error-rate", "0.5")
    assert proc.returncode == 1 and "--max-error-rate" in proc.stderr


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.parametrize("insecure", [False, True])
def test_tls_with_a_self_signed_certificate(tmp_path, self_signed, insecure):
    from engine.mock.launch import start_mock

    cert, key = self_signed
    with start_mock(["--tls-cert", cert, "--tls-key", key, "--tokens", "4"]) as m:
        assert m.chat_url.startswith("https://")
        if not insecure:  # the pre-flight check says so, and makes nothing
            proc = run_engine("--url", m.chat_url, "--number", 2, "--outputs-dir", tmp_path / "checked",
                              check=False)
            assert proc.returncode == 2
            (line,) = proc.stderr.splitlines()
            assert "TLS certificate of 127.0.0.1" in line and "does not verify" in line and "--insecure" in line
            assert not os.path.exists(tmp_path / "checked")
        proc = run_engine("--url", m.chat_url, "--number", 2, "--outputs-dir", tmp_path, "--no-plots",
                          *(["--insecure"] if insecure else ["--no-test-connection"]), check=False)
    assert proc.returncode == (0 if insecure else 1)
    result = rows(find_dbs(tmp_path)[0])
    assert len(result) == 2
    if insecure:
        assert all(r["success"] == 1 for r in result)
        assert "InsecureRequestWarning" not in proc.stderr
    else:  # verified by default
        assert all(r["error"].startswith("TLS certificate verify failed: ") and "--insecure" in r["error"]
                   and "--ca-bundle" in r["error"] for r in result)
