"""Embeddings, rerank and the Responses API (issue 17 item 6): the mock
against the official `openai` client, whole runs of each `--api` against the
mock (rows, summary, percentiles), their datasets, and a --url path that
belongs to another --api."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import pickle

import openai
import pytest
import requests

from conftest import find_dbs, rows, run_engine
from engine.mock import start_mock
from engine.mock.retrieval_api import EMBEDDING_DIM, score, vector
from engine.mock.tokens import output_text

TOKENS = 6


@pytest.fixture(scope="module")
def mock():
    with start_mock(["--ttft-ms", "30", "--itl-ms", "4", "--tokens", str(TOKENS), "--model-name", "m"]) as m:
        yield m


@pytest.fixture(scope="module")
def client(mock):
    return openai.OpenAI(base_url=mock.base_url + "/v1", api_key="x", max_retries=0)


def decode(text):
    return pickle.loads(base64.b64decode(text))


def run_folder(out):
    dbs = find_dbs(out)
    assert len(dbs) == 1, dbs
    return os.path.dirname(dbs[0])


def read_json(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


# -- the official client accepts the mock's replies ----------------------------------

def test_openai_client_embeddings_base64_and_float(client):
    # the client asks for base64 by default and decodes it itself
    got = client.embeddings.create(model="m", input=["alpha bravo", "charlie"])
    assert [d.index for d in got.data] == [0, 1]
    assert got.data[0].embedding == pytest.approx(vector("alpha bravo"), rel=1e-6)  # float32 round trip
    assert got.usage.prompt_tokens == 3 and got.usage.total_tokens == 3
    flt = client.embeddings.create(model="m", input="alpha bravo", encoding_format="float")
    assert flt.data[0].embedding == vector("alpha bravo") and len(flt.data[0].embedding) == EMBEDDING_DIM


def test_openai_client_streams_a_responses_reply(client):
    stream = client.responses.create(model="m", input="one two three", stream=True)
    types, text, final = [], "", None
    for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            final = event.response
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == TOKENS
    assert text == output_text(TOKENS) == final.output_text
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == TOKENS


def test_openai_client_reads_a_whole_responses_reply(client):
    reply = client.responses.create(model="m", input=[{"role": "user", "content": "one two"}], max_output_tokens=2)
    assert reply.output_text == output_text(2) and reply.status == "incomplete"
    assert reply.usage.input_tokens == 2 and reply.usage.output_tokens == 2


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_rerank_in_vllm_shape(mock, path):
    # the openai client has no rerank: vLLM's/Jina's wire shape over plain requests
    docs = ["bravo zulu", "alpha bravo", {"text": "yankee"}]
    reply = requests.post(mock.base_url + path, json={"model": "m", "query": "alpha bravo", "documents": docs,
                                                     "top_n": 2}, timeout=10).json()
    assert [r["index"] for r in reply["results"]] == [1, 0]
    assert reply["results"][0]["relevance_score"] == score("alpha bravo", "alpha bravo")
    assert reply["results"][0]["document"] == {"text": "alpha bravo"}
    assert reply["usage"]["total_tokens"] == 3 * 2 + 2 + 2 + 1


# -- whole runs of each --api against the mock -----------------------------------------

def test_embedding_run_has_latency_and_input_tokens_but_no_ttft(tmp_path, mock):
    data = tmp_path / "texts.jsonl"
    texts = ["alpha bravo charlie", "delta echo", "foxtrot golf hotel india"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    mock.truth(clear=True)
    run_engine("--url", mock.base_url + "/v1/embeddings", "--api", "openai_embedding", "--model", "m",
               "--dataset", "embedding", "--dataset-path", data, "-n", 6, "--parallel", 2,
               "--outputs-dir", tmp_path / "out", "--no-plots")
    folder = run_folder(tmp_path / "out")
    result = rows(os.path.join(folder, "benchmark_data.db"))
    truth = {t["request_id"]: t for t in mock.truth() if t["path"] == "/v1/embeddings"}
    assert len(result) == 6
    for row in result:
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        assert body["input"] in texts and body["model"] == "m" and set(body) == {"model", "input"}
        assert row["first_chunk_latency"] is None and row["n_chunks"] == 0 and row["time_per_output_token"] is None
        assert row["prompt_tokens"] == truth[row["request_id"]]["prompt_tokens"] == len(body["input"].split())
        assert row["completion_tokens"] == 0 and row["is_stream"] == 0
        assert row["latency"] >= 0.030  # the mock answers --ttft-ms after arrival
    summary = read_json(folder, "benchmark_summary.json")
    for key in ("Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)", "Avg ITL per token (ms)"):
        assert key not in summary
    assert not summary["Definitions"]  # of TPOT and ITL per token: nothing to define
    assert summary["Success Requests"] == 6 and summary["Avg Latency (s)"] >= 0.030
    total_in = sum(r["prompt_tokens"] for r in result)
    assert summary["Input Throughput (tok/s)"] == pytest.approx(total_in / summary["Test Duration (s)"], rel=0.01)
    pct = read_json(folder, "benchmark_percentile.json")
    columns = set(pct[0]) if isinstance(pct, list) else set(pct)
    assert "Latency (s)" in columns and "Input tokens" in columns
    assert not columns & {"TTFT (ms)", "ITL (ms)", "TPOT (ms)"}
    # nor empty TTFT/TPOT/ITL plots
    import analysis
    from analysis.plots import run_figures

    figures = run_figures(analysis.load(folder))
    assert "latency_distribution" in figures and not {"ttft_distribution", "itl_distribution"} & set(figures)


def test_rerank_run_sends_query_and_documents(tmp_path, mock):
    data = tmp_path / "pairs.jsonl"
    pairs = [{"query": "alpha bravo", "documents": ["alpha", "bravo charlie", "delta"]},
             {"query": "echo", "passages": ["echo foxtrot", "golf"]}]
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    # no --dataset: a file given to --api openai_rerank is read as the rerank dataset
    run_engine("--url", mock.base_url + "/rerank", "--api", "openai_rerank", "--model", "m", "--dataset-path", data,
               "-n", 4, "--extra-args", '{"top_n": 1}', "--outputs-dir", tmp_path / "out", "--no-plots")
    folder = run_folder(tmp_path / "out")
    result = rows(os.path.join(folder, "benchmark_data.db"))
    assert len(result) == 4
    for i, row in enumerate(result):
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        pair = pairs[i % 2]
        docs = pair.get("documents") or pair["passages"]
        assert body == {"model": "m", "query": pair["query"], "documents": docs, "top_n": 1}
        reply = json.loads(decode(row["response_messages"])[0])
        assert len(reply["results"]) == 1
        assert row["prompt_tokens"] == reply["usage"]["total_tokens"] and row["completion_tokens"] == 0
        assert row["first_chunk_latency"] is None
    assert "Avg TTFT (ms)" not in read_json(folder, "benchmark_summary.json")


def test_responses_run_times_the_first_text_delta(tmp_path, mock):
    mock.truth(clear=True)
    run_engine("--url", mock.base_url + "/v1/responses", "--api", "openai_responses", "--model", "m", "-n", 4,
               "--max-tokens", 4, "--outputs-dir", tmp_path / "out", "--no-plots")
    folder = run_folder(tmp_path / "out")
    result = rows(os.path.join(folder, "benchmark_data.db"))
    truth = {t["request_id"]: t for t in mock.truth() if t["path"] == "/v1/responses"}
    assert len(result) == 4
    for row in result:
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        assert body["max_output_tokens"] == 4 and body["stream"] is True and "max_tokens" not in body
        events = [json.loads(e) for e in decode(row["response_messages"])]
        deltas = [i for i, e in enumerate(events) if e["type"] == "response.output_text.delta"]
        assert row["n_chunks"] == len(deltas) == 4
        times = json.loads(row["event_times"])
        # TTFT is the first text delta's arrival, not the created/in_progress events'
        assert row["first_chunk_latency"] == pytest.approx(times[deltas[0]], abs=1e-6)
        assert times[0] < row["first_chunk_latency"]
        t = truth[row["request_id"]]
        assert row["prompt_tokens"] == t["prompt_tokens"] and row["completion_tokens"] == t["completion_tokens"] == 4
        assert row["first_answer_latency"] is None  # no reasoning
        # the server's own gap from first byte to first delta shows in the client's figure too
        server_gap = t["first_content_time"] - t["event_times"][0]
        assert row["first_chunk_latency"] - times[0] == pytest.approx(server_gap, abs=0.02)
    summary = read_json(folder, "benchmark_summary.json")
    assert summary["Avg TTFT (ms)"] >= 30 and summary["Avg Output Tokens"] == 4


def test_a_cut_responses_stream_is_a_failed_row():
    from engine.derive import to_row
    from engine.records import FinishedRecord
    from plugins.api.openai_responses import OpenaiResponsesPlugin
    from conftest import sent_as

    events = ('{"type":"response.created","response":{}}',
              '{"type":"response.output_text.delta","delta":"hi"}')
    record = FinishedRecord(seq=0, worker="w", scheduled_time=0.0, start_time=1.0, latency_s=0.5, status_code=200,
                            events=events, event_offsets_s=(0.01, 0.2), error=None, transport_failed=False,
                            is_stream=True, saw_done=False, attempt=0, reconnects=0, final=True)
    row = to_row(record, sent_as("r"), OpenaiResponsesPlugin())
    assert row["success"] == 0 and "response.completed" in row["error"]
    failed = ('{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}',)
    row = to_row(dataclasses.replace(record, events=failed, event_offsets_s=(0.1,)), sent_as("r"),
                 OpenaiResponsesPlugin())
    assert row["success"] == 0 and "boom" in row["error"]


def test_an_embeddings_reply_that_came_as_a_stream_still_makes_a_row():
    """Found in review: a 2xx event stream to a plugin that generates no
    tokens left the output indexes unset (UnboundLocalError in the collector)."""
    from engine.derive import to_row
    from engine.records import FinishedRecord
    from plugins.api.openai_embedding import OpenaiEmbeddingPlugin
    from conftest import sent_as

    events = ('{"object":"list","data":[],"usage":{"prompt_tokens":3,"total_tokens":3}}',)
    record = FinishedRecord(seq=0, worker="w", scheduled_time=0.0, start_time=1.0, latency_s=0.5, status_code=200,
                            events=events, event_offsets_s=(0.4,), error=None, transport_failed=False,
                            is_stream=True, saw_done=True, attempt=0, reconnects=0, final=True)
    row = to_row(record, sent_as("e"), OpenaiEmbeddingPlugin())
    assert row["first_chunk_latency"] is None and row["chunk_tokens"] is None and row["latency"] == 0.5


# -- datasets ---------------------------------------------------------------------------

def test_embedding_dataset_reads_text_lines_and_json(tmp_path):
    from engine.arguments import Arguments
    from plugins.datasets.retrieval import EmbeddingDataset

    txt = tmp_path / "t.txt"
    txt.write_text("one\n\n two \n")
    assert list(EmbeddingDataset(Arguments(dataset_path=str(txt))).build_messages()) == ["one", "two"]
    js = tmp_path / "t.json"
    js.write_text(json.dumps(["a", {"input": "b"}, {"sentence": "c"}]))
    assert list(EmbeddingDataset(Arguments(dataset_path=str(js))).build_messages()) == ["a", "b", "c"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"label": 1}\n')
    from engine.errors import DatasetError

    with pytest.raises(DatasetError, match="item 1"):
        list(EmbeddingDataset(Arguments(dataset_path=str(bad))).build_messages())


def test_random_datasets_need_a_tokenizer_and_make_exact_lengths(tmp_path):
    from engine.arguments import Arguments
    from engine.errors import DatasetError
    from plugins.datasets.retrieval import RandomEmbeddingDataset, RandomRerankDataset
    from plugins.tokenizer import load_tokenizer
    from test_plugins_tokenizer import train_tokenizer

    with pytest.raises(DatasetError, match="--tokenizer-path"):
        RandomEmbeddingDataset(Arguments(dataset="random_embedding"))
    path = str(train_tokenizer(tmp_path / "tokenizer.json", "bpe"))
    args = Arguments(tokenizer_path=path, min_prompt_length=5, max_prompt_length=9, seed=3,
                     extra_args={"num_documents": 3, "document_length_ratio": 2})
    tok = load_tokenizer(path)
    it = RandomEmbeddingDataset(args).build_messages()
    lengths = [tok.count(next(it)) for _ in range(5)]
    assert all(5 <= n <= 9 for n in lengths)
    pair = next(RandomRerankDataset(args).build_messages())
    n = tok.count(pair["query"])
    assert len(pair["documents"]) == 3 and all(tok.count(d) == 2 * n for d in pair["documents"])
    # the dataset's knobs are not sent to the server
    from plugins.api.openai_rerank import OpenaiRerankPlugin

    body = OpenaiRerankPlugin(args).build_request(pair, args)
    assert set(body) == {"model", "query", "documents"}


# -- a --url path that another --api speaks ----------------------------------------------

@pytest.mark.parametrize("path,api,right", [
    ("/v1/embeddings", "openai", "openai_embedding"),
    ("/v1/rerank", "openai", "openai_rerank"),
    ("/gateway/v1/responses", "openai", "openai_responses"),
    ("/v1/chat/completions", "openai_embedding", "openai"),
    ("/v1/embeddings", "openai_responses", "openai_embedding"),
])
def test_a_url_of_another_api_is_one_line_naming_the_right_api(tmp_path, path, api, right):
    proc = run_engine("--url", "http://127.0.0.1:9" + path, "--api", api, "--outputs-dir", tmp_path / "out",
                      check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"use --api {right} " in lines[0] and path.rstrip("/") in lines[0]
    assert find_dbs(tmp_path) == []


def test_a_url_the_api_speaks_passes_the_check():
    from engine.endpoints import check_api_path

    for api, url in (("openai", "http://h/v1/chat/completions"), ("openai_rerank", "http://h/rerank"),
                     ("openai_embedding", "http://h/proxy/v1/embeddings/"), ("custom", "http://h/v1/embeddings"),
                     ("openai", "http://h/some/other/path")):
        check_api_path(api, url)  # no error


def test_a_responses_stream_cut_by_the_server_is_a_failed_row_with_its_output(tmp_path):
    # the mock's no_done fault: the body ends cleanly half-way, without response.completed
    with start_mock(["--ttft-ms", "5", "--itl-ms", "1", "--tokens", "8", "--fault", "no-done"]) as m:
        proc = run_engine("--url", m.base_url + "/v1/responses", "--api", "openai_responses", "--model", "m",
                          "-n", 2, "--no-test-connection", "--outputs-dir", tmp_path / "out", "--no-plots",
                          check=False)
    assert proc.returncode == 1 and "response.completed" in proc.stderr  # nothing succeeded: said, exit 1
    result = rows(find_dbs(tmp_path / "out")[0])
    assert len(result) == 2
    for row in result:
        assert row["success"] == 0 and row["error"] == "stream ended without response.completed"
        assert row["status_code"] == 200 and row["first_chunk_latency"] is not None and row["n_chunks"] >= 1


@pytest.mark.parametrize("knobs, message", [
    ({"num_documents": "x"}, "num_documents must be a whole number >= 1, got 'x'"),
    ({"num_documents": 2.7}, "num_documents must be a whole number >= 1, got 2.7"),
    ({"num_documents": True}, "num_documents must be a whole number >= 1, got True"),
    ({"document_length_ratio": 0}, "document_length_ratio must be a number > 0, got 0"),
])
def test_random_rerank_knobs_are_checked_in_one_line(tmp_path, knobs, message):
    from test_plugins_tokenizer import train_tokenizer

    tok = train_tokenizer(tmp_path / "tokenizer.json", "wordlevel")
    proc = run_engine("--api", "openai_rerank", "--url", "http://127.0.0.1:9/v1/rerank", "--dataset",
                      "random_rerank", "--tokenizer-path", tok, "--extra-args", json.dumps(knobs),
                      "--outputs-dir", tmp_path / "out", "--no-test-connection", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert message in proc.stderr
