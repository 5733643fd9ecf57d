"""One HTTP exchange through requests, timed: Job in, RawRecord out.

The worker thread owns the socket and the clock; requests and urllib3 own
HTTP (engine.connection puts the clock under them).  Each thread prepares
its request once (`requests.Session.prepare_request`: headers, auth, URL)
and a job only swaps the body and its `X-Request-Id`.  The reply is read as
the pieces urllib3 hands over (one per HTTP chunk, or per read for a sized
or close-delimited body), each with the arrival of the read that completed
it; the coordinator turns them into events later (engine.events).  Waiting
until a job is due is the worker loop's business (engine.worker): a job that
reaches `exchange` is sent at once.

This module is also the one place where transport exceptions, requests'
and urllib3's, become our own one-line reasons (`describe_error`).
"""
from __future__ import annotations

import dataclasses
import http.client
import socket
import ssl
import time
import warnings
from functools import partial
from urllib.parse import urlsplit

import requests
import urllib3

from engine import connection
from engine.records import Job, RawRecord, Target

MAX_RESPONSE_BYTES = 64 * 2**20  # no completion is this large: stop reading, keep what came
READ_SIZE = 65536  # an upper bound: a read returns whatever has arrived


class BodyTooLarge(Exception):
    """The body grew past MAX_RESPONSE_BYTES."""


def with_environment(target: Target) -> Target:
    """The target with what requests takes from the environment, resolved
    once in the coordinator: HTTP(S)_PROXY/NO_PROXY (an explicit proxy
    wins), and REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE unless a CA bundle was
    given or verification is off."""
    session = requests.Session()
    try:
        settings = session.merge_environment_settings(target.url, dict(target.proxies), True,
                                                      target.verify, target.cert)
    finally:
        session.close()
    return dataclasses.replace(target, proxies=tuple(sorted(settings["proxies"].items())),
                               verify=settings["verify"])


class Sender:
    """One per worker thread: its adapter (one kept-alive connection), its
    meter, and its request prepared once."""

    def __init__(self, target: Target):
        self.target = target
        self.meter = connection.Meter(target.read_timeout_s)
        connection.bind(self.meter)
        self.adapter = connection.StampingAdapter(pool_connections=1, pool_maxsize=1)
        session = requests.Session()
        session.trust_env = False  # the environment was read once, into the target
        headers = {"Accept-Encoding": "identity", **dict(target.headers)}
        self.request = session.prepare_request(requests.Request("POST", target.url, data=b"-", headers=headers))
        session.close()
        self.request.headers.pop("Transfer-Encoding", None)
        self.options = dict(stream=True, timeout=(target.connect_timeout_s, target.read_timeout_s),
                            verify=target.verify, cert=target.cert, proxies=dict(target.proxies))
        self._kept = False  # a connection is open and was idle before this exchange
        if target.verify is False:  # the user said --insecure once: not a warning per request
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)

    def close(self) -> None:
        self.adapter.close()

    def warm(self) -> None:
        """Open the connection before the first job: TCP (and TLS) set-up is
        not the server's answer to a request, and 256 threads connecting at
        once wait for the GIL between connect and send, which would count as
        the first requests' TTFT.  A server that cannot be reached fails the
        next request instead, with the reason."""
        request, options = self.request, self.options
        try:
            pool = self.adapter.get_connection_with_tls_context(request, options["verify"], options["proxies"],
                                                                options["cert"])
            self.adapter.cert_verify(pool, request.url, options["verify"], options["cert"])
            conn = pool._get_conn()  # urllib3 has no public "connect now"
            try:
                conn.connect()
            except BaseException:
                conn.close()
                raise
            finally:
                pool._put_conn(conn)
            self._kept = True
        except Exception:
            self._kept = False

    def exchange(self, job: Job, worker: str) -> RawRecord:
        """Send the job now and record what arrived, and when.  A kept-alive
        connection the server closed is not the request's failure: when one
        yields nothing at all of the reply, the request is sent once more on
        a new connection, its clock restarted (`reconnects` counts both
        that and a close urllib3 noticed before sending)."""
        request = self.request
        request.body = job.payload
        request.headers["Content-Length"] = str(len(job.payload))
        request.headers["X-Request-Id"] = job.request_id
        scheduled = job.scheduled_time if job.scheduled_time is not None else time.time()
        reconnects = 0
        while True:
            kept, self._kept = self._kept, False
            meter = self.meter
            meter.reset()
            connects = meter.connects
            record = self._once(job, worker, scheduled)
            if not kept:
                break
            if meter.connects != connects:  # urllib3 saw the close before sending, and reconnected
                reconnects += 1
                break
            if record.transport_failed and meter.received == 0 and record.error in _DROPPED:
                reconnects += 1
                continue  # sent as the server closed it: once more, on a new connection
            break
        if record.transport_failed:
            self.warm()  # the next job starts on an open connection, as the first did
        return dataclasses.replace(record, reconnects=reconnects) if reconnects else record

    def _once(self, job: Job, worker: str, scheduled: float) -> RawRecord:
        meter = self.meter
        pieces: list[bytes] = []
        marks: list = []
        status = error = retry_after = response = None
        is_sse = complete = transport_failed = False
        started = time.time()
        end_mark = None
        try:
            response = self.adapter.send(self.request, **self.options)
            status = response.status_code
            headers = response.headers
            if status == 429 or status >= 500:
                retry_after = _seconds(headers.get("retry-after"))
            elif 300 <= status < 400:
                error = _redirect(status, headers.get("location"))
            is_sse = "text/event-stream" in headers.get("content-type", "")
            raw = response.raw
            if raw.chunked:
                reader = raw.read_chunked(None, True)
            else:
                reader = iter(partial(raw.read1, READ_SIZE, True), b"")
            stamped = meter.stamped
            size = 0
            for piece in reader:
                pieces.append(piece)
                marks.append(meter.arrival if stamped else time.time())
                size += len(piece)
                if size > MAX_RESPONSE_BYTES:
                    raise BodyTooLarge()
            end_mark = meter.arrival if stamped and meter.arrival is not None else time.time()
            complete = True
            if raw.version < 11 or "close" in (headers.get("connection") or "").lower():
                response.close()  # the server ends the connection: the next job opens one
            else:
                raw.release_conn()
                self._kept = True
        except Exception as exc:  # any failure of the exchange is a result, not a crash
            if response is not None:
                response.close()  # what is left on the connection is unknown
            error = describe_error(exc, self.target)
            transport_failed = True
        start = meter.sent_at if meter.sent_at is not None else started
        end = connection.arrival_s(end_mark) if end_mark is not None else time.time()
        return RawRecord(
            seq=job.seq, worker=worker, scheduled_time=scheduled, start_time=start, latency_s=end - start,
            status_code=status, error=error, transport_failed=transport_failed, is_stream=is_sse,
            retry_after_s=retry_after, pieces=tuple(pieces),
            piece_offsets_s=tuple(connection.arrival_s(mark) - start for mark in marks), body_complete=complete,
        )


