"""The plugin SDK: what API and dataset plugins implement.

Signatures match evalscope perf's, so a plugin written for it ports by
changing its imports.  Plugins only format and parse: the worker owns the
socket and the clock, and never calls a plugin while a request is timed.
"""
from __future__ import annotations

import contextvars
import functools
import json
import os
from abc import ABC, abstractmethod
from typing import Any, Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError, UsageError
from plugins.payload import Payload  # noqa: F401  (part of the SDK: what parse_responses gets)

# The run's Arguments while plugins.registry constructs a plugin, for a
# subclass whose __init__ is not given them (evalscope's `(self, model_path)`
# or no argument at all) but calls super().__init__.
CONSTRUCTING: contextvars.ContextVar[Arguments | None] = contextvars.ContextVar("servegauge_plugin_args",
                                                                               default=None)

# Classes registered with the decorators below, by name.  Filled when the
# module defining them is imported (a --plugin-module, or a plugin package's
# own module that stevedore loads); read by plugins.registry.
API_REGISTRY: dict[str, type] = {}
DATASET_REGISTRY: dict[str, type] = {}


def register_api(name: str | list[str]):
    """Class decorator: make an ApiPluginBase subclass available as `--api name`."""
    return _register(API_REGISTRY, name)


def register_dataset(name: str | list[str]):
    """Class decorator: make a DatasetPluginBase subclass available as `--dataset name`."""
    return _register(DATASET_REGISTRY, name)


def _register(registry: dict[str, type], name: str | list[str]):
    names = [name] if isinstance(name, str) else list(name)

    def decorator(cls: type) -> type:
        for n in names:
            registry[n] = cls
        return cls

    return decorator


def load_json(payload: Any) -> Any:
    """Parse one event payload (str or bytes); None if it is not JSON.

    The coordinator asks several questions of each event (an error? output?
    usage?); the cache makes that one parse per event, not one per question.
    Treat the result as read-only."""
    try:
        return _load_json_cached(payload)
    except TypeError:  # unhashable: not a raw payload
        return None


# json.loads = two whitespace regex matches and three Python frames around
# the C scanner; a payload that is exactly one JSON object (as events are)
# goes straight to the scanner: ~40 % less per event, every event of a run.
_scan_once = json.JSONDecoder().scan_once


@functools.lru_cache(maxsize=4096)
def _load_json_cached(payload: str | bytes) -> Any:
    try:
        if isinstance(payload, str) and payload[:1] == "{" and payload[-1:] == "}":
            value, end = _scan_once(payload, 0)
            if end == len(payload):
                return value
        return json.loads(payload)
    except (TypeError, ValueError, StopIteration):
        return None


class ApiPluginBase(ABC):
    """Formats requests for one API and parses what it answered."""

    #: one line shown by `python -m engine plugins`
    description: str = ""

    def __init__(self, param: Arguments | None = None, model_path: str | None = None, **kwargs: Any):
        # Today's plugins pass the run's Arguments; those written from
        # evalscope's first documents take and pass the tokenizer path
        # (`super().__init__(model_path=model_path)`, or positionally).
        if isinstance(param, str):
            param, model_path = None, param
        self.param = param if param is not None else CONSTRUCTING.get()
        # evalscope perf's base sets this too; plugins ported from it read it.
        self.model_path = model_path if model_path is not None else getattr(self.param, "tokenizer_path", None)

    @abstractmethod
    def build_request(self, messages: list[dict] | str, param: Arguments | None = None) -> dict | None:
        """The request body for one dataset item; None skips the item."""

    @abstractmethod
    def parse_responses(self, responses: list, request: Any = None, **kwargs: Any) -> tuple[int | None, int | None]:
        """(prompt_tokens, completion_tokens) from the raw event payloads of a
        stream, or from the one body of a non-streamed reply.  Each payload
        is a `Payload`: the JSON text (a str), also bytes-like (`.decode()`)
        and the parsed object (`.get('usage')`, `['choices']`).  Return None
        for a count the responses do not give; servegauge then falls back to
        a tokenizer or to counting events."""

    # --- what the protocol looks like on the wire (all optional) ----------

    def request_headers(self, param: Arguments) -> dict[str, str]:
        """Extra headers the protocol needs (e.g. DashScope's SSE switch)."""
        return {}

    def output_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        """Indexes of the events that carry output (content, reasoning or a
        tool call).  TTFT and ITL are measured on these.  The default reads
        the OpenAI chat/completions stream shape; a role-only or empty delta
        is not output."""
        indexes = []
        for i, payload in enumerate(responses):
            if openai_event_has_output(load_json(payload)):
                indexes.append(i)
        return indexes

    def response_error(self, responses: list[str]) -> str | None:
        """A one-line reason if the server reported an error inside a 200
        reply (an error object in the stream), else None."""
        for i, payload in enumerate(responses):
            data = load_json(payload)
            if data is None:
                snippet = " ".join(str(payload).split())[:60]
                return f"invalid JSON in event {i + 1}: {snippet}"
            if isinstance(data, dict):
                err = data.get("error")
                if err is None and data.get("object") == "error":
                    err = data
                if err:
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    return "error event in stream: " + " ".join(str(msg).split())[:200]
        return None

    def completion_text(self, responses: list[str]) -> str:
        """The generated text, for tokenizer-based counting."""
        parts = []
        for payload in responses:
            parts.append(openai_event_text(load_json(payload)))
        return "".join(parts)

    @staticmethod
    def replace_values(input_json: Any, model: str, prompt: str) -> Any:
        """Replace %m (model) and %p (prompt) in every string of a JSON-like
        structure, in place (as evalscope perf's helper of the same name)."""
        if isinstance(input_json, dict):
            for key, value in input_json.items():
                if isinstance(value, str):
                    input_json[key] = value.replace("%m", model).replace("%p", prompt)
                else:
                    ApiPluginBase.replace_values(value, model, prompt)
        elif isinstance(input_json, list):
            for i, item in enumerate(input_json):
                if isinstance(item, str):
                    input_json[i] = item.replace("%m", model).replace("%p", prompt)
                else:
                    ApiPluginBase.replace_values(item, model, prompt)
        elif isinstance(input_json, str):
            return input_json.replace("%m", model).replace("%p", prompt)
        return input_json


