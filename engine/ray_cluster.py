"""The Ray cluster as the Ray backend (engine.ray_pool) sees it: reaching
it (`connect`), choosing a node for each actor (`placement`), creating and
starting the actors, and their clocks.  The actors' own code is
engine.ray_actor.

Time.  Jobs carry their scheduled send time as driver epoch seconds.  Before
an actor starts, the driver probes its clock a few times and keeps the probe
with the smallest round trip: offset = actor_time - (t_send + t_recv) / 2.
The actor adds the offset to every scheduled time it is given and subtracts
it from the epoch stamps (`scheduled_time`, `start_time`) of every record it
returns; durations are differences of the actor's own stamps (its clock and
its kernel's receive stamps) and never cross machines.

`ray` is imported only inside functions: this module imports without it.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from engine import installed_version
from engine.errors import UsageError
from engine.ray_actor import actor_class
from engine.records import Target, WorkerStats

INSTALL_HINT = ("--backend ray needs Ray, which is not installed: pip install 'servegauge[ray]' "
                "(in a checkout: pip install -e '.[ray]')")
CLOCK_PROBES = 8  # round trips per actor; the fastest one gives the offset
START_TIMEOUT_S = 120.0  # actors placed and started (a busy cluster may need to start workers)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


@dataclass
class Member:
    """One actor, as the driver keeps track of it."""

    index: int
    name: str  # "<node>/w<index>", the `worker` of its rows
    node: str
    node_id: str
    actor: object
    n_threads: int
    capacity: int  # jobs it may hold: its threads' and as many queued
    info: dict = field(default_factory=dict)
    assigned: dict = field(default_factory=dict)  # seq -> Job sent to it, no final record yet
    sending: set = field(default_factory=set)  # seqs its threads were sending at its last reply
    requests: int = 0  # final records received
    stopped: bool = False  # told to stop once its queue is empty
    finished: bool = False  # its threads have all stopped
    dead: bool = False
    unavailable_since: float | None = None
    offset_s: float = 0.0  # its clock minus the driver's

    @property
    def accepting(self) -> bool:
        return not (self.dead or self.finished)

    def figures(self, stats: WorkerStats, died: str | None = None) -> WorkerStats:
        """The actor's own figures plus what only the driver knows: its node,
        clock offset, and how many requests it completed."""
        extra = {"backend": "ray", "node": self.node, "node_id": self.node_id, "threads": self.n_threads,
                 "requests": self.requests, **self.info}
        if died:
            extra["died"] = died
        return dataclasses.replace(stats, extra=extra)


def connect(address: str | None) -> bool:
    """ray.init: to `address`, or with "auto"/None to the running cluster,
    else to a local Ray started for this process.  Returns True when a local
    one was started.  Our signal handlers survive (ray.init sets its own)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    started = False
    try:
        if address in (None, "", "auto") and not os.environ.get("RAY_ADDRESS"):
            try:
                ray.init(address="auto", **quiet)
            except ConnectionError:  # no cluster running: one of our own, for this run
                ray.init(include_dashboard=False, object_store_memory=100 * 2**20, **quiet)
                started = True
        else:  # an address given (here or in RAY_ADDRESS) is that cluster or an error
            ray.init(address=address or "auto", **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--ray-address {address}: cannot connect to a Ray cluster: "
                         + " ".join(str(exc).split())[:300]) from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return started


