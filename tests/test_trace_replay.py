"""Trace replay (--open-loop with --dataset mooncake_trace / workload_trace):
send times taken from the trace, prompts synthesised block by block, and
the replay judged against the mock's own record of when each request arrived."""
import base64
import json
import os
import pickle
import random

import numpy as np
import pytest

from conftest import find_dbs, rows, run_engine
from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins.datasets.mooncake_trace import BlockText, MooncakeTraceDataset
from plugins.datasets.workload_trace import WorkloadTraceDataset
from plugins.replay import TimedItem
from plugins.tokenizer import load_tokenizer
from test_plugins_tokenizer import tokenizer_file  # noqa: F401  (fixture)


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return str(path)


def mooncake(path, tokenizer, lines, **dataset_args):
    args = Arguments(dataset="mooncake_trace", dataset_path=write_jsonl(path, lines), tokenizer_path=tokenizer,
                     open_loop=True, dataset_args=dataset_args)
    return list(MooncakeTraceDataset(args).build_messages())


def prompt_of(item: TimedItem) -> str:
    return item.messages[0]["content"]


def test_prompts_have_exactly_input_length_tokens_and_share_the_blocks_of_equal_hash_ids(tmp_path, tokenizer_file):
    lines = [
        {"timestamp": 0, "input_length": 1300, "output_length": 5, "hash_ids": [1, 2, 3]},
        {"timestamp": 10, "input_length": 1100, "output_length": 7, "hash_ids": [1, 2, 4]},
        {"timestamp": 20, "input_length": 1200, "output_length": 9, "hash_ids": [9, 2, 4]},
        {"timestamp": 30, "input_length": 1, "output_length": 1, "hash_ids": [5]},
        {"timestamp": 40, "input_length": 900, "output_length": 2, "hash_ids": []},  # no block listed: all its own
    ]
    items = mooncake(tmp_path / "t.jsonl", tokenizer_file, lines)
    tok = load_tokenizer(tokenizer_file)
    assert [tok.count(prompt_of(i)) for i in items] == [1300, 1100, 1200, 1, 900]
    a, b, c = (tok.encode(prompt_of(i)) for i in items[:3])
    assert a[:1024] == b[:1024]  # blocks 1 and 2 shared: the same tokens, so the same bytes
    assert a[1024:1100] != b[1024:1100]  # blocks 3 and 4 differ
    assert a[:512] != c[:512]  # block 9 is not block 1
    # a block is the same text wherever its hash id is, at any position
    block2 = BlockText(tok, 0).block("h2", 512)
    assert tok.count(block2) == 512
    assert all(block2 in prompt_of(i) for i in items[:3])
    assert prompt_of(items[0]).startswith(BlockText(tok, 0).block("h1", 512) + block2)
    assert not any(block2 in prompt_of(i) for i in items[3:])


def test_max_tokens_is_the_output_length_and_ignore_eos_only_when_asked(tmp_path, tokenizer_file):
    lines = [{"timestamp": 0, "input_length": 5, "output_length": 3, "hash_ids": [1]}]
    (plain,) = mooncake(tmp_path / "a.jsonl", tokenizer_file, lines)
    assert plain.params == {"max_tokens": 3}
    (matched,) = mooncake(tmp_path / "b.jsonl", tokenizer_file, lines, match_output_length=True)
    assert matched.params == {"max_tokens": 3, "extra_args": {"ignore_eos": True}}


def test_send_offsets_are_the_trace_times_divided_by_the_speed_in_time_order(tmp_path, tokenizer_file):
    lines = [{"timestamp": t, "input_length": 3, "output_length": 1, "hash_ids": []} for t in (5000, 5250, 5100, 9000)]
    assert [i.offset_s for i in mooncake(tmp_path / "a.jsonl", tokenizer_file, lines)] == [0.0, 0.1, 0.25, 4.0]
    assert [i.offset_s for i in mooncake(tmp_path / "b.jsonl", tokenizer_file, lines, speed=2.0)] == \
        [0.0, 0.05, 0.125, 2.0]


@pytest.mark.parametrize("line, dataset_args, message", [
    ({"timestamp": 0, "output_length": 1, "hash_ids": []}, {}, 'line 1 has no "input_length"'),
    ({"timestamp": "soon", "input_length": 1, "output_length": 1}, {}, 'line 1 has no "timestamp" number'),
    ({"timestamp": 0, "input_length": 1, "output_length": 1}, {"sped": 2}, "has no option 'sped'"),
    ({"timestamp": 0, "input_length": 1, "output_length": 1}, {"speed": 0}, '"speed" must be a number > 0'),
])
def test_a_bad_trace_or_option_is_one_line_naming_it(tmp_path, tokenizer_file, line, dataset_args, message):
    with pytest.raises(DatasetError, match=message):
        mooncake(tmp_path / "t.jsonl", tokenizer_file, [line], **dataset_args)


