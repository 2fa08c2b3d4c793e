"""`RetrievalEmbed-v0` and `RetrievalRefine-v0` over OpenEnv's protocol, where LLM-RL trainers (TRL's
`GRPOTrainer`, `verifiers`, TorchRL) look for an environment: HTTP ``/health``, ``/schema``,
``/metadata``, ``/reset``, ``/step``, ``/state``, and stateful sessions over the ``/ws`` WebSocket.

    python -m sr3_env.openenv --env RetrievalEmbed-v0 --port 8001 [--dataset ... --encoder ... --reward ...]

Every session shares one corpus index; their steps are scored together (`environment`). Needs the
optional extra: ``pip install "sr3[openenv]"``. Modules: `models` (the typed action and
observation), `environment` (sessions over one shared hub), `app` (the server), `client`
(`Sr3EnvClient`: OpenEnv's client with the API key), `__main__` (the command).
"""

from __future__ import annotations

from sr3_env.errors import require

require("openenv", "The OpenEnv server (sr3_env.openenv)", "openenv", "fastapi", "uvicorn", "prometheus_client")

from sr3_env.openenv.app import create_app
from sr3_env.openenv.client import Sr3EnvClient
from sr3_env.openenv.environment import ENV_IDS, EnvironmentHub, RetrievalSession
from sr3_env.openenv.models import EmbedAction, RetrievalObservation, RetrievalState

__all__ = ["ENV_IDS", "EmbedAction", "EnvironmentHub", "RetrievalObservation", "RetrievalSession", "RetrievalState",
           "Sr3EnvClient", "create_app"]
