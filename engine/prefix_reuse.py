"""How much of each prompt repeats a prefix an earlier request sent: what a
server's prefix cache could have reused (`--prefix-length/--prefix-count`,
the history of multi-turn conversations).

A leaf, used by the collector (engine.run_state) once per request, in the
order the requests end.  The prompt text is cut into BLOCK_CHARS blocks and
each block is named by a hash of it and of every block before it, as vLLM's
prefix cache names its KV blocks: a request's shared prefix is its leading
blocks whose names were seen before.  The row gets `prompt_chars` and
`shared_prefix_chars`; the report sums them (analysis reads only the
database, and decoding every stored body there would cost more).
"""
from __future__ import annotations

import hashlib
from typing import Any

BLOCK_CHARS = 64  # about 16 tokens: one KV-cache block of vLLM
MAX_BLOCKS = 4_000_000  # remembered block names (~300 MB at most); later blocks are not remembered


def prompt_text(body: Any) -> str | None:
    """The text a request's prompt is made of, in order; None if the body
    has none we can read (chat `messages`, or a `prompt` / `input` string)."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
            parts.append("\n")  # a message boundary is part of the prefix
        return "".join(parts)
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None


class PrefixReuse:
    """The block names seen so far in one run."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def measure(self, body: Any) -> dict[str, int | None]:
        """`prompt_chars` and `shared_prefix_chars` (whole blocks) of one
        request's body; remembers its blocks for the requests after it."""
        text = prompt_text(body)
        if text is None:
            return {"prompt_chars": None, "shared_prefix_chars": None}
        name = hashlib.blake2b(digest_size=16)
        shared, matching = 0, True
        for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):  # whole blocks only
            name.update(text[start:start + BLOCK_CHARS].encode("utf-8", "surrogatepass"))
            key = name.digest()
            if matching and key in self.seen:
                shared += BLOCK_CHARS
                continue
            matching = False
            if len(self.seen) < MAX_BLOCKS:
                self.seen.add(key)
        return {"prompt_chars": len(text), "shared_prefix_chars": shared}
