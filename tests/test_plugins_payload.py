"""What parse_responses gets (plugins.payload.Payload), how plugins written
from evalscope's documents are constructed, and what a plugin whose
parse_responses raises does to a run.

End to end: plugin files loaded with --plugin-module, real `python -m engine`
against the project's mock server, token counts compared with the mock's
own record (/truth) of what it sent."""
import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from conftest import find_dbs, rows, run_engine
from engine.arguments import Arguments
from engine.mock.launch import start_mock
from plugins import ApiPluginBase, Payload
from plugins.registry import construct
from test_plugins_api import decode
from test_plugins_tokenizer import tokenizer_file  # noqa: F401  (a fixture)

CHUNK = '{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"h\u00e9"}}]}'
USAGE = '{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}'


# --- the payload type ----------------------------------------------------------

def test_a_payload_is_the_text_the_bytes_and_the_object():
    p = Payload(CHUNK)
    # text: a str, equal to and hashing like the plain one, str methods and slices as str
    assert isinstance(p, str) and p == CHUNK and hash(p) == hash(CHUNK) and {p: 1}[CHUNK] == 1
    assert p.startswith('{"id"') and p[0] == "{" and p[1:5] == '"id"' and len(p) == len(CHUNK)
    assert type(p[1:5]) is str and type(p.upper()) is str and type(str(p)) is str
    assert json.loads(p) == json.loads(CHUNK) and json.dumps([p]) == json.dumps([CHUNK])
    assert "chunk" in p and repr(p) == repr(CHUNK)
    # bytes-like: decode() gives the text (as a plain str), whatever codec name is given
    assert p.decode("utf-8") == p.decode() == CHUNK and type(p.decode()) is str
    assert p.decode("latin-1") == CHUNK.encode("utf-8").decode("latin-1")
    assert json.loads(p.decode("utf-8"))["choices"][0]["delta"]["content"] == "h\u00e9"
    # the parsed object: str keys, get, keys/items/values
    assert p["object"] == "chat.completion.chunk" and p["choices"][0]["delta"]["content"] == "h\u00e9"
    assert p.get("usage") is None and p.get("usage", 0) == 0 and Payload(USAGE).get("usage")["completion_tokens"] == 2
    assert list(p.keys()) == ["id", "object", "choices"] and dict(p.items()) == json.loads(CHUNK)
    assert list(p.values())[0] == "c1"
    with pytest.raises(KeyError):
        p["usage"]


def test_a_payload_is_parsed_once_and_only_when_asked():
    p = Payload(CHUNK)
    assert "_json" not in p.__dict__
    first = p.get("choices")
    assert p.get("choices") is first and p["choices"] is first
    first.append("mine")  # the plugin's own copy: another payload of the same text is not touched
    assert Payload(CHUNK)["choices"] == json.loads(CHUNK)["choices"]


def test_a_payload_that_is_not_json_still_works_as_text_and_says_so_as_an_object():
    p = Payload("not json")
    assert p.decode() == "not json" and p.split() == ["not", "json"]
    with pytest.raises(ValueError):
        p.get("usage")


def test_a_payload_pickles_and_copies_as_the_plain_str():
    p = Payload(USAGE)
    for clone in (pickle.loads(pickle.dumps(p)), pickle.loads(pickle.dumps([p]))[0], copy.copy(p), copy.deepcopy(p)):
        assert type(clone) is str and clone == USAGE
    assert b"Payload" not in pickle.dumps([p]) and b"plugins" not in pickle.dumps([p])


# --- construction: the signatures of evalscope's documents ------------------------

class _Counts(ApiPluginBase):
    def build_request(self, messages, param=None):
        return {"model": (param or self.param).model, "messages": messages}

    def parse_responses(self, responses, request=None, **kwargs):
        return None, None


class _ModelPath(_Counts):
    def __init__(self, model_path: str):
        super().__init__(model_path=model_path)
        self.given = model_path


class _ModelPathNoSuper(_Counts):
    def __init__(self, model_path):
        self.given = model_path


class _Param(_Counts):
    def __init__(self, param):
        super().__init__(param)
        self.given = param


class _NoArgs(_Counts):
    def __init__(self):
        super().__init__()


