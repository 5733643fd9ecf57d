"""Token counting from a local tokenizer (--tokenizer-path).

Nothing is downloaded at run time: the path must be a local `tokenizer.json`
(read with the `tokenizers` library) or a folder holding one.
"""
from __future__ import annotations

import os

from engine.errors import UsageError


class Tokenizer:
    def __init__(self, backend):
        self._backend = backend

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids)

    def count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0


def load_tokenizer(path: str | None) -> Tokenizer | None:
    if not path:
        return None
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise UsageError(f"--tokenizer-path '{path}' is not a local tokenizer.json or a folder holding one "
                         "(hub names are not downloaded: pass a local path)")
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise UsageError("--tokenizer-path needs the 'tokenizers' package: pip install tokenizers") from None
    try:
        return Tokenizer(HFTokenizer.from_file(file))
    except Exception as e:
        raise UsageError(f"--tokenizer-path '{file}' could not be read as a tokenizer: {e}") from None
