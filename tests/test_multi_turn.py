"""Multi-turn conversations (issue 17 item 1), judged by the mock's ground
truth: the history each turn carries, the think time between a reply's last
byte and the next turn's arrival, and that a conversation keeps its thread
and its connection."""
import base64
import json
import os
import pickle
import random

import pytest

from conftest import find_dbs, rows, run_engine
from engine.mock.launch import start_mock
from engine.mock.tokens import output_text
from test_plugins_tokenizer import tokenizer_file  # noqa: F401  (fixture)

THINK_S = 0.3
# The next turn is due THINK_S after the reply's last byte reached the client;
# on a busy 2-core machine it may reach the mock this much later still.
LATE_MARGIN_S = 0.35
# The mock stamps a reply's `end` once it has handed the last bytes to the
# kernel: the client may have read them a moment before that stamp.
END_STAMP_S = 0.005
# The row's completed_time is the send's epoch stamp plus a monotonic latency.
CLOCK_S = 0.001


def decode(text):
    return pickle.loads(base64.b64decode(text))


def conversation_file(path, conversations):
    path.write_text("".join(json.dumps(c) + "\n" for c in conversations))
    return path


def chat(*turns, system=None):
    """A recorded conversation: user turns with (ignored) assistant replies between them."""
    messages = [{"role": "system", "content": system}] if system else []
    for n, text in enumerate(turns):
        if n:
            messages.append({"role": "assistant", "content": "recorded reply, never sent"})
        messages.append({"role": "user", "content": text})
    return messages


def by_conversation(result):
    out = {}
    for row in result:
        out.setdefault(row["conversation_id"], []).append(row)
    return {k: sorted(v, key=lambda r: r["turn"]) for k, v in out.items()}


@pytest.fixture
def varied_mock():
    # reply lengths vary per request, so turn 1's and turn 2's replies differ
    with start_mock(["--ttft-ms", "5", "--itl-ms", "1", "--tokens", "24", "--tokens-min", "3"]) as server:
        yield server


def test_turns_carry_the_replies_received_think_time_and_one_thread(tmp_path, varied_mock):
    data = conversation_file(tmp_path / "c.jsonl", [
        chat("first question here", "second question", "third and last"),
        chat("hello there", "and again", "once more", system="be brief"),
    ])
    out = tmp_path / "out"
    run_engine("--url", varied_mock.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
               "--number", 4, "--parallel", 2, "--workers", 2, "--think-time", THINK_S, "--outputs-dir", out)
    (db,) = find_dbs(out)
    truth = {t["request_id"]: t for t in varied_mock.truth()}
    conversations = by_conversation(rows(db))
    assert len(conversations) == 4  # --number counts conversations
    differ = []  # whether turn 1's and turn 2's replies differ: the history then shows which is which
    for cid, turns in conversations.items():
        assert [r["turn"] for r in turns] == [1, 2, 3], cid
        assert all(r["success"] == 1 for r in turns), [r["error"] for r in turns]
        said = [truth[r["request_id"]] for r in turns]
        replies = [output_text(t["completion_tokens"]) for t in said]  # what the mock sent
        differ.append(replies[0] != replies[1])
        bodies = [decode(r["request"]) for r in turns]
        users = [[m for m in b["messages"] if m["role"] != "assistant"] for b in bodies]
        third = bodies[2]["messages"]
        # turn 3 carries the history: user, the real reply 1, user, the real reply 2, user
        offset = 1 if third[0]["role"] == "system" else 0
        assert len(third) == 5 + offset
        assert [m["role"] for m in third[offset:]] == ["user", "assistant", "user", "assistant", "user"]
        assert third[offset + 1]["content"] == replies[0]
        assert third[offset + 3]["content"] == replies[1]
        assert bodies[1]["messages"] == third[:offset + 3]  # turn 2 is turn 3's history
        assert users[2] == third[:offset] + [third[offset], third[offset + 2], third[offset + 4]]
        # the request column holds the body as sent, and the mock counted what was sent
        assert [t["prompt_tokens"] for t in said] == [
            sum(len(m["content"].split()) for m in b["messages"]) for b in bodies]
        # think time: from the reply's last byte to the next turn's arrival at the mock
        for before, after, row in zip(said, said[1:], turns):
            gap = after["arrival"] - before["end"]
            assert THINK_S - END_STAMP_S <= gap <= THINK_S + LATE_MARGIN_S, (cid, gap)
            # and never before THINK_S after the client had the last byte
            assert after["arrival"] - row["completed_time"] >= THINK_S - CLOCK_S, cid
        # one thread and one kept-alive connection for the whole conversation
        assert len({(r["worker"], r["thread"]) for r in turns}) == 1, cid
        assert turns[0]["thread"] is not None
        assert len({t["conn_id"] for t in said}) == 1, cid
        assert [t["conn_seq"] for t in said] == sorted(t["conn_seq"] for t in said)
    assert any(differ), "every conversation's first two replies had one length: the history test proved little"
    # --parallel 2 counts conversations: never more than two open at once, and two did overlap
    spans = sorted((turns[0]["start_time"], turns[-1]["completed_time"]) for turns in conversations.values())
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most == 2


