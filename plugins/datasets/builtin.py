"""A small prompt set shipped inside the package, for the zero-argument run."""
from __future__ import annotations

import json
from importlib import resources
from typing import Iterator

from plugins.base import DatasetPluginBase


class BuiltinDataset(DatasetPluginBase):
    """48 everyday chat prompts of mixed length, shipped with servegauge."""

    def build_messages(self) -> Iterator[list[dict]]:
        text = resources.files("plugins.datasets").joinpath("data/prompts.jsonl").read_text("utf-8")
        for line in text.splitlines():
            prompt = json.loads(line)["prompt"]
            if self.prompt_fits(prompt):
                yield [self.create_message(prompt)]
