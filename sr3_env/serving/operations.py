"""The operational surface of every sr3 server, as text-embeddings-inference and infinity have it:

- a Bearer key (``--api-key KEY`` or ``$SR3_API_KEY``): a request without it gets 401 (a WebSocket
  handshake without it is refused, 403), ``/health`` stays open for load balancers;
- ``GET /metrics`` in Prometheus text: requests by route and status, a latency histogram per route,
  the queue depth, batch sizes and the items run (texts encoded, steps scored);
- ``GET /info``: what is served (model or environment, dimension, limits, precision, version);
- a full queue answers 429 with ``Retry-After``, a request larger than the whole queue 413: both at
  once and with a reason, never a 5xx (clients such as verl's retry every 5xx ten times).

`add_operations(app, ...)` adds all of it to a FastAPI app; each app has its own metrics registry.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.websockets import WebSocketDisconnect

from sr3_env.serving.batcher import JobTooLarge, QueueFull

API_KEY_VARIABLE = "SR3_API_KEY"
OPEN_PATHS = frozenset({"/health"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def resolve_api_key(given: str | None) -> str | None:
    """The key from ``--api-key``, else ``$SR3_API_KEY``, else None (no key: every request is served)."""
    key = given if given is not None else os.environ.get(API_KEY_VARIABLE)
    if key is not None and not key.strip():
        raise ValueError(f"The API key is empty; give a non-empty --api-key (or {API_KEY_VARIABLE}), or none at all.")
    return key


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An error in the OpenAI shape, ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ServerMetrics:
    """The Prometheus metrics of one server (its own registry, so that many servers share a process).

    Args:
        items: the name of what the batcher runs, e.g. ``"texts_encoded"`` (exposed as ``sr3_texts_encoded_total``).
        items_help: its help line.
    """

    def __init__(self, items: str = "texts_encoded", items_help: str = "Texts encoded (all requests).") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("sr3_requests", "Requests answered by route and HTTP status (a WebSocket session counts "
                                "once, 101 when accepted).", ["route", "status"], registry=self.registry)
        self.latency = Histogram("sr3_request_seconds", "Time from a request's arrival to its response, by route (HTTP).",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("sr3_queue_depth", "Items waiting in the batcher's queue.", registry=self.registry)
        self.batch_size = Histogram("sr3_batch_size", "Items per batch run.", buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("sr3_batch_seconds", "Seconds per batch run.", buckets=_LATENCY_BUCKETS,
                                       registry=self.registry)
        self.items = Counter(f"sr3_{items}", items_help, registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one batch run (the batcher's ``on_batch``)."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.items.inc(size)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from ``depth()`` at every scrape."""
        self.queue_depth.set_function(depth)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class GuardMiddleware:
    """ASGI middleware: the Bearer key check, then the request counts and latencies (see the module docstring).

    Routes are labelled by path when the app has that route, else ``"other"`` (so that scanners
    cannot blow up the metrics' cardinality)."""

    def __init__(self, app: Any, *, metrics: ServerMetrics, api_key: str | None, routes: Callable[[], Iterable[str]],
                 open_paths: Iterable[str] = OPEN_PATHS) -> None:
        self.app, self.metrics, self.api_key = app, metrics, api_key
        self._routes = routes
        self._known: frozenset[str] | None = None
        self.open_paths = frozenset(open_paths)

    def _route(self, path: str) -> str:
        if self._known is None:
            self._known = frozenset(self._routes())
        return path if path in self._known else "other"

    def _authorised(self, scope: dict[str, Any]) -> bool:
        if self.api_key is None or scope["path"] in self.open_paths:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        route, started = self._route(scope["path"]), time.perf_counter()
        status = {"code": 500}
        try:
            if not self._authorised(scope):
                status["code"] = 401 if scope["type"] == "http" else 403
                await self._refuse(scope, send)
                return

            async def recording_send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = int(message["status"])
                elif message["type"] == "websocket.accept":
                    status["code"] = 101
                elif message["type"] == "websocket.close" and status["code"] == 500:
                    status["code"] = 403  # closed before the handshake completed
                await send(message)

            try:
                await self.app(scope, receive, recording_send)
            except WebSocketDisconnect:
                if status["code"] != 101:
                    raise
                # The client closed an accepted session first (OpenEnv's client sends "close", then hangs
                # up; the server's own close then finds the socket gone): the session ended normally.
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            if scope["type"] == "http":
                self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    @staticmethod
    async def _refuse(scope: dict[str, Any], send: Any) -> None:
        message = ("This server needs an API key: send the header 'Authorization: Bearer KEY' (the key given to the "
                   f"server with --api-key or {API_KEY_VARIABLE}).")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong API key"})
            return
        body = json.dumps(error_body(message, "authentication_error", code="invalid_api_key")).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def add_operations(app: Any, *, metrics: ServerMetrics, api_key: str | None, info: Callable[[], dict[str, Any]]) -> None:
    """Add ``/metrics``, ``/info``, the key check, the request metrics and the 429/413 answers to a FastAPI app."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/info")
    async def _info() -> dict[str, Any]:
        """What this server serves and its limits."""
        return info()

    @app.exception_handler(QueueFull)
    async def _full(_: Request, error: QueueFull) -> JSONResponse:
        return JSONResponse(error_body(str(error), "rate_limit_exceeded", code="queue_full"), status_code=429,
                            headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(JobTooLarge)
    async def _too_large(_: Request, error: JobTooLarge) -> JSONResponse:
        return JSONResponse(error_body(str(error), code="request_too_large"), status_code=413)

    app.add_middleware(GuardMiddleware, metrics=metrics, api_key=api_key,
                       routes=lambda: [getattr(route, "path", "") for route in app.routes])
