"""Command line of the mock server: ``python -m engine.mock [flags]``.

Prints exactly one line, ``servegauge mock listening on http://HOST:PORT``,
once the socket accepts connections, so a parent process can learn the port.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import sys

from .config import REASONING_FIELDS, MockConfig
from .faults import FAULTS
from .metrics import MODES as METRIC_MODES
from .server import MockServer, serve


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    return parse


_pos_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _chunk_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    low = _pos_int(lo)
    high = _pos_int(hi) if sep else low
    if high < low:
        raise argparse.ArgumentTypeError(f"the range {text} runs backwards: give LO-HI with LO <= HI")
    return low, high


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {text}")
    return value


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser_class`: `servegauge mock` lends the command line's own
    (engine.usage.CommandParser, one-line errors); the mock imports nothing
    of the client itself."""
    p = parser_class(
        prog="servegauge mock",
        description="Built-in mock LLM server (OpenAI and DashScope protocols) with "
                    "configurable timing and per-request ground truth at GET /truth.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=0, help="port; 0 picks a free one (default)")
    p.add_argument("--ttft-ms", type=_nonneg_float, default=20.0,
                   help="request arrival -> first content event, ms (default 20)")
    p.add_argument("--itl-ms", type=_nonneg_float, default=5.0,
                   help="gap between content events, ms (default 5)")
    p.add_argument("--tokens", type=_pos_int, default=32,
                   help="output tokens per reply, capped by the request's max_tokens (default 32)")
    p.add_argument("--tokens-min", type=_pos_int, default=None,
                   help="vary the reply length per request between this and --tokens (drawn from its id)")
    p.add_argument("--tokens-per-chunk", type=_chunk_range, default=(1, 1), metavar="K|LO-HI",
                   help="tokens in each content event (default 1); LO-HI: uniform in that range per event, "
                        "seeded by the request id, each event then due when its tokens are (--itl-ms / mean "
                        "tokens per event apart per token)")
    p.add_argument("--reasoning-tokens", type=_nonneg_int, default=0,
                   help="act as a reasoning model: stream this many reasoning tokens before the answer "
                        "(chat: delta.reasoning_content; Responses: response.reasoning_text.delta) (default 0)")
    p.add_argument("--reasoning-field", choices=REASONING_FIELDS, default="reasoning_content",
                   help="the chat delta field of the reasoning: reasoning_content (DeepSeek, older vLLM, "
                        "the default) or reasoning (vLLM >= 0.10)")
    p.add_argument("--model-name", default="mock-model", help="id listed by /v1/models")
    p.add_argument("--served-model", metavar="NAME",
                   help="serve only this model: 404 for a request naming another (default: answer any model)")
    p.add_argument("--slots", type=_pos_int, default=None, metavar="N",
                   help="capacity: at most N generation replies at once, the rest wait in arrival "
                        "order, so TTFT grows once the load passes N (default: unlimited)")
    p.add_argument("--metrics", choices=METRIC_MODES, default="ok",
                   help="GET /metrics: ok = Prometheus text in vLLM's names (default); off (404), hang, 500, "
                        "garbage, flaky (every other scrape 500) to test a client's scraper")
    p.add_argument("--truth-file", default=None,
                   help="write the ground truth (GET /truth's JSON) here on exit")
    p.add_argument("--no-truth", action="store_true", help="do not record ground truth")
    f = p.add_argument_group("faults (each generation request draws; the first fault that hits applies)")
    f.add_argument("--fault", action="append", default=[], type=_fault, metavar="NAME[=P]",
                   help=f"inject a fault with probability P (default 1); NAME is one of {', '.join(FAULTS)}. "
                        "Apart from faults, a request with the header X-Mock-Status: CODE is answered with "
                        "that status (200-599)")
    f.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws (default 0)")
    f.add_argument("--stall-s", type=_nonneg_float, default=30.0, help="length of a stall, s (default 30)")
    f.add_argument("--retry-after-s", type=_nonneg_float, default=1.0, help="Retry-After of http429 (default 1)")
    f.add_argument("--huge-body-mb", type=_nonneg_float, default=80.0, help="size of huge-body, MB (default 80)")
    t = p.add_argument_group("TLS")
    t.add_argument("--tls-cert", help="serve https with this PEM certificate (needs --tls-key)")
    t.add_argument("--tls-key", help="PEM private key of --tls-cert")
    t.add_argument("--tls-client-ca", help="require a client certificate signed by this CA (PEM): mutual TLS")
    return p


def _fault(text: str) -> tuple[str, float]:
    name, _, probability = text.partition("=")
    if name not in FAULTS:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; choose from {', '.join(FAULTS)}")
    try:
        value = float(probability) if probability else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"probability of {name} is not a number: {probability!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"probability of {name} must be in 0..1, got {value}")
    return name, value


def config_from_args(ns: argparse.Namespace) -> MockConfig:
    return MockConfig(host=ns.host, port=ns.port, ttft_ms=ns.ttft_ms, itl_ms=ns.itl_ms,
                      tokens=ns.tokens, tokens_min=ns.tokens_min, tokens_per_chunk=ns.tokens_per_chunk[0],
                      tokens_per_chunk_max=ns.tokens_per_chunk[1] if ns.tokens_per_chunk[1] != ns.tokens_per_chunk[0] else None,
                      reasoning_tokens=ns.reasoning_tokens, reasoning_field=ns.reasoning_field,
                      model_name=ns.model_name, served_model=ns.served_model, record_truth=not ns.no_truth,
                      truth_file=ns.truth_file, faults=tuple(ns.fault), fault_seed=ns.fault_seed,
                      stall_s=ns.stall_s, retry_after_s=ns.retry_after_s,
                      huge_body_bytes=int(ns.huge_body_mb * 2**20), tls_cert=ns.tls_cert, tls_key=ns.tls_key,
                      tls_client_ca=ns.tls_client_ca, slots=ns.slots,
                      metrics=ns.metrics)


def _announce(server: MockServer) -> None:
    print(f"servegauge mock listening on {server.base_url}", flush=True)


def main(argv: list[str] | None = None,
         parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    parser = build_parser(parser_class)
    ns = parser.parse_args(argv)
    try:
        config = config_from_args(ns)
    except ValueError as e:
        parser.error(str(e))
    if config.truth_file and not config.record_truth:
        parser.error("--truth-file needs truth recording; drop --no-truth")
    # Everything allocated at start-up lives for the whole run: freeze it out of
    # the collector, and collect less often -- per-request garbage is acyclic
    # and freed by refcounting, so frequent gen-0 passes are pure overhead.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        return asyncio.run(serve(config, ready=_announce))
    except OSError as e:  # e.g. the port is taken
        print(f"servegauge mock: cannot listen on {config.host}:{config.port}: {e}",
              file=sys.stderr)
        return 1
