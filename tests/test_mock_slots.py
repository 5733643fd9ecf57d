"""The mock's capacity (--slots): at most N replies generate at once, the rest wait in order."""
from __future__ import annotations

import threading
import uuid

import pytest
import requests

from engine.mock import start_mock
from engine.mock.slots import SlotQueue

MESSAGES = [{"role": "user", "content": "hello"}]


def test_slot_queue_worked_example():
    # Two slots, replies busy 3 s each: arrivals at 0, 0, 0 and 1.
    # The third waits for the first slot (free at 3): 3 s.  The fourth arrives
    # at 1, the other first-round slot frees at 3: it waits 2 s.
    q = SlotQueue(2)
    assert [q.admit(a, 3.0) for a in (0.0, 0.0, 0.0, 1.0)] == [0.0, 0.0, 3.0, 2.0]
    assert q.counts(0.5) == (2, 1)   # the fourth has not arrived yet
    assert q.counts(1.5) == (2, 2)
    assert q.counts(3.5) == (2, 0)   # third and fourth started at 3
    assert q.counts(6.0) == (0, 0)   # every slot's reply is over


def test_slot_queue_refuses_no_slots():
    with pytest.raises(ValueError):
        SlotQueue(0)


def test_mock_queues_replies_past_its_slots():
    # ttft 60 ms, 5 one-token chunks 10 ms apart: each reply holds its slot 100 ms.
    with start_mock(["--slots", "2", "--ttft-ms", "60", "--itl-ms", "10", "--tokens", "5"]) as m:
        ids = [f"slot-{uuid.uuid4().hex}" for _ in range(4)]
        go = threading.Barrier(len(ids))

        def one(rid: str) -> None:
            go.wait()
            r = requests.post(m.chat_url, json={"model": "m", "messages": MESSAGES, "stream": True},
                              headers={"X-Request-Id": rid}, timeout=10)
            assert r.status_code == 200
            r.content  # noqa: B018 -- read the whole stream

        threads = [threading.Thread(target=one, args=(rid,)) for rid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = requests.get(m.base_url + "/stats", timeout=5).json()
        truth = sorted((r for r in m.truth() if r["request_id"] in ids), key=lambda r: r["arrival"])
    assert stats["running"] == 0 and stats["waiting"] == 0  # all four are over
    assert len(truth) == 4
    waited = [r for r in truth if r["queue_s"] > 0.03]
    # Two got a slot at once; two waited for one to free (100 ms minus how
    # much later than the first ones they arrived).
    assert len(waited) == 2, [r["queue_s"] for r in truth]
    assert all(r["queue_s"] < 0.101 for r in truth)
    for r in truth:
        # The first token comes ttft after the reply got its slot.
        ttft_s = r["first_content_time"] - r["read"]
        assert 0.06 + r["queue_s"] - 0.002 <= ttft_s <= 0.06 + r["queue_s"] + 0.03, r


def test_mock_without_slots_runs_everything_at_once():
    # 3 replies of 200 ms each, sent together: all three run, none waits.
    with start_mock(["--ttft-ms", "200", "--itl-ms", "0", "--tokens", "1"]) as m:
        ids = [f"noslot-{uuid.uuid4().hex}" for _ in range(3)]
        go = threading.Barrier(len(ids) + 1)
        seen = []

        def one(rid: str) -> None:
            go.wait()
            r = requests.post(m.chat_url, json={"model": "m", "messages": MESSAGES, "stream": True},
                              headers={"X-Request-Id": rid}, timeout=10)
            r.content  # noqa: B018 -- read the whole stream

        threads = [threading.Thread(target=one, args=(rid,)) for rid in ids]
        for t in threads:
            t.start()
        go.wait()
        for _ in range(200):  # until all three have arrived (bounded poll of observable state)
            stats = requests.get(m.base_url + "/stats", timeout=5).json()
            if stats["running"] == 3:
                break
        seen.append(stats)
        for t in threads:
            t.join()
        after = requests.get(m.base_url + "/stats", timeout=5).json()
        truth = [t for t in m.truth() if t["request_id"] in ids]
    assert seen[0]["running"] == 3 and seen[0]["waiting"] == 0
    assert after["running"] == 0 and after["waiting"] == 0
    assert all(rec["queue_s"] is None for rec in truth)
