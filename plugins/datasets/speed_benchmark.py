"""Prompts of fixed lengths for a prefill-speed benchmark, as evalscope's
speed_benchmark: 1, 6144, 14336 and 30720 tokens, as plain strings for a
completions API (`--url .../v1/completions`), so no chat template is added.

With --tokenizer-path each prompt encodes to exactly that many tokens.
Without one, the lengths are approximate: the prompt is the word "the"
repeated, which is one token in the common BPE and sentencepiece tokenizers
(GPT-2, cl100k/o200k, Llama, Qwen, Mistral), so "the the the ..." of n words
is n tokens there, give or take one; other tokenizers may differ.
"""
from __future__ import annotations

import random
from typing import Iterator

from plugins.base import DatasetPluginBase
from plugins.datasets.random_dataset import TextFitter

LENGTHS = (1, 6144, 14336, 30720)
WORD = "the"


class SpeedBenchmarkDataset(DatasetPluginBase):
    """Prompts of 1, 6144, 14336 and 30720 tokens (exact with --tokenizer-path), plain strings for /v1/completions."""

    LENGTHS = LENGTHS
    REPEAT = 1

    def build_messages(self) -> Iterator[str]:
        tokenizer = self.load_tokenizer()
        fitter = TextFitter(tokenizer, random.Random(self.query_parameters.seed)) if tokenizer else None
        for length in self.LENGTHS:
            prompt = self.prompt_of(length, fitter)
            if self.prompt_fits(prompt):
                for _ in range(self.REPEAT):
                    yield prompt

    @staticmethod
    def prompt_of(length: int, fitter: TextFitter | None) -> str:
        text = " ".join([WORD] * length)
        if fitter is None:
            return text
        tokenizer = fitter.tokenizer
        word_ids = tokenizer.encode(" " + WORD) or tokenizer.encode(WORD)

        def more(k: int) -> list[int]:  # grow with the same word, not random tokens
            return (word_ids * k)[:k] if k > 0 else []

        return fitter.fit(length, start=tokenizer.encode(text), more=more)
