"""Token counts the server did not give are said, not hidden: the summary
(and so the console and benchmark_summary.json) warns when output tokens were
counted as events and when input tokens are unknown, with the share of rows.
End to end with the API plugin of docs/plugins.md, as documented (it asks
for usage) and as it was before (it did not)."""
import json
import os
import re

import pytest

import analysis
from conftest import ROOT, find_dbs, rows, run_engine
from test_analysis_dbutil import req, write_db

EVENTS = "counted as output events"


def test_the_summary_warns_with_the_share_of_rows_counted_as_events(tmp_path):
    rows_ = [req(i) for i in range(4)]
    rows_[1]["token_source"] = "events"
    rows_[2]["prompt_tokens"] = None
    warnings = analysis.summary(analysis.load(write_db(str(tmp_path), rows_)))["Warnings"]
    (events,) = [w for w in warnings if EVENTS in w]
    assert "1 of 4 successful requests (25.0 %)" in events and "include_usage" in events
    (unknown,) = [w for w in warnings if "input tokens unknown" in w]
    assert unknown.startswith("no usage and no tokenizer: input tokens unknown for 1 of 4")


def test_no_token_warning_when_the_server_gave_every_count(tmp_path):
    warnings = analysis.summary(analysis.load(write_db(str(tmp_path), [req(i) for i in range(3)])))["Warnings"]
    assert not [w for w in warnings if EVENTS in w or "input tokens" in w]


def docs_api_plugin(ask_for_usage: bool) -> str:
    """The first API plugin of docs/plugins.md, registered as `docs_api`;
    without the lines that ask for usage when `ask_for_usage` is False."""
    text = open(os.path.join(ROOT, "docs", "plugins.md")).read()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "class MyApi(" in block)
    asked = re.compile(r"\n        if param\.stream:\n(?:            #.*\n)*            body\[\"stream_options\"\].*\n")
    assert asked.search(code), "docs/plugins.md's example no longer asks for usage"
    if not ask_for_usage:
        code = asked.sub("\n", code)
    return code + "\nfrom plugins import register_api\nregister_api('docs_api')(MyApi)\n"


@pytest.fixture(scope="module")
def chunky_mock():
    """Four tokens per streamed event, as many servers send."""
    from engine.mock.launch import start_mock

    with start_mock(["--ttft-ms", "5", "--itl-ms", "2", "--tokens", "32", "--tokens-per-chunk", "4"]) as server:
        yield server


@pytest.mark.parametrize("ask_for_usage", [True, False], ids=["as documented", "without include_usage"])
def test_the_docs_plugin_and_the_warning_end_to_end(tmp_path, chunky_mock, ask_for_usage):
    plugin = tmp_path / "docs_api.py"
    plugin.write_text(docs_api_plugin(ask_for_usage))
    out = tmp_path / "out"
    proc = run_engine("--url", chunky_mock.chat_url, "--model", "m", "--plugin-module", plugin, "--api", "docs_api",
                      "--number", 4, "--parallel", 2, "--workers", 1, "--max-tokens", 32, "--no-plots",
                      "--outputs-dir", out)
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 4 and all(r["success"] == 1 for r in result)
    summary = json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))
    console = [line for line in proc.stdout.splitlines() if line.startswith("WARNING: ")]
    if ask_for_usage:
        assert {(r["token_source"], r["completion_tokens"]) for r in result} == {("usage", 32)}
        assert not [w for w in summary["Warnings"] if EVENTS in w or "input tokens" in w]
        assert not [line for line in console if EVENTS in line]
    else:
        # 32 tokens in 8 events of 4: counted as 8, and said so
        assert {(r["token_source"], r["completion_tokens"]) for r in result} == {("events", 8)}
        (events,) = [w for w in summary["Warnings"] if EVENTS in w]
        assert "4 of 4 successful requests (100.0 %)" in events
        assert any(w.startswith("no usage and no tokenizer: input tokens unknown (") for w in summary["Warnings"])
        assert f"WARNING: {events}" in console
