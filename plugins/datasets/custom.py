"""An example dataset plugin to copy from: `--dataset custom`.

Reads a local text file, one prompt per line (as evalscope perf's `custom`
example does), and shows what a dataset plugin does.  Copy the file, rename
the class, change `build_messages`, and register it: as an entry point in
your package's setup.cfg (`servegauge.datasets = my_data =
my_package.my_module:MyDataset`) or with `@register_dataset("my_data")` and
`--plugin-module my_file.py`.  See docs/plugins.md.
"""
from __future__ import annotations

from typing import Iterator

from engine.arguments import Arguments
from plugins import DatasetPluginBase


class CustomDataset(DatasetPluginBase):
    """Example dataset plugin (one prompt per line of --dataset-path): copy it to write your own."""

    def __init__(self, query_parameters: Arguments):
        # The run's Arguments, frozen: dataset_path, min/max_prompt_length,
        # tokenizer_path, seed, ...  Raising here stops the run with a
        # one-line error naming this plugin.
        super().__init__(query_parameters)

    def build_messages(self) -> Iterator[list[dict] | str]:
        # Yield one item per request: a list of OpenAI chat messages, or a
        # plain string for completions APIs.  servegauge starts over when the
        # run needs more requests than you yield.  Read only local files:
        # the helpers below raise a one-line error for a missing file.
        for line in self.dataset_line_by_line(self.query_parameters.dataset_path):
            # --min-prompt-length / --max-prompt-length, in characters, or in
            # tokens when --tokenizer-path is given.
            if self.prompt_fits(line):
                yield [self.create_message(line)]
                # or: yield [{"role": "system", "content": "Be brief."}, self.create_message(line)]
