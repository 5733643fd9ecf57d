"""Multi-turn conversations, on the coordinator's side.

A dataset that yields conversations (DatasetPluginBase.build_conversations)
is run as conversations: turn k is sent with the whole history, the earlier
user turns and the assistant replies actually received.  Turn k+1's body
depends on turn k's reply, and only an API plugin can read a reply, so the
coordinator builds it: when turn k's final record arrives (RunState.record),
`next_turn` appends the reply's text (the API plugin's `completion_text`)
and the next user turn to the history, has the API plugin build the body,
and the pool hands the Job to the very thread that sent turn k
(Pool.send_follow_up), which has waited for it on its own channel.  So the
worker still imports no plugin, a conversation stays on one thread and its
kept-alive connection, and it holds that thread while it lasts: --parallel
counts conversations in flight.

Think time is measured from the last byte of the reply: the next turn is
due at `completed_time + think`, an absolute time the worker waits for
(engine.worker.wait_to_send), never a sleep after the coordinator got round
to it.  With no think time the next turn goes as soon as it reaches the
thread, a few ms of the coordinator's work after the reply (the row's
`scheduled_time` is the reply's end, so that gap is visible).

--number counts conversations (as evalscope perf), --warmup-num too: every
turn of a warm-up conversation is marked warm-up.  A failed turn ends its
conversation (its history would be wrong).
"""
from __future__ import annotations

import itertools
import random
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError
from engine.records import FinishedRecord, Job, Sent
from engine.replay import json_bytes, skip_counter
from engine.store import encode_pickle


def has_conversations(dataset) -> bool:
    """The dataset plugin yields conversations: its build_conversations
    (DatasetPluginBase's returns None) gives an iterator (not started here)."""
    method = getattr(dataset, "build_conversations", None)
    return method is not None and method() is not None


def as_turns(conversation: Any, where: str) -> list[list[dict]]:
    """A dataset's conversation as turns, each the list of messages it adds
    to the history; a str turn is one user message."""
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise DatasetError(f"{where} is not a non-empty list of turns")
    turns = []
    for n, turn in enumerate(conversation, 1):
        if isinstance(turn, str):
            turn = [{"role": "user", "content": turn}]
        elif isinstance(turn, dict):
            turn = [turn]
        if not isinstance(turn, (list, tuple)) or not turn or not all(isinstance(m, dict) for m in turn):
            raise DatasetError(f"{where} turn {n} is not a message, a string or a list of messages")
        turns.append([dict(m) for m in turn])
    return turns


def think_time_s(args: Arguments, rng: random.Random) -> float:
    low, high = args.think_time_s
    return low if high <= low else rng.uniform(low, high)


@dataclass
class _Conversation:
    index: int
    turns: list[list[dict]]
    history: list[dict]
    rng: random.Random  # its think times: seeded per conversation, so arrival order does not change them
    is_warmup: bool
    sent_turns: int = 1


@dataclass
class Conversations:
    """The conversations of one run: the first turns for the feeder, the
    next ones for the collector."""

    args: Arguments
    api: Any
    dataset: Any
    seq: Iterator[int] = field(default_factory=itertools.count)  # next() is atomic in CPython
    live: dict[str, _Conversation] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    plugin_failed: bool = False  # said once: the API plugin could not build a next turn

    def conversations(self) -> Iterator[list[list[dict]]]:
        """The dataset's conversations after --dataset-offset, cycled."""
        args = self.args
        first = True
        while True:
            empty = True
            items = itertools.islice(self.dataset.build_conversations(), args.dataset_offset, None)
            for n, item in enumerate(items, args.dataset_offset + 1):
                empty = False
                yield as_turns(item, f"dataset '{args.dataset}' conversation {n}")
            if empty:
                hint = f" after --dataset-offset {args.dataset_offset}" if args.dataset_offset else ""
                raise DatasetError(f"dataset '{args.dataset}' yielded no conversations{hint}" if first else
                                   f"dataset '{args.dataset}' yielded no conversations on its second pass")
            first = False

    def first_turns(self) -> Iterator[Sent]:
        """The first turn of every conversation of the run, warm-up first."""
        args = self.args
        limit = None if args.number is None else args.number + args.warmup_num
        produced = 0
        skipped = skip_counter(args, "conversation")
        for turns in self.conversations():
            if limit is not None and produced >= limit:
                return
            history = list(turns[0])
            body = self.api.build_request(list(history), args)
            if skipped(body):
                continue
            index = produced
            produced += 1
            conversation_id = f"conv-{index}"
            state = _Conversation(index, turns, history, random.Random(f"{args.seed}/think/{index}"),
                                  is_warmup=index < args.warmup_num)
            with self.lock:
                self.live[conversation_id] = state
            job = Job(seq=next(self.seq), request_id=uuid.uuid4().hex, payload=json_bytes(body),
                      is_warmup=state.is_warmup, conversation_id=conversation_id, turn=1,
                      last_turn=len(turns) == 1)
            yield Sent(job, body, encode_pickle(body))

    def next_turn(self, sent: Sent, record: FinishedRecord, row: dict) -> Sent | None:
        """The Sent of the turn after `sent` (its final record and row just
        came), or None when the conversation is over: last turn, a failed
        one, or a body the API plugin skips."""
        job = sent.job
        with self.lock:
            state = self.live.get(job.conversation_id)
        if state is None:
            return None
        if job.last_turn or not row["success"] or row["completed_time"] is None:
            self.end(job.conversation_id)
            return None
        try:  # a plugin bug ends this conversation, not the run: the turn's row is kept
            reply = self.api.answer_text(list(record.events))
            history = state.history + [{"role": "assistant", "content": reply}] + state.turns[state.sent_turns]
            body = self.api.build_request(list(history), self.args)
        except Exception as exc:
            self.end(job.conversation_id)
            if not self.plugin_failed:
                self.plugin_failed = True
                text = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                print(f"servegauge: warning: the API plugin could not build a conversation's next turn ({text}); "
                      "conversations end where that happens", file=sys.stderr, flush=True)
            return None
        state.history = history
        if body is None:
            self.end(job.conversation_id)
            return None
        state.sent_turns += 1
        due = row["completed_time"] + think_time_s(self.args, state.rng)
        nxt = Job(seq=next(self.seq), request_id=uuid.uuid4().hex, payload=json_bytes(body), scheduled_time=due,
                  is_warmup=state.is_warmup, conversation_id=job.conversation_id, turn=state.sent_turns,
                  last_turn=state.sent_turns == len(state.turns))
        return Sent(nxt, body, encode_pickle(body))

    def end(self, conversation_id: str | None) -> None:
        with self.lock:
            self.live.pop(conversation_id, None)