@pytest.mark.parametrize("cls", [_ModelPath, _ModelPathNoSuper, _Param, _NoArgs, _Counts])
def test_each_documented_init_signature_constructs_with_param_and_model_path(cls):
    a = Arguments(url="http://x/v1/chat/completions", model="m", tokenizer_path="/tok/tokenizer.json")
    plugin = construct("api", cls, a)
    assert plugin.param is a and plugin.model_path == "/tok/tokenizer.json"
    assert plugin.build_request([{"role": "user", "content": "hi"}])["model"] == "m"
    if cls in (_ModelPath, _ModelPathNoSuper):
        assert plugin.given == "/tok/tokenizer.json"  # what evalscope passed it: the tokenizer path
    elif cls is _Param:
        assert plugin.given is a


# --- end to end: plugins in each style count the server's usage --------------------

BUILD = '''
import json
from plugins import ApiPluginBase, register_api


class Base(ApiPluginBase):
    def build_request(self, messages, param=None):
        param = param or self.param
        body = {"model": param.model, "messages": messages, "stream": param.stream, "max_tokens": param.max_tokens}
        if param.stream:
            body["stream_options"] = {"include_usage": True}
        return body
'''

STYLES = {
    # evalscope perf's document: "responses (List[bytes])"
    "bytes": '''
    def parse_responses(self, responses, request=None, **kwargs):
        prompt = completion = None
        for response in responses:
            data = json.loads(response.decode('utf-8'))
            if data.get('usage'):
                prompt, completion = data['usage']['prompt_tokens'], data['usage']['completion_tokens']
        return prompt, completion
''',
    # evalscope 1.x: each payload already parsed
    "dict": '''
    def parse_responses(self, responses, request=None, **kwargs):
        usage = responses[-1].get('usage')
        if 'choices' in responses[0] and responses[0]['choices']:
            assert responses[0]['choices'][0]['index'] == 0
        return usage['prompt_tokens'], usage['completion_tokens']
''',
    # servegauge's own plugins: JSON text
    "str": '''
    def parse_responses(self, responses, request=None, **kwargs):
        prompt = completion = None
        for r in responses:
            data = json.loads(r)
            if data.get('usage'):
                prompt, completion = data['usage']['prompt_tokens'], data['usage']['completion_tokens']
        return prompt, completion
''',
}

INITS = {  # the document's `__init__(self, model_path: str)`, and the others that must construct
    "model_path": '''
    def __init__(self, model_path: str):
        super().__init__(model_path=model_path)
        if not isinstance(model_path, str):
            raise TypeError(f"model_path is {type(model_path).__name__}")
        self.tokenizer_file = model_path
''',
    "param": '''
    def __init__(self, param):
        super().__init__(param)
''',
    "none": '''
    def __init__(self):
        super().__init__()
''',
}


def plugin_file(tmp_path, name, body):
    path = tmp_path / f"{name}_plugin.py"
    path.write_text(BUILD + f"\n\n@register_api('{name}')\nclass Plugin(Base):\n" + textwrap.indent(
        textwrap.dedent(body), "    "))
    return path


def run_and_check_usage(tmp_path, mock, name, body, *extra):
    out = tmp_path / "out"
    run_engine("--url", mock.chat_url, "--api", name, "--plugin-module", plugin_file(tmp_path, name, body),
               "--model", "m", "--number", 4, "--parallel", 2, "--workers", 1, "--max-tokens", 5,
               "--outputs-dir", out, *extra)
    (db,) = find_dbs(out)
    result = rows(db)
    truth = {t["request_id"]: t for t in mock.truth()}
    assert len(result) == 4
    for row in result:
        assert row["success"] == 1, row["error"]
        sent = truth[row["request_id"]]
        assert sent["completion_tokens"] > 0
        assert (row["prompt_tokens"], row["completion_tokens"]) == (sent["prompt_tokens"], sent["completion_tokens"])
        assert row["token_source"] == "usage"
    return result


@pytest.mark.parametrize("stream", ["stream", "no-stream"])
@pytest.mark.parametrize("style", sorted(STYLES))
def test_plugins_reading_payloads_as_bytes_dicts_or_text_count_the_servers_usage(tmp_path, mock, style, stream):
    extra = ["--no-stream"] if stream == "no-stream" else []
    run_and_check_usage(tmp_path, mock, f"{style}_style", STYLES[style], *extra)


@pytest.mark.parametrize("init", sorted(INITS))
def test_plugins_with_evalscopes_init_signatures_run(tmp_path, mock, init, tokenizer_file):
    body = INITS[init] + STYLES["dict"]
    run_and_check_usage(tmp_path, mock, f"init_{init}", body, "--tokenizer-path", tokenizer_file)