def alive_nodes(ray) -> list[dict]:
    """Alive nodes, the head first."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: ("node:__internal_head__" not in n.get("Resources", {}),
                                        n.get("NodeManagerAddress", ""), n["NodeID"]))


def node_labels(nodes: list[dict]) -> dict[str, str]:
    """node id -> the name its rows carry: the IP, plus the start of the node
    id where several nodes share an IP (nodes on one machine)."""
    ips = collections.Counter(n.get("NodeManagerAddress", "?") for n in nodes)
    return {n["NodeID"]: (n.get("NodeManagerAddress", "?") if ips[n.get("NodeManagerAddress", "?")] == 1
                          else f"{n.get('NodeManagerAddress', '?')}-{n['NodeID'][:6]}") for n in nodes}


def placement(nodes: list[dict], n_actors: int | None) -> list[dict]:
    """Which node each actor goes to: round robin, weighted by the nodes'
    CPUs (a node with 4 CPUs gets 4 actors per 1 of a node with 1).
    Without `n_actors`: one actor per CPU of the cluster."""
    cpus = [max(1, int(n.get("Resources", {}).get("CPU", 1))) for n in nodes]
    order = [node for r in range(max(cpus)) for node, c in zip(nodes, cpus) if c > r]
    n = n_actors or len(order)
    return [order[i % len(order)] for i in range(n)]


def measure_clock(ray, actor, probes: int = CLOCK_PROBES) -> tuple[float, float]:
    """(offset_s, rtt_s): the actor's clock minus the driver's, from the
    probe with the smallest round trip."""
    best = None
    for _ in range(probes):
        t_send = time.time()
        remote = ray.get(actor.clock.remote(), timeout=START_TIMEOUT_S)
        t_recv = time.time()
        rtt = t_recv - t_send
        if best is None or rtt < best[1]:
            best = (remote - (t_send + t_recv) / 2.0, rtt)
    return best


def create_actors(ray, places: list[dict], threads: list[int], labels: dict[str, str],
                  into: list[Member]) -> None:
    """One actor per place (a node), pinned to it, with `threads[i]` threads;
    each appended to `into` as soon as it exists."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cls = actor_class(ray)
    for i, n in enumerate(threads):
        node = places[i]
        actor = cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                            name=None).remote()
        label = labels[node["NodeID"]]
        into.append(Member(i, f"{label}/w{i}", label, node["NodeID"], actor, n, 2 * n,
                           info={"ip": node.get("NodeManagerAddress")}))


def start_actors(ray, members: list[Member], target: Target, started_local: bool) -> None:
    """Wait for every actor to answer, warn of a node on another version,
    measure each clock, then start each actor's threads."""
    try:
        hellos = ray.get([m.actor.hello.remote() for m in members], timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UsageError(f"Ray actors did not start within {START_TIMEOUT_S:g} s "
                         "(is the cluster short of resources?)") from None
    except ray.exceptions.RayError as exc:
        raise UsageError("a Ray actor could not start: is servegauge installed, the same version, on "
                         f"every node? ({' '.join(str(exc).split())[:300]})") from None
    mine, warned = installed_version(), set()
    for m, hello in zip(members, hellos):
        if hello.get("version") != mine and m.node not in warned:
            warned.add(m.node)
            print(f"servegauge: warning: node {m.node} runs servegauge {hello.get('version')}, this machine "
                  f"{mine}: install the same version everywhere", file=sys.stderr)
        offset, rtt = measure_clock(ray, m.actor)
        m.info.update(hello)
        m.info.update({"clock_offset_ms": round(offset * 1000.0, 3), "clock_rtt_ms": round(rtt * 1000.0, 3),
                       "local_ray": started_local})
        m.offset_s = offset
    ray.get([m.actor.start.remote(m.name, target, m.n_threads, m.offset_s) for m in members],
            timeout=START_TIMEOUT_S)


def kill_actors(ray, members: list[Member]) -> None:
    for m in members:
        try:
            ray.kill(m.actor, no_restart=True)
        except Exception:  # already gone
            pass


def death_cause(exc: BaseException) -> str:
    """A few words on why an actor is gone, from Ray's (long) message."""
    text = " ".join(str(exc).split()).lower()
    if "its node has died" in text or "node died" in text or "node is dead" in text:
        return "node died"
    if "worker process has died" in text or "killed" in text:
        return "actor process died"
    return "actor died"
