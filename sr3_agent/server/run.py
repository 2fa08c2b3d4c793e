"""Start the server: load the embedder and the corpus (`build_service`), then run uvicorn (`serve`),
or run it on a background thread (`ServerThread`: tests, examples and the benchmark).

uvicorn handles SIGINT/SIGTERM: it stops accepting connections, lets requests in flight finish,
then the app's lifespan closes the batcher (queued work runs, the worker stops); ``sr3 serve`` then
exits with status 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sr3_agent.server.schemas import Limits
from sr3_agent.server.service import EmbeddingService

logger = logging.getLogger(__name__)


def build_service(config: Any, embedder: Any | None = None) -> EmbeddingService:
    """Load the model (unless given) and the corpus index of a `ServeConfig`."""
    from sr3_agent.embedder import ReasoningEmbedder
    from sr3_agent.evaluate import sub_corpus
    from sr3_agent.server.corpus import CorpusIndex
    from sr3_env import load_dataset

    if embedder is None:
        source = config.base_model if config.model == "base" else config.model
        settings = {"max_length": config.max_length} if config.max_length is not None else {}
        embedder = ReasoningEmbedder.from_pretrained(source, device=config.device, **settings)
    embedder.batch_size = config.max_batch
    name = config.served_name or (embedder.name if config.model == "base" else Path(config.model).name)
    index = None
    if config.corpus:
        dataset, note = sub_corpus(load_dataset(config.corpus, split=config.split), config.corpus_docs)
        if note:
            logger.info("corpus %s: %s", dataset.name, note)
        index = CorpusIndex.build(embedder, dataset)
    return EmbeddingService(embedder, name, index=index, max_batch=config.max_batch, max_wait=config.batch_wait_ms / 1000)


def create_app_for(config: Any, service: EmbeddingService) -> Any:
    """The app of ``service`` with the request limits and defaults of a `ServeConfig`."""
    from sr3_agent.server.app import create_app

    limits = Limits(max_inputs=config.max_inputs, max_chars=config.max_chars, max_topk=config.max_topk,
                    reasoning_tokens=config.reasoning_tokens)
    return create_app(service, limits=limits, default_input_type=config.default_input_type, default_topk=config.topk)


def serve(config: Any) -> None:
    """``sr3 serve``: build the service and run uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    service = build_service(config)
    app = create_app_for(config, service)
    logger.warning("serving %s on http://%s:%d (Ctrl-C stops)", service.name, config.host, config.port)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
    # ours notes it, so the command ends normally (exit 0) instead of dying of the signal afterwards.
    stops: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda number, _: stops.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=30)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stops:
        logger.warning("stopped by %s after answering the requests in flight", signal.Signals(stops[-1]).name)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and benchmarks on loopback)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """Run an app with uvicorn on a background thread; a context manager that waits until the server
    answers and shuts it down gracefully on exit.

    ``url`` is the base address, e.g. ``http://127.0.0.1:PORT``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 60.0) -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, name="sr3-server", daemon=True)
        self.startup_timeout = startup_timeout

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"The server on {self.url} stopped while starting (is the port taken?).")
            if time.monotonic() > deadline:
                raise TimeoutError(f"The server on {self.url} did not start within {self.startup_timeout:.0f} s.")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to exit (as on SIGTERM) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __exit__(self, *exc: Any) -> None:
        self.stop()