def test_a_failed_turn_ends_its_conversation(tmp_path):
    data = conversation_file(tmp_path / "c.jsonl", [chat("one", "two", "three")])
    out = tmp_path / "out"
    with start_mock(["--ttft-ms", "1", "--itl-ms", "0", "--tokens", "4", "--fault", "http500=1"]) as server:
        proc = run_engine("--url", server.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
                          "--number", 3, "--parallel", 2, "--outputs-dir", out, "--no-test-connection", check=False)
        assert len(server.truth()) == 3  # only first turns reached the server
    assert proc.returncode == 1, proc.stderr
    (db,) = find_dbs(out)
    result = rows(db)
    assert sorted(r["turn"] for r in result) == [1, 1, 1]
    assert all(r["success"] == 0 and r["status_code"] == 500 for r in result)


def test_same_seed_same_bodies_and_think_times(tmp_path, mock, tokenizer_file):  # noqa: F811
    def run(seed, name):
        out = tmp_path / name
        run_engine("--url", mock.chat_url, "--dataset", "random_multi_turn", "--tokenizer-path", tokenizer_file,
                   "--min-turns", 2, "--max-turns", 4, "--min-prompt-length", 5, "--max-prompt-length", 30,
                   "--think-time", "0.01-0.1", "--seed", seed, "--number", 5, "--parallel", 2, "--outputs-dir", out)
        (db,) = find_dbs(out)
        convs = by_conversation(rows(db))
        bodies = {(c, r["turn"]): decode(r["request"])["messages"] for c, turns in convs.items() for r in turns}
        thinks = {(c, r["turn"]): round(r["scheduled_time"] - prev["completed_time"], 6)
                  for c, turns in convs.items() for prev, r in zip(turns, turns[1:])}
        return bodies, thinks, convs

    bodies, thinks, convs = run(7, "a")
    again, thinks_again, _ = run(7, "b")
    other, _, _ = run(8, "c")
    assert bodies == again and thinks == thinks_again
    assert bodies != other
    assert all(2 <= len(turns) <= 4 for turns in convs.values())
    assert all(0.01 <= t <= 0.1 for t in thinks.values())
    assert len(set(thinks.values())) > 1  # drawn, not fixed


def test_random_multi_turn_has_exact_token_lengths_and_turn_counts(tokenizer_file):  # noqa: F811
    from engine.arguments import Arguments
    from plugins.datasets.multi_turn import RandomMultiTurnDataset
    from plugins.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_file)
    p = Arguments(dataset="random_multi_turn", tokenizer_path=tokenizer_file, min_turns=1, max_turns=3,
                  min_prompt_length=4, max_prompt_length=40, seed=5)
    it = RandomMultiTurnDataset(p).build_conversations()
    conversations = [next(it) for _ in range(30)]
    assert {len(c) for c in conversations} == {1, 2, 3}
    lengths = [len(tok.encode(turn)) for c in conversations for turn in c]
    assert all(4 <= n <= 40 for n in lengths) and len(set(lengths)) > 5
    same = RandomMultiTurnDataset(p).build_conversations()
    assert [next(same) for _ in range(30)] == conversations


def test_dataset_offset_skips_items_and_conversations(tmp_path, mock):
    lines = tmp_path / "p.txt"
    lines.write_text("".join(f"prompt number {i}\n" for i in range(6)))
    out = tmp_path / "single"
    run_engine("--url", mock.chat_url, "--dataset-path", lines, "--dataset-offset", 2, "--number", 3,
               "--outputs-dir", out)
    (db,) = find_dbs(out)
    sent = [decode(r["request"])["messages"][0]["content"] for r in rows(db, "SELECT * FROM result ORDER BY start_time")]
    assert sent == ["prompt number 2", "prompt number 3", "prompt number 4"]
    data = conversation_file(tmp_path / "c.jsonl", [chat("a0", "a1"), chat("b0", "b1"), chat("c0")])
    out = tmp_path / "multi"
    run_engine("--url", mock.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
               "--dataset-offset", 1, "--number", 2, "--max-turns", 1, "--outputs-dir", out)
    (db,) = find_dbs(out)
    firsts = [decode(r["request"])["messages"][0]["content"] for r in rows(db, "SELECT * FROM result ORDER BY start_time")]
    assert firsts == ["b0", "c0"]  # and --max-turns 1 truncated b's two turns to one


