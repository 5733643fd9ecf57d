"""Command line of the mock server: ``python -m engine.mock [flags]``.

Prints exactly one line, ``servebench mock listening on http://HOST:PORT``,
once the socket accepts connections, so a parent process can learn the port.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import sys

from .config import MockConfig
from .server import MockServer, serve


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _pos_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="servebench mock",
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
    p.add_argument("--tokens-per-chunk", type=_pos_int, default=1,
                   help="tokens in each content event (default 1)")
    p.add_argument("--model-name", default="mock-model", help="id listed by /v1/models")
    p.add_argument("--truth-file", default=None,
                   help="write the ground truth (GET /truth's JSON) here on exit")
    p.add_argument("--no-truth", action="store_true", help="do not record ground truth")
    return p


def config_from_args(ns: argparse.Namespace) -> MockConfig:
    return MockConfig(host=ns.host, port=ns.port, ttft_ms=ns.ttft_ms, itl_ms=ns.itl_ms,
                      tokens=ns.tokens, tokens_per_chunk=ns.tokens_per_chunk,
                      model_name=ns.model_name, record_truth=not ns.no_truth,
                      truth_file=ns.truth_file)


def _announce(server: MockServer) -> None:
    print(f"servebench mock listening on {server.base_url}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    config = config_from_args(ns)
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
        print(f"servebench mock: cannot listen on {config.host}:{config.port}: {e}",
              file=sys.stderr)
        return 1
