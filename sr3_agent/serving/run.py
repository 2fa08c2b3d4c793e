"""Start the server: load the embedder and the corpus (`build_service`), then run uvicorn (`serve`),
or run it on a background thread (`ServerThread`: tests, examples and the benchmark).

uvicorn handles SIGINT/SIGTERM (`sr3_env.serving.thread.run_until_signal`): it stops accepting
connections, lets requests in flight finish, then the app's lifespan closes the batcher (queued work
runs, the worker stops); ``sr3 serve`` then exits with status 0.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sr3_env.errors import require

# Before the imports below, so that a missing dependency is named with the command that installs it.
require("serve", "sr3 serve", "fastapi", "uvicorn", "prometheus_client")

from sr3_agent.serving.schemas import Limits
from sr3_agent.serving.service import EmbeddingService
from sr3_env.serving.thread import ServerThread, free_port, run_until_signal  # noqa: F401  (ServerThread, free_port: re-exported)

logger = logging.getLogger(__name__)


def build_service(config: Any, embedder: Any | None = None) -> EmbeddingService:
    """Load the model (unless given) and the corpus index of a `ServeConfig`, on the service's worker
    thread (`EmbeddingService.loaded_on_worker`); the service is started."""

    def load() -> tuple[Any, str, Any]:
        from sr3_agent.model.embedder import ReasoningEmbedder
        from sr3_agent.evaluation.evaluate import sub_corpus
        from sr3_agent.serving.corpus import CorpusIndex
        from sr3_env import load_dataset

        model = embedder
        if model is None:
            source = config.base_model if config.model == "base" else config.model
            settings = {"max_length": config.max_length} if config.max_length is not None else {}
            model = ReasoningEmbedder.from_pretrained(source, device=config.device, **settings)
        model.batch_size = config.max_batch
        name = config.served_name or (model.name if config.model == "base" else Path(config.model).name)
        index = None
        if config.corpus:
            dataset, note = sub_corpus(load_dataset(config.corpus, split=config.split), config.corpus_docs)
            if note:
                logger.info("corpus %s: %s", dataset.name, note)
            index = CorpusIndex.build(model, dataset)
        return model, name, index

    return EmbeddingService.loaded_on_worker(load, max_batch=config.max_batch, max_wait=config.batch_wait_ms / 1000,
                                             max_queue=config.max_queue)


def create_app_for(config: Any, service: EmbeddingService) -> Any:
    """The app of ``service`` with the request limits and defaults of a `ServeConfig`."""
    from sr3_agent.serving.app import create_app
    from sr3_env.serving.operations import resolve_api_key

    limits = Limits(max_inputs=config.max_inputs, max_chars=config.max_chars, max_topk=config.max_topk,
                    reasoning_tokens=config.reasoning_tokens)
    return create_app(service, limits=limits, default_input_type=config.default_input_type, default_topk=config.topk,
                      api_key=resolve_api_key(config.api_key))


def serve(config: Any) -> None:
    """``sr3 serve``: build the service and run uvicorn until SIGINT/SIGTERM."""
    from sr3_env.serving.operations import resolve_api_key

    service = build_service(config)
    app = create_app_for(config, service)
    logger.warning("serving %s on http://%s:%d (Ctrl-C stops)%s", service.name, config.host, config.port,
                   "" if resolve_api_key(config.api_key) is None else "; requests need the API key")
    run_until_signal(app, config.host, config.port)
