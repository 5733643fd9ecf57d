"""Service-level objectives and which requests meet them (goodput).

One representation (a dict such as {"ttft_ms": 300.0, "latency_s": 2.0}),
two spellings: ours, `--slo ttft=200ms,tpot=50ms,latency=10s`
(`parse_slo`), and vLLM's `bench serve --goodput ttft:300 tpot:50 e2el:2000`,
milliseconds without a unit (`parse_goodput`).  A request is good when it
succeeded and every given metric is at or below its limit; a one-token reply
has no TPOT and passes a TPOT limit (vLLM counts its TPOT as 0); a failed
request is never good, and counts in the share of all requests.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

from analysis.frames import Frames

# SLO: name in --slo -> (key in the dict, unit of the key, frame column, NaN passes)
_SLO_SPEC = {
    "ttft": ("ttft_ms", "ms", "ttft_ms", False),
    "tpot": ("tpot_ms", "ms", "tpot_ms", True),  # one-token replies have no TPOT
    "itl": ("itl_ms", "ms", "itl_mean_ms", True),  # mean ITL of the request
    "latency": ("latency_s", "s", "latency_s", False),
    "e2el": ("latency_s", "s", "latency_s", False),  # vLLM's name for latency
}
_SLO_KEYS = {spec[0]: spec for spec in _SLO_SPEC.values()}
_SLO_VALUE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", re.IGNORECASE)



def parse_slo(text: str) -> dict[str, float]:
    """`ttft=200ms,tpot=50ms,latency=10s` -> {"ttft_ms": 200.0, "tpot_ms": 50.0, "latency_s": 10.0}.

    Names: ttft, tpot, itl (a request's mean gap), latency (or e2el).  Every
    value needs a unit, ms or s.  Raises ValueError saying what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty SLO: give e.g. ttft=200ms,tpot=50ms,latency=10s")
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep:
            raise ValueError(f"bad SLO item {part!r}: expected name=value, e.g. ttft=200ms")
        if name not in _SLO_SPEC:
            raise ValueError(f"unknown SLO {name!r}: use {', '.join(sorted(_SLO_SPEC))}")
        m = _SLO_VALUE.match(value)
        if not m:
            raise ValueError(f"bad SLO value {value.strip()!r} for {name}: "
                             "give a positive number with a unit, ms or s (e.g. 200ms, 0.2s)")
        number, unit = float(m.group(1)), m.group(2).lower()
        if number <= 0:
            raise ValueError(f"bad SLO value {value.strip()!r} for {name}: must be above 0")
        _put(out, name, number / 1000.0 if unit == "ms" else number)
    if not out:
        raise ValueError("empty SLO: give e.g. ttft=200ms,tpot=50ms,latency=10s")
    return out


# vLLM's --goodput keys (its check_goodput_args accepts exactly these); each is also an --slo name
_GOODPUT_KEYS = ("ttft", "tpot", "e2el")


def parse_goodput(items: Sequence[str] | str) -> dict[str, float]:
    """vLLM's `--goodput ttft:300 tpot:50 e2el:2000` (a list of KEY:VALUE, or
    one string of them separated by spaces) -> the same dict as `parse_slo`.

    Values are milliseconds, without a unit, as in vLLM; keys are vLLM's
    ttft, tpot and e2el.  Raises ValueError saying what is wrong.
    """
    if isinstance(items, str):
        items = items.split()
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).strip().partition(":")
        name = name.strip().lower()
        if not sep or not name:
            raise ValueError(f"bad goodput item {item!r}: expected KEY:VALUE in ms, e.g. ttft:300")
        if name not in _GOODPUT_KEYS:
            raise ValueError(f"unknown goodput key {name!r}: use ttft, tpot or e2el (vLLM's names; "
                             "--slo also takes itl)")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number >= 0 or number == float("inf"):
            raise ValueError(f"bad goodput value {value.strip()!r} for {name}: give milliseconds >= 0, e.g. {name}:300")
        _put(out, name, number / 1000.0)
    if not out:
        raise ValueError("empty goodput: give e.g. ttft:300 tpot:50 e2el:2000 (milliseconds)")
    return out


def slo_from_flags(slo: str | None, goodput: Sequence[str] | None) -> dict[str, float] | None:
    """The SLO of the command line: `--slo TEXT` or `--goodput KEY:VALUE ...`
    (not both); None for neither.  ValueError names the flag at fault."""
    if slo and goodput:
        raise ValueError("give --slo or --goodput, not both: they are two spellings of one SLO")
    try:
        if slo:
            return parse_slo(slo)
        return parse_goodput(goodput) if goodput else None
    except ValueError as exc:
        raise ValueError(f"{'--slo' if slo else '--goodput'}: {exc}") from None


def _put(out: dict[str, float], name: str, seconds: float) -> None:
    """Store one SLO, in its key's unit; a metric given twice is an error."""
    key, key_unit = _SLO_SPEC[name][0], _SLO_SPEC[name][1]
    if key in out:
        raise ValueError(f"SLO {name} given twice")
    out[key] = round(seconds * 1000.0 if key_unit == "ms" else seconds, 9)


def check_slo(slo: Mapping[str, float] | str | None) -> dict[str, float] | None:
    """An SLO as text (`parse_slo`) or as a dict of its keys -> the dict; None for none."""
    if slo is None:
        return None
    if isinstance(slo, str):
        return parse_slo(slo)
    out = {}
    for key, value in dict(slo).items():
        if key not in _SLO_KEYS:
            raise ValueError(f"unknown SLO key {key!r}: use {', '.join(sorted(_SLO_KEYS))} "
                             "(or pass the text form to parse_slo)")
        out[key] = float(value)
    return out or None


def slo_mask(frames: Frames, slo: Mapping[str, float] | str) -> np.ndarray:
    """True for successful measured requests that meet every SLO."""
    slo = check_slo(slo) or {}
    req = frames.requests
    meets = frames.ok_mask().copy()
    for key, limit in slo.items():
        _, _, column, nan_passes = _SLO_KEYS[key]
        values = req[column].to_numpy(dtype=float)
        ok = values <= limit
        if nan_passes:
            ok |= np.isnan(values)
        meets &= ok
    return meets
