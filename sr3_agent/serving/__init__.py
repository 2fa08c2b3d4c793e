"""Serving: ``sr3 export`` (a sentence-transformers folder, `export`, with its model card, `model_card`) and
``sr3 serve``, an embedder over HTTP.

- ``POST /v1/embeddings``: the OpenAI embeddings API (the official ``openai`` client and RAG
  frameworks work unchanged), with extras: ``input_type`` (query | document), ``reasoning`` (write an
  analysis before the query embedding) and ``return_reasoning``.
- ``POST /retrieve``: Search-R1's retriever API (``queries``, ``topk``, ``return_scores``) over a
  corpus encoded once and cached per model fingerprint.
- ``GET /health``, ``GET /v1/models``.

Modules: `schemas` (request/response models), `service` (the embedder behind one micro-batching queue),
`corpus` (the corpus index), `app` (the FastAPI app), `run` (load and serve); `export` and `model_card`.

The names in ``__all__`` are importable from here (``from sr3_agent.serving import create_app``); their
modules load on first use, so ``import sr3_agent.serving`` alone needs none of the serving dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sr3_env.errors import require

if TYPE_CHECKING:  # the exported names, for type checkers and the API reference; loaded lazily below
    from sr3_agent.serving.app import create_app
    from sr3_agent.serving.corpus import CorpusIndex
    from sr3_agent.serving.export import compare_with_embedder, export_embedder
    from sr3_agent.serving.schemas import Limits
    from sr3_agent.serving.service import EmbeddingService

_HOMES = {
    "CorpusIndex": "sr3_agent.serving.corpus",
    "EmbeddingService": "sr3_agent.serving.service",
    "Limits": "sr3_agent.serving.schemas",
    "compare_with_embedder": "sr3_agent.serving.export",
    "create_app": "sr3_agent.serving.app",
    "export_embedder": "sr3_agent.serving.export",
}

__all__ = ["CorpusIndex", "EmbeddingService", "Limits", "compare_with_embedder", "create_app", "export_embedder"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        if _HOMES[name] != "sr3_agent.serving.export":  # export needs sentence-transformers only (the agent's)
            require("serve", f"sr3_agent.serving.{name}", "fastapi", "uvicorn", "prometheus_client")
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
