"""MockServer: routing, the listening socket, and the serve-until-signalled loop."""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Callable

from . import dashscope_api, openai_api, responses_api, retrieval_api
from .config import MockConfig
from .faults import GENERATION_PATHS, FaultPolicy, policy_for
from .http import HttpConnection, Request
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, GARBAGE, HANG_S, MockMetrics
from .slots import SlotQueue, Unbounded
from .plan import BadRequest, ModelNotFound, ResponsePlan, json_plan, openai_error
from .truth import ServerStats, TruthLog, TruthRecord

Handler = Callable[["MockServer", Request, "TruthRecord | None"], ResponsePlan]


def _chat(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return openai_api.completion(r, s.config, rec, chat=True)


def _completions(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return openai_api.completion(r, s.config, rec, chat=False)


def _models(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return openai_api.models(r, s.config, s.stats.started)


def _dashscope(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return dashscope_api.generation(r, s.config, rec)


def _embeddings(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return retrieval_api.embeddings(r, s.config, rec)


def _rerank(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return retrieval_api.rerank(r, s.config, rec)


def _responses(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return responses_api.responses(r, s.config, rec)


def _health(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    return ResponsePlan(200, "text/plain", [b""], [0.0])


def _truth(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    clear = "clear=1" in r.query.split("&")
    return json_plan(200, s.truth.snapshot(clear=clear))


def _stats(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    stats = s.stats.to_dict()
    stats["running"], stats["waiting"] = s.load()
    return json_plan(200, stats)


def _metrics(s: MockServer, r: Request, rec: TruthRecord | None) -> ResponsePlan:
    """Prometheus text in vLLM's names, or the misbehaviour --metrics asks for."""
    m = s.metrics
    m.scrapes += 1
    mode = m.mode
    if mode == "flaky":
        mode = "500" if m.scrapes % 2 == 0 else "ok"
    if mode == "off":
        return openai_error(404, f"no route for {r.method} {r.path}")
    if mode == "500":
        return openai_error(500, "mock: --metrics 500", "InternalServerError")
    if mode == "hang":
        return ResponsePlan(200, METRICS_CONTENT_TYPE, [b""], [HANG_S])
    if mode == "garbage":
        return ResponsePlan(200, METRICS_CONTENT_TYPE, [GARBAGE], [0.0])
    running, waiting = s.activity.counts(s.loop.time())
    return ResponsePlan(200, METRICS_CONTENT_TYPE, [m.exposition(running, waiting)], [0.0])


ROUTES: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": _chat},
    "/v1/completions": {"POST": _completions},
    dashscope_api.PATH: {"POST": _dashscope},
    retrieval_api.EMBEDDINGS_PATH: {"POST": _embeddings},
    **{path: {"POST": _rerank} for path in retrieval_api.RERANK_PATHS},
    responses_api.PATH: {"POST": _responses},
    "/v1/models": {"GET": _models},
    "/health": {"GET": _health},
    "/truth": {"GET": _truth},
    "/stats": {"GET": _stats},
    "/metrics": {"GET": _metrics},
}


def forced_status(text: str) -> ResponsePlan:
    """The reply to a request that carries `X-Mock-Status: CODE`: that status,
    with an error body (none for 204 and 304), and a Location for a redirect."""
    try:
        status = int(text)
    except ValueError:
        status = 0
    if not 200 <= status <= 599:
        return openai_error(400, f"X-Mock-Status {text!r}: the mock answers with a final status, 200-599")
    if status in (204, 304):
        return ResponsePlan(status, "text/plain", [b""], [0.0])
    plan = openai_error(status, f"mock: X-Mock-Status {status}")
    if 300 <= status < 400:
        plan.extra_headers = (("Location", "http://127.0.0.1:1/moved/v1/chat/completions"),)
    return plan


class MockServer:
    def __init__(self, config: MockConfig, faults: FaultPolicy | None = None) -> None:
        self.config = config
        self.faults = faults or policy_for(config)
        self.truth = TruthLog(enabled=config.record_truth)
        self.stats = ServerStats(started=time.time())
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.base_events.Server | None = None
        self.host = config.host
        self.port = config.port
        self.scheme = "http"
        self.slots = SlotQueue(config.slots) if config.slots else None
        # running/waiting for /metrics: the slot queue, or every reply at once without one
        self.activity: SlotQueue = self.slots or Unbounded()
        self.metrics = MockMetrics(config.listed_model, config.metrics)

    async def start(self) -> None:
        tls = None
        if self.config.tls_cert:
            import ssl

            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
            if self.config.tls_client_ca:
                tls.verify_mode = ssl.CERT_REQUIRED
                tls.load_verify_locations(self.config.tls_client_ca)
        self.scheme = "https" if tls else "http"
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self), self.config.host, self.config.port,
            backlog=4096, reuse_address=True, ssl=tls)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def respond(self, req: Request, rec: TruthRecord | None) -> ResponsePlan:
        """The plan for one request: route, build, then let the fault policy shape it."""
        methods = ROUTES.get(req.path)
        forced = req.headers.get("x-mock-status")
        if forced is not None:  # a test hook: answer with this status
            return forced_status(forced)
        if methods is None:
            plan = openai_error(404, f"no route for {req.method} {req.path}")
        elif req.method not in methods:
            plan = openai_error(405, f"{req.path} accepts {', '.join(methods)}")
        else:
            try:
                plan = methods[req.method](self, req, rec)
            except BadRequest as e:
                plan = openai_error(400, str(e), "BadRequestError")
            except ModelNotFound as e:  # vLLM's answer for a model it does not serve
                plan = openai_error(404, str(e), "NotFoundError")
        plan = self.faults.shape(req, plan)
        # The routes a model serves take a slot under --slots; the others
        # (models, health, truth, stats) answer at once, as a real server's do.
        if plan.status == 200 and req.path in GENERATION_PATHS:
            if self.slots is not None:
                self._queue(req, plan)
            else:
                self.activity.admit(req.arrival_loop, plan.due_s[-1] if plan.due_s else 0.0)
        return plan

    def _queue(self, req: Request, plan: ResponsePlan) -> None:
        """Hold the reply until a slot is free: every due time moves by the wait."""
        busy_s = plan.due_s[-1] if plan.due_s else 0.0
        wait_s = self.slots.admit(req.arrival_loop, busy_s)  # type: ignore[union-attr]
        if wait_s > 0:
            plan.due_s = [d + wait_s for d in plan.due_s]
        plan.notes["queue_s"] = wait_s

    def load(self) -> tuple[int, int]:
        """(running, waiting) generation replies now (waiting only under --slots)."""
        return self.activity.counts(self.loop.time())


async def serve(config: MockConfig, ready: Callable[[MockServer], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; then stop listening, write the truth file, return 0."""
    server = MockServer(config)
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        server.loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(server)
    await stop.wait()
    server.close()
    if config.truth_file:
        try:
            server.truth.write_file(config.truth_file)
        except OSError as e:
            print(f"servegauge mock: cannot write truth file {config.truth_file}: {e}",
                  file=sys.stderr)
            return 1
    return 0
