"""The built-in dataset plugins, each on a small file the test writes, and
the one-line errors for files that are missing or in the wrong format."""
import base64
import json
import os

import pytest

from conftest import find_dbs, rows, run_engine
from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins.datasets.custom import CustomDataset
from plugins.datasets.flickr8k import Flickr8kDataset
from plugins.datasets.line_by_line import LineByLineDataset
from plugins.datasets.longalpaca import LongalpacaDataset
from plugins.datasets.openqa import OpenqaDataset
from plugins.datasets.random_dataset import RandomDataset
from plugins.datasets.sharegpt import SharegptDataset
from plugins.datasets.speed_benchmark import LENGTHS, SpeedBenchmarkDataset
from plugins.tokenizer import load_tokenizer
from test_plugins_tokenizer import tokenizer_file, wordlevel_file  # noqa: F401  (fixtures)

# A 1x1 JPEG and a 1x1 PNG, so the images are real files of their formats.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////"
    "////////////////////////2wBDAf//////////////////////////////////////////////////////////////////"
    "////////////////////wAARCAABAAEDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAP/xAAUEAEAAAAAAAAAAAAAAA"
    "AAAAAA/8QAFAEBAAAAAAAAAAAAAAAAAAAAAP/EABQRAQAAAAAAAAAAAAAAAAAAAAD/2gAMAwEAAhEDEQA/AKAA/9k=")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def params(**kw):
    return Arguments(url="http://127.0.0.1:1/v1/chat/completions", **kw)


def texts(items):
    return [item[0]["content"] if isinstance(item, list) else item for item in items]


def test_openqa_reads_questions_from_jsonl(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "What is TTFT?", "answer": "x"}\n\n{"question": "  Why?  "}\n'
                 '{"question": "a question far too long to pass the filter"}\n')
    items = list(OpenqaDataset(params(dataset_path=str(f), max_prompt_length=20)).build_messages())
    assert items == [[{"role": "user", "content": "What is TTFT?"}], [{"role": "user", "content": "Why?"}]]


def test_longalpaca_reads_instructions_from_a_json_list(tmp_path):
    f = tmp_path / "la.json"
    f.write_text(json.dumps([{"instruction": "Summarise this long paper.", "output": "..."},
                             {"instruction": "Short"}]))
    ds = LongalpacaDataset(params(dataset_path=str(f), min_prompt_length=6))
    assert texts(ds.build_messages()) == ["Summarise this long paper."]


def test_sharegpt_takes_the_first_human_turn(tmp_path):
    f = tmp_path / "sg.json"
    f.write_text(json.dumps([
        {"id": "1", "conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "Hi there"},
                                      {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "second"}]},
        {"id": "2", "conversations": [{"from": "gpt", "value": "no human turn"}]},
        {"id": "3", "conversations": []},
        {"id": "4", "conversations": [{"from": "human", "value": "Tell me a joke"}]},
    ]))
    assert texts(SharegptDataset(params(dataset_path=str(f))).build_messages()) == ["Hi there", "Tell me a joke"]


def test_custom_example_dataset_and_line_by_line(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("first prompt\n\n  second prompt  \nx\n")
    for cls in (CustomDataset, LineByLineDataset):
        assert texts(cls(params(dataset_path=str(f), min_prompt_length=2)).build_messages()) == [
            "first prompt", "second prompt"]


def test_flickr8k_kaggle_layout_sends_each_image_once_as_a_data_url(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "Images" / "1000_a.jpg").write_bytes(JPEG)
    (tmp_path / "Images" / "1001_b.png").write_bytes(PNG)
    (tmp_path / "captions.txt").write_text("image,caption\n1000_a.jpg,A dog runs .\n1000_a.jpg,\"A dog, running\"\n"
                                           "1001_b.png,A red square\n")
    for path in (tmp_path, tmp_path / "captions.txt"):
        items = list(Flickr8kDataset(params(dataset_path=str(path))).build_messages())
        assert len(items) == 2
        (message,) = items[0]
        assert message["role"] == "user"
        text, image = message["content"]
        assert text == {"type": "text", "text": "Describe the image."}
        assert image == {"type": "image_url",
                         "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()}}
        assert items[1][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


def test_flickr8k_images_beside_the_captions_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(JPEG)
    (tmp_path / "captions.txt").write_text("image,caption\nx.jpg,something\n")
    assert len(list(Flickr8kDataset(params(dataset_path=str(tmp_path))).build_messages())) == 1


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "has no captions.txt"),
    (lambda d: (d / "captions.txt").write_text("file;text\na.jpg;x\n"), 'is not the header "image,caption"'),
    (lambda d: (d / "captions.txt").write_text("image,caption\nmissing.jpg,x\n"), "image 'missing.jpg' named in"),
])
def test_flickr8k_bad_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DatasetError, match=message):
        list(Flickr8kDataset(params(dataset_path=str(tmp_path))).build_messages())


