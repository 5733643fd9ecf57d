"""Arguments: one typed, frozen record of one run.

A leaf module that plugins import (`from engine.arguments import Arguments`).
Field names follow evalscope perf's so plugins written for it port by
changing imports.  A sweep (`--parallel 1 4 16`) is a list of these, one per
run, made with `dataclasses.replace`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
REDACTED = "***"


@dataclass(frozen=True)
class Arguments:
    # target
    url: str = ""
    api: str = "openai"
    model: str = ""
    api_key: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    insecure: bool = False
    proxy: str | None = None  # every request through this proxy (else HTTP(S)_PROXY / NO_PROXY)
    ca_bundle: str | None = None  # PEM file of the CAs to trust (else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE)
    cert: str | None = None  # client certificate (PEM) for mutual TLS
    key: str | None = None  # its private key, when not inside --cert
    retries: int = 0  # extra attempts after a transport failure, 429 or 5xx
    # the server's Prometheus metrics (engine.server_metrics): None = the --url's
    # origin + /metrics, when it answers Prometheus text
    server_metrics: str | None = None
    no_server_metrics: bool = False
    metrics_interval: float = 1.0  # seconds between scrapes
    # load
    parallel: int = 1
    number: int | None = None
    rate: float | None = None  # requests/s; None = no pacing (closed loop)
    burstiness: float = 1.0  # gamma shape; 1 = Poisson
    workers: int = 1
    backend: str = "local"  # local worker processes, or "ray" actors (engine.ray_pool)
    ray_address: str | None = None  # --backend ray: the cluster; None/auto = the running one, else a local Ray
    ray_workers: int | None = None  # --backend ray: actors; None = one per CPU of the cluster
    warmup_num: int = 0
    # --open-loop: requests go at their scheduled times (--rate, or a trace
    # dataset's own), never held back by replies; --parallel only caps threads
    open_loop: bool = False
    ramp_up: float | None = None  # seconds over which concurrency (or rate) grows from 1 to its target
    duration: float | None = None  # seconds of dispatching
    grace: float = 5.0  # seconds in-flight requests get after Ctrl-C
    seed: int = 0
    # dataset
    dataset: str = "builtin"
    dataset_path: str | None = None
    prompt: str | None = None
    query_template: str | None = None
    min_prompt_length: int = 0
    max_prompt_length: int = 131072
    prefix_length: int = 0
    prefix_count: int = 1  # distinct --prefix-length prefixes, assigned round-robin (random dataset)
    dataset_offset: int = 0  # skip the first N items (conversations) of the dataset
    # multi-turn (engine.conversations); --number then counts conversations
    multi_turn: bool = False  # evalscope perf's switch; a dataset of conversations implies it
    min_turns: int = 1
    max_turns: int | None = None  # random_multi_turn: most turns; share_gpt_*_multi_turn: truncate to it
    think_time_s: tuple[float, float] = (0.0, 0.0)  # between a reply's last byte and the next turn: uniform in
    tokenizer_path: str | None = None
    dataset_args: dict[str, Any] = field(default_factory=dict)  # --dataset-args: the dataset plugin's own options
    apply_chat_template: bool = True  # read by datasets ported from evalscope perf
    # generation
    max_tokens: int | None = None
    min_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    stream: bool = True
    # Ask for usage in every streamed chunk (vLLM's stream_options.continuous_usage_stats),
    # to count tokens per chunk; None: on when the pre-flight check sees the server give it.
    continuous_usage: bool | None = None
    extra_args: dict[str, Any] = field(default_factory=dict)
    # output
    outputs_dir: str = "outputs"
    name: str | None = None
    no_timestamp: bool = False
    debug: bool = False
    # set by the runner for a sweep: the folder shared by all its runs
    sweep_dir: str | None = None

    @property
    def url_path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.url).path

    def replace(self, **changes: Any) -> "Arguments":
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict[str, Any]:
        """The arguments as stored in the database and reports: no secrets."""
        data = dataclasses.asdict(self)
        data["api_key"] = REDACTED if self.api_key else None
        data["url"] = redact_url(self.url)
        data["proxy"] = redact_url(self.proxy) if self.proxy else None
        data["server_metrics"] = redact_url(self.server_metrics) if self.server_metrics else None
        data["headers"] = {
            k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()
        }
        return data

    def proxies(self) -> tuple[tuple[str, str], ...]:
        """--proxy for both schemes (requests' proxies mapping), or none."""
        return (("http", self.proxy), ("https", self.proxy)) if self.proxy else ()

    def client_cert(self) -> str | tuple[str, str] | None:
        """--cert [--key] as requests takes a client certificate."""
        if self.cert and self.key:
            return (self.cert, self.key)
        return self.cert

    def request_headers(self) -> dict[str, str]:
        """Headers every request carries, the API key included (never stored)."""
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self.headers)
        return headers


def redact_url(url: str) -> str:
    """The URL with any password (and user name) in it replaced, as the key
    is: `https://user:pw@host/v1` -> `https://***@host/v1`."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))
