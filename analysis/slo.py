"""Service-level objectives: `--slo ttft=200ms,tpot=50ms,latency=10s` and
which requests meet them (goodput)."""
from __future__ import annotations

import re
from typing import Mapping

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
        key, key_unit = _SLO_SPEC[name][0], _SLO_SPEC[name][1]
        seconds = number / 1000.0 if unit == "ms" else number
        converted = seconds * 1000.0 if key_unit == "ms" else seconds
        if key in out:
            raise ValueError(f"SLO {name} given twice")
        out[key] = round(converted, 9)
    if not out:
        raise ValueError("empty SLO: give e.g. ttft=200ms,tpot=50ms,latency=10s")
    return out


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
