"""Which Prometheus metrics of each LLM server mean what: data, one table per
server family, read by analysis.server_metrics.

Each common metric lists its sources, tried in order (the first with samples
wins), so a renamed metric is one more entry: vLLM's `kv_cache_usage_perc`
was `gpu_cache_usage_perc`, and a counter may be exposed as `x_total` or as a
bare `x`.  A source is one of:

  ("gauge", name, how)         the value at each scrape; `how` joins several
                               series (engines, ranks): "sum" or "mean"
  ("rate", name)               a counter's increase per second between scrapes
  ("ratio", num, den)          increase of counter `num` / increase of `den`
                               (hits / queries, accepted / drafted tokens)

Histograms are named by their base name (`..._bucket`, `_sum`, `_count` as
Prometheus writes them).  Names come from each project's documentation and
metric definitions: vLLM docs/design/metrics.md and vllm/v1/metrics/loggers.py,
SGLang's docs/references/production_metrics.md, TGI's docs/source/reference/
metrics.md, llama.cpp's tools/server/README.md (GET /metrics).
"""
from __future__ import annotations

# The common set, in the order reports show it: (key, label, unit)
COMMON = (
    ("running", "Running requests", ""),
    ("waiting", "Waiting requests", ""),
    ("kv_cache_usage", "KV-cache usage", "%"),
    ("prefix_hit_rate", "Prefix-cache hit rate", "%"),
    ("spec_accept_rate", "Spec-decode acceptance", "%"),
    ("prompt_tokens_per_s", "Prompt tokens/s", "tok/s"),
    ("generation_tokens_per_s", "Generation tokens/s", "tok/s"),
)
SHARES = frozenset({"kv_cache_usage", "prefix_hit_rate", "spec_accept_rate"})  # 0..1, shown as %

VLLM = {
    "running": [("gauge", "vllm:num_requests_running", "sum")],
    "waiting": [("gauge", "vllm:num_requests_waiting", "sum")],
    "kv_cache_usage": [("gauge", "vllm:kv_cache_usage_perc", "mean"),
                       ("gauge", "vllm:gpu_cache_usage_perc", "mean")],  # before v0.10
    "prefix_hit_rate": [("ratio", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
                        ("ratio", "vllm:prefix_cache_hits", "vllm:prefix_cache_queries"),
                        ("gauge", "vllm:gpu_prefix_cache_hit_rate", "mean")],  # v0
    "spec_accept_rate": [("ratio", "vllm:spec_decode_num_accepted_tokens_total",
                          "vllm:spec_decode_num_draft_tokens_total"),
                         ("ratio", "vllm:spec_decode_num_accepted_tokens", "vllm:spec_decode_num_draft_tokens"),
                         ("gauge", "vllm:spec_decode_draft_acceptance_rate", "mean")],  # v0
    "prompt_tokens_per_s": [("rate", "vllm:prompt_tokens_total"), ("rate", "vllm:prompt_tokens")],
    "generation_tokens_per_s": [("rate", "vllm:generation_tokens_total"), ("rate", "vllm:generation_tokens")],
    "ttft_histogram": "vllm:time_to_first_token_seconds",
    "e2e_histogram": "vllm:e2e_request_latency_seconds",
}

SGLANG = {
    "running": [("gauge", "sglang:num_running_reqs", "sum")],
    "waiting": [("gauge", "sglang:num_queue_reqs", "sum")],
    "kv_cache_usage": [("gauge", "sglang:token_usage", "mean")],
    "prefix_hit_rate": [("ratio", "sglang:cached_tokens_total", "sglang:prompt_tokens_total"),
                        ("gauge", "sglang:cache_hit_rate", "mean")],
    "spec_accept_rate": [("gauge", "sglang:spec_accept_rate", "mean")],
    "prompt_tokens_per_s": [("rate", "sglang:prompt_tokens_total")],
    "generation_tokens_per_s": [("rate", "sglang:generation_tokens_total")],
    "ttft_histogram": "sglang:time_to_first_token_seconds",
    "e2e_histogram": "sglang:e2e_request_latency_seconds",
}

TGI = {
    "running": [("gauge", "tgi_batch_current_size", "sum")],
    "waiting": [("gauge", "tgi_queue_size", "sum")],
    # TGI counts tokens per request in histograms: their sums are counters
    "prompt_tokens_per_s": [("rate", "tgi_request_input_length_sum")],
    "generation_tokens_per_s": [("rate", "tgi_request_generated_tokens_sum")],
    "e2e_histogram": "tgi_request_duration",
}

LLAMACPP = {
    "running": [("gauge", "llamacpp:requests_processing", "sum")],
    "waiting": [("gauge", "llamacpp:requests_deferred", "sum")],
    "kv_cache_usage": [("gauge", "llamacpp:kv_cache_usage_ratio", "mean")],
    "prompt_tokens_per_s": [("rate", "llamacpp:prompt_tokens_total")],
    "generation_tokens_per_s": [("rate", "llamacpp:tokens_predicted_total")],
}

# family -> (the prefix its metric names start with, its table)
FAMILIES = {
    "vllm": ("vllm:", VLLM),
    "sglang": ("sglang:", SGLANG),
    "tgi": ("tgi_", TGI),
    "llamacpp": ("llamacpp:", LLAMACPP),
}
