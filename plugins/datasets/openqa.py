"""OpenQA-style questions: a JSON-lines file with a `question` field."""
from __future__ import annotations

from typing import Iterator

from plugins.base import DatasetPluginBase

WHAT = 'a JSON-lines file of objects with a "question" string, e.g. {"question": "What is ...?"}'


class OpenqaDataset(DatasetPluginBase):
    """One chat prompt per "question" of a local JSON-lines file (--dataset-path), as evalscope's openqa."""

    def build_messages(self) -> Iterator[list[dict]]:
        for text in self.dataset_string_field(self.query_parameters.dataset_path, "question", WHAT):
            yield [self.create_message(text)]
