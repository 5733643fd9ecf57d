import os
import sqlite3
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_engine(*args, cwd=None, timeout=180, env=None, check=True, unset=()):
    """`python -m engine ARGS` in a real subprocess; returns CompletedProcess.
    `env` adds to this process's environment, `unset` names variables to drop."""
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    # the console fits COLUMNS when set: a test's output must not depend on the terminal it was started from
    full_env.pop("COLUMNS", None)
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def rows(db_path, sql="SELECT * FROM result"):
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def find_dbs(folder):
    found = []
    for dirpath, _, files in os.walk(folder):
        if "benchmark_data.db" in files:
            found.append(os.path.join(dirpath, "benchmark_data.db"))
    return sorted(found)


def sent_as(request_id, body=None):
    """What the coordinator keeps of a dispatched job (engine.records.Sent),
    for tests that call engine.derive.to_row on a record they made."""
    from engine.records import Job, Sent

    return Sent(Job(seq=0, request_id=request_id, payload=b"{}"), body or {}, "")


@pytest.fixture(scope="session")
def mock():
    """The project's own mock server, as a real subprocess on loopback."""
    from engine.mock.launch import start_mock

    with start_mock(["--ttft-ms", "10", "--itl-ms", "2", "--tokens", "16"]) as server:
        yield server
