"""The mock server's settings: one frozen record, passed to everything that needs it.

There are no module-level settings; two servers with different configs can run
in one process (the tests rely on it).
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock behaves.  Times are in the units their names say."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the kernel picks a free port; the CLI prints the one it got
    # Request arrival -> first content event (streams) or part of the reply delay.
    ttft_ms: float = 20.0
    # Gap between consecutive content events (per event, not per token: with
    # tokens_per_chunk K each token takes itl_ms / K; with a range, see
    # token_interval_s).
    itl_ms: float = 5.0
    # Output length when the request gives no max_tokens (and the cap when it does).
    tokens: int = 32
    # With it, each reply's length is between tokens_min and tokens, drawn
    # from the request id (so reply lengths, and times, vary per request).
    tokens_min: int | None = None
    tokens_per_chunk: int = 1
    # With it, each content event carries between tokens_per_chunk and this
    # many tokens, uniform, drawn per request from its id (seeded: the same
    # request id gets the same chunks), as speculative decoding or a
    # coalescing proxy sends them; tokens still come at one steady rate.
    tokens_per_chunk_max: int | None = None
    # A reasoning model: chat streams send this many reasoning tokens (in
    # delta.<reasoning_field>) before the answer, Responses streams as
    # response.reasoning_text.delta events; the usage counts them in
    # completion_tokens_details.reasoning_tokens.  0: no reasoning.
    reasoning_tokens: int = 0
    reasoning_field: str = "reasoning_content"  # DeepSeek and vLLM < 0.10; newer vLLM: "reasoning"
    model_name: str = "mock-model"
    # Serve only this model: a request for another gets 404, as from vLLM;
    # /v1/models lists it.  None: any model is answered (the default).
    served_model: str | None = None
    # Record per-request ground truth for GET /truth and --truth-file.
    record_truth: bool = True
    truth_file: str | None = None
    # Largest request head / body we accept; beyond it: 431 / 413 and close.
    max_head_bytes: int = 64 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    # Fault injection (engine.mock.faults): (name, probability) pairs.
    faults: tuple[tuple[str, float], ...] = ()
    fault_seed: int = 0
    stall_s: float = 30.0  # how long the "stall" fault holds the rest of a reply
    retry_after_s: float = 1.0  # Retry-After of the "http429" fault
    huge_body_bytes: int = 80 * 1024 * 1024  # padding of the "huge-body" fault
    # TLS: serve https with this certificate and key (PEM files).
    tls_cert: str | None = None
    tls_key: str | None = None
    # Mutual TLS: require a client certificate signed by this CA (PEM).
    tls_client_ca: str | None = None
    # Capacity: at most this many generation replies at once, the rest wait in
    # arrival order (engine.mock.slots).  None: unlimited (every reply at once).
    slots: int | None = None
    # GET /metrics: "ok" (vLLM's names, engine.mock.metrics), or a misbehaviour
    # for tests: off, hang, 500, garbage, flaky.
    metrics: str = "ok"

    def __post_init__(self) -> None:
        # Validated here too (not only in argparse) so that library users of
        # MockConfig get the same clear error as the command line.
        if self.ttft_ms < 0 or self.itl_ms < 0:
            raise ValueError("ttft_ms and itl_ms must be >= 0")
        if self.tokens < 1 or self.tokens_per_chunk < 1:
            raise ValueError("tokens and tokens_per_chunk must be >= 1")
        if self.tokens_per_chunk_max is not None and self.tokens_per_chunk_max < self.tokens_per_chunk:
            raise ValueError("the largest tokens per chunk must be >= the smallest")
        if self.reasoning_tokens < 0:
            raise ValueError("reasoning_tokens must be >= 0")
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(f"reasoning_field must be one of {', '.join(REASONING_FIELDS)}")
        if self.tokens_min is not None and not 1 <= self.tokens_min <= self.tokens:
            raise ValueError("tokens_min must be between 1 and tokens")
        if self.slots is not None and self.slots < 1:
            raise ValueError("slots must be >= 1")
        from .metrics import MODES

        if self.metrics not in MODES:
            raise ValueError(f"metrics must be one of {', '.join(MODES)}")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")
        from .faults import FAULTS

        for name, probability in self.faults:
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r}; choose from {', '.join(FAULTS)}")
            if not 0 <= probability <= 1:
                raise ValueError(f"fault {name}: probability must be in 0..1")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both a certificate and a key")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("a client CA needs TLS: give the certificate and key too")

    def reply_tokens(self, request_id: str) -> int:
        """Output length of the reply to this request (before its max_tokens)."""
        if self.tokens_min is None:
            return self.tokens
        return self.tokens_min + zlib.crc32(request_id.encode()) % (self.tokens - self.tokens_min + 1)

    def chunk_sizes(self, request_id: str, n_tokens: int) -> list[int]:
        """Tokens in each content event of a reply of n_tokens (the last may be short)."""
        lo = self.tokens_per_chunk
        hi = self.tokens_per_chunk_max or lo
        if hi == lo:
            return [lo] * (n_tokens // lo) + ([n_tokens % lo] if n_tokens % lo else [])
        draw = random.Random(zlib.crc32(request_id.encode())).randint
        sizes, left = [], n_tokens
        while left > 0:
            sizes.append(min(left, draw(lo, hi)))
            left -= sizes[-1]
        return sizes

    @property
    def token_interval_s(self) -> float:
        """Seconds per output token after the first event: itl_ms over the
        mean tokens per event, so the mean gap between events stays itl_ms
        and a chunk of n tokens comes n intervals after the one before it."""
        hi = self.tokens_per_chunk_max or self.tokens_per_chunk
        return self.itl_s / ((self.tokens_per_chunk + hi) / 2.0)

    @property
    def listed_model(self) -> str:
        """The id /v1/models lists."""
        return self.served_model or self.model_name

    @property
    def ttft_s(self) -> float:
        return self.ttft_ms / 1000.0

    @property
    def itl_s(self) -> float:
        return self.itl_ms / 1000.0
