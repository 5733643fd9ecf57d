"""A whole run through `python -m engine` against the mock server: folders,
rows, and the contract encodings users' own scripts rely on."""
import base64
import json
import os
import pickle

from conftest import find_dbs, rows, run_engine


def decode(text):
    return pickle.loads(base64.b64decode(text))


def test_sweep_makes_one_folder_per_run_with_every_request(tmp_path, mock):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first prompt here\nsecond one\n\nthird prompt with more words in it\n")
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--model", "m1", "--parallel", 1, 8, "--number", 10, 40,
               "--dataset", "line_by_line", "--dataset-path", prompts, "--max-tokens", 12,
               "--outputs-dir", out, "--workers", 2)
    dbs = find_dbs(out)
    assert [os.path.basename(os.path.dirname(p)) for p in dbs] == ["parallel_1_number_10", "parallel_8_number_40"]
    lines = [l for l in prompts.read_text().splitlines() if l.strip()]
    for db, n in zip(dbs, (10, 40)):
        result = rows(db)
        assert len(result) == n
        for row in result:
            assert row["success"] == 1, row["error"]
            body = decode(row["request"])
            assert body["model"] == "m1" and body["stream"] is True and body["max_tokens"] == 12
            assert body["messages"][0]["content"] in lines
            # only what the user asked for and what the protocol needs
            assert set(body) == {"model", "messages", "stream", "stream_options", "max_tokens"}
            events = [json.loads(e) for e in decode(row["response_messages"])]
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
            usage = [e["usage"] for e in events if e.get("usage")][-1]
            assert row["completion_tokens"] == usage["completion_tokens"] == 12
            assert row["prompt_tokens"] == usage["prompt_tokens"]
            assert row["token_source"] == "usage"
            assert len(text.split()) == 12
            assert row["n_chunks"] == 12 and len(json.loads(row["chunk_times"])) == 12
            assert 0 < row["first_chunk_latency"] < row["latency"]
            assert row["start_time"] <= row["completed_time"]
            assert row["scheduled_time"] <= row["start_time"] + 1e-3
        for name in ("benchmark_summary.json", "benchmark_percentile.json"):
            assert os.path.exists(os.path.join(os.path.dirname(db), name))
        summary = json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
        assert summary["Total Requests"] == n and summary["Success Requests"] == n
    run = rows(dbs[1], "SELECT * FROM run")[0]
    assert run["status"] == "completed" and json.loads(run["args"])["parallel"] == 8


def test_failed_requests_get_a_row_each(tmp_path, mock):
    # a path the mock does not serve: every request fails with HTTP 404, and is recorded
    # (without the pre-flight check, which would catch the path first)
    out = tmp_path / "out"
    url = mock.base_url + "/v1/nothing/here"
    proc = run_engine("--url", url, "--parallel", 2, "--number", 6, "--outputs-dir", out, "--no-test-connection",
                      check=False)
    # nothing succeeded: the results are written, and the run says so and exits 1
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "servegauge: nothing succeeded: 6/6 requests failed (100%); most often (6): HTTP 404: "
        "no route for POST /v1/nothing/here (NotFoundError)")
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 6
    assert all(r["success"] == 0 and r["status_code"] == 404 and r["error"].startswith("HTTP 404") for r in result)


def test_warmup_rows_are_marked(tmp_path, mock):
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--parallel", 2, "--number", 5, "--warmup-num", 3, "--outputs-dir", out)
    (db,) = find_dbs(out)
    flags = [r["is_warmup"] for r in rows(db, "SELECT is_warmup FROM result ORDER BY start_time")]
    assert sorted(flags) == [0] * 5 + [1] * 3
    summary = json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
    assert summary["Total Requests"] == 5
