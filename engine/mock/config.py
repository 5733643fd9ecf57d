"""The mock server's settings: one frozen record, passed to everything that needs it.

There are no module-level settings; two servers with different configs can run
in one process (the tests rely on it).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock behaves.  Times are in the units their names say."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the kernel picks a free port; the CLI prints the one it got
    # Request arrival -> first content event (streams) or part of the reply delay.
    ttft_ms: float = 20.0
    # Gap between consecutive content events.
    itl_ms: float = 5.0
    # Output length when the request gives no max_tokens (and the cap when it does).
    tokens: int = 32
    tokens_per_chunk: int = 1
    model_name: str = "mock-model"
    # Record per-request ground truth for GET /truth and --truth-file.
    record_truth: bool = True
    truth_file: str | None = None
    # Largest request head / body we accept; beyond it: 431 / 413 and close.
    max_head_bytes: int = 64 * 1024
    max_body_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        # Validated here too (not only in argparse) so that library users of
        # MockConfig get the same clear error as the command line.
        if self.ttft_ms < 0 or self.itl_ms < 0:
            raise ValueError("ttft_ms and itl_ms must be >= 0")
        if self.tokens < 1 or self.tokens_per_chunk < 1:
            raise ValueError("tokens and tokens_per_chunk must be >= 1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")

    @property
    def ttft_s(self) -> float:
        return self.ttft_ms / 1000.0

    @property
    def itl_s(self) -> float:
        return self.itl_ms / 1000.0
