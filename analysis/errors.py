"""Failures grouped by reason, Locust-style: the error table of the summary
and the stacks of the errors plot count the same groups."""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from analysis.frames import Frames
from engine.errors import reply_message

_NORMALISERS = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "0x<addr>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\[[0-9a-f:]{3,}\](?::\d+)?", re.I), "<ip>"),
    # ids: a token of 8+ word characters holding both letters and digits
    (re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{8,}\b"), "<id>"),
)
_STATUS = re.compile(r"(\bHTTP(?:/[\d.]+)?\s+|\bstatus(?:[ _]code)?\s*[=:]?\s*)([1-5]\d\d)\b", re.I)
_NUMBER = re.compile(r"(?<![\w<])\d+(?:\.\d+)?")
_JSON_BODY = re.compile(r"^(HTTP \d{3}): (\{.*\})$")


def _body_message(text: str) -> str:
    """"HTTP 404: {"error": {"message": "...", "type": "NotFoundError"}}" ->
    "HTTP 404: ... (NotFoundError)": the words a person reads.  Other text,
    or a body cut before its end, is left as it is."""
    m = _JSON_BODY.match(text)
    said = reply_message(m.group(2)) if m else None
    if said is None:
        return text
    message, kind = said
    return f"{m.group(1)}: {message}" + (f" ({kind})" if kind else "")


def normalize_error(error: Any, status_code: Any = None, limit: int = 300) -> str:
    """One group name per kind of failure, Locust-style: a JSON error body
    is read down to its message, ids, addresses and numbers are blanked so
    "HTTP 500: ... req 8f3a ..." variants group together, while HTTP status
    codes are kept."""
    text = "" if error is None or (isinstance(error, float) and math.isnan(error)) else str(error)
    text = " ".join(text.split())
    if not text:
        try:
            code = int(status_code)
        except (TypeError, ValueError):
            return "unknown error"
        return f"HTTP {code}"
    text = _body_message(text)
    for pattern, repl in _NORMALISERS:
        text = pattern.sub(repl, text)
    kept: list[str] = []

    def _protect(m: re.Match) -> str:  # a private-use character holds its place
        kept.append(m.group(0))
        return chr(0xE000 + len(kept) - 1)

    text = _STATUS.sub(_protect, text)
    text = _NUMBER.sub("<n>", text)
    text = re.sub("[\ue000-\uf8ff]", lambda m: kept[ord(m.group(0)) - 0xE000], text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def failure_groups(failed: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """For failed rows: each row's index into the reasons, and the
    normalised reason of each distinct (error, status code) pair, normalised
    once per pair, not per row."""
    pairs = pd.DataFrame({"e": failed["error"].astype(object), "s": failed["status_code"].astype(object)})
    codes, uniques = pd.MultiIndex.from_frame(pairs).factorize()
    return codes, [normalize_error(e, st) for e, st in uniques]


def reason_totals(codes: np.ndarray, reasons: list[str]) -> dict[str, int]:
    """Failures per reason, most frequent first (then by name)."""
    per_pair = np.bincount(codes, minlength=len(reasons)) if len(reasons) else np.zeros(0, dtype=np.int64)
    totals: dict[str, int] = {}
    for reason, n in zip(reasons, per_pair):
        totals[reason] = totals.get(reason, 0) + int(n)
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def error_counts(frames: Frames) -> dict[str, int]:
    """Failed measured requests by normalised reason, most frequent first."""
    req = frames.requests
    failed = req.loc[frames.measured_mask() & (req["success"].to_numpy() != 1)]
    if failed.empty:
        return {}
    return reason_totals(*failure_groups(failed))
