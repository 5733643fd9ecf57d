"""The mock's "model": deterministic output text and a deterministic prompt count.

Output: token i is ``WORDS[i % len(WORDS)] + " "``, so the text of n tokens is
``output_text(n)`` and a client can compare joined stream deltas with the
non-streamed body.

Prompt tokens (the rule tests recompute): the number of whitespace-separated
words, i.e. ``len(text.split())``, summed over
  * chat / DashScope ``messages``: every message's ``content`` when it is a
    string, or the ``text`` of each ``{"type": "text", "text": ...}`` part when
    it is a list of parts (images and other parts count 0);
  * completions / DashScope ``prompt``: the string; a list of strings sums
    them; a list of token ids counts its length (a list of such lists sums).
Anything else counts 0.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

WORDS: tuple[str, ...] = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
TOKENS: tuple[str, ...] = tuple(w + " " for w in WORDS)


def output_text(n_tokens: int, start: int = 0) -> str:
    """Text of tokens start .. start+n_tokens-1."""
    k = len(TOKENS)
    return "".join(TOKENS[i % k] for i in range(start, start + n_tokens))


@lru_cache(maxsize=4096)
def _chunk_json(start_mod: int, n_tokens: int) -> bytes:
    return json.dumps(output_text(n_tokens, start_mod)).encode()


def chunk_json(start: int, n_tokens: int) -> bytes:
    """The JSON string literal (quotes included) of a chunk's text, cached:
    the same few chunks recur in every request, and building them is most of
    the per-event cost otherwise."""
    return _chunk_json(start % len(TOKENS), n_tokens)


def _count_text(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def count_content(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_count_text(p.get("text")) for p in content if isinstance(p, dict))
    return 0


def count_messages(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(count_content(m.get("content")) for m in messages if isinstance(m, dict))


def count_prompt(prompt: Any) -> int:
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, list):
        total = 0
        for p in prompt:
            if isinstance(p, str):
                total += len(p.split())
            elif isinstance(p, int):
                total += 1
            elif isinstance(p, list):
                total += len(p)
        return total
    return 0
