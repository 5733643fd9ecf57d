"""The built-in API plugins: openai, dashscope and custom.

Unit tests build bodies and read hand-written replies in the DashScope and
OpenAI shapes; the end-to-end tests run `python -m engine` against the mock
server and compare what was recorded with the mock's own ground truth."""
import base64
import json
import pickle

import pytest

from conftest import find_dbs, rows, run_engine
from engine.arguments import Arguments
from engine.mock.launch import start_mock
from plugins.api.custom import CustomApiPlugin
from plugins.api.dashscope import DashScopePlugin, merge_extra_args
from plugins.api.openai import OpenaiPlugin
from test_plugins_tokenizer import tokenizer_file  # noqa: F401  (a fixture)

CHAT = [{"role": "user", "content": 'say "hi"\nplease'}]


def decode(text):
    return pickle.loads(base64.b64decode(text))


def args(**kw):
    kw.setdefault("url", "http://127.0.0.1:1/v1/chat/completions")
    kw.setdefault("model", "m")
    return Arguments(**kw)


# --- openai ------------------------------------------------------------------

def test_openai_chat_body_sends_only_what_was_given():
    a = args()
    body = OpenaiPlugin(a).build_request(CHAT, a)
    assert body == {"model": "m", "messages": CHAT, "stream": True, "stream_options": {"include_usage": True}}
    a = args(stream=False, max_tokens=5, temperature=0.5, top_p=0.9, top_k=3, stop=["x"],
             extra_args={"ignore_eos": True})
    body = OpenaiPlugin(a).build_request(CHAT, a)
    assert body == {"model": "m", "messages": CHAT, "stream": False, "max_tokens": 5, "temperature": 0.5,
                    "top_p": 0.9, "top_k": 3, "stop": ["x"], "ignore_eos": True}


def test_openai_plain_completions_for_a_completions_url_or_a_plain_string():
    a = args(url="http://h:1/v1/completions")
    body = OpenaiPlugin(a).build_request(CHAT, a)
    assert body["prompt"] == CHAT[0]["content"] and "messages" not in body
    assert body["stream_options"] == {"include_usage": True}
    a = args()  # a chat URL, but the dataset yields a plain string
    body = OpenaiPlugin(a).build_request("a plain prompt", a)
    assert body["prompt"] == "a plain prompt" and "messages" not in body


def test_openai_query_template_substitutes_json_escaped_model_and_prompt():
    a = args(model='q"m', query_template='{"model": "%m", "input": {"text": "%p"}, "n": 1}',
             extra_args={"seed": 7})
    body = OpenaiPlugin(a).build_request(CHAT, a)
    assert body == {"model": 'q"m', "input": {"text": CHAT[0]["content"]}, "n": 1, "seed": 7}


def test_openai_parse_responses_takes_the_last_usage_and_none_without_one():
    plugin = OpenaiPlugin(args())
    events = [json.dumps({"choices": [{"delta": {"content": "a"}}]}),
              json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})]
    assert plugin.parse_responses(events) == (3, 1)
    assert plugin.parse_responses(events[:1]) == (None, None)


def test_openai_plain_completions_end_to_end_with_template_and_tokenizer_counts(tmp_path, mock, tokenizer_file):
    # A template without stream_options: the server sends no usage, so the
    # completion is counted with the tokenizer of --tokenizer-path.
    out = tmp_path / "out"
    template = '{"model": "%m", "prompt": "%p", "stream": true, "max_tokens": 6}'
    run_engine("--url", mock.completions_url, "--model", "tm", "--query-template", template,
               "--prompt", "count these words", "--tokenizer-path", tokenizer_file,
               "--number", 3, "--parallel", 1, "--workers", 1, "--outputs-dir", out)
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 3
    from plugins.tokenizer import load_tokenizer
    tok = load_tokenizer(str(tokenizer_file))
    for row in result:
        assert row["success"] == 1, row["error"]
        assert decode(row["request"]) == {"model": "tm", "prompt": "count these words", "stream": True,
                                          "max_tokens": 6}
        events = [json.loads(e) for e in decode(row["response_messages"])]
        assert all(e["object"] == "text_completion" and "usage" not in e for e in events)
        text = "".join(e["choices"][0]["text"] for e in events)
        assert row["token_source"] == "tokenizer"
        assert row["completion_tokens"] == tok.count(text) and row["completion_tokens"] > 0
        assert row["n_chunks"] == 6


