"""ShareGPT conversations: the first human turn of each conversation."""
from __future__ import annotations

from typing import Iterator

from plugins.base import DatasetPluginBase

WHAT = ('a ShareGPT JSON list: [{"conversations": [{"from": "human", "value": "..."}, '
        '{"from": "gpt", "value": "..."}]}, ...]')
HUMAN = ("human", "user")


class SharegptDataset(DatasetPluginBase):
    """The first human turn of each conversation of a local ShareGPT JSON file (--dataset-path)."""

    def build_messages(self) -> Iterator[list[dict]]:
        path = self.query_parameters.dataset_path
        for n, item in enumerate(self.dataset_json_list(path, WHAT), 1):
            turns = item.get("conversations") if isinstance(item, dict) else None
            if not isinstance(turns, list):
                raise self.dataset_format_error(path, f"item {n}", 'has no "conversations" list', WHAT)
            prompt = next((t.get("value") for t in turns
                           if isinstance(t, dict) and t.get("from") in HUMAN and isinstance(t.get("value"), str)),
                          None)
            # Conversations without a human turn (some dumps have them) are skipped.
            if prompt and prompt.strip() and self.prompt_fits(prompt):
                yield [self.create_message(prompt)]
