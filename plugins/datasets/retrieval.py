"""Datasets for the non-generating endpoints, named as evalscope perf names them.

* `embedding`: --dataset-path, a text file (one text per line; `.txt` or any
  other name) or a JSON list / JSON-lines file whose items are strings or
  objects with a `text`, `input`, `sentence` or `content` string.
* `rerank`: --dataset-path, a JSON list / JSON-lines file of
  `{"query": "...", "documents": ["...", ...]}` (`passages` or `texts` are
  read as documents too).
* `random_embedding`, `random_rerank`: no file; random texts of exact token
  lengths in [--min-prompt-length, --max-prompt-length] with --tokenizer-path
  and --seed (as evalscope, they need the tokenizer).  `random_rerank` makes
  10 documents per query, each 5 times the query's length; evalscope's
  `num_documents` / `document_length_ratio` in --extra-args change that
  (the rerank API plugin does not send them).
"""
from __future__ import annotations

import random
from typing import Iterator

from engine.errors import DatasetError
from plugins.base import DatasetPluginBase
from plugins.datasets.random_dataset import TextFitter

TEXT_KEYS = ("text", "input", "sentence", "content")
DOCUMENT_KEYS = ("documents", "passages", "texts")
RERANK_KNOBS = {"num_documents": 10, "document_length_ratio": 5}
EMBEDDING_FILE = "a text file (one text per line) or a JSON/JSON-lines file of strings or {\"text\": ...} objects"
RERANK_FILE = 'a JSON list or JSON-lines file of {"query": "...", "documents": ["...", ...]} objects'


class EmbeddingDataset(DatasetPluginBase):
    """Texts to embed from --dataset-path: one per line, or JSON(L) strings / {"text": ...} objects."""

    def build_messages(self) -> Iterator[str]:
        path = self.query_parameters.dataset_path
        if path and path.lower().endswith((".json", ".jsonl")):
            texts = self._json_texts(path)
        else:
            texts = self.dataset_line_by_line(path, EMBEDDING_FILE)
        for text in texts:
            if self.prompt_fits(text):
                yield text

    def _json_texts(self, path: str) -> Iterator[str]:
        for n, item in enumerate(self.dataset_json_list(path, EMBEDDING_FILE), 1):
            if isinstance(item, dict):
                item = next((item[k] for k in TEXT_KEYS if isinstance(item.get(k), str)), None)
            if not isinstance(item, str):
                raise self.dataset_format_error(path, f"item {n}", f"is not a string and has no "
                                                f"{'/'.join(TEXT_KEYS)} string", EMBEDDING_FILE)
            if item.strip():
                yield item.strip()


class RerankDataset(DatasetPluginBase):
    """Query + documents pairs from --dataset-path (JSON(L) {"query", "documents"} objects)."""

    def build_messages(self) -> Iterator[dict]:
        path = self.query_parameters.dataset_path
        for n, item in enumerate(self.dataset_json_list(path, RERANK_FILE), 1):
            query = item.get("query") if isinstance(item, dict) else None
            documents = next((item[k] for k in DOCUMENT_KEYS if isinstance(item, dict) and item.get(k)), None)
            if not isinstance(query, str) or not query.strip():
                raise self.dataset_format_error(path, f"item {n}", 'has no "query" string', RERANK_FILE)
            if not isinstance(documents, list) or not all(isinstance(d, (str, dict)) for d in documents):
                raise self.dataset_format_error(path, f"item {n}", 'has no "documents" list', RERANK_FILE)
            if self.prompt_fits(query):
                yield {"query": query, "documents": documents}


class _RandomTexts(DatasetPluginBase):
    def __init__(self, query_parameters):
        super().__init__(query_parameters)
        p = query_parameters
        self.require_tokenizer(p.dataset, "texts of exact token lengths")
        if p.min_prompt_length > p.max_prompt_length:
            raise DatasetError("--min-prompt-length is larger than --max-prompt-length")

    def _texts(self):
        """(rng, fitter, a draw of one length) for this pass over the dataset."""
        p = self.query_parameters
        rng = random.Random(p.seed)
        fitter = TextFitter(self.load_tokenizer(), rng)
        low = max(p.min_prompt_length, 1)
        return rng, fitter, (lambda: rng.randint(low, max(low, p.max_prompt_length)))


class RandomEmbeddingDataset(_RandomTexts):
    """Random texts of exact token lengths to embed (needs --tokenizer-path; --min/--max-prompt-length, --seed)."""

    def build_messages(self) -> Iterator[str]:
        _, fitter, length = self._texts()
        while True:
            yield fitter.fit(length())


class RandomRerankDataset(_RandomTexts):
    """Random query + 10 documents of exact token lengths (needs --tokenizer-path; --min/--max-prompt-length)."""

    def build_messages(self) -> Iterator[dict]:
        extra = self.query_parameters.extra_args
        count = extra.get("num_documents", RERANK_KNOBS["num_documents"])
        ratio = extra.get("document_length_ratio", RERANK_KNOBS["document_length_ratio"])
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DatasetError(f"--extra-args num_documents must be a whole number >= 1, got {count!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise DatasetError(f"--extra-args document_length_ratio must be a number > 0, got {ratio!r}")
        _, fitter, length = self._texts()
        while True:
            n = length()
            yield {"query": fitter.fit(n), "documents": [fitter.fit(max(1, int(n * ratio))) for _ in range(count)]}
