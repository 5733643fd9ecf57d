"""The API key never reaches the database, the reports, logs or the output."""
import os
import socket
import threading
import uuid

from conftest import find_dbs, run_engine


def files_containing(folder, needle: bytes):
    hits = []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    hits.append(path)
    return hits


def test_api_key_flag_is_nowhere_in_outputs_or_process_output(tmp_path, mock):
    secret = "sk-" + uuid.uuid4().hex
    proc = run_engine("--url", mock.chat_url, "--api-key", secret, "--headers", f"X-Api-Key={secret}",
                      "--parallel", 2, "--number", 6, "--outputs-dir", tmp_path)
    assert find_dbs(tmp_path)
    assert files_containing(tmp_path, secret.encode()) == []
    assert secret not in proc.stdout and secret not in proc.stderr


def test_a_key_the_server_echoes_back_is_redacted(tmp_path):
    """A server that answers 401 quoting the Authorization header it got."""
    secret = "sk-" + uuid.uuid4().hex
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                auth = [l for l in data.split(b"\r\n") if l.lower().startswith(b"authorization:")][0]
                body = b'{"error": {"message": "invalid key: ' + auth.split(b" ")[-1] + b'"}}'
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    # the pre-flight check says where the refused key came from, never the key
    checked = run_engine("--url", url, "--number", 3, "--outputs-dir", tmp_path / "checked",
                         env={"OPENAI_API_KEY": secret}, check=False)
    assert checked.returncode == 2
    assert checked.stderr == (f"servegauge: error: http://127.0.0.1:{port}/v1/models answered HTTP 401: the server "
                              "refused the key in OPENAI_API_KEY: check it is right for this server\n")
    # without it, every request is sent, fails, and its row holds no key either
    proc = run_engine("--url", url, "--number", 3, "--outputs-dir", tmp_path, "--no-test-connection",
                      env={"OPENAI_API_KEY": secret}, check=False)
    listener.close()
    assert proc.returncode == 1  # nothing succeeded
    (db,) = find_dbs(tmp_path)
    assert files_containing(tmp_path, secret.encode()) == []
    assert secret not in proc.stdout + proc.stderr
    import sqlite3

    errors = [r[0] for r in sqlite3.connect(db).execute("SELECT error FROM result")]
    assert errors == ['HTTP 401: {"error": {"message": "invalid key: ***"}}'] * 3
