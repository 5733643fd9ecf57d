"""The pre-flight check: before the first run of a sweep, GET /v1/models
(where the API has it) and one short request to the target, so that a wrong
URL, a server that is down, TLS to a plain-HTTP port, a missing or refused
key, or a model the server does not serve is one line and exit 2, with
nothing created, instead of a sweep of failed requests.  Skipped with
--no-test-connection (as in evalscope perf).

Everything goes through requests, with the run's headers, timeouts and TLS
settings.  Connecting (and a TLS handshake) waits at most --connect-timeout,
so each of those mistakes is reported within it; the short request may take
up to min(--read-timeout, 60 s) to be answered.  Other answers (429, 5xx, a
400 about the body) are results, not mistakes: the run records them.
"""
from __future__ import annotations

import json
import os
import sys
import uuid
import warnings
from urllib.parse import urlsplit, urlunsplit

from engine.arguments import SECRET_HEADERS, Arguments
from engine.endpoints import API_PATHS
from engine.errors import UsageError, reply_message

# The endpoints each built-in API speaks (an unknown API: no advice on paths).
ENDPOINTS = API_PATHS
# APIs whose servers answer GET /v1/models
LISTS_MODELS = ("openai", "openai_embedding", "openai_rerank", "openai_responses")
KEY_VARIABLES = {"dashscope": "DASHSCOPE_API_KEY"}  # else OPENAI_API_KEY (engine.options)
READ_LIMIT_S = 60.0
BODY_LIMIT = 4 * 2**20  # of a reply read here: a models list, an error, a one-token answer
PLAIN_PROBE_S = 0.5  # after a TLS failure: how long to see whether the port speaks plain HTTP
PROBE_ID = "servegauge-preflight-"  # X-Request-Id prefix of the check's request
MAX_LISTED = 10


class PreflightError(UsageError):
    """The target cannot be benchmarked as given; the message names the fix."""


def check(runs: list[Arguments]) -> list[Arguments]:
    """Check the target of a sweep; return its runs, with --model filled in
    when it was omitted and the server serves exactly one model."""
    import requests

    args = runs[0]
    with requests.Session() as session:
        check = _Check(session, args)
        model = check.run()
    if model != args.model:
        print(f"servegauge: no --model given: using '{model}', the one model the server lists", file=sys.stderr)
        runs = [r.replace(model=model) for r in runs]
    if args.continuous_usage is None:  # the server's answer decides: usage in every chunk, or not
        runs = [r.replace(continuous_usage=check.continuous_usage) for r in runs]
    return runs


