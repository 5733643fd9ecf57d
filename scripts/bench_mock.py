#!/usr/bin/env python
"""How fast is the built-in mock server?  (It must never be what limits a benchmark.)

Starts the mock (engine.mock.launch) and drives it from client *processes*,
each multiplexing raw keep-alive sockets with selectors: a client that only
recv()s and looks for the end of each reply, so the server is the bottleneck.
Server counters come from its GET /stats; CPU from /proc/PID/stat.

Scenarios:
  stream     ttft=itl=0, --tokens tokens per streamed chat reply: events/s
  nonstream  ttft=itl=0, max_tokens=1, not streamed: requests/s
  paced      --paced-streams concurrent streams with itl --paced-itl-ms (ttft 0):
             the realistic load of a fidelity benchmark; reports the events/s
             the schedule asks for, what was written, and how late the server
             wrote events vs arrival + ttft + i*itl (from GET /truth)

    python scripts/bench_mock.py                     # all three, defaults
    python scripts/bench_mock.py --scenario stream --duration 10
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import shlex
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.mock.launch import start_mock  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
END = b"\r\n0\r\n\r\n"  # last chunk of a chunked reply; a size line "0" occurs nowhere else


def post_bytes(path: str, body: dict, host: str) -> bytes:
    """The one request every connection sends, as bytes: this client only
    writes them and counts replies (the package ships no HTTP client of its own)."""
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(data)}\r\n"
            "Content-Type: application/json\r\n\r\n").encode() + data


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def client(host: str, port: int, raw: bytes, n_conns: int, stream: bool, stop_at: float,
           out: mp.Queue) -> None:
    """Keep n_conns requests in flight until stop_at; report replies completed."""
    sel = selectors.DefaultSelector()
    for _ in range(n_conns):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [b""])
        s.send(raw)
    done = 0
    while (now := time.time()) < stop_at:
        for key, _ in sel.select(min(0.5, stop_at - now)):
            s, st = key.fileobj, key.data
            data = s.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed a connection")
            if stream:
                tail = st[0] + data[-len(END):] if len(data) < len(END) else data[-len(END):]
                if tail.endswith(END):
                    done += 1
                    st[0] = b""
                    s.send(raw)
                else:
                    st[0] = tail[-len(END):]
            else:
                buf = st[0] + data
                i = buf.find(b"\r\n\r\n")
                if i >= 0:
                    j = buf.find(b"content-length: ", 0, i) + 16
                    need = i + 4 + int(buf[j:buf.find(b"\r\n", j)])
                    if len(buf) >= need:
                        done += 1
                        buf = buf[need:]
                        s.send(raw)
                st[0] = buf
    out.put(done)


def requests_client(url: str, body: dict, n_threads: int, stop_at: float, out: mp.Queue) -> None:
    """For scale: a typical Python consumer (requests, iter_lines per SSE line)."""
    import threading

    import requests

    counts = [0] * n_threads

    def loop(k: int) -> None:
        with requests.Session() as s:
            while time.time() < stop_at:
                with s.post(url, json=body, stream=True, timeout=30) as r:
                    for line in r.iter_lines():
                        if line.startswith(b"data:"):
                            counts[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(args: argparse.Namespace, mock_args: list[str], body: dict, n_conns: int,
        stream: bool, truth: bool = False) -> dict:
    with start_mock(mock_args) as mock:
        u = urlsplit(mock.base_url)
        raw = post_bytes("/v1/chat/completions", body, u.hostname)
        warm_until = time.time() + args.warmup
        stop_at = warm_until + args.duration
        out: mp.Queue = mp.Queue()
        per = [n_conns // args.procs + (i < n_conns % args.procs) for i in range(args.procs)]
        if args.py_client:
            procs = [mp.Process(target=requests_client, args=(mock.chat_url, body, n, stop_at, out))
                     for n in per if n]
        else:
            procs = [mp.Process(target=client, args=(u.hostname, u.port, raw, n, stream, stop_at, out))
                     for n in per if n]
        for p in procs:
            p.start()
        time.sleep(max(0.0, warm_until - time.time()))
        if truth:
            mock.truth(clear=True)
        s0, c0 = mock.stats(), cpu_s(mock.pid)
        cc0 = sum(cpu_s(p.pid) for p in procs)
        t0 = time.time()
        time.sleep(max(0.0, stop_at - time.time() - 0.05))
        s1, c1 = mock.stats(), cpu_s(mock.pid)
        cc1 = sum(cpu_s(p.pid) for p in procs)
        t1 = time.time()
        records = mock.truth() if truth else []
        for p in procs:
            p.join(30)
        wall = t1 - t0
        res = {
            "loadavg_1m": os.getloadavg()[0],
            "events_per_s": (s1["events_written"] - s0["events_written"]) / wall,
            "replies_per_s": (s1["responses_completed"] - s0["responses_completed"]) / wall,
            "server_cpu": (c1 - c0) / wall,
            "clients_cpu": (cc1 - cc0) / wall,
            "connections": n_conns,
        }
        if truth:
            late = sorted(t - r["arrival"] - i * args.paced_itl_ms / 1000
                          for r in records
                          for i, t in enumerate(r["content_times"]))
            if late:
                res["lateness_ms"] = {q: round(1000 * late[min(len(late) - 1, int(f * len(late)))], 3)
                                      for q, f in (("p50", .5), ("p90", .9), ("p99", .99),
                                                   ("max", 1.0))}
        return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["all", "stream", "nonstream", "paced"], default="all")
    ap.add_argument("--py-client", action="store_true",
                    help="drive the mock with requests + iter_lines threads instead of raw "
                         "sockets: shows how fast a typical Python client consumes")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--conns", type=int, default=32, help="connections, over all client processes")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--no-truth", action="store_true", help="run the mock with --no-truth")
    ap.add_argument("--paced-streams", type=int, default=200)
    ap.add_argument("--paced-itl-ms", type=float, default=5.0)
    args = ap.parse_args()
    truth_flag = ["--no-truth"] if args.no_truth else []
    msgs = [{"role": "user", "content": "benchmark the mock server"}]
    print(f"# reproduce: {shlex.join([sys.executable, *sys.argv])}")
    print(f"# machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"load average before: {os.getloadavg()[0]:.2f} (other work on the box skews the figures)")
    results = {}
    if args.scenario in ("all", "stream"):
        r = run(args, ["--ttft-ms", "0", "--itl-ms", "0", "--tokens", str(args.tokens), *truth_flag],
                {"model": "m", "messages": msgs, "stream": True}, args.conns, True)
        results["stream"] = r
        print(f"stream    : {r['events_per_s']:9,.0f} events/s  ({r['replies_per_s']:,.0f} replies/s "
              f"of {args.tokens} tokens)  server CPU {r['server_cpu']:.0%}  "
              f"-> {r['events_per_s'] / max(r['server_cpu'], 1e-9):,.0f} events per server CPU-second; "
              f"clients CPU {r['clients_cpu']:.0%}")
    if args.scenario in ("all", "nonstream"):
        r = run(args, ["--ttft-ms", "0", "--itl-ms", "0", "--tokens", str(args.tokens), *truth_flag],
                {"model": "m", "messages": msgs, "max_tokens": 1}, args.conns, False)
        results["nonstream"] = r
        print(f"nonstream : {r['replies_per_s']:9,.0f} req/s (1 token, not streamed)  "
              f"server CPU {r['server_cpu']:.0%}  -> "
              f"{r['replies_per_s'] / max(r['server_cpu'], 1e-9):,.0f} req per server CPU-second; "
              f"clients CPU {r['clients_cpu']:.0%}")
    if args.scenario in ("all", "paced"):
        r = run(args, ["--ttft-ms", "0", "--itl-ms", str(args.paced_itl_ms), "--tokens",
                       str(args.tokens), *truth_flag],
                {"model": "m", "messages": msgs, "stream": True}, args.paced_streams, True,
                truth=not args.no_truth)
        results["paced"] = r
        asked = args.paced_streams * 1000 / args.paced_itl_ms
        print(f"paced     : {args.paced_streams} streams x 1 event/{args.paced_itl_ms:g} ms "
              f"(schedule ~{asked:,.0f} events/s): wrote {r['events_per_s']:,.0f} events/s, "
              f"server CPU {r['server_cpu']:.0%}, clients CPU {r['clients_cpu']:.0%}, "
              f"lateness vs schedule (ms) {r.get('lateness_ms')}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