def test_speed_benchmark_without_a_tokenizer_repeats_a_one_token_word():
    items = list(SpeedBenchmarkDataset(params()).build_messages())
    assert [len(p.split()) for p in items] == list(LENGTHS) == [1, 6144, 14336, 30720]
    assert all(isinstance(p, str) and set(p.split()) == {"the"} for p in items)
    # --max-prompt-length filters it as any dataset (characters here)
    assert len(list(SpeedBenchmarkDataset(params(max_prompt_length=30000)).build_messages())) == 2


@pytest.mark.parametrize("fixture", ["tokenizer_file", "wordlevel_file"])
def test_speed_benchmark_with_a_tokenizer_has_exact_token_lengths(request, fixture):
    path = request.getfixturevalue(fixture)
    tok = load_tokenizer(path)
    items = list(SpeedBenchmarkDataset(params(tokenizer_path=path)).build_messages())
    assert [tok.count(p) for p in items] == list(LENGTHS)


@pytest.mark.parametrize("fixture", ["tokenizer_file", "wordlevel_file"])
def test_random_prompts_have_exactly_the_requested_token_lengths(request, fixture):
    path = request.getfixturevalue(fixture)
    tok = load_tokenizer(path)
    p = params(tokenizer_path=path, min_prompt_length=5, max_prompt_length=60, prefix_length=7, seed=3)
    gen = RandomDataset(p).build_messages()
    prompts = [next(gen)[0]["content"] for _ in range(40)]
    counts = [tok.count(t) for t in prompts]
    assert all(7 + 5 <= c <= 7 + 60 for c in counts), counts
    assert len(set(counts)) > 10  # drawn from the range, not one length
    # the shared prefix: the first 7 tokens of each prompt are the same
    prefixes = {tuple(tok.encode(t)[:7]) for t in prompts}
    assert len(prefixes) == 1
    # the lengths are the ones drawn: the same seed gives the same prompts, another seed others
    again = RandomDataset(p).build_messages()
    assert [next(again)[0]["content"] for _ in range(40)] == prompts
    other = RandomDataset(p.replace(seed=4)).build_messages()
    assert [next(other)[0]["content"] for _ in range(5)] != prompts[:5]


def test_random_fixed_length_and_no_prefix(tokenizer_file):
    tok = load_tokenizer(tokenizer_file)
    gen = RandomDataset(params(tokenizer_path=tokenizer_file, min_prompt_length=33, max_prompt_length=33)).build_messages()
    assert [tok.count(next(gen)[0]["content"]) for _ in range(20)] == [33] * 20


def test_prompt_length_filter_counts_tokens_with_a_tokenizer(tmp_path, wordlevel_file):
    f = tmp_path / "p.txt"
    f.write_text("alpha bravo\nalpha bravo charlie delta echo\nthe model\n")
    by_chars = LineByLineDataset(params(dataset_path=str(f), max_prompt_length=11))
    assert texts(by_chars.build_messages()) == ["alpha bravo", "the model"]
    by_tokens = LineByLineDataset(params(dataset_path=str(f), min_prompt_length=2, max_prompt_length=4,
                                         tokenizer_path=wordlevel_file))
    assert texts(by_tokens.build_messages()) == ["alpha bravo", "the model"]


def test_random_end_to_end_sends_prompts_of_the_requested_lengths(tmp_path, mock, tokenizer_file):
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--dataset", "random", "--tokenizer-path", tokenizer_file,
               "--min-prompt-length", 20, "--max-prompt-length", 40, "--prefix-length", 4, "--seed", 11,
               "--number", 6, "--parallel", 2, "--workers", 1, "--max-tokens", 4, "--outputs-dir", out)
    (db,) = find_dbs(out)
    tok = load_tokenizer(tokenizer_file)
    from test_plugins_api import decode

    result = rows(db)
    assert len(result) == 6
    for row in result:
        assert row["success"] == 1, row["error"]
        content = decode(row["request"])["messages"][0]["content"]
        assert 24 <= tok.count(content) <= 44