class _Check:
    def __init__(self, session, args: Arguments):
        self.session, self.args = session, args
        parts = urlsplit(args.url)
        self.parts = parts
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.where = f"{self.host}:{self.port}"
        self.timeout = (args.connect_timeout, min(args.read_timeout, READ_LIMIT_S))
        self.continuous_usage = bool(args.continuous_usage)  # what the probe found the server to give

    def run(self) -> str:
        args = self.args
        model = args.model
        served = self.served_models() if args.api in LISTS_MODELS else None
        if served and not model:
            if len(served) > 1:
                raise PreflightError(f"--model is missing and {self.models_url()} lists {len(served)} models: "
                                     f"choose one with --model ({_listing(served)})")
            model = served[0]
        # A model the list does not name may still be answered (an alias, a
        # gateway): the request decides.
        self.probe(model, served)
        return model

    # --- GET /v1/models ------------------------------------------------------------
    def base(self) -> str:
        return urlunsplit((self.scheme, self.parts.netloc, "", "", ""))

    def models_url(self) -> str:
        path = self.parts.path
        prefix = path[:path.index("/v1/") + 3] if "/v1/" in path else "/v1"
        return urlunsplit((self.scheme, self.parts.netloc, prefix + "/models", "", ""))

    def served_models(self) -> list[str] | None:
        """The ids /v1/models lists; None when the server does not list them."""
        url = self.models_url()
        response = self.send("GET", url, headers=self.args.request_headers())
        if response is None:
            return None
        if response.status_code in (401, 403):
            raise PreflightError(self.refused(url, response.status_code))
        if response.status_code != 200:
            return None
        try:
            data = json.loads(response.body).get("data")
            ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ValueError, AttributeError, TypeError, KeyError):
            return None
        return ids or None

    # --- the short request ---------------------------------------------------------
    def probe(self, model: str, served: list[str] | None) -> None:
        from plugins import registry

        args = self.args.replace(model=model, stream=False, max_tokens=1, min_tokens=None)
        api = registry.create("api", args.api, args)
        response, answered = None, False
        if self.args.stream and self.args.continuous_usage is None:
            # One streamed request asking for usage in every chunk (vLLM's
            # continuous_usage_stats) checks the target and whether the server
            # gives it; a server that refuses the field gets the plain probe.
            asking = args.replace(stream=True, continuous_usage=True)
            body = api.build_request([{"role": "user", "content": "Hi"}], asking)
            if body is not None and body != api.build_request([{"role": "user", "content": "Hi"}],
                                                              asking.replace(continuous_usage=False)):
                response = self.post(api, asking, body)
                answered = response is None or response.status_code not in (400, 422)
                if response is not None and response.status_code < 300:
                    self.continuous_usage = usage_in_every_chunk(response.body)
        if not answered:
            body = api.build_request([{"role": "user", "content": "Hi"}], args)
            if body is None:  # the plugin skips this prompt: nothing to check with
                return
            response = self.post(api, args, body)
        url = args.url
        if response is None:  # no answer within the read timeout: slow is a result, not a mistake
            return
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            where = response.headers.get("location")
            raise PreflightError(f"{url} answered HTTP {status}, a redirect" + (f" to {where}: use that as --url"
                                 if where else ": check --url"))
        if status in (401, 403):
            raise PreflightError(self.refused(url, status))
        detail = _detail(response, args.api_key)
        expected = ENDPOINTS.get(args.api)
        path = self.parts.path.rstrip("/")
        if status in (404, 405) and expected and not any(path.endswith(e) for e in expected):
            example = urlunsplit((self.scheme, self.parts.netloc, _suggest(path, expected[0]), "", ""))
            raise PreflightError(f"{url} answered HTTP {status}: --api {args.api} expects the endpoint "
                                 f"{' or '.join(expected)}, e.g. --url {example}")
        if served and model and model not in served and status in (400, 404, 422):
            raise PreflightError(f"model '{model}' is not served at {self.base()} (HTTP {status}): it serves "
                                 f"{_listing(served)}; pass one with --model")
        if status in (404, 405):
            if not model:
                raise PreflightError(f"{url} answered HTTP {status} to a request without a model "
                                     f"({detail}): pass --model")
            raise PreflightError(f"{url} answered HTTP {status} for model '{model}' ({detail}): "
                                 "check --model and --url")
        if not model and status in (400, 422):
            raise PreflightError(f"{url} answered HTTP {status} to a request without a model ({detail}): "
                                 "pass --model")

    def post(self, api, args: Arguments, body: dict):
        headers = args.request_headers()
        headers.update(api.request_headers(args))
        headers["X-Request-Id"] = PROBE_ID + uuid.uuid4().hex
        return self.send("POST", args.url, headers=headers, data=json.dumps(body, ensure_ascii=False).encode("utf-8"))

    # --- sending, and what a failure means ------------------------------------------
    def send(self, method: str, url: str, **kwargs):
        """The response, its body (at most BODY_LIMIT) read into `.body`; None
        when the server took the request but did not answer in time."""
        import requests
        from urllib3.exceptions import InsecureRequestWarning

        try:
            with warnings.catch_warnings():  # --insecure was asked for: no warning about it
                warnings.simplefilter("ignore", InsecureRequestWarning)
                args = self.args
                response = self.session.request(
                    method, url, timeout=self.timeout, verify=False if args.insecure else (args.ca_bundle or True),
                    cert=args.client_cert(), proxies=dict(args.proxies()) or None, allow_redirects=False,
                    stream=True, **kwargs)
                body = b""
                try:
                    for piece in response.iter_content(65536):
                        body += piece
                        if len(body) >= BODY_LIMIT:
                            break
                except requests.exceptions.RequestException:  # the status came: what the body holds is enough
                    pass
                finally:
                    response.close()
            response.body = body
            return response
        except requests.exceptions.SSLError as exc:
            raise PreflightError(self.tls_failure(exc)) from None
        except requests.exceptions.ConnectTimeout:
            raise PreflightError(f"no connection to {self.where} within {self.args.connect_timeout:g} s "
                                 "(--connect-timeout): is the host up, and the port open to you?") from None
        except requests.exceptions.ReadTimeout:
            if self.scheme == "https" and self.speaks_plain_http():  # a TLS handshake nobody answered
                raise PreflightError(self.plain_http()) from None
            return None
        except requests.exceptions.ConnectionError as exc:
            failure = self.connection_failure(exc)
            if failure is None:  # connected, then dropped: a server's fault, which the run records
                return None
            raise PreflightError(failure) from None
        except requests.exceptions.RequestException as exc:
            raise PreflightError(f"cannot reach {url}: {_one_line(exc)}") from None

    def connection_failure(self, exc: BaseException) -> str | None:
        text = _one_line(exc)
        if "Connection refused" in text or "[Errno 111]" in text:
            return (f"connection refused at {self.where}: nothing listens there; is the server up, "
                    "and is the port in --url right?")
        if "NameResolution" in text or "Failed to resolve" in text or "Name or service not known" in text:
            return f"cannot resolve the host '{self.host}' of --url (DNS): check its spelling"
        if self.scheme == "https" and self.speaks_plain_http():
            return self.plain_http()
        if "NewConnectionError" in text or "Failed to establish a new connection" in text:
            return f"cannot connect to {self.where}: {text.rsplit(': ', 1)[-1][:200]}"
        return None

    def tls_failure(self, exc: BaseException) -> str:
        text = _one_line(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return (f"the TLS certificate of {self.where} does not verify ({text[-120:]}): give the CA with "
                    "--ca-bundle or REQUESTS_CA_BUNDLE, or use --insecure to accept it")
        if self.speaks_plain_http():
            return self.plain_http()
        hint = "" if self.args.cert else " (if the server wants a client certificate, give it with --cert/--key)"
        return f"TLS handshake with {self.where} failed: {text[:200]}{hint}"

    def plain_netloc(self) -> str:
        """The netloc with the port spelled out: http:// alone would mean port 80."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def plain_http(self) -> str:
        p = self.parts
        plain = urlunsplit(("http", self.plain_netloc(), p.path, p.query, p.fragment))
        return f"{self.where} speaks plain HTTP, not TLS: use --url {plain}"

    def speaks_plain_http(self) -> bool:
        """Whether the https port answers a plain HTTP request (briefly)."""
        import requests

        url = urlunsplit(("http", self.plain_netloc(), "/", "", ""))
        try:
            self.session.get(url, timeout=(PLAIN_PROBE_S, PLAIN_PROBE_S), allow_redirects=False)
        except requests.exceptions.RequestException:
            return False
        return True

    def refused(self, url: str, status: int) -> str:
        """401/403, saying where the key came from (never the key)."""
        args = self.args
        variable = KEY_VARIABLES.get(args.api, "OPENAI_API_KEY")
        header = next((k for k in args.headers if k.lower() in SECRET_HEADERS), None)
        if header:
            source = f"the {header} header given with --headers"
        elif not args.api_key:
            return (f"{url} answered HTTP {status}: it needs an API key and none was sent: "
                    f"set {variable} or pass --api-key")
        elif os.environ.get(variable) == args.api_key:
            source = f"the key in {variable}"
        else:
            source = "the key given with --api-key"
        return f"{url} answered HTTP {status}: the server refused {source}: check it is right for this server"


def usage_in_every_chunk(body: bytes) -> bool:
    """Whether an event stream's output chunks carry usage (a chunk with
    choices and a completion count), as with continuous_usage_stats."""
    import sseclient

    try:
        for event in sseclient.SSEClient([body]).events():
            data = json.loads(event.data) if event.data and event.data != "[DONE]" else None
            usage = data.get("usage") if isinstance(data, dict) and data.get("choices") else None
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                return True
    except (ValueError, UnicodeDecodeError):
        return False
    return False


def _listing(models: list[str]) -> str:
    shown = ", ".join(models[:MAX_LISTED])
    return shown + (f" and {len(models) - MAX_LISTED} more" if len(models) > MAX_LISTED else "")


def _suggest(path: str, endpoint: str) -> str:
    """The endpoint under the prefix the user gave (/proxy/v1 -> /proxy/v1/chat/completions)."""
    if "/v1" in path and endpoint.startswith("/v1/"):
        return path[:path.index("/v1")] + endpoint
    return endpoint


def _detail(response, secret: str | None) -> str:
    """The first words of an error reply (never the key, if the server echoes it)."""
    text = _first_words(response)
    return text.replace(secret, "***") if secret else text


def _first_words(response) -> str:
    said = reply_message(response.body)
    if said is not None:
        return said[0][:160]
    text = " ".join(response.body.decode("utf-8", errors="replace").split())[:160]
    return text or "no body"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