# --- dashscope: the request ----------------------------------------------------

def test_dashscope_body_and_headers_follow_the_native_protocol():
    a = args(api="dashscope")
    plugin = DashScopePlugin(a)
    body = plugin.build_request(CHAT, a)
    assert body == {"model": "m", "input": {"messages": CHAT},
                    "parameters": {"result_format": "message", "incremental_output": True}}
    assert plugin.request_headers(a) == {"X-DashScope-SSE": "enable"}
    a = args(api="dashscope", stream=False, max_tokens=9, temperature=0.2, top_p=0.8, top_k=5, stop=["。"], seed=42)
    body = plugin.build_request("a plain prompt", a)
    assert body == {"model": "m", "input": {"prompt": "a plain prompt"},
                    "parameters": {"result_format": "message", "max_tokens": 9, "temperature": 0.2,
                                   "top_p": 0.8, "top_k": 5, "stop": ["。"], "seed": 42}}
    assert plugin.request_headers(a) == {}


def test_dashscope_extra_args_merge_recursively_and_flat_keys_are_parameters():
    body = {"model": "m", "input": {"messages": CHAT}, "parameters": {"result_format": "message",
                                                                      "incremental_output": True}}
    merged = merge_extra_args(body, {"parameters": {"incremental_output": False, "enable_search": True},
                                     "enable_thinking": False, "model": "other"})
    assert merged == {"model": "other", "input": {"messages": CHAT},
                      "parameters": {"result_format": "message", "incremental_output": False,
                                     "enable_search": True, "enable_thinking": False}}
    assert body["parameters"]["incremental_output"] is True  # the original is not changed


def test_dashscope_query_template():
    a = args(api="dashscope", query_template='{"model": "%m", "input": {"prompt": "%p"}}',
             extra_args={"top_k": 2})
    body = DashScopePlugin(a).build_request(CHAT, a)
    assert body == {"model": "m", "input": {"prompt": CHAT[0]["content"]}, "parameters": {"top_k": 2}}


# --- dashscope: the reply --------------------------------------------------------

def ds_event(content=None, reasoning=None, finish="null", out=1, text_format=False, tool_calls=None):
    if text_format:
        output = {"text": content or "", "finish_reason": finish}
    else:
        message = {"role": "assistant"}
        if content is not None:
            message["content"] = content
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        if tool_calls is not None:
            message["tool_calls"] = tool_calls
        output = {"choices": [{"message": message, "finish_reason": finish}]}
    return json.dumps({"output": output, "usage": {"input_tokens": 7, "output_tokens": out,
                                                   "total_tokens": 7 + out}, "request_id": "r"})


INCREMENTAL = {"parameters": {"incremental_output": True}}
CUMULATIVE = {"parameters": {"incremental_output": False}}


def test_dashscope_incremental_stream():
    plugin = DashScopePlugin(args(api="dashscope"))
    events = [ds_event("", out=0), ds_event("Hel", out=1), ds_event("lo", out=2), ds_event("", finish="stop", out=2)]
    assert plugin.output_event_indexes(events, INCREMENTAL) == [1, 2]
    assert plugin.completion_text(events) == "Hello"
    assert plugin.parse_responses(events) == (7, 2)
    assert plugin.stream_incomplete(events, False) is None


def test_dashscope_incremental_stream_with_repeated_deltas_is_not_taken_for_cumulative():
    plugin = DashScopePlugin(args(api="dashscope"))
    events = [ds_event("ha", out=1), ds_event("ha", out=2), ds_event("ha", finish="stop", out=3)]
    assert plugin.output_event_indexes(events, INCREMENTAL) == [0, 1, 2]
    assert plugin.completion_text(events) == "hahaha"


