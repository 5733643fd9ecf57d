"""What load each side of a comparison ran, read from its database's `run`
table: the differences `compare` warns about on its first line, and the
pairing of two sweeps' runs by load (concurrency, or rate when paced).

Two runs at different loads differ by the load as much as by anything else:
compare once printed "Changed: nothing" for a run at concurrency 4 against one
at 16 whose throughput was 299 % higher.  So any difference in these settings
is said first, loudly, and a sweep is compared pair by pair at equal loads.
"""
from __future__ import annotations

import json
import math
import sqlite3
from typing import Any, Sequence

from analysis.compare import compare_runs, format_comparison, load_warning
from analysis.formatting import natural_key
from analysis.loader import ReportError, connect_readonly, load
from engine.arguments import redact_url

# (argument, how the warning names it): the settings that make two runs' loads differ
LOAD_SETTINGS = (("parallel", "concurrency"), ("rate", "request rate (req/s)"), ("dataset", "dataset"),
                 ("dataset_path", "dataset file"), ("max_tokens", "max tokens"), ("min_tokens", "min tokens"),
                 ("model", "model"), ("url", "URL"), ("api", "API"), ("stream", "streaming"))


def read_args(db: str) -> dict | None:
    """The run's arguments as its `run` table holds them; None without one
    (a database from elsewhere): its load is then unknown."""
    con = connect_readonly(db)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run'").fetchone():
            return None
        row = con.execute("SELECT args FROM run ORDER BY rowid DESC LIMIT 1").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{db}: cannot read the database ({exc})") from None
    finally:
        con.close()
    try:
        args = json.loads(row[0]) if row and row[0] else None
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


def _shown(key: str, value: Any) -> str:
    if value is None or value == "":
        return {"rate": "none (closed loop)", "max_tokens": "not set", "min_tokens": "not set"}.get(key, "not set")
    if key == "url":
        return redact_url(str(value))
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def load_differences(args_a: dict | None, args_b: dict | None) -> list[str]:
    """One phrase per load setting A and B differ in ("concurrency 4 vs 16"),
    or why it cannot be told (a database without a `run` table)."""
    missing = [side for side, args in (("A", args_a), ("B", args_b)) if args is None]
    if missing:
        return [f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no `run` table: "
                "the load cannot be checked"]
    out = []
    for key, name in LOAD_SETTINGS:
        a, b = args_a.get(key), args_b.get(key)
        if _shown(key, a) != _shown(key, b):
            out.append(f"{name} {_shown(key, a)} vs {_shown(key, b)}")
    return out


def load_key(args: dict | None) -> tuple[str, float] | None:
    """What a sweep's runs differ in: ("rate", r) for a paced run, else ("concurrency", c)."""
    if not args:
        return None
    rate = args.get("rate")
    if isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate):
        return ("rate", float(rate))
    parallel = args.get("parallel")
    return ("concurrency", float(parallel)) if isinstance(parallel, (int, float)) else None


def key_text(key: tuple[str, float] | None) -> str:
    if key is None:
        return "unknown load"
    kind, value = key
    return f"concurrency {value:g}" if kind == "concurrency" else f"rate {value:g} req/s"


def pair_by_load(dbs_a: Sequence[str], dbs_b: Sequence[str]) -> tuple[list[tuple[str, str, str]], list[str],
                                                                        list[str]]:
    """Pair the runs of two sweeps by load: ([(load, db A, db B)], only in A, only in B),
    the pairs in order of load, the lone runs as "load (db)".  Two runs of one
    load on a side pair in the order of their names."""
    def by_key(dbs: Sequence[str]) -> dict:
        groups: dict = {}
        for db in sorted(dbs, key=natural_key):
            groups.setdefault(load_key(read_args(db)), []).append(db)
        return groups

    ga, gb = by_key(dbs_a), by_key(dbs_b)
    pairs, only_a, only_b = [], [], []
    order = sorted(set(ga) | set(gb), key=lambda k: (k is None, k or ("", 0.0)))
    for key in order:
        a, b = ga.get(key, []), gb.get(key, [])
        if key is not None:
            pairs += [(key_text(key), x, y) for x, y in zip(a, b)]
            a, b = a[len(b):], b[len(a):]
        only_a += [f"{key_text(key)} ({db})" for db in a]
        only_b += [f"{key_text(key)} ({db})" for db in b]
    return pairs, only_a, only_b


def _compare_one(db_a: str, db_b: str, n_resamples: int, seed: int, threshold: float) -> str:
    frames = [load(db, decode_requests=False, lists=False) for db in (db_a, db_b)]
    rows = compare_runs(frames[0], frames[1], n_resamples=n_resamples, seed=seed, threshold=threshold)
    names = [f"{f.name} ({f.path}), {int(f.ok_mask().sum()):,} successful requests" for f in frames]
    return format_comparison(rows, names[0], names[1], n_resamples, seed, threshold,
                             load_differences(read_args(db_a), read_args(db_b)))


def compare_databases(dbs_a: Sequence[str], dbs_b: Sequence[str], path_a: str, path_b: str, n_resamples: int,
                      seed: int, threshold: float) -> str:
    """`servegauge compare A B`: two runs, or two sweeps (or a sweep and a
    run) compared pair by pair at equal loads, saying which loads only one
    side has.  A difference in load comes first, as a WARNING line."""
    if len(dbs_a) == 1 and len(dbs_b) == 1:
        return _compare_one(dbs_a[0], dbs_b[0], n_resamples, seed, threshold)
    pairs, only_a, only_b = pair_by_load(dbs_a, dbs_b)
    if not pairs:
        raise ReportError(f"{path_a} and {path_b}: no load in common to compare (A: "
                          f"{', '.join(only_a) or 'no run'}; B: {', '.join(only_b) or 'no run'})")
    out = []
    differing = [f"at {load}: {'; '.join(d)}" for load, a, b in pairs
                 if (d := load_differences(read_args(a), read_args(b)))]
    if differing:
        out.append(load_warning(differing, what=f"{len(differing)} of the {len(pairs)} pairs"))
    out.append(f"Sweeps paired by load: A {path_a} ({len(dbs_a)} runs), B {path_b} ({len(dbs_b)} runs): "
               f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''} ({', '.join(p[0] for p in pairs)})")
    if only_a:
        out.append("Only in A, not compared: " + ", ".join(only_a))
    if only_b:
        out.append("Only in B, not compared: " + ", ".join(only_b))
    for load_text, a, b in pairs:
        out += ["", f"=== {load_text} ===", _compare_one(a, b, n_resamples, seed, threshold)]
    return "\n".join(out)
