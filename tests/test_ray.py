"""--backend ray on a real two-node Ray cluster on loopback: every request
is in the database with the node that sent it, the numbers agree with the
local backend's, a killed actor's requests are accounted for, Ctrl-C stops
the run as with the local backend.

The cluster is two `ray start` processes on this machine (a head and a
second node joining it), each with its own ports and temp dir, in sessions
of their own; the fixture ends every process of those sessions, and only
those, at the end.
"""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pytest

from conftest import ROOT, find_dbs, rows, run_engine
from test_signals import wait_for_rows

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:  # CI installs it (.ci/run): `pip install -e '.[ray]'`
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed: pip install -e '.[ray]'")


def test_ci_has_ray():
    """CI installs the ray extra: there, the tests below must run, not skip."""
    assert HAVE_RAY or not os.environ.get("CI"), "CI=true but ray is not installed: pip install -e '.[ray]'"

# Explicit, so a token file that an earlier local Ray left in ~/.ray cannot
# make the head and the joining node disagree (Ray 2.5x+ turns token auth on
# for a new local cluster and then for `ray start` when a token exists).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
RAY_CLI = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
PORTS_PER_CLUSTER = 100


def _free_block(n=PORTS_PER_CLUSTER):
    """A base port with the n ports above it free on loopback and on every address."""
    for base in range(21000, 60000, 997):
        taken = False
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return base
    raise RuntimeError("no free block of ports for the Ray test cluster")


class Cluster:
    def __init__(self):
        self.base = _free_block()
        self.address = f"127.0.0.1:{self.base}"
        self.dirs = [tempfile.mkdtemp(prefix="sbray", dir="/tmp") for _ in range(2)]  # short: socket paths
        self.sessions: list[int] = []
        self.env = dict(os.environ, **RAY_ENV)
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, args):
        proc = subprocess.Popen(RAY_CLI + ["start", *args], start_new_session=True, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.sessions.append(proc.pid)  # its daemons stay in this session after it exits
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed ({proc.returncode}):\n{out[-3000:]}")

    def node_args(self, i):
        b = self.base + 50 * i  # 50 ports per node
        return ["--num-cpus", "1", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                "--object-store-memory", str(80 * 2**20), "--temp-dir", self.dirs[i],
                "--node-manager-port", str(b + 1), "--object-manager-port", str(b + 2),
                "--dashboard-agent-listen-port", str(b + 3), "--dashboard-agent-grpc-port", str(b + 4),
                "--runtime-env-agent-port", str(b + 5), "--metrics-export-port", str(b + 6),
                "--min-worker-port", str(b + 10), "--max-worker-port", str(b + 49)]

    def start(self):
        self._start(["--head", "--port", str(self.base), "--include-dashboard=false",
                     "--dashboard-port", str(self.base + 7), *self.node_args(0)])
        # the second node is told apart by a resource of its own
        self._start(["--address", self.address, "--resources", '{"servegauge_node2": 1}', *self.node_args(1)])

    def processes(self):
        found = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) in self.sessions:
                    found.append(p)
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        return found

    def actors(self):
        """The LoadActor processes of this cluster."""
        out = []
        for p in self.processes():
            try:
                if "LoadActor" in " ".join(p.cmdline()) or "LoadActor" in p.name():
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def stop(self):
        """What `ray stop` does, but only to this cluster's processes (ray stop
        would end every Ray on the machine)."""
        for sig, wait in ((signal.SIGTERM, 2), (signal.SIGKILL, 5)):
            procs = self.processes()
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass
            psutil.wait_procs(procs, timeout=wait)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        return self.processes()


@pytest.fixture(scope="module")
def cluster():
    if not HAVE_RAY:
        pytest.skip("ray is not installed: pip install -e '.[ray]'")
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="module")
def slow_mock():
    from engine.mock.launch import start_mock

    # 20 tokens 50 ms apart: every request is about a second long
    with start_mock(["--ttft-ms", "20", "--itl-ms", "50", "--tokens", "20"]) as server:
        yield server


