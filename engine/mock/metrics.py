"""GET /metrics: what the mock did, as Prometheus text in vLLM's names.

The numbers are the mock's own: running/waiting from its slot queue (or,
without --slots, the replies in progress), token counters from the usage it
sent, and TTFT / end-to-end histograms (vLLM's bucket bounds) of when it
actually wrote the first content event and the last byte, from the
request's arrival.  The exposition text is written here: the mock stands
alone and imports nothing of the client.

`--metrics MODE` makes the endpoint misbehave for tests: off (404), hang
(headers never come), 500, garbage (200 with text no Prometheus parser
reads), flaky (every other scrape answers 500).
"""
from __future__ import annotations

import bisect

MODES = ("ok", "off", "hang", "500", "garbage", "flaky")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HANG_S = 3600.0  # "hang": the reply is due in an hour; a scraper's timeout ends it first
GARBAGE = b"<html><body>this is not Prometheus text</body></html>\n{{{ 42\n"

# vLLM v1's bounds (vllm/v1/metrics/loggers.py), so a histogram from the mock
# is read exactly as one from vLLM.
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                 240.0, 480.0, 960.0, 1920.0, 7680.0)


class Histogram:
    """A Prometheus histogram: per-bucket counts, made cumulative when written."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # Prometheus buckets are upper-inclusive (le): bisect_left puts a value
        # equal to a bound in that bound's bucket.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, total = [], 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {float(total)}')
        out.append(f"{name}_sum{{{labels}}} {self.sum!r}")
        out.append(f"{name}_count{{{labels}}} {float(self.count)}")
        return out


class MockMetrics:
    def __init__(self, model_name: str, mode: str = "ok") -> None:
        if mode not in MODES:
            raise ValueError(f"metrics mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.labels = f'engine="0",model_name="{model_name}"'
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = 0
        self.ttft = Histogram(TTFT_BUCKETS_S)
        self.e2e = Histogram(E2E_BUCKETS_S)
        self.scrapes = 0

    def on_reply(self, prompt_tokens: int, completion_tokens: int, ttft_s: float | None, e2e_s: float) -> None:
        """A generation reply written to its end."""
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += completion_tokens
        self.success += 1
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        self.e2e.observe(e2e_s)

    def exposition(self, running: int, waiting: int) -> bytes:
        lab = self.labels
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{lab}}} {float(running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{lab}}} {float(waiting)}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{lab}}} {float(self.prompt_tokens)}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {float(self.generation_tokens)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            f'vllm:request_success_total{{{lab},finished_reason="stop"}} {float(self.success)}',
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            *self.ttft.lines("vllm:time_to_first_token_seconds", lab),
            "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.",
            "# TYPE vllm:e2e_request_latency_seconds histogram",
            *self.e2e.lines("vllm:e2e_request_latency_seconds", lab),
        ]
        return ("\n".join(lines) + "\n").encode()
