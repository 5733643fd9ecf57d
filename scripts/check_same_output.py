"""Check that two trees of servegauge give the same output (a refactor's check).

    python scripts/check_same_output.py --before REF_OR_DIR [--after DIR] [--keep]

BEFORE (and AFTER, default: this tree) is a folder holding the project or a
git ref, checked out with `git worktree add --detach` into a temporary folder
(removed afterwards).  Each tree runs with itself first on PYTHONPATH.

1. A live, seeded sweep against the mock (`python -m engine`, --seed,
   --no-timestamp, with failures injected) with each tree.  Timing differs
   from run to run, so this compares the shape: the console output with its
   numbers blanked, the files written, the keys of benchmark_*.json, the CSV
   header, the database schema and the non-timing columns of every row.
2. Exact figures: `python -m engine report` of fixed databases (both live
   runs' databases, and a copy of one made to look foreign, i.e. without the
   columns only servegauge writes, so that every figure is recomputed from
   `chunk_times`), and `python -m engine compare` of the two runs of a
   sweep, by each tree.  Console output and every file (JSON, CSV, HTML, PNG)
   must be byte-identical, but for the HTML's "Generated" time and the paths.

Exit status 0 when everything matches, 1 with a list of differences.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
MOCK_ARGS = ["--ttft-ms", "15", "--itl-ms", "2", "--tokens", "24", "--tokens-min", "4",
             "--fault", "http500=0.15", "--fault-seed", "3"]
RUN_ARGS = ["--model", "m1", "--parallel", "2", "4", "--number", "24", "40", "--warmup-num", "2",
            "--seed", "7", "--no-timestamp", "--slo", "ttft=500ms,tpot=50ms", "--name", "check"]
# Columns whose values are clock readings or durations: they differ between live runs.
TIMING_COLUMNS = {"start_time", "completed_time", "latency", "first_chunk_latency", "chunk_times", "chunk_time",
                  "time_per_output_token", "scheduled_time", "event_times", "request_id", "worker",
                  "response_messages"}
# Columns only servegauge writes: dropped to make a database look like evalscope's.
OURS_ONLY = ("token_source", "time_per_output_token", "chunk_time")


def tree(spec: str, scratch: Path, name: str) -> Path:
    path = Path(spec)
    if path.is_dir() and (path / "engine").is_dir():
        return path.resolve()
    target = scratch / name
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(target), spec], check=True)
    # the tree's own entry points (the plugins) come before the installed ones
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info"], cwd=target, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return target


def run(root: Path, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONUNBUFFERED="1", COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "engine", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise SystemExit(f"{root}: python -m engine {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def databases(folder: Path) -> list[Path]:
    return sorted(folder.rglob("benchmark_data.db"))


def blank_numbers(text: str) -> str:
    text = re.sub(r"\d[\d,]*(\.\d+)?(e[+-]?\d+)?", "#", text)
    return re.sub(r"[─┬┼┴┌┐└┘├┤]+", "-", re.sub(r" +", " ", text))  # column widths follow the figures


def schema(db: Path) -> list:
    con = sqlite3.connect(db)
    try:
        return [(t, [c[1:3] for c in con.execute(f"PRAGMA table_info({t})")])
                for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    finally:
        con.close()


def rows_without_timing(db: Path) -> list:
    con = sqlite3.connect(db)
    try:
        cols = [c[1] for c in con.execute("PRAGMA table_info(result)") if c[1] not in TIMING_COLUMNS]
        return sorted(map(repr, con.execute(f"SELECT {', '.join(cols)} FROM result")))
    finally:
        con.close()


def json_keys(value):
    if isinstance(value, dict):
        return {k: json_keys(v) for k, v in value.items() if k not in ("Errors", "Date")}
    if isinstance(value, list):
        return [json_keys(v) for v in value[:1]]
    return type(value).__name__ if value is not None else "null"


def live(roots: dict[str, Path], scratch: Path, problems: list[str]) -> dict[str, Path]:
    """One seeded sweep per tree against one mock; compare the shapes."""
    sys.path.insert(0, str(roots["before"]))
    from engine.mock.launch import start_mock

    outs, consoles = {}, {}
    with start_mock(MOCK_ARGS) as mock:
        for side, root in roots.items():
            out = scratch / f"live_{side}"
            proc = run(root, ["--url", mock.chat_url, *RUN_ARGS, "--outputs-dir", str(out)])
            outs[side] = out
            consoles[side] = blank_numbers(proc.stdout.replace(str(out), "OUT").replace(str(root), "ROOT"))
    if consoles["before"] != consoles["after"]:
        problems.append("live run: the console output differs (numbers blanked):\n"
                        + diff(consoles["before"], consoles["after"]))
    files = {side: sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "-" not in p.suffix)
             for side, out in outs.items()}
    if files["before"] != files["after"]:
        problems.append(f"live run: other files: {sorted(set(files['before']) ^ set(files['after']))}")
    for rel in files["before"]:
        a, b = outs["before"] / rel, outs["after"] / rel
        if not b.exists():
            continue
        if rel.endswith(".json"):
            ka, kb = (json_keys(json.loads(p.read_text())) for p in (a, b))
            if ka != kb:
                problems.append(f"live run: {rel}: keys or types differ")
        elif rel.endswith(".csv"):
            if a.read_text().splitlines()[:1] != b.read_text().splitlines()[:1]:
                problems.append(f"live run: {rel}: header differs")
        elif rel.endswith(".db"):
            if schema(a) != schema(b):
                problems.append(f"live run: {rel}: schema differs")
            # faults and reply lengths are drawn per request: the row count, not the values
            ra, rb = rows_without_timing(a), rows_without_timing(b)
            if len(ra) != len(rb):
                problems.append(f"live run: {rel}: {len(ra)} rows before, {len(rb)} after")
    return outs


def foreign_copy(db: Path, dest: Path) -> Path:
    """The database without the columns only servegauge writes (as evalscope's lack them)."""
    dest.mkdir(parents=True)
    target = dest / "benchmark_data.db"
    con = sqlite3.connect(db)
    try:
        con.execute("VACUUM INTO ?", (str(target),))
    finally:
        con.close()
    con = sqlite3.connect(target)
    try:
        for col in OURS_ONLY:
            con.execute(f"ALTER TABLE result DROP COLUMN {col}")
        con.commit()
    finally:
        con.close()
    return target


def offline(roots: dict[str, Path], live_outs: dict[str, Path], scratch: Path, problems: list[str]) -> int:
    """`report` and `compare` of fixed databases by each tree: byte-identical."""
    cases = {f"live_{side}": out for side, out in live_outs.items()}
    cases["foreign"] = foreign_copy(databases(live_outs["before"])[0], scratch / "foreign" / "run").parent.parent
    checked = 0
    for case, src in cases.items():
        outputs = {}
        for side, root in roots.items():
            out = scratch / "reports" / case / side
            proc = run(root, ["report", str(src), "--out", str(out), "--slo", "ttft=500ms,tpot=50ms"])
            outputs[side] = (out, clean(proc.stdout, src, out))
        (out_b, text_b), (out_a, text_a) = outputs["before"], outputs["after"]
        if text_b != text_a:
            problems.append(f"report {case}: console output differs:\n" + diff(text_b, text_a))
        checked += compare_trees(out_b, out_a, f"report {case}", problems)
        dbs = databases(src)
        if len(dbs) >= 2:
            texts = [clean(run(root, ["compare", str(dbs[0]), str(dbs[1]), "--resamples", "200"]).stdout, src, None)
                     for root in roots.values()]
            checked += 1
            if texts[0] != texts[1]:
                problems.append(f"compare {case}: output differs:\n" + diff(*texts))
    return checked


def clean(text: str, src: Path, out: Path | None) -> str:
    text = text.replace(str(src), "SRC")
    return text.replace(str(out), "OUT") if out else text


def compare_trees(a: Path, b: Path, what: str, problems: list[str]) -> int:
    fa = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    fb = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    if fa != fb:
        problems.append(f"{what}: other files: {sorted(set(fa) ^ set(fb))}")
    n = 0
    for rel in sorted(set(fa) & set(fb)):
        n += 1
        pa, pb = a / rel, b / rel
        if rel.endswith(".html"):
            ta, tb = (re.sub(r"Generated [^<]*? from", "Generated T from", p.read_text()) for p in (pa, pb))
            ta, tb = ta.replace(str(a), "OUT"), tb.replace(str(b), "OUT")
            if ta != tb:
                problems.append(f"{what}: {rel} differs:\n" + diff(ta, tb))
        elif not filecmp.cmp(pa, pb, shallow=False):
            text = rel.endswith((".json", ".csv"))
            problems.append(f"{what}: {rel} differs" + (":\n" + diff(pa.read_text(), pb.read_text()) if text else ""))
    return n


def diff(a: str, b: str, most: int = 30) -> str:
    import difflib

    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", lineterm="", n=1))
    return "\n".join(lines[:most]) + ("\n..." if len(lines) > most else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a folder holding the project, or a git ref")
    parser.add_argument("--after", default=str(HERE), help="the same (default: this tree)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and say where it is")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="check_same_"))
    roots: dict[str, Path] = {}
    try:
        roots = {"before": tree(args.before, scratch, "tree_before"), "after": tree(args.after, scratch, "tree_after")}
        problems: list[str] = []
        live_outs = live(roots, scratch, problems)
        n = offline(roots, live_outs, scratch, problems)
    finally:
        for root in roots.values():
            if str(root).startswith(str(scratch)):
                subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(root)], check=False)
        if args.keep:
            print(f"scratch: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    for p in problems:
        print("DIFFERS:", p)
    print(f"{'same' if not problems else 'different'}: live sweep shape, and {n} report/compare outputs "
          f"of fixed databases byte for byte ({len(problems)} difference(s))")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