#: evalscope perf's plugins may derive from DefaultApiPlugin, whose extra
#: part is the HTTP client; here the worker owns the socket, so it is the base.
DefaultApiPlugin = ApiPluginBase


def openai_event_text(data: Any) -> str:
    """Text an OpenAI-shaped chunk or body carries (content + reasoning)."""
    if not isinstance(data, dict):
        return ""
    out = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        part = choice.get("delta") or choice.get("message") or {}
        if isinstance(part, dict):
            for key in ("content", "reasoning_content", "reasoning"):
                value = part.get(key)
                if isinstance(value, str):
                    out.append(value)
        text = choice.get("text")
        if isinstance(text, str):
            out.append(text)
    return "".join(out)


_OUTPUT_KEYS = ("content", "reasoning_content", "reasoning", "tool_calls")


def openai_event_has_output(data: Any) -> bool:
    """Content, reasoning or a tool call in a chunk (or a completions text).
    Called once per event of every request, so it asks only what it must."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        part = choice.get("delta") or choice.get("message")
        if isinstance(part, dict):
            for key in _OUTPUT_KEYS:
                if part.get(key):
                    return True
        text = choice.get("text")
        if isinstance(text, str) and text:
            return True
    return False


class DatasetPluginBase(ABC):
    """Yields the messages to send, one list of chat messages (or one plain
    string for completions APIs) per request."""

    #: one line shown by `python -m engine plugins`
    description: str = ""

    def __init__(self, query_parameters: Arguments):
        self.query_parameters = query_parameters

    @abstractmethod
    def build_messages(self) -> Iterator[list[dict] | str]:
        """Yield one item per request."""

    # --- helpers -----------------------------------------------------------

    def prompt_fits(self, text: str | list) -> bool:
        """--min-prompt-length <= length <= --max-prompt-length, the length in
        tokens when --tokenizer-path is given, else in characters.  `text`
        may also be a list of chat messages (their text is measured)."""
        p = self.query_parameters
        return p.min_prompt_length <= self.prompt_length(text) <= p.max_prompt_length

    def prompt_length(self, text: str | list) -> int:
        """Tokens of `text` with --tokenizer-path, else characters."""
        if not isinstance(text, str):
            text = messages_text(text)
        tokenizer = self.load_tokenizer()
        return tokenizer.count(text) if tokenizer is not None else len(text)

    def load_tokenizer(self):
        """The --tokenizer-path tokenizer (plugins.tokenizer.Tokenizer:
        encode, decode, count, normal_ids), or None without the flag.
        Loaded once per process and shared with the token counting."""
        from plugins.tokenizer import load_tokenizer

        return load_tokenizer(getattr(self.query_parameters, "tokenizer_path", None))

    @staticmethod
    def create_message(text: str, image_urls: list[str] | None = None, role: str = "user") -> dict:
        if not image_urls:
            return {"role": role, "content": text}
        content = [{"type": "text", "text": text}]
        content += [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
        return {"role": role, "content": content}

    def dataset_line_by_line(self, dataset: str | None, what: str | None = None) -> Iterator[str]:
        """Non-empty lines of a text file, stripped.  `what` describes the
        expected file in error messages."""
        what = what or "a text file, one prompt per line"
        with _open_dataset(dataset, what) as f:
            for line in _text_lines(f, dataset, what):
                line = line.strip()
                if line:
                    yield line

    def dataset_string_field(self, path: str | None, key: str, what: str) -> Iterator[str]:
        """The stripped `key` string of each object of a JSON list or JSON-lines
        file, skipping empty ones and those --min/--max-prompt-length reject;
        an item without it is a format error naming the item."""
        for n, item in enumerate(self.dataset_json_list(path, what), 1):
            value = item.get(key) if isinstance(item, dict) else None
            if not isinstance(value, str):
                raise self.dataset_format_error(path, f"item {n}", f'has no "{key}" string', what)
            value = value.strip()
            if value and self.prompt_fits(value):
                yield value

    def dataset_json_list(self, dataset: str | None, what: str | None = None) -> Iterator[Any]:
        """Items of a JSON list file, or the objects of a JSON-lines file.
        `what` describes the expected file in error messages."""
        what = what or "a JSON list or a JSON-lines file"
        with _open_dataset(dataset, what) as f:
            try:
                head = f.read(1)
                while head and head.isspace():
                    head = f.read(1)
                if head == "[":
                    try:
                        items = json.loads(head + f.read())
                    except ValueError as e:
                        raise DatasetError(f"dataset file '{dataset}' is not valid JSON ({e}): expected {what}") from None
                    yield from items
                    return
                f.seek(0)
            except UnicodeDecodeError:
                raise DatasetError(f"dataset file '{dataset}' is not UTF-8 text: expected {what}") from None
            for n, line in enumerate(_text_lines(f, dataset, what), 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise DatasetError(
                            f"dataset file '{dataset}' line {n} is not JSON: expected {what}"
                        ) from None

    def dataset_folder(self, dataset: str | None, what: str) -> str:
        """--dataset-path as an existing folder, or a DatasetError saying what
        the folder must hold."""
        if not dataset:
            raise DatasetError(f"this dataset reads a local folder: pass --dataset-path with {what}")
        if not os.path.isdir(dataset):
            raise DatasetError(f"dataset folder '{dataset}' not found: --dataset-path must name {what}")
        return dataset

    @staticmethod
    def dataset_format_error(dataset: str | None, where: str, problem: str, what: str) -> DatasetError:
        """The error for a file that is there but not in the expected format:
        `raise self.dataset_format_error(path, "line 3", "has no 'question'", what)`."""
        return DatasetError(f"dataset file '{dataset}' {where} {problem}: expected {what}")


def last_usage(responses: list, prompt_key: str, completion_key: str) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from the last event whose `usage` has a
    completion count: usage comes in its own final chunk, or inside the last
    chunk with choices, or (DashScope) cumulative in every event."""
    for payload in reversed(responses):
        # a Payload as plain str: the coordinator's parse of it is cached under that key
        data = load_json(str.__str__(payload) if isinstance(payload, str) else payload)
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict) and usage.get(completion_key) is not None:
            return usage.get(prompt_key), usage.get(completion_key)
    return None, None