def test_a_plugin_yields_conversations_through_the_sdk(tmp_path, mock):
    plugin = tmp_path / "my_convs.py"
    plugin.write_text(
        "from plugins import DatasetPluginBase, register_dataset\n\n"
        "@register_dataset('my_convs')\n"
        "class MyConvs(DatasetPluginBase):\n"
        "    def build_messages(self):\n"
        "        yield [self.create_message('single')]\n"
        "    def build_conversations(self):\n"
        "        yield ['plugin turn one', 'plugin turn two']\n")
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--plugin-module", plugin, "--dataset", "my_convs", "--number", 2,
               "--outputs-dir", out)
    (db,) = find_dbs(out)
    result = rows(db)
    assert sorted((r["conversation_id"], r["turn"]) for r in result) == [
        ("conv-0", 1), ("conv-0", 2), ("conv-1", 1), ("conv-1", 2)]
    second = [decode(r["request"])["messages"] for r in result if r["turn"] == 2][0]
    assert [m["content"] for m in second if m["role"] == "user"] == ["plugin turn one", "plugin turn two"]


@pytest.mark.parametrize("args, says", [
    (["--multi-turn", "--dataset", "builtin"], "--multi-turn needs a dataset of conversations"),
    (["--dataset", "random_multi_turn", "--tokenizer-path", "TOK"], "needs --max-turns"),
    (["--min-turns", "3", "--max-turns", "2"], "--min-turns 3 is larger than --max-turns 2"),
    (["--think-time", "5-1"], "--think-time"),
    (["--dataset", "custom_multi_turn", "--dataset-path", "BAD"], "conversation 1 is not a list of chat messages"),
])
def test_bad_multi_turn_input_is_one_line(tmp_path, mock, tokenizer_file, args, says):  # noqa: F811
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"role": "user", "content": "not a list"}\n')
    args = [str(tokenizer_file) if a == "TOK" else str(bad) if a == "BAD" else a for a in args]
    proc = run_engine("--url", mock.chat_url, "--number", 1, "--outputs-dir", tmp_path / "out", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert not os.path.exists(tmp_path / "out") or not find_dbs(tmp_path / "out")


def test_sharegpt_multi_turn_reads_both_layouts_and_truncates(tmp_path):
    from engine.arguments import Arguments
    from plugins.datasets.multi_turn import SharegptEnMultiTurnDataset, SharegptZhMultiTurnDataset

    classic = tmp_path / "classic.json"
    classic.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "h1"}, {"from": "gpt", "value": "g1"},
                           {"from": "human", "value": "h2"}, {"from": "gpt", "value": "g2"},
                           {"from": "human", "value": "h3"}]},
        {"conversations": [{"from": "gpt", "value": "no human turn: skipped"}]},
    ]))
    swift = tmp_path / "swift.jsonl"
    swift.write_text(json.dumps({"conversation": [{"human": "你好", "assistant": "a"}, {"human": "再见", "assistant": "b"}]})
                     + "\n")
    got = list(SharegptEnMultiTurnDataset(Arguments(dataset_path=str(classic))).build_conversations())
    assert got == [["h1", "h2", "h3"]]
    got = list(SharegptEnMultiTurnDataset(Arguments(dataset_path=str(classic), max_turns=2)).build_conversations())
    assert got == [["h1", "h2"]]
    assert list(SharegptZhMultiTurnDataset(Arguments(dataset_path=str(swift))).build_conversations()) == [["你好", "再见"]]
    # the single-request contract still works: the first turns
    assert list(SharegptEnMultiTurnDataset(Arguments(dataset_path=str(classic))).build_messages()) == [
        [{"role": "user", "content": "h1"}]]


def test_warmup_counts_conversations_and_marks_all_their_turns(tmp_path, mock):
    data = conversation_file(tmp_path / "c.jsonl", [chat("w1", "w2", "w3")])
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
               "--number", 2, "--warmup-num", 1, "--parallel", 2, "--outputs-dir", out)
    (db,) = find_dbs(out)
    convs = by_conversation(rows(db))
    flags = {c: {r["is_warmup"] for r in turns} for c, turns in convs.items()}
    assert flags == {"conv-0": {1}, "conv-1": {0}, "conv-2": {0}}
    assert all(len(turns) == 3 for turns in convs.values())
    # the measured conversations started once the warm-up conversation had ended
    warm_end = max(r["completed_time"] for r in convs["conv-0"])
    assert all(convs[c][0]["start_time"] >= warm_end for c in ("conv-1", "conv-2"))


