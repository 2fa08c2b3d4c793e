"""The OpenEnv server's FastAPI app: OpenEnv's own (``/health``, ``/schema``, ``/metadata``, ``/reset``,
``/step``, ``/state``, sessions over ``/ws``) plus sr3's operational surface (Bearer key, ``/metrics``,
``/info``, 429 past the step queue) and errors that say what to fix."""

from __future__ import annotations

import functools
from typing import Any

from sr3_env.errors import ResetNeeded, Sr3Error
from sr3_env.openenv.environment import EnvironmentHub, RetrievalSession
from sr3_env.openenv.models import EmbedAction, RetrievalObservation
from sr3_env.serving.operations import add_operations, error_body

_STATELESS_HINT = (" Over HTTP every /reset and /step gets a fresh environment (OpenEnv's protocol), so an episode "
                   "cannot span two HTTP calls: keep it in a session over the /ws WebSocket (GenericEnvClient does).")


def create_app(hub: EnvironmentHub, *, max_concurrent_envs: int = 64, session_timeout: float | None = 300.0,
               api_key: str | None = None) -> Any:
    """The app serving ``hub``'s environment to at most ``max_concurrent_envs`` sessions at once; a session idle
    for ``session_timeout`` seconds is closed (None: never). The hub's batcher starts and stops with the app."""
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from openenv.core.env_server.http_server import create_fastapi_app
    from openenv.core.env_server.types import ConcurrencyConfig

    if int(max_concurrent_envs) < 1:
        raise ValueError(f"max_concurrent_envs must be >= 1, got {max_concurrent_envs}.")
    if session_timeout is not None and session_timeout <= 0:
        raise ValueError(f"session_timeout must be > 0 seconds (or None: never), got {session_timeout}.")
    concurrency = ConcurrencyConfig(max_concurrent_envs=int(max_concurrent_envs), session_timeout=session_timeout)
    app = create_fastapi_app(functools.partial(RetrievalSession, hub), EmbedAction, RetrievalObservation,
                             concurrency_config=concurrency)
    app.title = f"sr3 {hub.env_id} (OpenEnv)"
    app.router.on_startup.append(hub.start)
    app.router.on_shutdown.append(hub.close)

    def info() -> dict[str, Any]:
        return {**hub.info(), "max_concurrent_envs": int(max_concurrent_envs), "session_timeout": session_timeout}

    add_operations(app, metrics=hub.metrics, api_key=api_key, info=info)

    @app.exception_handler(Sr3Error)
    async def _refused(_: Request, error: Sr3Error) -> JSONResponse:  # a bad action, option or order of calls
        hint = _STATELESS_HINT if isinstance(error, ResetNeeded) else ""
        return JSONResponse(error_body(f"{error}{hint}", code=type(error).__name__), status_code=400)

    return app
