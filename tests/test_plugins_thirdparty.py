"""Plugins from outside servegauge: an installed package (the example in
scripts/example_plugin, pip-installed into a fresh venv) and a plugin file
written for evalscope perf, ported by changing its imports only."""
import json
import os
import shutil
import site
import subprocess
import sys

import pytest

from conftest import ROOT, find_dbs, rows, run_engine
from test_plugins_api import decode

EXAMPLE = os.path.join(ROOT, "scripts", "example_plugin")


def can_build_offline():
    """pip --no-build-isolation needs setuptools' bdist_wheel: built into
    setuptools >= 70.1, from the `wheel` package before (a test extra)."""
    try:
        import wheel  # noqa: F401
        return True
    except ImportError:
        import setuptools

        return tuple(int(x) for x in setuptools.__version__.split(".")[:2]) >= (70, 1)


def make_venv_seeing_ours(venv) -> str:
    """A venv made with --system-site-packages, whose python sees the packages
    this interpreter sees: the project's dependencies are reused (fast,
    offline).  --system-site-packages alone gives the base interpreter's, which
    are not this one's when the tests run inside a virtualenv themselves (as
    many contributors install the project); then a .pth file adds this venv's
    site-packages after the new one's, as the system's would be."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    if sys.prefix != sys.base_prefix:
        purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        ours = [p for p in site.getsitepackages() if p.startswith(sys.prefix)]
        with open(os.path.join(purelib, "_outer_venv.pth"), "w") as f:
            f.write("".join(f"import site; site.addsitedir({p!r})\n" for p in ours))
    return python


@pytest.mark.skipif(not can_build_offline(), reason="needs `wheel` (pip install -e '.[test]')")
def test_example_plugin_package_installed_in_a_venv(tmp_path, mock):
    venv = tmp_path / "venv"
    # The project's dependencies are reused from this interpreter; servegauge
    # itself is then visible twice, from the venv and from this interpreter's
    # packages, which must not count as two packages claiming names.
    python = make_venv_seeing_ours(venv)
    package = tmp_path / "example_plugin"  # a copy: the build writes into the source folder
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [python, "-m", "pip", "install", "--no-build-isolation", "--no-index", "-q"]
    # without PYTHONPATH, so that only what is installed can meet a requirement
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run(pip + ["--no-deps", "-e", ROOT], capture_output=True, text=True, timeout=300, env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    # The example declares install_requires = servegauge: with dependencies on
    # and no index, pip must find that requirement met by this project.
    install = subprocess.run(pip + [str(package)], capture_output=True, text=True, timeout=300, env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    shown = subprocess.run([python, "-m", "pip", "show", "servegauge-example-plugin", "servegauge"],
                           capture_output=True, text=True, timeout=120, env=env).stdout
    assert "Requires: servegauge" in shown
    assert f"Editable project location: {ROOT}" in shown

    # The console script runs the default sweep (the built-in mock at 1, 4 and
    # 16 streams) from any folder, with nothing but what is installed.
    sweep = subprocess.run([str(venv / "bin" / "servegauge"), "--no-plots", "--outputs-dir", tmp_path / "sweep"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert [os.path.basename(os.path.dirname(db)) for db in find_dbs(tmp_path / "sweep")] == [
        "parallel_16_number_640", "parallel_1_number_40", "parallel_4_number_160"]

    def venv_engine(*args):
        proc = subprocess.run([python, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                              timeout=180, cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    listing = venv_engine("plugins").stdout.splitlines()
    (api,) = [line for line in listing if line.split()[:1] == ["echo_openai"]]
    (data,) = [line for line in listing if line.split()[:1] == ["example_questions"]]
    for line in (api, data):
        assert "servegauge-example-plugin 0.2.1" in line and "UNUSABLE" not in line
    assert "counting characters as tokens" in api and "Five short questions" in data
    (openai,) = [line for line in listing if line.split()[:1] == ["openai"]]
    assert "servegauge 0.1.0" in openai and "UNUSABLE" not in openai

    out = tmp_path / "out"
    venv_engine("--url", mock.chat_url, "--api", "echo_openai", "--dataset", "example_questions",
                "--number", 4, "--parallel", 2, "--workers", 1, "--max-tokens", 6, "--outputs-dir", out)
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 4
    for row in result:
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        prompt = body["messages"][0]["content"]
        assert prompt.endswith(("?", "."))
        text = "".join((json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                       for e in decode(row["response_messages"]))
        assert len(text.split()) == 6  # six tokens generated ...
        # ... but the plugin counts characters: the counts came from its parse_responses
        assert row["completion_tokens"] == len(text) > 6
        assert row["prompt_tokens"] == len(prompt)
        assert row["token_source"] == "usage"


# The "custom API" example of evalscope perf's documentation (user guide,
# stress test, "Custom Usage"): its code as published, with the imports
# marked "changed" swapped for servegauge's and its docstrings, some comments
# and the `__main__` block left out for length.  Its process_request
# (aiohttp) is simply never called: servegauge's workers send the requests.
EVALSCOPE_DOC_PLUGIN = '''
import json
import aiohttp
from typing import Any, AsyncGenerator, Dict, List, Tuple, Union

from engine.arguments import Arguments                      # changed: evalscope.perf.arguments
from plugins import ApiPluginBase                           # changed: evalscope.perf.plugin.api.base
from plugins import register_api                            # changed: evalscope.perf.plugin.registry
from logging import getLogger as get_logger                 # changed: evalscope.utils.logger

logger = get_logger()


@register_api('custom')
class CustomPlugin(ApiPluginBase):
    """Template for a plugin supporting custom API implementations."""

    def __init__(self, param: Arguments):
        super().__init__(param=param)
        if param.tokenizer_path is not None:
            from modelscope import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(param.tokenizer_path)
        else:
            self.tokenizer = None

    def build_request(self, messages: Union[List[Dict], str], param: Arguments = None) -> Dict:
        param = param or self.param
        try:
            # If no template is provided, create a default query format
            if isinstance(messages, str):
                query = {'input_text': messages}
            else:
                query = {'messages': messages}

            # Add model parameters to the request
            return self._add_parameters_to_request(query, param)
        except Exception as e:
            logger.exception(e)
            return None

    def _add_parameters_to_request(self, payload: Dict, param: Arguments) -> Dict:
        # Add model name
        payload['model'] = param.model

        # Add various parameters if provided
        if param.max_tokens is not None:
            payload['max_tokens'] = param.max_tokens
        if param.temperature is not None:
            payload['temperature'] = param.temperature
        if param.top_p is not None:
            payload['top_p'] = param.top_p
        if param.top_k is not None:
            payload['top_k'] = param.top_k
        if param.stream is not None:
            payload['stream'] = param.stream
            payload['stream_options'] = {'include_usage': True}

        # Add any extra parameters passed via the command line
        if param.extra_args is not None:
            payload.update(param.extra_args)

        return payload

    def parse_responses(self, responses: List[str], request: Any = None, **kwargs) -> Tuple[int, int]:
        try:
            # Example 1: Try to get token count from API response
            last_response = json.loads(responses[-1])

            # If API provides usage info
            if 'usage' in last_response and last_response['usage']:
                input_tokens = last_response['usage'].get('prompt_tokens', 0)
                output_tokens = last_response['usage'].get('completion_tokens', 0)
                return input_tokens, output_tokens

            # Example 2: If no usage info, use tokenizer to count tokens
            if self.tokenizer is not None:
                input_text = ""
                output_text = ""

                # Extract input text from request
                if request and 'messages' in request:
                    # For chat API
                    input_text = " ".join([msg['content'] for msg in request['messages']])
                elif request and 'input_text' in request:
                    # For completion API
                    input_text = request['input_text']

                # Extract output text from responses
                for response in responses:
                    js = json.loads(response)
                    if 'choices' in js:
                        for choice in js['choices']:
                            if 'message' in choice and 'content' in choice['message']:
                                output_text += choice['message']['content']
                            elif 'text' in choice:
                                output_text += choice['text']

                # Count tokens
                input_tokens = len(self.tokenizer.encode(input_text))
                output_tokens = len(self.tokenizer.encode(output_text))
                return input_tokens, output_tokens

            # If neither usage info nor tokenizer is available, raise error
            raise ValueError("Cannot determine token count: no usage info in response and no tokenizer provided.")

        except Exception as e:
            logger.error(f"Error parsing responses: {e}")
            return 0, 0

    async def process_request(self, client_session: aiohttp.ClientSession, url: str, headers: Dict,
                              body: Dict) -> AsyncGenerator[Tuple[bool, int, str], None]:
        try:
            headers = {'Content-Type': 'application/json', **headers}
            data = json.dumps(body, ensure_ascii=False)
            async with client_session.request('POST', url=url, data=data, headers=headers) as response:
                status_code = response.status
                if 'text/event-stream' in response.content_type:
                    async for line in response.content:
                        line_str = line.decode('utf-8').strip()
                        if not line_str:
                            continue
                        if line_str.startswith('data: '):
                            data = line_str[6:]
                            if data == '[DONE]':
                                break
                            try:
                                parsed_data = json.loads(data)
                                yield (False, status_code, json.dumps(parsed_data))
                            except json.JSONDecodeError:
                                yield (True, status_code, f"Failed to parse JSON: {data}")
                else:
                    if 'application/json' in response.content_type:
                        content = await response.json()
                        yield (status_code >= 400, status_code, json.dumps(content))
                    else:
                        content = await response.text()
                        yield (status_code >= 400, status_code, content)
        except Exception as e:
            logger.error(f"Error in process_request: {e}")
            yield (True, 500, str(e))
'''


def test_a_plugin_written_for_evalscope_runs_through_plugin_module(tmp_path, mock):
    pytest.importorskip("aiohttp")  # the documented example imports it (for the method never called here)
    plugin = tmp_path / "evalscope_custom_api.py"
    plugin.write_text(EVALSCOPE_DOC_PLUGIN)
    out = tmp_path / "out"
    proc = run_engine("--url", mock.chat_url, "--api", "custom", "--plugin-module", plugin, "--model", "m",
                      "--number", 4, "--parallel", 2, "--workers", 1, "--max-tokens", 7, "--outputs-dir", out)
    # its name is also a built-in's: the module named on the command line wins, and says so
    assert "'custom' from --plugin-module" in proc.stderr and "overrides" in proc.stderr
    (db,) = find_dbs(out)
    result = rows(db)
    assert len(result) == 4
    for row in result:
        assert row["success"] == 1, row["error"]
        body = decode(row["request"])
        assert body["stream_options"] == {"include_usage": True} and body["max_tokens"] == 7
        assert row["completion_tokens"] == 7 and row["token_source"] == "usage" and row["prompt_tokens"] > 0
        assert row["n_chunks"] == 7 and 0 < row["first_chunk_latency"] < row["latency"]