def test_duration_cuts_conversations_and_the_run_ends(tmp_path, mock):
    data = conversation_file(tmp_path / "c.jsonl", [chat(*[f"turn {i}" for i in range(50)])])
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
               "--duration", 1.5, "--think-time", 0.2, "--parallel", 2, "--outputs-dir", out, "--no-plots",
               timeout=60)
    (db,) = find_dbs(out)
    convs = by_conversation(rows(db))
    assert 1 <= len(convs) <= 2 and all(r["success"] == 1 for t in convs.values() for r in t)
    for turns in convs.values():  # each conversation in order, cut where the duration ended
        assert [r["turn"] for r in turns] == list(range(1, len(turns) + 1))
        assert 2 <= len(turns) < 50
    run = rows(db, "SELECT * FROM run")[0]
    assert run["status"] == "completed"


def test_a_reasoning_models_reasoning_is_not_sent_back(tmp_path):
    """The next turn carries the answer the user saw, not the reasoning
    before it (as DeepSeek and vLLM ask of chat clients)."""
    data = conversation_file(tmp_path / "c.jsonl", [chat("question one", "question two")])
    out = tmp_path / "out"
    with start_mock(["--ttft-ms", "2", "--itl-ms", "1", "--tokens", "4", "--reasoning-tokens", "3"]) as m:
        run_engine("--url", m.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
                   "--number", 1, "--parallel", 1, "--outputs-dir", out)
    (db,) = find_dbs(out)
    turns = by_conversation(rows(db))
    (turn1, turn2) = next(iter(turns.values()))
    assert turn1["reasoning_tokens"] == 3 and turn1["completion_tokens"] == 7
    history = decode(turn2["request"])["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == output_text(4)  # the 4 answer tokens, no reasoning


def test_an_api_plugin_that_cannot_build_the_next_turn_ends_the_conversation_not_the_run(tmp_path, mock):
    """Found in review: the exception lost the finished turn's row and left
    the run 'completed' with nothing in it."""
    plugin = tmp_path / "brittle.py"
    plugin.write_text(
        "from plugins import register_api\n"
        "from plugins.api.openai import OpenaiPlugin\n\n"
        "@register_api('brittle')\n"
        "class Brittle(OpenaiPlugin):\n"
        "    def answer_text(self, responses):\n"
        "        raise KeyError('choices')\n")
    data = conversation_file(tmp_path / "c.jsonl", [chat("one", "two", "three")])
    out = tmp_path / "out"
    proc = run_engine("--url", mock.chat_url, "--plugin-module", plugin, "--api", "brittle", "--dataset",
                      "custom_multi_turn", "--dataset-path", data, "--number", 3, "--parallel", 1,
                      "--outputs-dir", out)
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 3 and all(r["turn"] == 1 and r["success"] == 1 for r in result)
    assert rows(db, "SELECT status FROM run")[0]["status"] == "completed"
    warnings = [line for line in proc.stderr.splitlines() if "could not build a conversation's next turn" in line]
    assert len(warnings) == 1 and "KeyError" in warnings[0], proc.stderr


def test_max_error_rate_is_judged_on_turns_at_the_end_not_on_conversations_early(tmp_path):
    """Found in review: the early stop's budget counted conversations (what
    --number counts) against failed turns, and stopped runs far below the rate."""
    data = conversation_file(tmp_path / "c.jsonl", [chat(*[f"turn {i}" for i in range(5)])])
    out = tmp_path / "out"
    with start_mock(["--ttft-ms", "1", "--itl-ms", "0", "--tokens", "2", "--fault", "http500=0.1",
                     "--fault-seed", "5"]) as m:
        proc = run_engine("--url", m.chat_url, "--dataset", "custom_multi_turn", "--dataset-path", data,
                          "--number", 20, "--parallel", 2, "--max-error-rate", 0.25, "--outputs-dir", out,
                          check=False)
    (db,) = find_dbs(out)
    result = rows(db)
    failed = sum(1 for r in result if not r["success"])
    # more than the old budget (0.25 of 20 conversations: 5), well within 0.25 of the turns
    assert failed > 5 and failed / len(result) < 0.25, (failed, len(result))
    assert proc.returncode == 0, proc.stderr
    assert rows(db, "SELECT status FROM run")[0]["status"] == "completed"
    assert len({r["conversation_id"] for r in result}) == 20
