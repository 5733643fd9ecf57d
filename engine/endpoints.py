"""Which URL paths each built-in API speaks, and the one-line error for a
--url whose path belongs to another --api (e.g. /v1/embeddings with --api
openai).  Checked with the other flags, before anything goes on the network,
so it holds with --no-test-connection too.  An API not listed here (a
third-party plugin, `custom`) is never second-guessed."""
from __future__ import annotations

from urllib.parse import urlsplit

from engine.arguments import redact_url
from engine.errors import UsageError

DASHSCOPE_PATH = "/api/v1/services/aigc/text-generation/generation"

# The endpoints each built-in API speaks, the usual one first.
API_PATHS: dict[str, tuple[str, ...]] = {
    "openai": ("/v1/chat/completions", "/v1/completions"),
    "dashscope": (DASHSCOPE_PATH,),
    "openai_embedding": ("/v1/embeddings",),
    "openai_rerank": ("/v1/rerank", "/rerank", "/v2/rerank"),
    "openai_responses": ("/v1/responses",),
}

# The dataset a --dataset-path is read with when --dataset is not given
# (else line_by_line): an embeddings or rerank file is not one prompt per line.
FILE_DATASETS = {"openai_embedding": "embedding", "openai_rerank": "rerank"}

# Path endings that name one endpoint, whatever prefix a gateway puts before
# them: (ending, what it is, the --api that speaks it).  Longest first.
_OWNERS = (
    (DASHSCOPE_PATH, "DashScope's text-generation endpoint", "dashscope"),
    ("/chat/completions", "the chat completions endpoint", "openai"),
    ("/completions", "the completions endpoint", "openai"),
    ("/embeddings", "the embeddings endpoint", "openai_embedding"),
    ("/rerank", "the rerank endpoint", "openai_rerank"),
    ("/responses", "the Responses API endpoint", "openai_responses"),
)


def owner(path: str) -> tuple[str, str] | None:
    """(what the endpoint is, the --api that speaks it) for a URL path, or None."""
    path = path.rstrip("/")
    for ending, what, api in _OWNERS:
        if path.endswith(ending):
            return what, api
    return None


def check_api_path(api: str, url: str) -> None:
    """A UsageError when --url's path is an endpoint another built-in --api speaks."""
    if not url or api not in API_PATHS:
        return
    path = urlsplit(url).path
    found = owner(path)
    if found is not None and found[1] != api:
        what, right = found
        raise UsageError(f"--url {redact_url(url)}: {path.rstrip('/')} is {what}: use --api {right} "
                         f"(--api {api} speaks {' or '.join(API_PATHS[api])})")


def mock_path(api: str) -> str:
    """The built-in mock's endpoint for an API (chat completions for one it does not know)."""
    return API_PATHS.get(api, API_PATHS["openai"])[0]
