"""Reasoning models (issue 17 item 7): a stream that reasons before it
answers gets TTFT (the first output of any kind) and a time to first answer
token, and its reasoning vs answer token counts, judged against the mock's
--reasoning-tokens streams and their ground truth."""
from __future__ import annotations

import json
import os

import pytest

from conftest import find_dbs, rows, run_engine
from engine.mock import start_mock

REASONING = 8
ANSWER = 5
ITL_MS = 15.0
REASONING_S = REASONING * ITL_MS / 1000.0  # one token per event: the answer starts this long after the reasoning


def run(tmp_path, url, api, n=6):
    out = tmp_path / "out"
    run_engine("--url", url, "--api", api, "--model", "m", "-n", n, "--parallel", 2, "--outputs-dir", out,
               "--no-plots")
    dbs = find_dbs(out)
    assert len(dbs) == 1
    folder = os.path.dirname(dbs[0])
    with open(os.path.join(folder, "benchmark_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    with open(os.path.join(folder, "benchmark_percentile.json"), encoding="utf-8") as f:
        pct = json.load(f)
    return rows(dbs[0]), summary, pct


@pytest.mark.parametrize("api,path,field", [
    ("openai", "/v1/chat/completions", "reasoning_content"),
    ("openai", "/v1/chat/completions", "reasoning"),
    ("openai_responses", "/v1/responses", "reasoning_content"),
])
def test_ttfat_minus_ttft_is_the_reasoning_time(tmp_path, api, path, field):
    with start_mock(["--ttft-ms", "20", "--itl-ms", str(ITL_MS), "--tokens", str(ANSWER),
                     "--reasoning-tokens", str(REASONING), "--reasoning-field", field]) as mock:
        result, summary, pct = run(tmp_path, mock.base_url + path, api)
        truth = {t["request_id"]: t for t in mock.truth() if t["path"] == path}
    assert len(result) == 6
    for row in result:
        assert row["success"] == 1, row["error"]
        t = truth[row["request_id"]]
        ttft, ttfat = row["first_chunk_latency"], row["first_answer_latency"]
        assert ttft is not None and ttfat is not None
        # what the server did, and what the client saw of it
        server_s = t["first_answer_time"] - t["first_content_time"]
        assert server_s == pytest.approx(REASONING_S, abs=0.03)
        assert ttfat - ttft == pytest.approx(server_s, abs=0.015)
        # TTFT is the first reasoning token: the first output event
        assert ttft == pytest.approx(json.loads(row["chunk_times"])[0], abs=1e-6)
        assert row["reasoning_tokens"] == REASONING and row["completion_tokens"] == REASONING + ANSWER
        assert row["n_chunks"] == REASONING + ANSWER
    assert summary["Avg Reasoning Tokens"] == REASONING and summary["Avg Answer Tokens"] == ANSWER
    assert summary["Avg TTFAT (ms)"] - summary["Avg TTFT (ms)"] == pytest.approx(REASONING_S * 1000, abs=30)
    assert "TTFAT (ms)" in pct[0]


def test_without_reasoning_there_is_no_ttfat(tmp_path, mock):
    result, summary, pct = run(tmp_path, mock.chat_url, "openai", n=4)
    for row in result:
        assert row["success"] == 1 and row["first_chunk_latency"] is not None
        assert row["first_answer_latency"] is None and row["reasoning_tokens"] is None
    assert not {"Avg TTFAT (ms)", "Avg Reasoning Tokens", "Avg Answer Tokens"} & set(summary)
    assert "TTFAT (ms)" not in pct[0]


def test_answer_and_reasoning_events_of_the_chat_shape():
    from plugins.api.openai import OpenaiPlugin

    events = ['{"choices":[{"delta":{"role":"assistant","content":""}}]}',
              '{"choices":[{"delta":{"reasoning_content":"hm"}}]}',
              '{"choices":[{"delta":{"reasoning":"hm"}}]}',
              '{"choices":[{"delta":{"content":"Yes"}}]}',
              '{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}',
              '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,'
              '"completion_tokens_details":{"reasoning_tokens":4}}}']
    plugin = OpenaiPlugin()
    assert plugin.output_event_indexes(events) == [1, 2, 3, 4]
    assert plugin.answer_event_indexes(events) == [3, 4]
    assert plugin.reasoning_tokens(events) == 4
    assert plugin.reasoning_tokens(events[:-1]) is None


@pytest.mark.parametrize("incremental", [True, False])
def test_dashscope_thinking_gets_a_first_answer_time(incremental):
    """qwen3 thinking over DashScope: message.reasoning_content before message.content,
    incremental or cumulative, and the reasoning tokens of its usage."""
    from conftest import sent_as
    from engine.derive import to_row
    from engine.records import FinishedRecord
    from plugins.api.dashscope import DashScopePlugin

    parts = [("hm", ""), (" so", ""), ("", "Yes"), ("", " indeed")]
    events, r_text, c_text = [], "", ""
    for n, (r, c) in enumerate(parts, 1):
        r_text, c_text = r_text + r, c_text + c
        rr, cc = (r, c) if incremental else (r_text, c_text)
        events.append(json.dumps({"output": {"choices": [{"message": {"role": "assistant", "reasoning_content": rr,
                                                                      "content": cc},
                                                          "finish_reason": "stop" if n == 4 else "null"}]},
                                  "usage": {"input_tokens": 3, "output_tokens": n,
                                            "output_tokens_details": {"reasoning_tokens": min(n, 2)}}}))
    offsets = (0.1, 0.2, 0.5, 0.6)
    record = FinishedRecord(seq=0, worker="w", scheduled_time=0.0, start_time=1.0, latency_s=0.7, status_code=200,
                            events=tuple(events), event_offsets_s=offsets, error=None, transport_failed=False,
                            is_stream=True, saw_done=False, attempt=0, reconnects=0, final=True)
    body = {"parameters": {"incremental_output": incremental}}
    row = to_row(record, sent_as("r", body), DashScopePlugin())
    assert row["success"] == 1, row["error"]
    assert row["first_chunk_latency"] == 0.1 and row["first_answer_latency"] == 0.5
    assert row["reasoning_tokens"] == 2 and row["completion_tokens"] == 4