def test_dashscope_cumulative_stream_counts_only_events_that_grow():
    plugin = DashScopePlugin(args(api="dashscope"))
    events = [ds_event("", out=0), ds_event("The", out=1), ds_event("The", out=1), ds_event("The end", out=2),
              ds_event("The end.", out=3), ds_event("The end.", finish="stop", out=3)]
    assert plugin.output_event_indexes(events, CUMULATIVE) == [1, 3, 4]
    assert plugin.completion_text(events) == "The end."
    assert plugin.parse_responses(events) == (7, 3)


def test_dashscope_cumulative_when_the_server_ignores_incremental_output():
    plugin = DashScopePlugin(args(api="dashscope"))
    events = [ds_event("a", out=1), ds_event("a b", out=2), ds_event("a b c", finish="stop", out=3)]
    assert plugin.output_event_indexes(events, INCREMENTAL) == [0, 1, 2]
    assert plugin.completion_text(events) == "a b c"  # the last snapshot, not "aa ba b c"


def test_dashscope_reasoning_then_content_cumulative_and_text_format():
    plugin = DashScopePlugin(args(api="dashscope"))
    events = [ds_event("", reasoning="Let"), ds_event("", reasoning="Let me"), ds_event("", reasoning="Let me"),
              ds_event("Yes", reasoning="Let me"), ds_event("Yes", reasoning="Let me", finish="stop")]
    assert plugin.output_event_indexes(events, CUMULATIVE) == [0, 1, 3]
    assert plugin.completion_text(events) == "Let meYes"
    text = [ds_event("x", text_format=True), ds_event("xy", text_format=True, finish="length")]
    assert plugin.output_event_indexes(text, CUMULATIVE) == [0, 1]
    # two events are ambiguous: the run's own setting decides
    assert plugin.completion_text(text) == "xxy"
    cumulative_run = DashScopePlugin(args(api="dashscope", extra_args=CUMULATIVE))
    assert cumulative_run.completion_text(text) == "xy"
    assert plugin.stream_incomplete(text, False) is None


