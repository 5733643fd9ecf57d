"""A dataset plugin whose prompts ship inside the package (no file needed)."""
from __future__ import annotations

from typing import Iterator

from plugins import DatasetPluginBase

QUESTIONS = (
    "What is the boiling point of water at sea level?",
    "Name three primary colours.",
    "Explain what a hash table is in one sentence.",
    "Why is the sky blue?",
    "Translate 'good morning' into French.",
)


class ExampleQuestionsDataset(DatasetPluginBase):
    """Five short questions shipped with the example plugin package."""

    def build_messages(self) -> Iterator[list[dict]]:
        for question in QUESTIONS:
            if self.prompt_fits(question):
                yield [self.create_message(question)]
