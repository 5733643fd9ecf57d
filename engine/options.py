"""The run command's flags (named as in evalscope perf) -> a list of
Arguments, one per run of the sweep.  Every bad value is one line that names
the flag and what it takes."""
from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.arguments import Arguments, redact_url
from engine.endpoints import FILE_DATASETS, check_api_path
from engine.errors import UsageError
from engine.usage import CommandParser

# The zero-argument run: a short sweep against the built-in mock server.
DEFAULT_SWEEP_PARALLEL = [1, 4, 16]
DEFAULT_SWEEP_NUMBER = [40, 160, 640]
DEFAULT_NUMBER = 1000  # as evalscope perf, when --url is given without --number
RATE_DEFAULT_PARALLEL = 256
DEFAULT_WORKERS = 2 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Extra:
    """Options of the command that are not part of a run's Arguments."""

    plugin_modules: tuple[str, ...] = ()
    slo: dict | None = None
    max_error_rate: float | None = None
    plots: bool = True
    test_connection: bool = True  # the pre-flight check (engine.preflight)
    resume: str | None = None  # --resume OUTPUT_DIR (engine.resume)
    sla: object | None = None  # engine.sla_options.SlaOptions with --sla-auto-tune


def _typed(kind, check, what):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return value
    return convert


POS_INT = _typed(int, lambda v: v >= 1, "a whole number >= 1")
NONNEG_INT = _typed(int, lambda v: v >= 0, "a whole number >= 0")
POS_FLOAT = _typed(float, lambda v: v > 0 and math.isfinite(v), "a number > 0")
NONNEG_FLOAT = _typed(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")
UNIT_FLOAT = _typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
SHARE = _typed(float, lambda v: 0 <= v <= 1, "a share between 0 and 1")
def _think(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        pair = (float(low), float(high) if sep else float(low))
    except ValueError:
        pair = (-1.0, -1.0)
    if not (0 <= pair[0] <= pair[1] and math.isfinite(pair[1])):
        raise argparse.ArgumentTypeError(f"'{text}' is not seconds >= 0 (e.g. 2) or a range A-B (e.g. 1-5)")
    return pair


THINK = _think
BURST = _typed(float, lambda v: v > 0, "a number > 0 (1 = Poisson, inf = evenly spaced)")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="servegauge", description="Benchmark an LLM serving endpoint. Without --url, the "
                "built-in mock server is started and benchmarked. Subcommands: mock, plugins, report, compare.")
    t = p.add_argument_group("target")
    t.add_argument("--url", help="endpoint, e.g. http://127.0.0.1:8000/v1/chat/completions (default: the mock)")
    t.add_argument("--api", default="openai", help="API plugin: openai, dashscope, ... (see `servegauge plugins`)")
    t.add_argument("--model", default="", help="model name sent in each request")
    t.add_argument("--api-key", help="API key; prefer the OPENAI_API_KEY or DASHSCOPE_API_KEY environment variable")
    t.add_argument("--headers", nargs="+", default=[], metavar="K=V", help="extra HTTP headers")
    t.add_argument("--connect-timeout", type=POS_FLOAT, default=10.0, help="seconds to connect (default 10)")
    t.add_argument("--read-timeout", type=POS_FLOAT, default=600.0,
                   help="seconds without data before a request fails (default 600)")
    t.add_argument("--insecure", action="store_true", help="accept a TLS certificate that does not verify")
    t.add_argument("--proxy", metavar="URL", help="send every request through this proxy "
                   "(default: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment)")
    t.add_argument("--ca-bundle", metavar="PATH", help="PEM file of the CAs to trust for https "
                   "(default: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's)")
    t.add_argument("--cert", metavar="PATH", help="client certificate (PEM) for mutual TLS")
    t.add_argument("--key", metavar="PATH", help="private key of --cert, when it is not in the same file")
    t.add_argument("--retries", type=NONNEG_INT, default=0,
                   help="retry a request after a connection failure, 429 or 5xx, up to N times, each attempt "
                        "recorded (default 0: retries distort the measurement)")
    t.add_argument("--no-test-connection", dest="test_connection", action="store_false",
                   help="skip the check before the first run (one short request, and GET /v1/models) "
                        "that turns a wrong URL, key or model into one line and exit 2")
    t.add_argument("--server-metrics", metavar="URL",
                   help="the server's Prometheus metrics, scraped during every run and stored in the database "
                        "(default: the --url's origin + /metrics, when it answers Prometheus text)")
    t.add_argument("--no-server-metrics", action="store_true", help="do not scrape the server's metrics")
    t.add_argument("--metrics-interval", type=POS_FLOAT, default=1.0, metavar="S",
                   help="seconds between scrapes of the server's metrics (default 1)")
    t.add_argument("--plugin-module", action="append", default=[], metavar="NAME_OR_FILE.py",
                   help="import a module whose @register_api/@register_dataset classes become available (repeatable)")
    l = p.add_argument_group("load")
    l.add_argument("--parallel", type=POS_INT, nargs="+",
                   help=f"requests in flight at most; a list makes a sweep (default 1; {RATE_DEFAULT_PARALLEL} with --rate)")
    l.add_argument("-n", "--number", type=POS_INT, nargs="+",
                   help=f"requests per run, paired with --parallel (default {DEFAULT_NUMBER})")
    l.add_argument("--rate", type=POS_FLOAT, nargs="+", help="requests/s, open loop (default: no pacing)")
    l.add_argument("--open-loop", action="store_true",
                   help="send each request at its scheduled time whatever is in flight: at --rate, or at the "
                        "times of a trace dataset (workload_trace, mooncake_trace); in-flight requests are "
                        f"capped only by an explicit --parallel (default {RATE_DEFAULT_PARALLEL})")
    l.add_argument("--ramp-up", type=POS_FLOAT, metavar="S",
                   help="seconds over which concurrency (or --rate) grows linearly from 1 to its target; "
                        "the requests sent meanwhile are recorded with is_warmup = 2 and left out of metrics")
    l.add_argument("--burstiness", type=BURST, default=1.0, help="gamma shape of the gaps at --rate; 1 = Poisson")
    # Twice the cores: a process's threads share one GIL, and with two per core
    # one runs while another waits for it (non-streamed load on 2 cores: 1900
    # -> 2200 req/s, docs/benchmarks.md); never more processes than --parallel.
    l.add_argument("--workers", type=POS_INT, default=DEFAULT_WORKERS,
                   help="worker processes (default: twice the CPU count); threads per process = parallel / workers")
    l.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the load comes from: local worker processes (default) or Ray actors on a "
                        "cluster (pip install 'servegauge[ray]'; see docs/ray.md)")
    l.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to use with --backend ray (default: auto, the running cluster, "
                        "else a local Ray started for the run)")
    l.add_argument("--ray-workers", type=POS_INT, metavar="N",
                   help="Ray actors with --backend ray (default: one per CPU of the cluster); "
                        "threads per actor = parallel / N")
    l.add_argument("--warmup-num", type=NONNEG_INT, default=0, help="requests sent first and left out of metrics")
    l.add_argument("--duration", type=POS_FLOAT,
                   help="seconds: nothing is sent after them; in-flight requests get --grace to finish")
    l.add_argument("--grace", type=NONNEG_FLOAT, default=5.0,
                   help="seconds in-flight requests get after Ctrl-C, --duration or --max-error-rate (default 5)")
    l.add_argument("--seed", type=int, default=0, help="seed of the arrival process and random datasets")
    d = p.add_argument_group("dataset")
    d.add_argument("--dataset", default=None,
                   help="dataset plugin (default: builtin; with --dataset-path: line_by_line, or embedding / "
                        "rerank for --api openai_embedding / openai_rerank)")
    d.add_argument("--dataset-path", help="local file the dataset reads")
    d.add_argument("--prompt", help="send this one prompt for every request")
    d.add_argument("--query-template", help="JSON body template; %%m = model, %%p = prompt")
    d.add_argument("--min-prompt-length", type=NONNEG_INT, default=0,
                   help="skip shorter prompts; tokens with --tokenizer-path, else characters")
    d.add_argument("--max-prompt-length", type=POS_INT, default=131072,
                   help="skip longer prompts; tokens with --tokenizer-path, else characters (default 131072)")
    d.add_argument("--prefix-length", type=NONNEG_INT, default=0,
                   help="shared prefix length in tokens (random dataset)")
    d.add_argument("--dataset-args", metavar="JSON",
                   help="JSON object of the dataset plugin's own options, e.g. '{\"speed\": 2.0}' for a trace")
    d.add_argument("--prefix-count", type=POS_INT, default=1,
                   help="random dataset: K distinct prefixes of --prefix-length tokens, assigned round-robin "
                        "(default 1: one prefix shared by all)")
    d.add_argument("--dataset-offset", type=NONNEG_INT, default=0,
                   help="skip the first N items (conversations) of the dataset")
    m = p.add_argument_group("multi-turn (--number counts conversations; docs/recipes.md)")
    m.add_argument("--multi-turn", action="store_true",
                   help="send conversations: turn k with the whole history, the replies received included "
                        "(implied by random_multi_turn, share_gpt_{en,zh}_multi_turn, custom_multi_turn)")
    m.add_argument("--min-turns", type=POS_INT, default=1, help="random_multi_turn: fewest turns (default 1)")
    m.add_argument("--max-turns", type=POS_INT,
                   help="random_multi_turn: most turns; the other conversation datasets: truncate to it")
    m.add_argument("--think-time", type=THINK, default=(0.0, 0.0), metavar="S|A-B",
                   help="seconds between a reply's last byte and the next turn: fixed, or uniform in A-B "
                        "(seeded by --seed)")
    d.add_argument("--tokenizer-path", help="tokenizer.json, tokenizer folder or hub model id "
                   "(e.g. Qwen/Qwen2.5-0.5B-Instruct, via huggingface_hub's cache), for token counts")
    g = p.add_argument_group("generation (sent only when given)")
    g.add_argument("--max-tokens", type=POS_INT, help="max output tokens")
    g.add_argument("--min-tokens", type=NONNEG_INT, help="min output tokens (vLLM extension)")
    g.add_argument("--temperature", type=NONNEG_FLOAT)
    g.add_argument("--top-p", type=UNIT_FLOAT)
    g.add_argument("--top-k", type=POS_INT)
    g.add_argument("--stop", nargs="+", help="stop strings")
    g.add_argument("--stream", dest="stream", action="store_true", default=True, help="stream (default)")
    g.add_argument("--no-stream", dest="stream", action="store_false", help="one body per reply")
    g.add_argument("--continuous-usage", dest="continuous_usage", action="store_true", default=None,
                   help="ask for usage in every streamed chunk (vLLM's stream_options.continuous_usage_stats) "
                        "to count tokens per chunk and report ITL per token (default: when the pre-flight "
                        "check sees the server give it)")
    g.add_argument("--no-continuous-usage", dest="continuous_usage", action="store_false",
                   help="never ask for it (strict servers may refuse the field)")
    g.add_argument("--extra-args", help="JSON object merged into every request body")
    o = p.add_argument_group("output")
    o.add_argument("--outputs-dir", default="outputs", help="folder for results (default ./outputs)")
    o.add_argument("--name", help="name of the result folder (default: the model)")
    o.add_argument("--no-timestamp", action="store_true", help="no timestamp folder level")
    o.add_argument("--slo", help="goodput SLOs, e.g. ttft=200ms,tpot=50ms,latency=10s")
    o.add_argument("--goodput", nargs="+", metavar="KEY:MS",
                   help="goodput SLOs as vLLM's bench serve spells them, in ms: ttft:300 tpot:50 e2el:2000")
    o.add_argument("--no-plots", action="store_true", help="write tables and JSON only (no PNG/HTML)")
    o.add_argument("--max-error-rate", type=SHARE,
                   help="exit 1 when a larger share of requests failed; the sweep stops as soon as that is certain")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    from engine import sla_options

    sla_options.add_flags(p)
    return p