def test_a_trace_needs_open_loop_and_contradicts_rate(tmp_path, tokenizer_file, mock):
    trace = write_jsonl(tmp_path / "t.jsonl", [{"timestamp": 0, "input_length": 3, "output_length": 1}])
    base = ["--url", mock.chat_url, "--dataset", "mooncake_trace", "--dataset-path", trace,
            "--tokenizer-path", tokenizer_file, "--outputs-dir", tmp_path / "out", "--no-test-connection"]
    proc = run_engine(*base, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("servegauge: error: --dataset mooncake_trace replays the trace's own send "
                                   "times: add --open-loop (and --parallel N to cap the requests in flight)")
    proc = run_engine(*base, "--open-loop", "--rate", "5", check=False)
    assert proc.returncode == 2 and "--rate contradicts --dataset mooncake_trace" in proc.stderr
    proc = run_engine("--url", mock.chat_url, "--open-loop", "--outputs-dir", tmp_path / "out2", check=False)
    assert proc.returncode == 2 and "--open-loop needs --rate" in proc.stderr
    assert not find_dbs(tmp_path)  # refused before anything was made


def test_a_mooncake_trace_is_replayed_at_its_times(tmp_path, tokenizer_file, mock):
    """300 requests over about 6 s at speed 1: the mock's kernel-stamped
    arrivals match the trace's timestamps (p99 error <= 5 ms), every prompt
    has its input_length in tokens and max_tokens is its output_length."""
    rng = random.Random(7)
    stamps_ms = sorted(rng.uniform(0, 6000) for _ in range(299)) + [6000.0]
    stamps_ms = [0.0] + stamps_ms[:-1]
    stamps_ms = [round(t, 3) for t in stamps_ms]
    lines = [{"timestamp": t, "input_length": rng.randint(1, 40), "output_length": rng.randint(1, 3),
              "hash_ids": [rng.randint(0, 5)]} for t in stamps_ms]
    trace = write_jsonl(tmp_path / "trace.jsonl", lines)
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--open-loop", "--parallel", 32, "--dataset", "mooncake_trace",
               "--dataset-path", trace, "--tokenizer-path", tokenizer_file, "--outputs-dir", out,
               "--no-plots", "--no-test-connection")
    (db,) = find_dbs(out)
    result = rows(db, "SELECT request_id, request, scheduled_time, start_time, success FROM result "
                      "ORDER BY scheduled_time")
    assert len(result) == 300 and all(r["success"] == 1 for r in result)
    arrival = {t["request_id"]: t["arrival"] for t in mock.truth()}
    # The whole replay may start at any moment: judge each arrival (the
    # mock's kernel stamp) against the trace's time plus the median start, in ms.
    late_ms = np.array([(arrival[r["request_id"]] - t / 1000.0) * 1000.0 for r, t in zip(result, stamps_ms)])
    error_ms = np.abs(late_ms - np.median(late_ms))
    # What the run itself reports as schedule lag (a worker thread woken late
    # by a busy machine): the replay is exact but for it.
    lag_ms = np.array([(r["start_time"] - r["scheduled_time"]) * 1000.0 for r in result])
    unexplained_ms = np.abs(late_ms - lag_ms - np.median(late_ms - lag_ms))
    assert np.percentile(unexplained_ms, 99) <= 5.0, sorted(unexplained_ms)[-5:]
    # The bound, on the arrivals themselves (scripts/bench_trace.py
    # measures p99 about 1 ms on a quiet 2-core machine)
    assert np.percentile(error_ms, 99) <= 5.0, (sorted(error_ms)[-5:], np.percentile(lag_ms, 99))
    tok = load_tokenizer(tokenizer_file)
    bodies = [pickle.loads(base64.b64decode(r["request"])) for r in result]
    assert [tok.count(b["messages"][0]["content"]) for b in bodies] == [line["input_length"] for line in lines]
    assert [b["max_tokens"] for b in bodies] == [line["output_length"] for line in lines]
    assert not any("ignore_eos" in b for b in bodies)


def test_a_workload_trace_sends_its_bodies_at_their_times(tmp_path, mock):
    lines = [{"timestamp": f"2026-01-01T00:00:{s:06.3f}Z", "body": {"model": "recorded", "max_tokens": 64,
              "messages": [{"role": "user", "content": f"question {i}"}]}, "completion_tokens": 2}
             for i, s in enumerate([0.0, 0.2, 0.4, 0.6, 1.0, 1.2])]
    lines[1]["body"] = json.dumps(lines[1]["body"])  # a body may also be a JSON string
    trace = write_jsonl(tmp_path / "trace.jsonl", lines)
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--open-loop", "--parallel", 4, "--dataset", "workload_trace",
               "--dataset-path", trace, "--dataset-args", json.dumps({"speed": 2.0, "match_output_length": True,
                                                                      "model_mapping": {"recorded": "served"}}),
               "--outputs-dir", out, "--no-plots", "--no-test-connection")
    (db,) = find_dbs(out)
    result = rows(db, "SELECT request_id, request FROM result ORDER BY scheduled_time")
    bodies = [pickle.loads(base64.b64decode(r["request"])) for r in result]
    assert [b["messages"][0]["content"] for b in bodies] == [f"question {i}" for i in range(6)]
    assert all(b["model"] == "served" and b["max_tokens"] == 2 and b["ignore_eos"] is True for b in bodies)
    arrival = {t["request_id"]: t["arrival"] for t in mock.truth()}
    sent = [arrival[r["request_id"]] for r in result]
    offsets = [s - sent[0] for s in sent]
    for got, want in zip(offsets, [0.0, 0.1, 0.2, 0.3, 0.5, 0.6]):  # speed 2: half the recorded gaps
        assert abs(got - want) < 0.05, offsets


