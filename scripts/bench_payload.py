"""What the Payload type (plugins/payload.py) costs per event.

    python scripts/bench_payload.py [--events 16] [--requests 400] [--repeat 15]

The coordinator turns every event of every request into part of a row
(engine.derive.to_row): it asks the API plugin for errors, output events and
token counts.  parse_responses now gets Payloads instead of plain str, made
for every event.  This times to_row per event with the built-in `openai`
plugin on OpenAI-shaped streams like the mock's (a role chunk, one chunk per
token, a usage chunk), once handing plain str to parse_responses (as before:
`as_payloads` swapped for `list`) and once handing Payloads, interleaved,
best of --repeat.  Each request's events are distinct strings and there are
more of them than load_json's cache holds, as in a real run.  Then the three
plugin styles, per event, on plain str and on Payload.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine import derive  # noqa: E402
from engine.arguments import Arguments  # noqa: E402
from engine.records import FinishedRecord, Job, Sent  # noqa: E402
from plugins.api.openai import OpenaiPlugin  # noqa: E402
from plugins.payload import Payload, as_payloads  # noqa: E402
from scripts.benchlib import cpu_model  # noqa: E402


def stream(request: int, tokens: int) -> list[str]:
    head = f'"id":"chatcmpl-{request:08d}","object":"chat.completion.chunk","created":1764300000,"model":"mock-model"'
    events = ['{' + head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}']
    for i in range(tokens):
        events.append('{' + head + f',"choices":[{{"index":0,"delta":{{"content":" tok{i}"}},'
                      '"finish_reason":null}]}')
    events.append('{' + head + ',"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":%d,'
                  '"total_tokens":%d}}' % (tokens, tokens + 12))
    return events


def records(n: int, tokens: int) -> list[FinishedRecord]:
    out = []
    for r in range(n):
        events = tuple(stream(r, tokens))
        offsets = tuple(0.05 + 0.01 * i for i in range(len(events)))
        out.append(FinishedRecord(seq=r, worker="w0", scheduled_time=1.0, start_time=1.0, latency_s=offsets[-1] + 0.001,
                                  status_code=200, events=events, event_offsets_s=offsets, saw_done=True))
    return out


def per_event_ns(fn, n_events: int, repeat: int, number: int = 1) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number / n_events * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=16, help="output tokens (content events) per request")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=15)
    a = ap.parse_args()
    plugin = OpenaiPlugin(Arguments(url="http://127.0.0.1:8000/v1/chat/completions", model="mock-model"))
    recs = records(a.requests, a.events)
    n_events = sum(len(r.events) for r in recs)
    sent = Sent(Job(seq=0, request_id="r", payload=b"{}"), {}, "")

    def run_rows():
        for rec in recs:
            derive.to_row(rec, sent, plugin)

    def with_str():
        derive.as_payloads = list
        try:
            run_rows()
        finally:
            derive.as_payloads = as_payloads

    check = derive.to_row(recs[0], sent, plugin)
    assert check["success"] == 1 and check["completion_tokens"] == a.events, check
    best = {"str": float("inf"), "Payload": float("inf")}
    for _ in range(a.repeat):  # interleaved, so a busy neighbour slows both alike
        best["str"] = min(best["str"], per_event_ns(with_str, n_events, 1))
        best["Payload"] = min(best["Payload"], per_event_ns(run_rows, n_events, 1))

    print(f"servegauge payload benchmark: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores, {cpu_model()}")
    print(f"command: python scripts/bench_payload.py --events {a.events} --requests {a.requests} --repeat {a.repeat}")
    print(f"{a.requests} requests x {len(recs[0].events)} events ({n_events} events), best of {a.repeat}\n")
    ratio = best["Payload"] / best["str"]
    print("coordinator, to_row with --api openai, per event:")
    print(f"  plain str to parse_responses   {best['str']:8.0f} ns")
    print(f"  Payload to parse_responses     {best['Payload']:8.0f} ns   ({(ratio - 1) * 100:+.1f} %)")

    events = [list(r.events) for r in recs]
    payloads = [as_payloads(e) for e in events]
    cases = [
        ("make the Payloads (as_payloads)", lambda: [list(e) for e in events],
         lambda: [as_payloads(e) for e in events]),
        ("str style: json.loads(r) on each", lambda: [[json.loads(r) for r in e] for e in events],
         lambda: [[json.loads(r) for r in e] for e in payloads]),
        ("bytes style: json.loads(r.decode('utf-8'))", lambda: [[json.loads(r) for r in e] for e in events],
         lambda: [[json.loads(r.decode("utf-8")) for r in e] for e in payloads]),
        ("dict style: responses[-1].get('usage')", lambda: [json.loads(e[-1]).get("usage") for e in events],
         lambda: [Payload(e[-1]).get("usage") for e in events]),
    ]
    print("\nplugin styles, per event (str column: what a plugin does with plain str to get the same):")
    for name, on_str, on_payload in cases:
        s = per_event_ns(on_str, n_events, a.repeat)
        p = per_event_ns(on_payload, n_events, a.repeat)
        print(f"  {name:44s} str {s:7.0f} ns   Payload {p:7.0f} ns")
    verdict = "within" if ratio <= 1.10 else "ABOVE"
    print(f"\nPayload / str on the coordinator path: {ratio:.3f} ({verdict} the 10 % budget)")
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