def parse_run_args(argv: list[str]) -> tuple[list[Arguments], Extra] | None:
    """The runs of the sweep and the command's other options; None once
    --help has been printed."""
    ns = build_parser().parse(argv)
    if ns is None:
        return None
    if ns.url:
        parts = urlsplit(ns.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url '{redact_url(ns.url)}' is not an http(s) URL, e.g. http://127.0.0.1:8000/v1/chat/completions")
        check_api_path(ns.api, ns.url)
    _check_tls_files(ns)
    if ns.server_metrics:
        parts = urlsplit(ns.server_metrics)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--server-metrics '{redact_url(ns.server_metrics)}' is not an http(s) URL, "
                             "e.g. http://127.0.0.1:8000/metrics")
        if ns.no_server_metrics:
            raise UsageError("--server-metrics and --no-server-metrics contradict each other: give one")
    if ns.proxy:
        parts = urlsplit(ns.proxy)
        if parts.scheme not in ("http", "https", "socks5", "socks5h", "socks4", "socks4a") or not parts.hostname:
            raise UsageError(f"--proxy '{redact_url(ns.proxy)}' is not a proxy URL, e.g. http://proxy.example:3128")
    if ns.backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            from engine.ray_cluster import INSTALL_HINT

            raise UsageError(INSTALL_HINT)
    elif ns.ray_address or ns.ray_workers:
        raise UsageError("--ray-address and --ray-workers need --backend ray")
    if ns.max_turns is not None and ns.min_turns > ns.max_turns:
        raise UsageError(f"--min-turns {ns.min_turns} is larger than --max-turns {ns.max_turns}")
    if ns.min_prompt_length > ns.max_prompt_length:
        raise UsageError("--min-prompt-length is larger than --max-prompt-length")
    parallel, number, rate = _sweep_lists(ns)
    headers = {}
    for item in ns.headers:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--headers '{item}' is not KEY=VALUE")
        headers[key.strip()] = value
    extra_args = _json_object(ns.extra_args, "--extra-args", '{"ignore_eos": true}')
    dataset_args = _json_object(ns.dataset_args, "--dataset-args", '{"speed": 2.0}')
    if ns.ramp_up and ns.backend == "ray" and not ns.rate:
        raise UsageError("--ramp-up without --rate (a concurrency ramp) needs --backend local: "
                         "Ray actors do not ramp yet")
    api_key = ns.api_key or os.environ.get("DASHSCOPE_API_KEY" if ns.api == "dashscope" else "OPENAI_API_KEY")
    dataset = ns.dataset or (FILE_DATASETS.get(ns.api, "line_by_line") if ns.dataset_path else "builtin")
    slo = None
    if ns.slo or ns.goodput:
        from analysis.slo import slo_from_flags

        try:
            slo = slo_from_flags(ns.slo, ns.goodput)
        except ValueError as e:
            raise UsageError(str(e)) from None
    base = Arguments(
        url=ns.url or "", api=ns.api, model=ns.model, api_key=api_key or None, headers=headers,
        connect_timeout=ns.connect_timeout, read_timeout=ns.read_timeout, insecure=ns.insecure,
        proxy=ns.proxy, ca_bundle=ns.ca_bundle, cert=ns.cert, key=ns.key,
        retries=ns.retries, server_metrics=ns.server_metrics, no_server_metrics=ns.no_server_metrics,
        metrics_interval=ns.metrics_interval,
        burstiness=ns.burstiness, workers=ns.workers, backend=ns.backend, ray_address=ns.ray_address,
        ray_workers=ns.ray_workers, warmup_num=ns.warmup_num, open_loop=ns.open_loop, ramp_up=ns.ramp_up,
        dataset_args=dataset_args, duration=ns.duration,
        grace=ns.grace, seed=ns.seed, dataset=dataset, dataset_path=ns.dataset_path, prompt=ns.prompt,
        query_template=ns.query_template, min_prompt_length=ns.min_prompt_length,
        max_prompt_length=ns.max_prompt_length, prefix_length=ns.prefix_length, tokenizer_path=ns.tokenizer_path,
        prefix_count=ns.prefix_count, dataset_offset=ns.dataset_offset, multi_turn=ns.multi_turn,
        min_turns=ns.min_turns, max_turns=ns.max_turns, think_time_s=ns.think_time,
        max_tokens=ns.max_tokens, min_tokens=ns.min_tokens, temperature=ns.temperature, top_p=ns.top_p,
        top_k=ns.top_k, stop=ns.stop, stream=ns.stream, continuous_usage=ns.continuous_usage, extra_args=extra_args, outputs_dir=ns.outputs_dir,
        name=ns.name, no_timestamp=ns.no_timestamp, debug=ns.debug,
    )
    runs = [base.replace(parallel=p, number=n, rate=r) for p, n, r in zip(parallel, number, rate)]
    from engine import sla_options

    sla = sla_options.parse(ns, _sla_params)
    return runs, Extra(tuple(ns.plugin_module), slo, ns.max_error_rate, not ns.no_plots, ns.test_connection,
                       ns.resume, sla)


