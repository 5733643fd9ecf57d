"""How numbers are written: one place for every format of the reports.

`cell` for the console tables, `short` for the HTML tables, `approx` for
the comparison, `plot_number` and `count` on plots, `rounded` and `clean`
for the JSON files.  Strings only: no pandas, no matplotlib.
"""
from __future__ import annotations

import json
import math
import numbers
import re
from typing import Any

NDIGITS = 4
# evalscope writes the --rate it was given, -1 meaning "no pacing"; we do the
# same in JSON (dashboards expect a number) and show it as INF on screen.
RATE_UNLIMITED = -1


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
        return f"{value:,.4f}" if abs(value) >= 10000 else f"{value:.4f}"
    if isinstance(value, int):
        return str(value)
    return str(value)


def short(value: Any) -> str:
    """A table cell for the page: about four significant digits (the JSON
    files keep the full figures), thousands separated."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        value = float(value)
        if value.is_integer():
            return f"{int(value):,}"
        magnitude = math.floor(math.log10(abs(value)))
        return f"{value:,.{min(4, max(1, 3 - magnitude))}f}"
    return cell(value)


def approx(v: Any, signed: bool = False) -> str:
    """About four significant digits, thousands separated: 0.05234, 21.67, 6,976."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    v = float(v)
    if math.isinf(v):
        return "-inf" if v < 0 else "+inf" if signed else "inf"
    sign = "+" if signed else ""
    if v == 0:
        return "0" if not signed else "±0"
    digits = min(6, max(0, 3 - math.floor(math.log10(abs(v)))))
    return f"{v:{sign},.{digits}f}"


def plot_number(value: float) -> str:
    """About three significant digits, for a figure written on a plot."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{min(digits, 4)}f}"


def count(value: float, _pos: Any = None) -> str:
    """Axis counts without matplotlib's detached "1e6" offset text."""
    v = abs(value)
    if v >= 1e6:
        return f"{value / 1e6:g}M"
    if v >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def rounded(value: Any, ndigits: int = NDIGITS) -> float | None:
    """A float rounded for the summary; None for None, NaN and inf."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, ndigits)


def clean(value: Any, ndigits: int = NDIGITS) -> Any:
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python, floats rounded."""
    if isinstance(value, dict):
        return {str(k): clean(v, ndigits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, ndigits) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, ndigits)
    return value


def to_json(value: Any) -> str:
    return json.dumps(clean(value), indent=4, ensure_ascii=False, allow_nan=False) + "\n"


def rate_text(value: Any) -> Any:
    """A request rate for the screen: INF for "no pacing"."""
    return "INF" if value == RATE_UNLIMITED else value


def natural_key(text: str) -> list:
    """Sort key: "run2" before "run10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]
