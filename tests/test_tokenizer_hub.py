"""--tokenizer-path with a hub model id, through huggingface_hub's cache.

Offline only: the cache is a folder the test lays out as huggingface_hub
does (models--Org--Name/refs/main naming a commit, snapshots/<commit>/ with
a symlink into blobs/), holding a tokenizer trained here with `tokenizers`."""
import hashlib
import os

from conftest import find_dbs, rows, run_engine
from plugins.tokenizer import load_tokenizer
from test_plugins_api import decode
from test_plugins_datasets import assert_one_line_error
from test_plugins_tokenizer import tokenizer_file  # noqa: F401  (fixture)

REPO = "TestOrg/Tiny-BPE-0.1B"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DEAD_URL = "http://127.0.0.1:9/v1/chat/completions"


def lay_out_hub_cache(cache, repo_id, tokenizer_json):
    """The files huggingface_hub leaves after downloading tokenizer.json of
    `repo_id` at its main branch."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    data = open(tokenizer_json, "rb").read()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / "tokenizer.json")
    return cache


def offline(cache):
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_a_hub_id_offline_from_the_cache_gives_exact_random_lengths(tmp_path, mock, tokenizer_file):
    cache = lay_out_hub_cache(tmp_path / "hub", REPO, tokenizer_file)
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--dataset", "random", "--tokenizer-path", REPO,
               "--min-prompt-length", 37, "--max-prompt-length", 37, "--seed", 5, "--number", 5,
               "--parallel", 2, "--workers", 1, "--max-tokens", 3, "--no-plots", "--outputs-dir", out,
               env=offline(cache), unset=("HF_HOME", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT"))
    (db,) = find_dbs(out)
    tok = load_tokenizer(tokenizer_file)
    result = rows(db)
    assert len(result) == 5
    for row in result:
        assert row["success"] == 1, row["error"]
        assert tok.count(decode(row["request"])["messages"][0]["content"]) == 37


def test_a_hub_id_offline_without_the_cache_is_one_line_naming_it(tmp_path):
    cache = tmp_path / "empty-hub"
    cache.mkdir()
    proc = run_engine("--url", DEAD_URL, "--dataset", "random", "--tokenizer-path", REPO, "--number", 1,
                      "--outputs-dir", tmp_path / "out", env=offline(cache), check=False, timeout=60)
    assert_one_line_error(proc, f"'{REPO}'", str(cache), "HF_HUB_OFFLINE")
    assert not os.path.exists(tmp_path / "out")


def test_a_missing_local_path_is_not_mistaken_for_a_hub_id(tmp_path):
    proc = run_engine("--url", DEAD_URL, "--dataset", "random", "--tokenizer-path", tmp_path / "tokenizer.json",
                      "--number", 1, "--outputs-dir", tmp_path / "out", env=offline(tmp_path), check=False,
                      timeout=60)
    assert_one_line_error(proc, "not found", "hub model id")

