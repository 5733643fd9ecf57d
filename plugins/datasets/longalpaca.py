"""LongAlpaca-style long instructions: a JSON list with an `instruction` field."""
from __future__ import annotations

from typing import Iterator

from plugins.base import DatasetPluginBase

WHAT = 'a JSON list of objects with an "instruction" string (LongAlpaca-12k.json), e.g. [{"instruction": "..."}]'


class LongalpacaDataset(DatasetPluginBase):
    """One chat prompt per "instruction" of a local LongAlpaca JSON file (--dataset-path)."""

    def build_messages(self) -> Iterator[list[dict]]:
        for text in self.dataset_string_field(self.query_parameters.dataset_path, "instruction", WHAT):
            yield [self.create_message(text)]
