"""The load-generator node table (`--backend ray`): which node sent what,
and how fast it saw the server."""
from __future__ import annotations

from typing import Any

from analysis.formatting import rounded
from analysis.frames import Frames
from analysis.stats import nan_mean, nearest_rank

NODES_KEY = "Load Generator Nodes"
NODE_COLUMNS = ("Node", "Requests", "Failed", "Avg TTFT (ms)", "P50 TTFT (ms)", "P90 TTFT (ms)", "P99 TTFT (ms)")


def node_of(worker: Any) -> str | None:
    """The node in a row's `worker`: "10.0.0.5/w3" -> "10.0.0.5"; None for a
    local worker ("w3") or no worker."""
    if not isinstance(worker, str) or "/" not in worker:
        return None
    return worker.rsplit("/", 1)[0]


def node_rows(frames: Frames) -> list[dict[str, Any]]:
    """One row per load-generator node: its measured requests, failures and
    TTFT (as the TTFT percentiles count it), so a slow client node is
    visible.  Empty when no row names a node (the local backend)."""
    req = frames.requests
    if "worker" not in req.columns or req.empty:
        return []
    nodes = req["worker"].map(node_of)
    if nodes.isna().all():
        return []
    measured = frames.measured_mask()
    ok = frames.ok_mask()
    streamed = req["is_stream"].to_numpy() == 1
    ttft_rows = ok & streamed if (ok & streamed).any() else ok
    ttft = req["ttft_ms"].to_numpy(dtype=float)
    names = nodes.fillna("-").to_numpy(dtype=object)
    rows = []
    for node in sorted(set(names[measured]), key=str):
        mine = names == node
        values = ttft[mine & ttft_rows]
        p50, p90, p99 = nearest_rank(values, ["50%", "90%", "99%"])
        rows.append(dict(zip(NODE_COLUMNS, (node, int((mine & measured).sum()), int((mine & measured & ~ok).sum()),
                                            rounded(nan_mean(values)), rounded(p50), rounded(p90), rounded(p99)))))
    return rows
