"""The server's Prometheus metrics, scraped during a run (coordinator side).

vLLM, SGLang, TGI and llama.cpp expose Prometheus text at /metrics.  A
`Scraper` thread of the coordinator (never a worker) reads it every
--metrics-interval seconds, from just before the first request to just after
the last, and hands every sample of each good scrape to the store
(engine.store.ResultStore.add_metrics), which writes them with its own
commits.  A scrape has its own Session and timeout, so a slow or hanging
/metrics delays nothing but the next scrape; a bad one (timeout, non-200,
text the parser refuses) stores nothing and is reported once.

Parsing is prometheus_client's: we do not write a Prometheus parser.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import requests

from engine.arguments import Arguments, redact_url

MAX_TIMEOUT_S = 5.0
FIRST_WAIT_S = 0.5  # the run's start waits this long at most for the first scrape
Sample = tuple  # (time, name, labels JSON, value): a row of the server_metrics table


class ScrapeFailed(Exception):
    """One scrape that gave nothing to store; the message says why, in a few words."""


def default_url(url: str) -> str:
    """The --url's origin + /metrics, where vLLM, SGLang, TGI and llama.cpp serve it."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/metrics", "", ""))


def timeout_s(interval_s: float) -> float:
    """A scrape may take twice the interval (a server under load answers late),
    at least 1 s, at most MAX_TIMEOUT_S: the run's end waits for it no longer."""
    return min(MAX_TIMEOUT_S, max(1.0, 2 * interval_s))


def session_for(args: Arguments, url: str) -> requests.Session:
    """A Session of the scraper's own, with the run's TLS and proxy settings;
    the run's headers (and key) only when /metrics is on the --url's origin,
    so a key never goes to another host."""
    session = requests.Session()
    session.trust_env = True
    if args.proxy:
        session.proxies.update(dict(args.proxies()))
    session.verify = False if args.insecure else (args.ca_bundle or True)
    session.cert = args.client_cert()
    if urlsplit(url)[:2] == urlsplit(args.url)[:2]:
        session.headers.update({k: v for k, v in args.request_headers().items()
                                if k.lower() not in ("content-type", "accept-encoding")})
    session.headers["Accept"] = "text/plain"
    return session


def scrape(session: requests.Session, url: str, timeout: float) -> list[Sample]:
    """One GET of /metrics -> its samples, stamped mid-way through the exchange
    on the clock of the result table (time.time()); ScrapeFailed if none."""
    before = time.time()
    try:
        reply = session.get(url, timeout=timeout)
    except requests.Timeout:
        raise ScrapeFailed(f"no answer within {timeout:g} s") from None
    except requests.RequestException as e:
        raise ScrapeFailed(type(e).__name__) from None
    after = time.time()
    if reply.status_code != 200:
        raise ScrapeFailed(f"HTTP {reply.status_code}")
    return parse((before + after) / 2, reply.text)


def parse(stamp: float, text: str) -> list[Sample]:
    """Prometheus text -> (stamp, name, labels JSON, value) of every sample,
    histogram buckets, sums and counts as Prometheus names them;
    ScrapeFailed when the text is not Prometheus text or holds no sample."""
    from prometheus_client.parser import text_string_to_metric_families

    try:  # the parser is lazy: read every family before storing any sample
        samples = [(stamp, s.name, json.dumps(s.labels, sort_keys=True, separators=(",", ":")), float(s.value))
                   for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, TypeError, IndexError) as e:
        raise ScrapeFailed(f"not Prometheus text ({str(e)[:60]})") from None
    if not samples:
        raise ScrapeFailed("no metrics in the reply")
    return samples


def resolve(args: Arguments, say: Callable[[str], None] | None = None) -> Arguments:
    """Decide once where the run's server metrics come from: an explicit
    --server-metrics is used as given (its failures are reported during the
    run); the default is used when it answers Prometheus text now.  Says one
    line either way; returns the Arguments with the URL set, or scraping off."""
    say = say or (lambda line: print(line, file=sys.stderr))
    if args.no_server_metrics:
        return args
    if args.server_metrics:
        say(f"servegauge: server metrics: scraping {redact_url(args.server_metrics)} "
            f"every {args.metrics_interval:g} s")
        return args
    url = default_url(args.url)
    session = session_for(args, url)
    try:
        scrape(session, url, timeout_s(args.metrics_interval))
    except ScrapeFailed as e:
        say(f"servegauge: no server metrics at {redact_url(url)} ({e}); going on without them")
        return args.replace(no_server_metrics=True)
    finally:
        session.close()
    say(f"servegauge: server metrics: found at {redact_url(url)}, scraped every {args.metrics_interval:g} s")
    return args.replace(server_metrics=url)


class Scraper:
    """Scrapes `url` at t0, t0 + interval, ... (a pure function of the index:
    a late scrape skips the slots it missed, never shifts the rest) until
    stop(), then once more."""

    def __init__(self, args: Arguments, url: str, sink: Callable[[list[Sample]], None],
                 warn: Callable[[str], None]):
        self.url, self.sink, self.warn = url, sink, warn
        self.interval_s = args.metrics_interval
        self.timeout_s = timeout_s(args.metrics_interval)
        self.session = session_for(args, url)
        self.good = self.failed = 0
        self._warned = False
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="servegauge-metrics", daemon=True)

    def start(self) -> None:
        """Start scraping; return once the first scrape is done (the state
        before the first request), or after FIRST_WAIT_S at most: a /metrics
        that hangs holds the start that long, never the load."""
        self._thread.start()
        self._first.wait(FIRST_WAIT_S)

    def stop(self) -> None:
        """Ask for the last scrape and wait for it, at most one timeout: a hanging
        /metrics never holds the run's end longer."""
        self._stop.set()
        self._thread.join(self.timeout_s + 0.5)
        if not self._thread.is_alive():
            self.session.close()

    def _loop(self) -> None:
        t0 = time.monotonic()
        i = 0
        while not self._stop.is_set():
            self._once()
            self._first.set()
            # the next slot not yet past: t0 + i * interval
            i = max(i + 1, int((time.monotonic() - t0) / self.interval_s) + 1)
            self._stop.wait(max(0.0, t0 + i * self.interval_s - time.monotonic()))
        self._once()  # just after the last request

    def _once(self) -> None:
        try:
            samples = scrape(self.session, self.url, self.timeout_s)
        except ScrapeFailed as e:
            self.failed += 1
            if not self._warned:  # one line for the run, not one per scrape
                self._warned = True
                self.warn(f"servegauge: warning: server metrics at {redact_url(self.url)}: {e}; "
                          "such scrapes are skipped")
            return
        except Exception as e:  # our bug must not end the run's scraping silently or loudly
            self.failed += 1
            if not self._warned:
                self._warned = True
                self.warn(f"servegauge: warning: server metrics: {type(e).__name__}: {e}")
            return
        self.good += 1
        self.sink(samples)
