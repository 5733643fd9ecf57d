"""ITL per token (engine.timing's definition): hand-built databases with the
answer worked out here, the weighted percentiles against the repeated
samples, and end to end against the mock sending several tokens per chunk."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    from test_analysis_dbutil import T0, req, write_db
except ImportError:  # tests imported as a package
    from tests.test_analysis_dbutil import T0, req, write_db

from conftest import find_dbs, rows, run_engine

import analysis
from analysis.stats import PERCENTILE_LABELS, nearest_rank
from analysis.token_itl import weighted_nearest_rank
from engine.arguments import Arguments
from engine.mock.launch import start_mock
from plugins.api.openai import OpenaiPlugin


def _with_tokens(row: dict, counts) -> dict:
    row["chunk_tokens"] = None if counts is None else json.dumps(counts)
    return row


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    rows_ = [
        # gaps 200, 50, 400 ms over 4, 1, 8 tokens: 50 ms per token, 13 tokens
        _with_tokens(req(0, start=T0, latency=1.0, chunk_times=[0.1, 0.3, 0.35, 0.75], completion=15), [2, 4, 1, 8]),
        # the middle event carried no token yet: its gap joins the next, 300 ms over 3 tokens = 100 ms, 3 tokens
        _with_tokens(req(1, start=T0 + 1, latency=0.5, chunk_times=[0.1, 0.2, 0.4], completion=4), [1, 0, 3]),
        # no counts: per-event gaps only
        _with_tokens(req(2, start=T0 + 2, latency=0.5, chunk_times=[0.1, 0.3], completion=2), None),
        # counts that do not match its events: left out, not misaligned
        _with_tokens(req(3, start=T0 + 3, latency=0.5, chunk_times=[0.1, 0.2, 0.3], completion=3), [1, 1]),
        # failed: never a sample
        _with_tokens(req(4, start=T0 + 4, latency=0.5, chunk_times=[0.1, 0.2], success=0, status=500,
                         error="HTTP 500: x"), [1, 1]),
        # warm-up: never a sample
        _with_tokens(req(5, start=T0 - 5, latency=0.5, chunk_times=[0.1, 0.2], completion=2, warmup=1), [1, 1]),
    ]
    return analysis.load(write_db(str(tmp_path_factory.mktemp("tokitl")), rows_))


def test_itl_per_token_from_a_hand_built_database(frames):
    # By hand: 13 tokens at 50 ms and 3 at 100 ms (16 tokens).
    pct = analysis.percentiles(frames).set_index("Percentiles")
    col = pct["ITL per token (ms)"]
    assert col["min"] == pytest.approx(50.0) and col["max"] == pytest.approx(100.0)
    assert col["50%"] == pytest.approx(50.0)   # rank 8 of 16
    assert col["75%"] == pytest.approx(50.0)   # rank 12
    assert col["90%"] == pytest.approx(100.0)  # rank ceil(14.4) = 15
    s = analysis.summary(frames)
    assert s["Avg ITL per token (ms)"] == pytest.approx((13 * 50 + 3 * 100) / 16, abs=1e-4)
    # evalscope's ITL keeps its meaning: every gap between output events of the successful measured
    # requests: 200, 50, 400 | 100, 200 | 200 | 100, 100
    assert s["Avg ITL (ms)"] == pytest.approx((200 + 50 + 400 + 100 + 200 + 200 + 100 + 100) / 8, abs=1e-4)
    assert pct["ITL (ms)"]["max"] == pytest.approx(400.0)
    assert "Avg ITL per token (ms)" in s["Definitions"]


def test_no_counts_no_per_token_figure(tmp_path):
    f = analysis.load(write_db(str(tmp_path), [req(0, chunk_times=[0.1, 0.2, 0.3], completion=3)]))
    assert analysis.summary(f)["Avg ITL per token (ms)"] is None
    assert analysis.percentiles(f)["ITL per token (ms)"].isna().all()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000, allow_nan=False), st.integers(0, 9)), min_size=1, max_size=40))
def test_weighted_ranks_are_the_ranks_of_the_repeated_values(pairs):
    values = np.array([v for v, _ in pairs])
    weights = np.array([w for _, w in pairs], dtype=float)
    repeated = np.repeat(values, weights.astype(int))
    expected = nearest_rank(repeated)
    got = weighted_nearest_rank(values, weights)
    assert got == expected or (not repeated.size and all(np.isnan(got)))


def test_the_openai_plugin_asks_for_usage_in_every_chunk_only_when_told():
    def stream_options(**kw):
        args = Arguments(model="m", **kw)
        return OpenaiPlugin(args).build_request([{"role": "user", "content": "x"}], args).get("stream_options")

    assert stream_options(continuous_usage=True) == {"include_usage": True, "continuous_usage_stats": True}
    assert stream_options(continuous_usage=False) == {"include_usage": True}
    assert stream_options() == {"include_usage": True}  # undecided (no pre-flight check): not asked
    assert stream_options(continuous_usage=True, stream=False) is None


# -- end to end: the mock's chunks, our client, the report ----------------------------

def _run(tmp_path, mock_args, *flags):
    with start_mock(["--ttft-ms", "5", *mock_args]) as m:
        run_engine("--url", m.chat_url, "--model", "m", "--number", 12, "--parallel", 3, "--workers", 1,
                   "--outputs-dir", tmp_path, "--no-plots", *flags)
    (db,) = find_dbs(tmp_path)
    f = analysis.load(db)
    return db, analysis.summary(f), analysis.percentiles(f).set_index("Percentiles")


def test_four_tokens_a_chunk_per_token_itl_is_the_mocks_token_interval(tmp_path):
    # The mock's --itl-ms is the gap between events (engine/mock/config.py): 8 ms an event
    # of 4 tokens is 2 ms a token.  The pre-flight check turns continuous usage on by itself.
    db, s, pct = _run(tmp_path, ["--itl-ms", "8", "--tokens", "128", "--tokens-per-chunk", "4"])
    assert {r["chunk_tokens"] for r in rows(db)} == {"[" + ",".join(["4"] * 32) + "]"}
    assert json.loads(rows(db, "SELECT args FROM run")[0]["args"])["continuous_usage"] is True
    assert s["Avg ITL per token (ms)"] == pytest.approx(8.0 / 4, abs=0.1)
    assert s["Avg ITL (ms)"] == pytest.approx(8.0, abs=0.4 * 4)  # per event, what evalscope reports


def test_variable_chunks_per_token_itl_stays_right_per_chunk_gaps_do_not(tmp_path):
    # 1..8 tokens an event (mean 4.5) with --itl-ms 9: each token takes 9 / 4.5 = 2 ms, an event
    # of n tokens comes 2n ms after the one before it.
    db, s, pct = _run(tmp_path, ["--itl-ms", "9", "--tokens", "256", "--tokens-per-chunk", "1-8"])
    counts = [n for r in rows(db) for n in json.loads(r["chunk_tokens"])]
    assert min(counts) == 1 and max(counts) == 8
    assert s["Avg ITL per token (ms)"] == pytest.approx(2.0, abs=0.1)
    assert pct.at["50%", "ITL per token (ms)"] == pytest.approx(2.0, abs=0.5)
    # per event the gaps spread from ~2 to ~16 ms, and their mean is no token's interval
    assert pct.at["90%", "ITL (ms)"] - pct.at["10%", "ITL (ms)"] > 8.0
    assert abs(s["Avg ITL (ms)"] - 2.0) > 4.0


def test_no_continuous_usage_is_not_asked_and_leaves_no_counts(tmp_path):
    db, s, pct = _run(tmp_path, ["--itl-ms", "2", "--tokens", "16", "--tokens-per-chunk", "4"],
                      "--no-continuous-usage")
    assert {r["chunk_tokens"] for r in rows(db)} == {None}
    assert s["Avg ITL per token (ms)"] is None and s["Avg ITL (ms)"] is not None
    con = sqlite3.connect(db)
    bodies = [r[0] for r in con.execute("SELECT request FROM result")]
    con.close()
    from analysis.safe_pickle import decode_b64_pickle
    assert all("continuous_usage_stats" not in decode_b64_pickle(b)["stream_options"] for b in bodies)


def test_the_mock_draws_chunk_sizes_per_request_id_and_counts_usage_up():
    import requests
    import sseclient

    from engine.mock.tokens import output_text

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    with start_mock(["--ttft-ms", "0", "--itl-ms", "0", "--tokens", "40", "--tokens-per-chunk", "2-6"]) as m:
        def chunks(rid):
            r = requests.post(m.chat_url, json=body, headers={"X-Request-Id": rid}, timeout=10)
            events = [json.loads(e.data) for e in sseclient.SSEClient([r.content]).events() if e.data != "[DONE]"]
            content = [e for e in events if e["choices"] and e["choices"][0]["delta"].get("content")]
            return [e["choices"][0]["delta"]["content"] for e in content], [e["usage"]["completion_tokens"]
                                                                              for e in content]

        texts, done = chunks("same-id")
        assert (texts, done) == chunks("same-id")  # seeded by the request id
        assert "".join(texts) == output_text(40) and done[-1] == 40
        sizes = [b - a for a, b in zip([0] + done, done)]
        assert sizes == [len(t.split()) for t in texts]  # the running usage counts each chunk's tokens
        assert all(2 <= n <= 6 for n in sizes[:-1]) and len(set(sizes)) > 1


class _Refuses:
    """An OpenAI-like server that answers 400 to continuous_usage_stats (or, with
    ignore, streams without usage in the chunks)."""

    def __init__(self, ignore: bool):
        import http.server
        import threading

        self.posts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self._send(404, b"{}", "application/json")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posts.append(body)
                if (body.get("stream_options") or {}).get("continuous_usage_stats") and not ignore:
                    return self._send(400, b'{"error": {"message": "unknown field"}}', "application/json")
                if body.get("stream"):
                    chunk = {"choices": [{"delta": {"content": "x"}, "finish_reason": "length"}]}
                    return self._send(200, b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n",
                                      "text/event-stream")
                self._send(200, b'{"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}',
                           "application/json")

            def _send(self, status, data, kind):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("ignore", [False, True])
def test_a_server_without_continuous_usage_leaves_it_off(ignore):
    from engine import preflight

    server = _Refuses(ignore)
    try:
        (run,) = preflight.check([Arguments(url=server.url, model="m")])
        assert run.continuous_usage is False
        asked = [b.get("stream_options", {}).get("continuous_usage_stats") for b in server.posts]
        # refused: asked once, then the plain check; ignored: the one streamed check said enough
        assert asked == ([True] if ignore else [True, None])
        (run,) = preflight.check([Arguments(url=server.url, model="m", continuous_usage=True)])
        assert run.continuous_usage is True  # what the user asked for stands
    finally:
        server.close()
