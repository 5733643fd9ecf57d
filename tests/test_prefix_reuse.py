"""Shared prefixes (issue 17 item 2): --prefix-count K distinct prefixes,
and the report line saying how many requests began with a prefix an
earlier request had sent (engine.prefix_reuse -> the database -> analysis)."""
import json
import os

from conftest import find_dbs, rows, run_engine
from engine.prefix_reuse import BLOCK_CHARS, PrefixReuse, prompt_text
from test_plugins_tokenizer import tokenizer_file  # noqa: F401  (fixture)


def summary_of(db):
    return json.load(open(os.path.join(os.path.dirname(db), "benchmark_summary.json")))


def test_prefix_count_shows_as_shared_prefix_requests(tmp_path, mock, tokenizer_file):  # noqa: F811
    def run(name, *extra):
        out = tmp_path / name
        run_engine("--url", mock.chat_url, "--dataset", "random", "--tokenizer-path", tokenizer_file,
                   "--min-prompt-length", 10, "--max-prompt-length", 60, "--number", 12, "--parallel", 4,
                   "--outputs-dir", out, "--no-plots", *extra)
        (db,) = find_dbs(out)
        return db

    # 64 tokens are at least 64 characters: each prefix fills at least one whole block
    db = run("k3", "--prefix-length", 64, "--prefix-count", 3)
    result = rows(db)
    assert all(0 <= r["shared_prefix_chars"] <= r["prompt_chars"] for r in result)
    # every request but the first of each of the 3 prefixes repeats one
    assert summary_of(db)["Shared Prefix Requests"] == 12 - 3
    assert sum(r["shared_prefix_chars"] > 0 for r in result) == 9
    assert 0 < summary_of(db)["Prefix Reuse (%)"] < 100
    plain = run("none")
    assert summary_of(plain)["Shared Prefix Requests"] == 0 and summary_of(plain)["Prefix Reuse (%)"] == 0


def test_a_conversation_reuses_its_history_block_by_block():
    reuse = PrefixReuse()
    history = [{"role": "user", "content": "u" * 150}]
    first = reuse.measure({"messages": history})
    assert first == {"prompt_chars": 151, "shared_prefix_chars": 0}
    history = history + [{"role": "assistant", "content": "a" * 100}, {"role": "user", "content": "v" * 80}]
    second = reuse.measure({"messages": history})
    # the first turn's text is a prefix of the second's: its whole blocks are reused, no more
    assert second["shared_prefix_chars"] == (151 // BLOCK_CHARS) * BLOCK_CHARS
    assert second["prompt_chars"] == len(prompt_text({"messages": history}))
    # a prompt that differs in its first character shares nothing
    assert reuse.measure({"messages": [{"role": "user", "content": "x" + "u" * 149}]})["shared_prefix_chars"] == 0
    assert reuse.measure({"prompt": "u" * 200})["shared_prefix_chars"] == 128  # "u"*150+"\n" vs "u"*200
    assert reuse.measure({"no": "prompt"}) == {"prompt_chars": None, "shared_prefix_chars": None}
