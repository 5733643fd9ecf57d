"""plugins.tokenizer: local tokenizer files and folders (hub ids: test_tokenizer_hub.py).

The tokenizers used here are trained in the test with the `tokenizers`
library on generated text (no hub access); other test modules import
`train_tokenizer` and the `tokenizer_file` fixture from here."""
import random
import sys
import types

import pytest

from engine.errors import UsageError
from plugins import tokenizer as tk

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
         "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
         "the", "of", "and", "to", "in", "is", "model", "server", "token", "prompt"]


def corpus(n_lines=400, seed=1):
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        lines.append(" ".join(words) + rng.choice([".", ",", "!", "?", ""]))
    return lines


def train_tokenizer(path, kind="bpe", vocab_size=400):
    """Train a small tokenizer on generated text and save it as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "bpe":  # byte-level BPE, as GPT-2 / Llama 3 / Qwen: merges across seams happen
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # one token per word
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    tok.train_from_iterator(corpus(), trainer)
    tok.save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", "bpe")


@pytest.fixture(scope="session")
def wordlevel_file(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tokw") / "tokenizer.json", "wordlevel")


@pytest.fixture(autouse=True)
def fresh_cache():
    tk._load.cache_clear()
    yield
    tk._load.cache_clear()


def test_tokenizer_json_file_and_folder(tokenizer_file):
    t = tk.load_tokenizer(tokenizer_file)
    ids = t.encode("the model server is alpha")
    assert ids and t.decode(ids) == "the model server is alpha"
    assert t.count("") == 0 and t.count("alpha bravo") == len(t.encode("alpha bravo"))
    folder = tk.load_tokenizer(str(__import__("os").path.dirname(tokenizer_file)))
    assert folder.encode("alpha bravo") == t.encode("alpha bravo")
    # special tokens are not ordinary vocabulary
    special = t._backend.token_to_id("<|endoftext|>")
    assert special is not None and special not in t.normal_ids()


def test_a_missing_local_file_is_not_found():
    # hub ids (Org/Name) go through huggingface_hub's cache: tests/test_tokenizer_hub.py
    with pytest.raises(UsageError, match="not found"):
        tk.load_tokenizer("/nonexistent/tokenizer.json")


def test_a_file_that_is_not_a_tokenizer(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(UsageError, match="could not be read as a tokenizer.json"):
        tk.load_tokenizer(str(bad))


def test_a_folder_without_tokenizer_json_needs_transformers(tmp_path, monkeypatch):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # not importable
    with pytest.raises(UsageError, match="without tokenizer.json.*pip install transformers"):
        tk.load_tokenizer(str(tmp_path))


def test_a_transformers_folder_is_read_locally_only(tmp_path, monkeypatch, tokenizer_file):
    # transformers is not a dependency and not installed here: a stand-in
    # module with its AutoTokenizer interface checks what servegauge asks of it.
    from tokenizers import Tokenizer

    calls = []

    class StandIn:
        all_special_ids = [0]

        def __init__(self, backend):
            self.backend = backend

        def encode(self, text, add_special_tokens=True):
            assert add_special_tokens is False
            return self.backend.encode(text, add_special_tokens=False).ids

        def decode(self, ids):
            return self.backend.decode(ids)

        def get_vocab(self):
            return self.backend.get_vocab()

        def get_added_vocab(self):
            return {}

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(path, **kwargs):
            calls.append((path, kwargs))
            return StandIn(Tokenizer.from_file(tokenizer_file))

    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(AutoTokenizer=AutoTokenizer))
    (tmp_path / "tokenizer_config.json").write_text("{}")
    t = tk.load_tokenizer(str(tmp_path))
    assert calls == [(str(tmp_path), {"local_files_only": True})]
    assert t.kind == "transformers" and t.decode(t.encode("alpha bravo")) == "alpha bravo"
    assert 0 not in t.normal_ids()
