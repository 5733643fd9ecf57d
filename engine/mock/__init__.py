"""The built-in mock LLM server: OpenAI and DashScope protocols, configurable
timing, per-request ground truth.  Stdlib only.

    from engine.mock import MockConfig, start_mock
    with start_mock(["--ttft-ms", "50"]) as mock:
        requests.post(mock.chat_url, json=...)
        mock.truth()
"""
from .config import MockConfig
from .launch import MockProcess, MockStartError, start_mock

__all__ = ["MockConfig", "MockProcess", "MockStartError", "start_mock"]
