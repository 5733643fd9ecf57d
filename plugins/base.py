"""The plugin SDK: what API and dataset plugins implement.

Signatures match evalscope perf's, so a plugin written for it ports by
changing its imports.  Plugins only format and parse: the worker owns the
socket and the clock, and never calls a plugin while a request is timed.
"""
from __future__ import annotations

import contextvars
from abc import ABC, abstractmethod
from typing import Any, Iterator

from engine.arguments import Arguments
from engine.errors import DatasetError
from plugins import files
from plugins.bodies import messages_text
from plugins.jsoncache import load_json
from plugins.openai_shapes import (last_reasoning_tokens, openai_event_has_answer, openai_event_has_output,
                                   openai_event_text, usage_counts)
from plugins.payload import Payload  # noqa: F401  (part of the SDK: what parse_responses gets)

# The run's Arguments while plugins.registry constructs a plugin, for a
# subclass whose __init__ is not given them (evalscope's `(self, model_path)`
# or no argument at all) but calls super().__init__.
CONSTRUCTING: contextvars.ContextVar[Arguments | None] = contextvars.ContextVar("servegauge_plugin_args",
                                                                               default=None)


def register_api(name: str | list[str]):
    """Class decorator: make an ApiPluginBase subclass available as `--api name`
    (the registry is plugins.registry)."""
    from plugins import registry

    return registry.register("api", name)


def register_dataset(name: str | list[str]):
    """Class decorator: make a DatasetPluginBase subclass available as `--dataset name`
    (the registry is plugins.registry)."""
    from plugins import registry

    return registry.register("dataset", name)


class ApiPluginBase(ABC):
    """Formats requests for one API and parses what it answered."""

    #: one line shown by `python -m engine plugins`
    description: str = ""
    #: False for endpoints that answer with one result and generate no
    #: tokens (embeddings, rerank): their rows have no TTFT, TPOT or ITL,
    #: only latency and input tokens.
    generates_tokens: bool = True

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

    def output_event_tokens(self, responses: list[str], indexes: list[int]) -> list[int] | None:
        """Output tokens in each output event (`indexes` are
        `output_event_indexes`), for ITL per token; None when the replies do
        not say.  The default reads OpenAI's running `usage.completion_tokens`
        in every chunk (vLLM's stream_options.continuous_usage_stats)."""
        return usage_counts(responses, indexes, "completion_tokens")

    def answer_event_indexes(self, responses: list[str], request: Any = None) -> list[int]:
        """Of the output events, those that carry the answer rather than
        reasoning: when they differ, the row gets a time to first answer
        token.  The default reads the OpenAI chat/completions stream shape
        (`reasoning_content` / `reasoning` deltas are reasoning)."""
        return [i for i, payload in enumerate(responses) if openai_event_has_answer(load_json(payload))]

    def reasoning_tokens(self, responses: list[str]) -> int | None:
        """Reasoning tokens the usage reports (part of the completion
        tokens), or None when it does not say."""
        return last_reasoning_tokens(responses)

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

    def answer_text(self, responses: list[str]) -> str:
        """The answer alone, without a reasoning model's reasoning: what a
        chat client sends back as the assistant's turn of a conversation
        (DeepSeek and vLLM ask that reasoning not be sent back).  A reply
        with no event `answer_event_indexes` recognises is taken whole."""
        answers = self.answer_event_indexes(responses)
        if not answers:
            return self.completion_text(responses)
        return self.completion_text([responses[i] for i in answers])

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

    def build_conversations(self) -> Iterator[list] | None:
        """Optional, for multi-turn datasets: yield one conversation at a
        time, a list of user turns; a turn is a string (one user message) or
        the list of messages it adds to the history (a system message may
        open the first).  servegauge sends turn k with the whole history,
        the replies it actually received included, so a conversation gives
        no assistant turns.  Return None (this default) when the dataset is
        single-turn; build_messages then gives the requests."""
        return None

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

    def require_tokenizer(self, name: str, purpose: str) -> None:
        """One line when --tokenizer-path is missing: `--dataset name` needs
        it to make `purpose` (e.g. "prompts of exact token lengths")."""
        if not getattr(self.query_parameters, "tokenizer_path", None):
            raise DatasetError(f"--dataset {name} needs --tokenizer-path (a tokenizer.json, a tokenizer folder or "
                               f"a hub model id such as Qwen/Qwen2.5-0.5B-Instruct) to make {purpose}")

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
        return files.lines(dataset, what)

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
        return files.json_items(dataset, what)

    def dataset_folder(self, dataset: str | None, what: str) -> str:
        """--dataset-path as an existing folder, or a DatasetError saying what
        the folder must hold."""
        return files.folder(dataset, what)

    @staticmethod
    def dataset_format_error(dataset: str | None, where: str, problem: str, what: str) -> DatasetError:
        """The error for a file that is there but not in the expected format:
        `raise self.dataset_format_error(path, "line 3", "has no 'question'", what)`."""
        return files.format_error(dataset, where, problem, what)