def test_the_database_keeps_plain_str_payloads(tmp_path, mock):
    result = run_and_check_usage(tmp_path, mock, "dict_style", STYLES["dict"])
    # Unpickled where servegauge cannot even be imported: a reference to
    # plugins.payload.Payload would fail to load there.
    check = ("import base64, pickle, sys\n"
             "for text in sys.stdin.read().split():\n"
             "    events = pickle.loads(base64.b64decode(text))\n"
             "    assert events and all(type(e) is str for e in events), events\n"
             "assert 'plugins' not in sys.modules\n"
             "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", check], input=" ".join(r["response_messages"] for r in result),
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert all(json.loads(decode(r["response_messages"])[-1])["usage"] for r in result)


# --- a plugin whose parse_responses raises -------------------------------------------

@pytest.fixture(scope="module")
def own_mock():
    """A mock of this module's own, so /truth counts only these runs' requests."""
    with start_mock(["--ttft-ms", "1", "--itl-ms", "1", "--tokens", "4"]) as server:
        yield server


FAILS_ALWAYS = '''
    def parse_responses(self, responses, request=None, **kwargs):
        raise ValueError("cannot read this\\nat all")
'''

FAILS_ONE_IN_TEN = '''
    calls = 0

    def parse_responses(self, responses, request=None, **kwargs):
        self.calls += 1
        if self.calls % 10 == 0:
            raise RuntimeError(f"call {self.calls} is unlucky")
        usage = responses[-1].get('usage')
        return usage['prompt_tokens'], usage['completion_tokens']
'''


def failure_lines(stderr):
    return [line for line in stderr.replace("\r", "\n").splitlines() if "parse_responses failed" in line]


def test_a_plugin_that_always_fails_stops_the_run_within_the_first_20_requests(tmp_path, own_mock):
    own_mock.truth(clear=True)
    out = tmp_path / "out"
    proc = run_engine("--url", own_mock.chat_url, "--api", "broken", "--plugin-module",
                      plugin_file(tmp_path, "broken", FAILS_ALWAYS), "--model", "m", "--number", 400,
                      "--parallel", 2, "--workers", 1, "--outputs-dir", out, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = failure_lines(proc.stderr)
    assert "api plugin 'broken' (servegauge_user_broken_plugin.Plugin)" in line
    assert "ValueError: cannot read this at all" in line
    head = line.split("; payload ", 1)[1].split(": ", 1)[1]  # the payload, last on the line
    assert head.startswith('{"id":') and len(head) <= 200
    sent = own_mock.truth()
    assert 20 <= len(sent) < 40  # of 400
    (db,) = find_dbs(out)
    result = rows(db)
    failed = [r for r in result if (r["error"] or "").startswith("parse_responses failed: ValueError")]
    # the 20th failure stops the run; what was already answered or in flight then
    # (at --parallel 2: a record on its way and a request per thread) still gets its row
    assert 20 <= len(failed) <= 20 + 2 * 2 and all(r["success"] == 0 for r in result)
    assert all("\n" not in r["error"] for r in result)
    assert {r["request_id"] for r in result} <= {t["request_id"] for t in sent}


def test_a_plugin_that_fails_now_and_then_runs_to_the_end_with_those_rows_marked(tmp_path, own_mock):
    own_mock.truth(clear=True)
    out = tmp_path / "out"
    proc = run_engine("--url", own_mock.chat_url, "--api", "flaky", "--plugin-module",
                      plugin_file(tmp_path, "flaky", FAILS_ONE_IN_TEN), "--model", "m", "--number", 40,
                      "--parallel", 2, "--workers", 1, "--outputs-dir", out)
    (line,) = failure_lines(proc.stderr)  # said once, at the first
    assert "RuntimeError: call 10 is unlucky" in line and "Traceback" not in proc.stderr
    (db,) = find_dbs(out)
    result = rows(db)
    truth = {t["request_id"]: t for t in own_mock.truth()}
    assert len(result) == 40 and all(r["request_id"] in truth for r in result)  # (truth has the pre-flight's too)
    failed = [r for r in result if not r["success"]]
    assert sorted(r["error"] for r in failed) == [f"parse_responses failed: RuntimeError: call {n} is unlucky"
                                                  for n in (10, 20, 30, 40)]
    for row in result:
        if row["success"]:
            assert row["completion_tokens"] == truth[row["request_id"]]["completion_tokens"] > 0
