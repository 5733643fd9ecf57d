"""Replay a Mooncake-format trace (the format AIPerf, GuideLLM and SGLang replay).

Each line of the JSONL file (--dataset-path) is one request:

    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48, ...]}

`timestamp` is in milliseconds; the request is due that long after the
trace's first one, divided by --dataset-args '{"speed": 2.0}'.  The prompt is
made of exactly `input_length` tokens (with --tokenizer-path), cut into
blocks of `block_size` (512) tokens: block k is synthesised from hash_ids[k]
alone, so two requests that share a hash id share that block byte for byte,
and a prefix cache sees the reuse the trace recorded; tokens past the listed
blocks are unique to the line.  `max_tokens` is `output_length`;
"match_output_length": true also sends `ignore_eos`.
"""
from __future__ import annotations

import functools
import random
from typing import Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins.base import DatasetPluginBase
from plugins.replay import TimedItem, needs_open_loop, trace_args
from plugins.datasets.random_dataset import TextFitter

WHAT = "a Mooncake trace: JSON lines with timestamp (ms), input_length, output_length and hash_ids"
OPTIONS = {"speed": 1.0, "match_output_length": False, "block_size": 512}
FIX_STEPS = 64
BLOCK_CACHE = 16384  # blocks kept; one is rebuilt identically from its hash id when needed again


class BlockText:
    """Text of exactly n tokens for a block, a pure function of (seed, key, n).

    Every block is ' ' + words, single-spaced, with no trailing space: the
    pre-tokenizers of byte-level BPE and sentencepiece tokenizers split at
    that leading space, so tokens never merge across two blocks and the
    blocks' counts add up (checked per prompt; `prompt` mends the tail of
    a tokenizer for which they do not)."""

    def __init__(self, tokenizer, seed: int):
        self.tokenizer = tokenizer
        self.seed = seed
        self.pool = TextFitter(tokenizer, random.Random(seed)).pool
        self.block = functools.lru_cache(maxsize=BLOCK_CACHE)(self._block)

    def _block(self, key: str, n: int) -> str:
        rng = random.Random(f"{self.seed}/{key}/{n}")
        encode, decode = self.tokenizer.encode, self.tokenizer.decode
        ids = [rng.choice(self.pool) for _ in range(n)]
        for _ in range(FIX_STEPS):
            text = " " + " ".join(decode(ids).split())
            diff = n - len(encode(text))
            if diff == 0:
                return text
            ids = encode(text)
            ids = ids + [rng.choice(self.pool) for _ in range(diff)] if diff > 0 else ids[:len(ids) + diff]
        raise DatasetError(f"could not build a block of exactly {n} tokens with the --tokenizer-path tokenizer")

    def prompt(self, hash_ids: list, input_length: int, block_size: int, line: int) -> str:
        parts, left = [], input_length
        for k in range(-(-input_length // block_size)):
            n = min(block_size, left)
            key = f"h{hash_ids[k]}" if k < len(hash_ids) else f"line{line}/{k}"  # past the listed blocks: unique
            parts.append(self.block(key, n))
            left -= n
        text = "".join(parts)
        if len(self.tokenizer.encode(text)) == input_length:
            return text
        # A tokenizer that merges across the seams: keep every block but the
        # last as it is and refit the last so the total is exact.
        head = "".join(parts[:-1])
        fitter = TextFitter(self.tokenizer, random.Random(f"{self.seed}/mend/{line}"))
        fitter.pool = self.pool
        return fitter.fit(input_length, prefix=head) if head else fitter.fit(input_length)


class MooncakeTraceDataset(DatasetPluginBase):
    """Mooncake trace replay (JSONL: timestamp ms, input_length, output_length, hash_ids); needs --open-loop and --tokenizer-path."""

    provides_arrival_schedule = True

    def __init__(self, query_parameters: Arguments):
        super().__init__(query_parameters)
        p = query_parameters
        needs_open_loop("mooncake_trace", p.open_loop)
        self.require_tokenizer("mooncake_trace", "prompts of exactly input_length tokens")
        if not p.dataset_path:
            raise DatasetError(f"--dataset mooncake_trace needs --dataset-path: {WHAT}")
        self.options = trace_args("mooncake_trace", p.dataset_args, OPTIONS)
        size = self.options["block_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DatasetError(f"--dataset-args: \"block_size\" must be a whole number >= 1, got {size!r}")

    def records(self) -> list[tuple[int, float, int, int, list]]:
        """(line, timestamp_ms, input_length, output_length, hash_ids) of every line, in time order."""
        path = self.query_parameters.dataset_path
        out = []
        for n, item in enumerate(self.dataset_json_list(path, WHAT), 1):
            if not isinstance(item, dict):
                raise self.dataset_format_error(path, f"line {n}", "is not a JSON object", WHAT)
            stamp = item.get("timestamp")
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
                raise self.dataset_format_error(path, f"line {n}", 'has no "timestamp" number (ms)', WHAT)
            lengths = []
            for key in ("input_length", "output_length"):
                value = item.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise self.dataset_format_error(path, f"line {n}", f'has no "{key}" whole number >= 1', WHAT)
                lengths.append(value)
            hashes = item.get("hash_ids", [])
            if not isinstance(hashes, list):
                raise self.dataset_format_error(path, f"line {n}", 'has a "hash_ids" that is not a list', WHAT)
            out.append((n, float(stamp), lengths[0], lengths[1], hashes))
        out.sort(key=lambda r: r[1])  # stable: lines with one timestamp keep their order
        return out

    def build_messages(self) -> Iterator[TimedItem]:
        p, o = self.query_parameters, self.options
        records = self.records()
        if not records:
            return
        blocks = BlockText(self.load_tokenizer(), p.seed)
        first_ms = records[0][1]
        extra = {**p.extra_args, "ignore_eos": True} if o["match_output_length"] else None
        for line, stamp_ms, input_length, output_length, hashes in records:
            params = {"max_tokens": output_length}
            if extra is not None:
                params["extra_args"] = extra
            prompt = blocks.prompt(hashes, input_length, o["block_size"], line)
            yield TimedItem([self.create_message(prompt)], (stamp_ms - first_ms) / 1000.0 / o["speed"], params)
