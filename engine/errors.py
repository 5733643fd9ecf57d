"""Our exceptions, and what a server's error reply says.  A leaf module:
plugins and the engine both raise these; the pre-flight check and the
report's failure groups both read error replies with `reply_message`.

Anything derived from UsageError is the user's to fix: the command line
prints its one-line message and exits 2, with a traceback only under --debug.
"""
from __future__ import annotations

import json
from typing import Any


def reply_message(body: str | bytes) -> tuple[str, str | None] | None:
    """(message, kind) of an error reply's JSON body, in OpenAI/vLLM's shape
    ({"error": {"message", "type"}}, or {"error": "..."}) or DashScope's
    ({"code", "message"}); None when it is not such a body (or is cut short)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    holder = error if isinstance(error, dict) else data
    message = holder.get("message") if isinstance(holder, dict) else None
    if isinstance(error, str) and not message:
        message = error
    if not isinstance(message, str) or not message.strip():
        return None
    kind = (holder.get("type") or holder.get("code")) if isinstance(holder, dict) else None
    return " ".join(message.split()), kind if isinstance(kind, str) and kind else None


class ServegaugeError(Exception):
    """Base of every error servegauge raises on purpose."""


class UsageError(ServegaugeError):
    """Bad input: a flag, a file, a plugin name.  The message names the fix."""


class DatasetError(UsageError):
    """A dataset file is missing, unreadable or not in the expected format."""


class PluginError(UsageError):
    """A plugin is unknown, failed to import, or failed to construct."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (stop, keep what was measured), exit 143."""


class PluginFailed(PluginError):
    """The API plugin failed on each of the first requests: the run stopped.
    Its one line was printed at the first failure, so it is not repeated."""

    reported = True
