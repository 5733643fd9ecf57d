"""Fitting console output to the terminal: its width, prose wrapped to it,
and box tables cut down (whole columns, or the text of one) until they fit.

Strings only, like `analysis.formatting`: the tables are drawn by
`analysis.tables.format_table`; this module only decides what goes in them.
"""
from __future__ import annotations

import shutil
import textwrap
from typing import Any, Sequence

from analysis.formatting import cell

ELLIPSIS = "…"


def terminal_width() -> int | None:
    """The columns to fit, or None for no limit.

    `COLUMNS` when set (as `shutil.get_terminal_size` reads it), else the
    terminal's width when standard output is one.  Output into a file or a
    pipe (`| tee run.log`) has no width to fit and keeps every column.
    """
    columns = shutil.get_terminal_size(fallback=(0, 0)).columns
    return columns if columns > 0 else None


def box_width(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> int:
    """The width of `format_table(headers, rows)`: "│ a │ b │" costs three
    characters per column around its text, plus the left border."""
    widths = [len(str(h)) for h in headers]
    for row in rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(cell(value)))
    return 1 + sum(w + 3 for w in widths)


def keep_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]], rank: Sequence[int],
                 width: int | None) -> tuple[list[str], list[list[Any]], list[str]]:
    """Drop whole columns, the highest `rank` first (0 = never dropped),
    until the table fits `width`; the kept columns keep their order.
    Returns (headers, rows, the dropped headers in table order)."""
    keep = list(range(len(headers)))
    by_rank = sorted((i for i in keep if rank[i] > 0), key=lambda i: -rank[i])

    def pick(values: Sequence[Any]) -> list[Any]:
        return [values[i] for i in keep]

    while width is not None and by_rank and box_width(pick(headers), [pick(r) for r in rows]) > width:
        keep.remove(by_rank.pop(0))
    dropped = [str(headers[i]) for i in range(len(headers)) if i not in keep]
    return pick(headers), [pick(r) for r in rows], dropped


def shorten_column(headers: Sequence[str], rows: Sequence[Sequence[Any]], column: int,
                   width: int | None) -> list[list[Any]]:
    """Cut the text of one column (an error reason, a setting) with "…" so
    the table fits `width`; never below its header's width."""
    rows = [list(r) for r in rows]
    if width is None or box_width(headers, rows) <= width:
        return rows
    others = box_width([h for i, h in enumerate(headers) if i != column],
                       [[v for i, v in enumerate(r) if i != column] for r in rows])
    room = max(len(str(headers[column])), width - others - 3, 2)
    for r in rows:
        text = cell(r[column])
        if len(text) > room:
            r[column] = text[:room - 1] + ELLIPSIS
    return rows


def wrap(text: str, width: int | None, indent: str = "") -> str:
    """Prose wrapped to `width` (continuation lines indented by `indent`);
    a word longer than a line (a path) is broken, as the terminal would."""
    if width is None:
        return text
    lines = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, width=max(width, len(indent) + 10), subsequent_indent=indent,
                               break_on_hyphens=False) or [""]
    return "\n".join(lines)