def test_dashscope_tool_call_events_carry_output():
    plugin = DashScopePlugin(args(api="dashscope"))
    call = [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    events = [ds_event("", out=0), ds_event("", tool_calls=call, finish="tool_calls", out=4)]
    assert plugin.output_event_indexes(events, INCREMENTAL) == [1]


def test_dashscope_errors_are_one_line_with_code_and_message():
    plugin = DashScopePlugin(args(api="dashscope"))
    body = json.dumps({"code": "InvalidApiKey", "message": "Invalid API-key\nprovided.", "request_id": "x"})
    assert plugin.response_error([body]) == "InvalidApiKey: Invalid API-key provided."
    events = [ds_event("a"), json.dumps({"code": "DataInspectionFailed", "message": "Output data may contain "
                                         "inappropriate content.", "request_id": "x"})]
    assert plugin.response_error(events) == ("DataInspectionFailed: Output data may contain inappropriate "
                                              "content.")
    assert plugin.response_error([ds_event("a", finish="stop")]) is None


def test_dashscope_stream_cut_short_is_incomplete():
    plugin = DashScopePlugin(args(api="dashscope"))
    assert plugin.stream_incomplete([ds_event("a"), ds_event("b")], False).startswith("stream ended before")
    assert plugin.stream_incomplete([ds_event("a"), ds_event("b", finish="length")], False) is None


# --- dashscope end to end, against the mock's native endpoint -----------------------

TTFT_MS, ITL_MS, TOKENS = 60, 15, 8


@pytest.fixture(scope="module")
def slow_mock():
    with start_mock(["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--tokens", str(TOKENS)]) as server:
        yield server


@pytest.mark.parametrize("mode", ["incremental", "cumulative", "no-stream"])
def test_dashscope_end_to_end_records_ttft_chunks_and_tokens(tmp_path, slow_mock, mode):
    out = tmp_path / "out"
    extra = []
    if mode == "cumulative":
        extra = ["--extra-args", '{"parameters": {"incremental_output": false}}']
    elif mode == "no-stream":
        extra = ["--no-stream"]
    slow_mock.truth(clear=True)
    run_engine("--url", slow_mock.dashscope_url, "--api", "dashscope", "--model", "qwen-plus",
               "--number", 3, "--parallel", 1, "--workers", 1, "--outputs-dir", out, *extra,
               env={"DASHSCOPE_API_KEY": "sk-test"})
    (db,) = find_dbs(out)
    result = rows(db)
    truth = {t["request_id"]: t for t in slow_mock.truth()}
    assert len(result) == 3
    for row in result:
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        assert body["input"]["messages"][0]["role"] == "user"
        assert body["parameters"]["result_format"] == "message"
        t = truth[row["request_id"]]
        assert t["path"].endswith("/text-generation/generation")
        assert row["completion_tokens"] == t["completion_tokens"] == TOKENS
        assert row["prompt_tokens"] == t["prompt_tokens"]
        assert row["token_source"] == "usage"
        events = decode(row["response_messages"])
        chunk_times = json.loads(row["chunk_times"])
        server_ttft = t["first_content_time"] - t["arrival"]
        if mode == "no-stream":
            assert row["is_stream"] == 0 and len(events) == 1 and row["n_chunks"] == 1
            assert row["first_chunk_latency"] == pytest.approx(row["latency"])
            continue
        assert t["stream"] and row["is_stream"] == 1
        assert body["parameters"]["incremental_output"] is (mode == "incremental")
        texts = [json.loads(e)["output"]["choices"][0]["message"]["content"] for e in events]
        if mode == "cumulative":
            assert texts[-1] == "".join(texts[i] if i == 0 else texts[i][len(texts[i - 1]):]
                                        for i in range(len(texts)))
            assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(texts, texts[1:]))
        # one output event per token (every event of the mock's stream carries
        # new text), TTFT at the first of them, timed as the server sent them
        assert row["n_chunks"] == len(t["content_times"]) == TOKENS == len(events)
        assert chunk_times == json.loads(row["event_times"])
        assert row["first_chunk_latency"] == chunk_times[0]
        # One clock for both, and causality: the request went out before the
        # server read it, and the first content was stamped by the kernel while
        # the server wrote it (before that write returned), not long after
        assert row["start_time"] <= t["arrival"]
        first_arrival = row["start_time"] + row["first_chunk_latency"]
        assert t["first_content_time"] - 0.15 < first_arrival <= t["first_content_time"] + 1e-5
        assert server_ttft - 0.15 < row["first_chunk_latency"] < server_ttft + 0.15
        assert row["first_chunk_latency"] >= TTFT_MS / 1000 * 0.9
        server_gaps = [b - a for a, b in zip(t["content_times"], t["content_times"][1:])]
        client_gaps = [b - a for a, b in zip(chunk_times, chunk_times[1:])]
        assert sum(client_gaps) == pytest.approx(sum(server_gaps), abs=0.05)
        assert row["chunk_time"] == pytest.approx(ITL_MS / 1000, abs=0.01)


# --- custom: the example API plugin runs against the mock ---------------------------

def test_custom_example_api_plugin_end_to_end(tmp_path, mock):
    a = args(api="custom", max_tokens=3)
    assert CustomApiPlugin(a).build_request("hi", a) == {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 3}
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--api", "custom", "--number", 4, "--parallel", 2, "--workers", 1,
               "--max-tokens", 5, "--outputs-dir", out)
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 4
    for row in result:
        assert row["success"] == 1, row["error"]
        assert row["completion_tokens"] == 5 and row["token_source"] == "usage" and row["n_chunks"] == 5
        text = CustomApiPlugin(a).completion_text(decode(row["response_messages"]))
        assert len(text.split()) == 5