def fill_query_template(template: str, model: str, prompt: str) -> dict:
    """--query-template: %m and %p stand inside JSON strings, so they are
    replaced by JSON-escaped text, and the result must be a JSON object."""
    text = template.replace("%m", json.dumps(model)[1:-1]).replace("%p", json.dumps(prompt)[1:-1])
    try:
        body = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--query-template is not valid JSON after substitution: {e}") from None
    if not isinstance(body, dict):
        raise UsageError("--query-template must be a JSON object")
    return body


def messages_text(item: Any) -> str:
    """The text of a dataset item: a plain string, or the text parts of a
    list of chat messages (images and other parts are not text)."""
    if isinstance(item, str):
        return item
    parts = []
    for message in item or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)]
    return "\n".join(parts)


def _text_lines(f, path: str | None, what: str) -> Iterator[str]:
    try:
        yield from f
    except UnicodeDecodeError:
        raise DatasetError(f"dataset file '{path}' is not UTF-8 text: expected {what}") from None


def _open_dataset(path: str | None, what: str):
    if not path:
        raise DatasetError(f"this dataset reads a local file: pass --dataset-path with {what}")
    if not os.path.isfile(path):
        raise DatasetError(f"dataset file '{path}' not found: --dataset-path must name {what}")
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        raise DatasetError(f"cannot read dataset file '{path}': {e.strerror}") from None