def _redirect(status: int, location: str | None) -> str:
    if location:
        return f"HTTP {status}: redirected to {location} (use that --url)"
    return f"HTTP {status}: a redirect with no Location"


# --- the one place transport errors become our reasons ---------------------

_DROPPED = ("server closed the connection before replying", "connection reset by the server")


def describe_error(exc: BaseException, target: Target) -> str:
    """A short, stable, one-line reason for a transport failure."""
    chain = list(_causes(exc))
    where = _host_port(target.url)

    def has(*kinds) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kinds)), None)

    if has(BodyTooLarge):
        return f"response larger than {MAX_RESPONSE_BYTES // 2**20} MiB: stopped reading"
    if has(requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        return "proxy error: " + _one_line(has(OSError) or exc)
    verify = has(ssl.SSLCertVerificationError)
    if verify is not None:
        return ("TLS certificate verify failed: " + (getattr(verify, "verify_message", "") or _one_line(verify))
                + " (give the CA with --ca-bundle or REQUESTS_CA_BUNDLE, or use --insecure)")
    if has(ssl.SSLError, requests.exceptions.SSLError):
        return "TLS error: " + _one_line(has(ssl.SSLError) or exc)
    if has(ConnectionRefusedError):
        return f"connection refused: no server listening at {where}"
    if has(socket.gaierror, urllib3.exceptions.NameResolutionError):
        return f"cannot resolve the host name of {where}"
    # urllib3's NewConnectionError is a ConnectTimeoutError too: refusals were told apart above
    if has(requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError):
        return f"connect timeout after {target.connect_timeout_s:g}s to {where}"
    if has(requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, socket.timeout, TimeoutError):
        return f"read timeout: no data for {target.read_timeout_s:g}s"
    if has(http.client.RemoteDisconnected):
        return _DROPPED[0]
    if has(ConnectionResetError, BrokenPipeError):
        return _DROPPED[1]
    bad = has(urllib3.exceptions.InvalidChunkLength, urllib3.exceptions.InvalidHeader,
              http.client.BadStatusLine, http.client.LineTooLong)
    if bad is not None:  # (InvalidChunkLength is an IncompleteRead too)
        return "not a readable HTTP reply: " + _one_line(bad)
    if has(http.client.IncompleteRead, urllib3.exceptions.IncompleteRead):
        return "server closed the connection mid-response"
    if has(http.client.HTTPException):
        return "not a readable HTTP reply: " + _one_line(has(http.client.HTTPException))
    if has(urllib3.exceptions.ProtocolError):
        return "server closed the connection mid-response"
    if has(requests.exceptions.RequestException, OSError):
        return "connection failed: " + _one_line(has(OSError) or exc)
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _causes(exc: BaseException):
    """The exception and everything it wraps: requests wraps urllib3, which
    wraps the socket's error in `reason`, in its args, or as the cause."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (getattr(e, "reason", None), e.__cause__, e.__context__, *e.args)
                 if isinstance(x, BaseException)]


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing for a benchmark
        return None
