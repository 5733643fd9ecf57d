"""Token counting with the --tokenizer-path tokenizer.

--tokenizer-path may be:

* a `tokenizer.json` file, or a folder holding one: read with the
  `tokenizers` library (a dependency: light, no model code);
* a tokenizer folder without `tokenizer.json` (e.g. a sentencepiece
  `tokenizer.model` with its `tokenizer_config.json`): read with
  `transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)`
  when `transformers` is importable.  servegauge does not depend on it;
* a hub model id ("Qwen/Qwen2.5-0.5B-Instruct") that is not a local path: its
  `tokenizer.json` is read from huggingface_hub's cache (HF_HUB_CACHE) when
  it is there, else downloaded into it; with HF_HUB_OFFLINE=1 only the cache
  is read.  Either way before the first request, never on a request's clock.
"""
from __future__ import annotations

import functools
import os
import re

from engine.errors import UsageError

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Tokenizer:
    """The few operations servegauge needs, over either backend."""

    def __init__(self, backend, kind: str = "tokenizers"):
        self._backend = backend
        self.kind = kind  # "tokenizers" or "transformers"

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens (BOS/EOS)."""
        if self.kind == "transformers":
            return list(self._backend.encode(text, add_special_tokens=False))
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._backend.decode(list(ids))

    def count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0

    def normal_ids(self) -> list[int]:
        """Ids of ordinary vocabulary tokens: no special or added tokens
        (those decode to nothing, or to markup a server treats specially)."""
        if self.kind == "transformers":
            special = set(getattr(self._backend, "all_special_ids", ()) or ())
            vocab = self._backend.get_vocab()
            added = set(getattr(self._backend, "get_added_vocab", dict)().values())
            return sorted(i for i in vocab.values() if i not in special and i not in added)
        vocab = self._backend.get_vocab(with_added_tokens=False)
        added = set(getattr(self._backend, "get_added_tokens_decoder", dict)())
        return sorted(i for i in vocab.values() if i not in added)


def load_tokenizer(path: str | None) -> Tokenizer | None:
    """The tokenizer at a local path (None when no path is given).  Loaded
    once per process and path: the dataset and the coordinator share it."""
    if not path:
        return None
    return _load(os.path.abspath(os.path.expanduser(path)), path)


@functools.lru_cache(maxsize=8)
def _load(full: str, given: str) -> Tokenizer:
    if os.path.isfile(full):
        return _from_json(full, given)
    if os.path.isdir(full):
        file = os.path.join(full, "tokenizer.json")
        if os.path.isfile(file):
            return _from_json(file, given)
        return _from_transformers(full, given)
    if _HUB_NAME.match(given) and not given.endswith(".json"):
        return _from_hub(given)
    raise UsageError(f"--tokenizer-path '{given}' not found: pass a local tokenizer.json file, a folder "
                     "holding one, or a hub model id such as Qwen/Qwen2.5-0.5B-Instruct")


def _from_hub(repo_id: str) -> Tokenizer:
    """The tokenizer.json of a hub model: from huggingface_hub's cache when it
    is there (no network), else downloaded into it unless HF_HUB_OFFLINE."""
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.utils import logging as hf_logging
    except ImportError:
        raise UsageError(f"--tokenizer-path '{repo_id}' is a hub model id, which needs the 'huggingface_hub' "
                         "package: pip install huggingface_hub") from None
    offline = bool(constants.HF_HUB_OFFLINE)
    where = f"in the cache {constants.HF_HUB_CACHE}" + (" (HF_HUB_OFFLINE is set)" if offline else "")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its retry warnings would bury the one line below
    try:
        try:
            file = hf_hub_download(repo_id, "tokenizer.json", local_files_only=True)
        except Exception:
            if offline:
                raise
            file = hf_hub_download(repo_id, "tokenizer.json")
    except Exception as e:  # not cached offline, no network, no such repo, gated, no tokenizer.json, ...
        cause = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise UsageError(f"--tokenizer-path '{repo_id}': not a local path, and the tokenizer.json of hub model "
                         f"'{repo_id}' could not be fetched or found {where} ({cause})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return _from_json(file, repo_id)


def _from_json(file: str, given: str) -> Tokenizer:
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise UsageError("--tokenizer-path needs the 'tokenizers' package (a dependency of servegauge): "
                         "pip install tokenizers") from None
    try:
        return Tokenizer(HFTokenizer.from_file(file), "tokenizers")
    except Exception as e:
        cause = " ".join(str(e).split())[:200]
        raise UsageError(f"--tokenizer-path '{given}': {file} could not be read as a tokenizer.json ({cause})") from None


def _from_transformers(folder: str, given: str) -> Tokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UsageError(f"--tokenizer-path '{given}' is a folder without tokenizer.json: add one, or "
                         "pip install transformers to read other tokenizer formats") from None
    try:
        backend = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        cause = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise UsageError(f"--tokenizer-path '{given}' could not be read by transformers ({cause})") from None
    return Tokenizer(backend, "transformers")
