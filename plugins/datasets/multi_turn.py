"""Datasets of conversations (evalscope perf's names): random_multi_turn,
share_gpt_zh_multi_turn / share_gpt_en_multi_turn and custom_multi_turn.

Each yields conversations through build_conversations (the plugin SDK's
multi-turn hook): lists of user turns, no assistant turns, since servegauge
sends the replies it actually received (engine.conversations).  Their
build_messages gives each conversation's first turn, so a runner that knows
only single requests still gets prompts.
"""
from __future__ import annotations

import json
import random
from typing import Any, Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins.base import DatasetPluginBase
from plugins.datasets.random_dataset import TextFitter

SHAREGPT_WHAT = ('ShareGPT conversations, a JSON list or JSON lines of {"conversations": [{"from": "human", '
                 '"value": "..."}, {"from": "gpt", "value": "..."}]} or {"conversation": [{"human": "...", '
                 '"assistant": "..."}]}')
CUSTOM_WHAT = ('JSON lines, one conversation per line: a JSON list of chat messages, e.g. [{"role": "user", '
               '"content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More?"}]')
HUMAN = ("human", "user")


class _Conversations(DatasetPluginBase):
    """What the conversation datasets share: the first turns as build_messages."""

    def build_conversations(self) -> Iterator[list]:
        raise NotImplementedError

    def build_messages(self) -> Iterator[list[dict]]:
        for conversation in self.build_conversations():
            first = conversation[0]
            yield [self.create_message(first)] if isinstance(first, str) else list(first)

    def truncate(self, turns: list) -> list:
        """--max-turns: at most that many turns of a recorded conversation."""
        limit = self.query_parameters.max_turns
        return turns[:limit] if limit is not None else turns


class RandomMultiTurnDataset(_Conversations):
    """Random conversations: turns uniform in --min-turns..--max-turns, each of exact token length (needs --tokenizer-path)."""

    def __init__(self, query_parameters: Arguments):
        super().__init__(query_parameters)
        p = query_parameters
        self.require_tokenizer("random_multi_turn", "turns of exact token lengths")
        if p.max_turns is None:
            raise DatasetError("--dataset random_multi_turn needs --max-turns (turns per conversation are drawn "
                               "from --min-turns..--max-turns)")
        if p.min_turns > p.max_turns:
            raise DatasetError(f"--min-turns {p.min_turns} is larger than --max-turns {p.max_turns}")
        if p.min_prompt_length > p.max_prompt_length:
            raise DatasetError("--min-prompt-length is larger than --max-prompt-length")

    def build_conversations(self) -> Iterator[list[str]]:
        p = self.query_parameters
        rng = random.Random(f"{p.seed}/random_multi_turn")
        fitter = TextFitter(self.load_tokenizer(), rng)
        low = max(p.min_prompt_length, 1)
        while True:
            turns = rng.randint(p.min_turns, p.max_turns)
            yield [fitter.fit(rng.randint(low, max(low, p.max_prompt_length))) for _ in range(turns)]


class SharegptMultiTurnDataset(_Conversations):
    """Every human turn of each ShareGPT conversation of --dataset-path (--max-turns truncates)."""

    def build_conversations(self) -> Iterator[list[str]]:
        path = self.query_parameters.dataset_path
        for n, item in enumerate(self.dataset_json_list(path, SHAREGPT_WHAT), 1):
            humans = _sharegpt_humans(item)
            if humans is None:
                raise self.dataset_format_error(path, f"item {n}", 'has no "conversations" or "conversation" list',
                                                SHAREGPT_WHAT)
            humans = self.truncate([h for h in humans if h.strip()])
            # Conversations without a human turn (some dumps have them) are skipped.
            if humans and self.prompt_fits(humans[0]):
                yield humans


def _sharegpt_humans(item: Any) -> list[str] | None:
    """The human turns of one item, in either ShareGPT layout; None if neither."""
    if not isinstance(item, dict):
        return None
    turns = item.get("conversations")
    if isinstance(turns, list):  # [{"from": "human", "value": ...}, {"from": "gpt", ...}]
        return [t["value"] for t in turns
                if isinstance(t, dict) and t.get("from") in HUMAN and isinstance(t.get("value"), str)]
    turns = item.get("conversation")
    if isinstance(turns, list):  # swift/sharegpt: [{"human": ..., "assistant": ...}]
        return [t["human"] for t in turns if isinstance(t, dict) and isinstance(t.get("human"), str)]
    return None


class SharegptZhMultiTurnDataset(SharegptMultiTurnDataset):
    """Chinese ShareGPT conversations from --dataset-path (e.g. swift/sharegpt's common_zh_70k.jsonl), every human turn."""


class SharegptEnMultiTurnDataset(SharegptMultiTurnDataset):
    """English ShareGPT conversations from --dataset-path (e.g. swift/sharegpt's common_en_70k.jsonl), every human turn."""


class CustomMultiTurnDataset(_Conversations):
    """Conversations from a JSONL file (--dataset-path), one JSON list of chat messages per line; assistant messages split the turns."""

    def build_conversations(self) -> Iterator[list[list[dict]]]:
        path = self.query_parameters.dataset_path
        # JSON lines of lists: a file that starts with "[" is not one JSON list here
        for n, line in enumerate(self.dataset_line_by_line(path, CUSTOM_WHAT), 1):
            try:
                item = json.loads(line)
            except ValueError:
                raise self.dataset_format_error(path, f"conversation {n}", "is not JSON", CUSTOM_WHAT) from None
            if not isinstance(item, list) or not all(isinstance(m, dict) and "role" in m for m in item):
                raise self.dataset_format_error(path, f"conversation {n}", "is not a list of chat messages",
                                                CUSTOM_WHAT)
            turns = self.truncate(split_turns(item))
            if turns and self.prompt_fits(turns[0]):
                yield turns


def split_turns(messages: list[dict]) -> list[list[dict]]:
    """The turns of a recorded conversation: the messages between two
    assistant messages (those are dropped: the real replies take their place)."""
    turns: list[list[dict]] = []
    current: list[dict] = []
    for message in messages:
        if message.get("role") == "assistant":
            if current:
                turns.append(current)
            current = []
        else:
            current.append(dict(message))
    if current:
        turns.append(current)
    return turns