def _sla_params(text: str) -> list:
    from analysis.sla import parse_sla_params  # pandas and numpy: only with --sla-auto-tune

    return parse_sla_params(text)


def _json_object(text: str | None, flag: str, example: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{flag} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object, e.g. '{example}'")
    return value


def _check_tls_files(ns) -> None:
    if ns.key and not ns.cert:
        raise UsageError("--key needs --cert (the client certificate it belongs to)")
    for flag, path in (("--ca-bundle", ns.ca_bundle), ("--cert", ns.cert), ("--key", ns.key)):
        if path and not os.path.isfile(path):
            raise UsageError(f"{flag} '{path}' is not a readable file")
    if ns.ca_bundle and ns.insecure:
        raise UsageError("--ca-bundle and --insecure contradict each other: give one")


def _sweep_lists(ns) -> tuple[list, list, list]:
    """Pair --parallel, --number and --rate into runs: each list has one
    value (used for every run) or as many as the longest."""
    if not ns.url and ns.parallel is None and ns.number is None and ns.rate is None and ns.duration is None \
            and not ns.open_loop:
        return DEFAULT_SWEEP_PARALLEL, DEFAULT_SWEEP_NUMBER, [None] * len(DEFAULT_SWEEP_PARALLEL)
    # An open loop must not be throttled by a closed one: with --rate and no
    # --parallel, allow many requests in flight (vllm bench's default is no cap).
    # --open-loop is evalscope's name for the same: no cap but an explicit --parallel.
    open_loop = bool(ns.rate or ns.open_loop)
    parallel = ns.parallel or ([RATE_DEFAULT_PARALLEL] if open_loop else [1])
    # An open loop without --rate replays a trace: all of it unless --number says less.
    whole_trace = ns.open_loop and not ns.rate
    number = ns.number or [None if (ns.duration or whole_trace) else DEFAULT_NUMBER]
    rate = ns.rate or [None]
    n = max(len(parallel), len(number), len(rate))
    for flag, values in (("--parallel", parallel), ("--number", number), ("--rate", rate)):
        if len(values) not in (1, n):
            raise UsageError(f"{flag} has {len(values)} values but the sweep has {n} runs: "
                             "give one value or one per run")
    return [_stretch(v, n) for v in (parallel, number, rate)]


def _stretch(values: list, n: int) -> list:
    return values * n if len(values) == 1 else list(values)
