"""One prompt per line of a local text file."""
from __future__ import annotations

from typing import Iterator

from plugins.base import DatasetPluginBase


class LineByLineDataset(DatasetPluginBase):
    """One prompt per non-empty line of --dataset-path (a UTF-8 text file)."""

    def build_messages(self) -> Iterator[list[dict]]:
        for line in self.dataset_line_by_line(self.query_parameters.dataset_path):
            if self.prompt_fits(line):
                yield [self.create_message(line)]