def test_workload_trace_refuses_what_it_cannot_replay(tmp_path):
    def load(line):
        args = Arguments(dataset="workload_trace", dataset_path=write_jsonl(tmp_path / "w.jsonl", [line]),
                         open_loop=True)
        return list(WorkloadTraceDataset(args).build_messages())

    with pytest.raises(DatasetError, match='line 1 has no "body" object'):
        load({"timestamp": 1})
    with pytest.raises(DatasetError, match="per-request headers are not supported"):
        load({"timestamp": 1, "body": {}, "headers": {"X-A": "1"}})
    with pytest.raises(DatasetError, match='line 1 has a "timestamp" that'):
        load({"timestamp": "yesterday", "body": {}})
    (item,) = load({"timestamp": 3, "body": {"response_format": {"type": "json_object"}}, "completion_tokens": 4})
    assert item.body == {"response_format": {"type": "json_object"}}  # match_output_length not asked


def test_open_loop_is_evalscopes_spelling_of_the_rate_mode():
    """No concurrency cap but an explicit --parallel; without --rate the
    whole trace is the run; --dataset-args must be a JSON object."""
    from engine.errors import UsageError
    from engine.options import DEFAULT_NUMBER, RATE_DEFAULT_PARALLEL, parse_run_args

    url = ["--url", "http://127.0.0.1:9/v1/chat/completions"]
    (run,), _ = parse_run_args(url + ["--open-loop", "--rate", "5"])
    assert (run.open_loop, run.rate, run.parallel, run.number) == (True, 5.0, RATE_DEFAULT_PARALLEL, DEFAULT_NUMBER)
    (run,), _ = parse_run_args(url + ["--rate", "5"])  # today's rate mode: the same load
    assert (run.rate, run.parallel, run.number) == (5.0, RATE_DEFAULT_PARALLEL, 1000)
    (run,), _ = parse_run_args(url + ["--open-loop", "--parallel", "8", "--dataset-args", '{"speed": 2}'])
    assert (run.open_loop, run.rate, run.parallel, run.number, run.dataset_args) == (True, None, 8, None, {"speed": 2})
    (run,), _ = parse_run_args(url)
    assert (run.open_loop, run.parallel) == (False, 1)
    with pytest.raises(UsageError, match=r"--dataset-args must be a JSON object"):
        parse_run_args(url + ["--dataset-args", "[1]"])
    with pytest.raises(UsageError, match=r"--ramp-up without --rate \(a concurrency ramp\) needs --backend local"):
        parse_run_args(url + ["--ramp-up", "3", "--backend", "ray"])


def _workload(tmp_path, lines, **options):
    args = Arguments(dataset="workload_trace", dataset_path=write_jsonl(tmp_path / "w.jsonl", lines),
                     open_loop=True, dataset_args=options)
    return list(WorkloadTraceDataset(args).build_messages())


def test_workload_trace_refuses_mixed_timestamps_and_bad_model_options(tmp_path):
    # seconds on one line, an ISO time on the next: their difference is decades, not a gap
    with pytest.raises(DatasetError, match="line 2 has a \"timestamp\" in an ISO-8601 time, line 1 in seconds"):
        _workload(tmp_path, [{"timestamp": 0, "body": {}}, {"timestamp": "2026-01-01T00:00:01Z", "body": {}}])
    with pytest.raises(DatasetError, match="model_override.*a string"):
        _workload(tmp_path, [{"timestamp": 0, "body": {}}], model_override=5)
    with pytest.raises(DatasetError, match="model_mapping.*model names"):
        _workload(tmp_path, [{"timestamp": 0, "body": {}}], model_mapping={"a": 1})


def test_match_output_length_sets_the_limit_the_body_uses(tmp_path):
    lines = [{"timestamp": 0, "completion_tokens": 7, "body": {"max_completion_tokens": 512}},
             {"timestamp": 1, "completion_tokens": 8, "body": {"max_output_tokens": 512, "input": "x"}},
             {"timestamp": 2, "completion_tokens": 9, "body": {"messages": []}}]
    bodies = [item.body for item in _workload(tmp_path, lines, match_output_length=True)]
    assert bodies[0]["max_completion_tokens"] == 7 and "max_tokens" not in bodies[0]
    assert bodies[1]["max_output_tokens"] == 8 and "max_tokens" not in bodies[1]
    assert bodies[2]["max_tokens"] == 9
