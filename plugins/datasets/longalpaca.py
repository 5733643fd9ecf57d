"""LongAlpaca-style long instructions: a JSON list with an `instruction` field."""
from __future__ import annotations

from typing import Iterator

from plugins.base import DatasetPluginBase

WHAT = 'a JSON list of objects with an "instruction" string (LongAlpaca-12k.json), e.g. [{"instruction": "..."}]'


class LongalpacaDataset(DatasetPluginBase):
    """One chat prompt per "instruction" of a local LongAlpaca JSON file (--dataset-path)."""

    def build_messages(self) -> Iterator[list[dict]]:
        path = self.query_parameters.dataset_path
        for n, item in enumerate(self.dataset_json_list(path, WHAT), 1):
            instruction = item.get("instruction") if isinstance(item, dict) else None
            if not isinstance(instruction, str):
                raise self.dataset_format_error(path, f"item {n}", 'has no "instruction" string', WHAT)
            instruction = instruction.strip()
            if instruction and self.prompt_fits(instruction):
                yield [self.create_message(instruction)]
