"""OpenQA-style questions: a JSON-lines file with a `question` field."""
from __future__ import annotations

from typing import Iterator

from plugins.base import DatasetPluginBase

WHAT = 'a JSON-lines file of objects with a "question" string, e.g. {"question": "What is ...?"}'


class OpenqaDataset(DatasetPluginBase):
    """One chat prompt per "question" of a local JSON-lines file (--dataset-path), as evalscope's openqa."""

    def build_messages(self) -> Iterator[list[dict]]:
        path = self.query_parameters.dataset_path
        for n, item in enumerate(self.dataset_json_list(path, WHAT), 1):
            question = item.get("question") if isinstance(item, dict) else None
            if not isinstance(question, str):
                raise self.dataset_format_error(path, f"item {n}", 'has no "question" string', WHAT)
            question = question.strip()
            if question and self.prompt_fits(question):
                yield [self.create_message(question)]
