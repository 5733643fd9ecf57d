"""Random prompts of exact token lengths, built with --tokenizer-path.

Each prompt is `--prefix-length` tokens of a shared prefix (to exercise
prefix caching) followed by L random tokens, L drawn uniformly from
[--min-prompt-length, --max-prompt-length] with --seed.  With
`--prefix-count K` there are K distinct prefixes, each exactly
`--prefix-length` tokens, given to the prompts round-robin (prompt i gets
prefix i mod K).  The text sent
re-encodes with the tokenizer to exactly prefix + L tokens: decoding random
ids and encoding the text again does not always give the same ids (BPE merges
across the seams), so the text is fixed up, by trimming or adding tokens,
until it does.
"""
from __future__ import annotations

import itertools
import random
from typing import Callable, Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins.base import DatasetPluginBase

ROUND_TRIP_SAMPLE = 4000  # candidate tokens checked to decode and re-encode to themselves
FIX_STEPS = 64
RESTARTS = 8


class TextFitter:
    """Builds text that a tokenizer encodes to exactly n tokens."""

    def __init__(self, tokenizer, rng: random.Random):
        self.tokenizer = tokenizer
        self.rng = rng
        pool = tokenizer.normal_ids()
        if not pool:
            raise DatasetError("the --tokenizer-path tokenizer has an empty vocabulary")
        sample = rng.sample(pool, min(len(pool), ROUND_TRIP_SAMPLE))
        # Tokens that survive a round trip alone make the fix-up converge fast;
        # single tokens that decode to half a character or to nothing do not.
        good = [i for i in sample if self._round_trips(i)]
        self.pool = good or pool

    def _round_trips(self, token_id: int) -> bool:
        text = self.tokenizer.decode([token_id])
        return bool(text.strip()) and self.tokenizer.encode(text) == [token_id]

    def random_ids(self, n: int) -> list[int]:
        return [self.rng.choice(self.pool) for _ in range(max(0, n))]

    def fit(self, n: int, prefix: str = "", start: list[int] | None = None,
            more: Callable[[int], list[int]] | None = None) -> str:
        """Text `prefix + body` that encodes to exactly n tokens.  The body
        starts as `start` (default: random ids) and grows with `more(k)`
        (default: k random ids) or is trimmed until the count is right."""
        more = more or self.random_ids
        encode, decode = self.tokenizer.encode, self.tokenizer.decode
        prefix_tokens = len(encode(prefix)) if prefix else 0
        if prefix and n == prefix_tokens:
            return prefix
        sep = " " if prefix and not prefix[-1].isspace() else ""
        for attempt in range(RESTARTS):
            body_ids = list(start) if (start is not None and attempt == 0) else more(n - prefix_tokens)
            for _ in range(FIX_STEPS):
                body = decode(body_ids)
                text = prefix + sep + body if prefix else body
                diff = n - len(encode(text))
                if diff == 0:
                    return text
                body_ids = encode(body)  # work on what the text really is
                if diff > 0:
                    body_ids += more(diff)
                else:
                    body_ids = body_ids[:max(0, len(body_ids) + diff)]
        raise DatasetError(f"could not build a prompt of exactly {n} tokens with the --tokenizer-path tokenizer")


class RandomDataset(DatasetPluginBase):
    """Random prompts of exact token lengths (needs --tokenizer-path; --min/--max-prompt-length, --prefix-length, --seed)."""

    def __init__(self, query_parameters: Arguments):
        super().__init__(query_parameters)
        p = query_parameters
        self.require_tokenizer("random", "prompts of exact token lengths")
        if p.min_prompt_length > p.max_prompt_length:
            raise DatasetError("--min-prompt-length is larger than --max-prompt-length")

    def build_messages(self) -> Iterator[list[dict]]:
        p = self.query_parameters
        rng = random.Random(p.seed)
        fitter = TextFitter(self.load_tokenizer(), rng)
        prefixes = distinct_prefixes(fitter, p.prefix_length, p.prefix_count) if p.prefix_length else [""]
        low = max(p.min_prompt_length, 0 if p.prefix_length else 1)
        for i in itertools.count():
            length = rng.randint(low, max(low, p.max_prompt_length))
            prefix = prefixes[i % len(prefixes)]
            yield [self.create_message(fitter.fit(p.prefix_length + length, prefix=prefix))]


def distinct_prefixes(fitter: TextFitter, n_tokens: int, count: int) -> list[str]:
    """`count` texts of exactly `n_tokens` tokens each, no two alike."""
    prefixes: list[str] = []
    for _ in range(count * RESTARTS):
        if len(prefixes) == count:
            break
        text = fitter.fit(n_tokens)
        if text not in prefixes:  # (a tiny vocabulary and a short prefix could repeat one)
            prefixes.append(text)
    if len(prefixes) < count:
        raise DatasetError(f"could not make --prefix-count {count} distinct prefixes of --prefix-length "
                           f"{n_tokens} tokens with the --tokenizer-path tokenizer")
    return prefixes
