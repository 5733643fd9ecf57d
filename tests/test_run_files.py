"""Each run folder says what was run: benchmark_args.json (as evalscope perf
writes it; the run table's arguments, no secrets), and the summary JSON names
the URL (without credentials), the model and the date."""
import datetime as dt
import json
import os
import sqlite3
import time
import uuid
from urllib.parse import urlsplit

from conftest import find_dbs, run_engine


def test_benchmark_args_json_and_what_the_summary_names(tmp_path, mock):
    key, password = "sk-" + uuid.uuid4().hex, "pw" + uuid.uuid4().hex
    parts = urlsplit(mock.chat_url)
    url = parts._replace(netloc=f"bench:{password}@{parts.netloc}").geturl()
    before = time.time()
    run_engine("--url", url, "--model", "tiny-model", "--api-key", key, "--parallel", 1, 2, "--number", 2, 4,
               "--max-tokens", 4, "--no-plots", "--outputs-dir", tmp_path / "out")
    dbs = find_dbs(tmp_path / "out")
    assert len(dbs) == 2
    for db in dbs:
        folder = os.path.dirname(db)
        raw = open(os.path.join(folder, "benchmark_args.json")).read()
        assert key not in raw and password not in raw
        args = json.loads(raw)
        con = sqlite3.connect(db)
        (stored,) = con.execute("SELECT args FROM run").fetchone()
        con.close()
        assert args == json.loads(stored)  # Arguments.public_dict(), as the run table holds it
        assert args["api_key"] == "***" and args["url"] == f"{parts.scheme}://***@{parts.netloc}{parts.path}"
        assert args["parallel"] in (1, 2) and args["model"] == "tiny-model" and args["max_tokens"] == 4

        summary = json.load(open(os.path.join(folder, "benchmark_summary.json")))
        assert summary["URL"] == args["url"] and summary["Model"] == "tiny-model"
        date = dt.datetime.fromisoformat(summary["Date"])
        assert date.tzinfo is not None and before - 1 <= date.timestamp() <= time.time()

    # `report` rebuilds it from the database alone
    folder = os.path.dirname(dbs[0])
    os.remove(os.path.join(folder, "benchmark_args.json"))
    run_engine("report", folder, "--no-plots", "--quiet")
    assert json.load(open(os.path.join(folder, "benchmark_args.json")))["api_key"] == "***"
