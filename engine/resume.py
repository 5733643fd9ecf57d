"""--resume: which run folders completed, and what to do with those that did not.

A run folder is complete when its marker exists: `run_complete.json`,
written last, after the run ended with status "completed" and its report
was written.  A run cut by Ctrl-C, SIGTERM, a crash or a power cut has no
marker (its database may say "interrupted", or nothing at all); on resume
its folder is set aside (renamed, never deleted: what it measured is kept)
and the run is made again from scratch.
"""
from __future__ import annotations

import json
import os

from engine.store import SET_ASIDE_MARK

MARKER = "run_complete.json"


def is_complete(folder: str, db_name: str) -> bool:
    """The marker is there, readable, and names the database that is there."""
    marker = read_marker(folder)
    return marker.get("status") == "completed" and os.path.isfile(os.path.join(folder, db_name))


def read_marker(folder: str) -> dict:
    """The marker's content ({"status", "requests", "failed"}); {} when there is none."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def mark_complete(folder: str, requests: int, failed: int) -> None:
    """Write the marker atomically: a reader sees all of it or none."""
    path = os.path.join(folder, MARKER)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"status": "completed", "requests": requests, "failed": failed}, fh)
    os.replace(tmp, path)


def set_aside(folder: str) -> str | None:
    """Rename an incomplete run folder to `<folder>.incomplete-<k>`; return the new path (None: no folder)."""
    if not os.path.exists(folder):
        return None
    k = 1
    while os.path.exists(f"{folder}{SET_ASIDE_MARK}{k}"):
        k += 1
    target = f"{folder}{SET_ASIDE_MARK}{k}"
    os.rename(folder, target)
    return target