def test_speed_benchmark_end_to_end_sends_plain_completions(tmp_path, mock):
    # the mock counts one token per word: "the" repeated n times is n prompt tokens
    out = tmp_path / "out"
    run_engine("--url", mock.completions_url, "--dataset", "speed_benchmark", "--number", 4, "--parallel", 1,
               "--workers", 1, "--max-tokens", 2, "--outputs-dir", out)
    (db,) = find_dbs(out)
    from test_plugins_api import decode

    result = rows(db, "SELECT * FROM result ORDER BY start_time")
    assert [r["prompt_tokens"] for r in result] == list(LENGTHS)
    for row in result:
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        assert "messages" not in body and isinstance(body["prompt"], str)


# --- one-line errors, exit 2, no traceback -------------------------------------

def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("servegauge: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write(path, text):
    path.write_text(text)
    return path


BAD_INPUTS = [
    ("missing file", "openqa", lambda d: d / "nope.jsonl", ["nope.jsonl", "not found", '"question"']),
    ("no path", "sharegpt", None, ["--dataset-path", "ShareGPT"]),
    ("openqa not json", "openqa", lambda d: write(d / "q.jsonl", "question: what?\n"), ["line 1 is not JSON",
                                                                                       '"question"']),
    ("openqa no question", "openqa", lambda d: write(d / "q.jsonl", '{"q": "what?"}\n'), ['item 1 has no "question"']),
    ("longalpaca bad json", "longalpaca", lambda d: write(d / "l.json", '[{"instruction": "x"},'),
     ["is not valid JSON", '"instruction"']),
    ("sharegpt no conversations", "sharegpt", lambda d: write(d / "s.json", '[{"turns": []}]'),
     ['item 1 has no "conversations" list']),
    ("binary file", "line_by_line", lambda d: (d / "b.txt").write_bytes(b"\xff\xfe\x00bad") and d / "b.txt",
     ["is not UTF-8 text"]),
    ("flickr8k no folder", "flickr8k", lambda d: d / "nowhere", ["nowhere", "not found", "captions.txt"]),
    ("empty after filter", "line_by_line", lambda d: write(d / "p.txt", "tiny\n"), ["yielded no prompts",
                                                                                   "--min-prompt-length"]),
]


@pytest.mark.parametrize("case, dataset, make, fragments", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_dataset_input_is_one_line_and_exit_2(tmp_path, case, dataset, make, fragments):
    argv = ["--url", "http://127.0.0.1:9/v1/chat/completions", "--dataset", dataset, "--number", 1,
            "--outputs-dir", tmp_path / "out"]
    if make is not None:
        argv += ["--dataset-path", make(tmp_path)]
    if case == "empty after filter":
        argv += ["--min-prompt-length", 100]
    proc = run_engine(*argv, check=False, timeout=60)
    assert_one_line_error(proc, *fragments)
    assert not os.path.exists(tmp_path / "out")  # nothing made before the data is known good


def test_random_without_a_tokenizer_is_one_line(tmp_path):
    proc = run_engine("--url", "http://127.0.0.1:9/v1/chat/completions", "--dataset", "random",
                      "--outputs-dir", tmp_path, check=False, timeout=60)
    assert_one_line_error(proc, "random", "--tokenizer-path")



@pytest.mark.parametrize("fixture", ["tokenizer_file", "wordlevel_file"])
def test_random_prefix_count_gives_distinct_prefixes_round_robin(request, fixture):
    path = request.getfixturevalue(fixture)
    tok = load_tokenizer(path)
    p = params(tokenizer_path=path, min_prompt_length=3, max_prompt_length=30, prefix_length=12, prefix_count=3,
               seed=9)
    gen = RandomDataset(p).build_messages()
    prompts = [next(gen)[0]["content"] for _ in range(30)]
    assert all(12 + 3 <= tok.count(t) <= 12 + 30 for t in prompts)
    heads = [tuple(tok.encode(t)[:12]) for t in prompts]
    assert len(set(heads)) == 3  # K distinct prefixes of exactly L tokens ...
    assert all(heads[i] == heads[i % 3] for i in range(30))  # ... assigned round-robin
    assert RandomDataset(p).build_messages().__next__()[0]["content"] == prompts[0]  # the same seed, the same