def _run_row(db):
    (run,) = rows(db, "SELECT * FROM run")
    run["workers"] = json.loads(run["workers"] or "[]")
    run["args"] = json.loads(run["args"])
    return run


def _p(values, q):
    values = sorted(v for v in values if v is not None)
    return values[max(0, min(len(values) - 1, -(-q * len(values) // 100) - 1))]


# -- without a cluster --------------------------------------------------------------

def test_backend_ray_without_ray_says_how_to_install(tmp_path):
    fake = tmp_path / "no_ray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    proc = run_engine("--backend", "ray", "--url", "http://127.0.0.1:9/v1/chat/completions", "--number", "1",
                      "--outputs-dir", tmp_path / "out", check=False,
                      env={"PYTHONPATH": os.pathsep.join([str(fake), ROOT])})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "servegauge[ray]" in lines[0], proc.stderr
    assert not find_dbs(tmp_path)


def test_ray_flags_need_the_ray_backend(tmp_path):
    proc = run_engine("--ray-workers", "2", "--url", "http://127.0.0.1:9/v1/chat/completions",
                      "--outputs-dir", tmp_path, check=False)
    assert proc.returncode == 2 and "--backend ray" in proc.stderr


def test_import_engine_does_not_import_ray():
    code = ("import sys, engine, engine.runner, engine.cli, engine.options; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_placement_spreads_actors_by_cpu():
    from engine.ray_cluster import node_labels, placement

    a = {"NodeID": "aaaaaa11", "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 2.0}}
    b = {"NodeID": "bbbbbb22", "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 1.0}}
    assert [n["NodeID"] for n in placement([a, b], None)] == ["aaaaaa11", "bbbbbb22", "aaaaaa11"]
    assert [n["NodeID"] for n in placement([a, b], 2)] == ["aaaaaa11", "bbbbbb22"]
    assert [n["NodeID"] for n in placement([a, b], 4)][-1] == "aaaaaa11"
    assert node_labels([a, b]) == {"aaaaaa11": "10.0.0.1", "bbbbbb22": "10.0.0.2"}
    same = dict(b, NodeManagerAddress="10.0.0.1")
    assert node_labels([a, same]) == {"aaaaaa11": "10.0.0.1-aaaaaa", "bbbbbb22": "10.0.0.1-bbbbbb"}


def test_clock_offset_is_measured_from_the_fastest_round_trip():
    from engine.ray_cluster import measure_clock

    skew = 1234.5
    delays = iter([0.02, 0.001, 0.03, 0.01])

    class FakeRay:
        @staticmethod
        def get(value, timeout=None):
            return value

    class Clock:
        @staticmethod
        def remote():
            d = next(delays)
            time.sleep(d / 2)
            now = time.time() + skew
            time.sleep(d / 2)
            return now

    class Actor:
        clock = Clock

    offset, rtt = measure_clock(FakeRay, Actor, probes=4)
    assert abs(offset - skew) < 0.002
    assert 0.001 <= rtt < 0.008


def test_actor_loop_converts_times_between_clocks(mock, monkeypatch):
    """The actor's thread loop, in this process, on a machine whose clock is
    1000 s ahead: the job leaves at the driver's scheduled time and the
    record comes back in the driver's clock (the mock's own clock agrees)."""
    from engine.ray_actor import LoadActor
    from engine.records import Job, Target

    from engine import stamps

    skew = 1000.0
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)  # this "machine"'s clock
    # The kernel's stamps read the real clock, not this fake one: off here.
    monkeypatch.setattr(stamps, "enable", lambda sock: False)
    monkeypatch.setattr(stamps, "enable_transmit", lambda sock: False)
    actor = LoadActor()
    target = Target(url=mock.chat_url, headers=(("Content-Type", "application/json"),), stream=True,
                    connect_timeout_s=5, read_timeout_s=30)
    actor.start("10.9.8.7/w0", target, 1, offset_s=skew)
    due = real() + 0.3
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    actor.submit([Job(seq=0, request_id="clock-test-0", payload=body, scheduled_time=due)], stop=True)
    records, stats = [], None
    deadline = real() + 20
    while stats is None and real() < deadline:
        got, _, stats = actor.poll(0.2)
        records += got
    monkeypatch.undo()
    (record,) = records
    assert record.worker == "10.9.8.7/w0" and record.status_code == 200
    assert abs(record.scheduled_time - due) < 1e-6
    assert due <= record.start_time < due + 0.2
    (truth,) = [t for t in mock.truth() if t["request_id"] == "clock-test-0"]
    assert abs(truth["arrival"] - record.start_time) < 0.1
    assert stats is not None and stats.worker == "10.9.8.7/w0"


def _ray_running():
    for p in psutil.process_iter():
        try:
            if p.name().startswith("gcs_server"):
                return True
        except psutil.Error:
            pass
    return False


@needs_ray
def test_without_a_cluster_a_local_ray_is_started_for_the_run(tmp_path, mock):
    """--backend ray alone: the running cluster if there is one (ray.init
    "auto"), else a local Ray for this run, gone when it ends.  Runs before
    the module's cluster is started."""
    other = _ray_running()
    ray_tmp = tempfile.mkdtemp(prefix="sbrayl", dir="/tmp")  # its session files, not /tmp/ray
    try:
        run_engine("--backend", "ray", "--url", mock.chat_url, "--parallel", "2", "--number", "20",
                   "--outputs-dir", tmp_path, "--no-plots", timeout=240, env=dict(RAY_ENV, RAY_TMPDIR=ray_tmp))
        left = [p for p in psutil.process_iter() if _uses(p, ray_tmp)]
        psutil.wait_procs(left, timeout=10)
        assert not [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    (db,) = find_dbs(tmp_path)
    result = rows(db)
    assert len(result) == 20 and all(r["success"] for r in result)
    run = _run_row(db)
    assert run["backend"] == "ray" and run["workers"]
    assert all(w["local_ray"] is (not other) for w in run["workers"])
    assert all(r["worker"].split("/w")[0] in {w["node"] for w in run["workers"]} for r in result)


def _uses(p, path):
    try:
        return path in " ".join(p.cmdline())
    except psutil.Error:
        return False


# -- on the two-node cluster ----------------------------------------------------------

@needs_ray
def test_two_nodes_every_request_recorded_with_its_node(tmp_path, cluster, mock):
    n = 240
    proc = run_engine("--backend", "ray", "--ray-address", cluster.address, "--ray-workers", "2",
                      "--url", mock.chat_url, "--model", "m", "--parallel", "4", "--number", n,
                      "--outputs-dir", tmp_path / "ray", "--no-plots", timeout=240, env=RAY_ENV)
    (db,) = find_dbs(tmp_path / "ray")
    result = rows(db)
    assert len(result) == n and all(r["success"] == 1 for r in result)
    run = _run_row(db)
    assert run["backend"] == "ray" and run["status"] == "completed"
    assert run["args"]["backend"] == "ray" and run["args"]["ray_workers"] == 2
    # both nodes sent requests, and each row says which node and actor sent it
    workers = {w["worker"]: w for w in run["workers"]}
    assert len(workers) == 2
    assert len({w["node_id"] for w in workers.values()}) == 2  # one actor per node
    by_worker = {}
    for r in result:
        by_worker[r["worker"]] = by_worker.get(r["worker"], 0) + 1
    assert set(by_worker) == set(workers)
    for name, w in workers.items():
        assert name == f"{w['node']}/w{name.rsplit('/w', 1)[1]}"
        assert w["requests"] == by_worker[name] > n // 4  # the load was shared
        assert abs(w["clock_offset_ms"]) < 50 and 0 < w["clock_rtt_ms"] < 200  # one machine: no skew
    # every request the server saw is a row, and the row's clock agrees with the server's
    truth = {t["request_id"]: t for t in mock.truth()}
    for r in result:
        t = truth[r["request_id"]]
        assert -0.05 < t["arrival"] - r["start_time"] < 0.5
    # the report names the nodes, with their TTFT
    assert "Load generator nodes" in proc.stdout
    for w in workers.values():
        assert w["node"] in proc.stdout
    summary = json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
    nodes = {row["Node"]: row for row in summary["Load Generator Nodes"]}
    assert {w["node"] for w in workers.values()} == set(nodes)
    assert sum(row["Requests"] for row in nodes.values()) == n

    # The same load from local worker processes: the same numbers, within noise.
    run_engine("--url", mock.chat_url, "--model", "m", "--parallel", "4", "--number", n, "--workers", "2",
               "--outputs-dir", tmp_path / "local", "--no-plots")
    (local_db,) = find_dbs(tmp_path / "local")
    local = rows(local_db)
    assert _run_row(local_db)["backend"] == "local"
    assert len(local) == n and all(r["success"] == 1 for r in local)
    for column, q, slack in (("first_chunk_latency", 50, 0.010), ("first_chunk_latency", 90, 0.020),
                             ("latency", 50, 0.015), ("latency", 90, 0.025)):
        a, b = _p([r[column] for r in result], q), _p([r[column] for r in local], q)
        assert abs(a - b) < slack + 0.25 * b, (column, q, a, b)


def start_ray_run(cluster, mock, out, number: int, *extra: str, new_session: bool = False) -> subprocess.Popen:
    """`python -m engine --backend ray` with two actors at --parallel 4, in the background."""
    count = ["--number", str(number)] if number else []
    return subprocess.Popen([sys.executable, "-m", "engine", "--backend", "ray", "--ray-address", cluster.address,
                             "--ray-workers", "2", "--url", mock.chat_url, "--parallel", "4", *count,
                             "--outputs-dir", str(out), "--no-plots", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session, env=dict(os.environ, **RAY_ENV))


@needs_ray
def test_a_killed_actor_has_every_request_accounted_for(tmp_path, cluster, slow_mock):
    proc = start_ray_run(cluster, slow_mock, tmp_path, 24)
    try:
        wait_for_rows(tmp_path, 2, timeout_s=120)
        actors = cluster.actors()
        assert len(actors) == 2, actors
        actors[0].send_signal(signal.SIGKILL)
        killed_at = time.time()
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    (db,) = find_dbs(tmp_path)
    result = rows(db)
    assert len(result) == 24  # every request accounted for
    assert len({r["request_id"] for r in result}) == 24
    died = [r for r in result if not r["success"]]
    # its 2 threads were each sending a ~1 s request
    assert 1 <= len(died) <= 2, [r["error"] for r in died]
    dead_worker = died[0]["error"].split("worker died: ", 1)[1].split(" ")[0]
    assert all(r["error"] == f"worker died: {dead_worker} (actor process died)" for r in died)
    assert all(r["worker"] == dead_worker for r in died)
    # noticed within seconds (a closed-loop job's failed row is stamped when it is recorded)
    assert all(r["start_time"] - killed_at < 5 for r in died), [r["start_time"] - killed_at for r in died]
    # the run finished on the other actor
    assert sum(r["success"] for r in result) == 24 - len(died)
    run = _run_row(db)
    assert run["status"] == "completed"
    (dead,) = [w for w in run["workers"] if w.get("died")]
    assert dead["worker"] == dead_worker
    (alive,) = [w for w in run["workers"] if not w.get("died")]
    assert alive["requests"] == sum(1 for r in result if r["worker"] == alive["worker"])
    assert alive["requests"] + dead["requests"] + len(died) == 24


@needs_ray
def test_ctrl_c_stops_a_ray_run_as_a_local_one(tmp_path, cluster, slow_mock):
    slow_mock.truth(clear=True)
    # Ctrl-C at a terminal signals the whole foreground process group
    proc = start_ray_run(cluster, slow_mock, tmp_path, 200, "--grace", "0.3", new_session=True)
    try:
        db = wait_for_rows(tmp_path, 4, timeout_s=120)
        stopped_at = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT status FROM run").fetchone()[0] == "interrupted"
    conn.close()
    result = rows(db)
    cancelled = [r for r in result if not r["success"]]
    assert sum(r["success"] for r in result) >= 4
    assert 1 <= len(cancelled) <= 4 and all(r["error"] == "cancelled: the run was interrupted" for r in cancelled)
    assert len(result) < 200
    assert os.path.exists(os.path.join(os.path.dirname(db), "benchmark_summary.json"))
    # the server's view: every request it saw has one row, and none came after the stop reached the
    # actors (a thread of the driver relays it: a Ray call, not a pipe, so allow it 0.2 s)
    truth = _served(slow_mock)
    assert sorted(r["request_id"] for r in result) == sorted(t["request_id"] for t in truth)
    assert not [t for t in truth if t["arrival"] > stopped_at + 0.2]
    # the actors went with the run
    deadline = time.monotonic() + 30
    while cluster.actors() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not cluster.actors()


@needs_ray
def test_duration_reaches_the_actors(tmp_path, cluster, slow_mock):
    """--duration 2 with ~1 s requests: the deadline goes to the actors with
    their jobs and is checked at the send; the run ends by 2 s + grace."""
    slow_mock.truth(clear=True)
    proc = start_ray_run(cluster, slow_mock, tmp_path, 0, "--duration", "2", "--grace", "0.5")
    try:
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    truth = _served(slow_mock)
    first = min(t["arrival"] for t in truth)
    assert max(t["arrival"] for t in truth) <= first + 2.0 + 0.010
    (db,) = find_dbs(tmp_path)
    result = rows(db)
    assert sorted(r["request_id"] for r in result) == sorted(t["request_id"] for t in truth)
    assert len(result) >= 8  # 4 in flight, two rounds
    assert _run_row(db)["end_time"] - first < 2.0 + 0.5 + 2.0


def _served(mock):
    """The generation requests the server received (not the pre-flight check's)."""
    return [t for t in mock.truth() if t["path"] == "/v1/chat/completions"
            and not t["request_id"].startswith("servegauge-preflight-")]


@needs_ray
def test_a_dead_node_has_every_request_accounted_for(tmp_path, cluster, slow_mock):
    """The second node goes away whole (raylet, agents, actor): once Ray
    declares it dead, its requests are recorded and the run ends on the head.
    Last in the module: the cluster has one node after it."""
    proc = start_ray_run(cluster, slow_mock, tmp_path, 40)
    try:
        wait_for_rows(tmp_path, 3, timeout_s=120)
        node2 = [p for p in cluster.processes() if os.getsid(p.pid) == cluster.sessions[1]]
        for p in node2:
            p.kill()
        _, err = proc.communicate(timeout=240)  # Ray's heartbeat detector takes its time
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    (db,) = find_dbs(tmp_path)
    result = rows(db)
    assert len(result) == 40 and len({r["request_id"] for r in result}) == 40
    died = [r for r in result if not r["success"]]
    assert 1 <= len(died) <= 2, [r["error"] for r in died]
    assert all(r["error"] == f"worker died: {r['worker']} (node died)" for r in died)
    run = _run_row(db)
    assert run["status"] == "completed"
    (dead,) = [w for w in run["workers"] if w.get("died")]
    assert dead["died"] == "node died" and dead["worker"] == died[0]["worker"]
    assert sum(r["success"] for r in result) == 40 - len(died)
