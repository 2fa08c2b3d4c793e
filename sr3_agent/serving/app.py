"""The FastAPI app: routes, request limits and error responses.

Every error is a JSON body in the OpenAI shape (``{"error": {"message", "type", "param", "code"}}``):
a malformed or out-of-limits request gets a 4xx that says what to change (400 for a bad body,
401 without the API key, 404 for an unknown model, 413 for an oversized body or more texts than the
queue holds, 429 with ``Retry-After`` while the queue is full, 503 while shutting down), never a 500.
``/metrics`` and ``/info`` come from `sr3_env.serving.operations`.
"""

from __future__ import annotations

import base64
import logging
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from sr3_agent.serving.schemas import (Document, Embedding, EmbeddingRequest, EmbeddingResponse, Limits,
                                      RetrieveRequest, RetrieveResponse, ScoredDocument, Usage)
from sr3_agent.serving.service import EmbeddingService
from sr3_env.serving.batcher import BatcherClosed
from sr3_env.serving.operations import add_operations, error_body

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and the OpenAI error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line from pydantic's errors, and the first offending field."""
    parts, param = [], None
    for error in errors[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        param = param or (location or None)
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field (check its spelling; see the API in docs/serving.md)"
        elif error.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        parts.append(f"{location}: {message}" if location else message)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more, param


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(vector, dtype=np.float32).tolist()


def create_app(service: EmbeddingService, *, limits: Limits | None = None, default_input_type: str = "query",
               default_topk: int = 3, max_body_bytes: int | None = None, api_key: str | None = None) -> Any:
    """The FastAPI app serving ``service``; the batcher starts and stops with the app's lifespan.

    ``api_key``: the Bearer key every route but ``/health`` needs (None: none)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = limits or Limits()
    max_body_bytes = max_body_bytes or limits.max_inputs * limits.max_chars * 4 + 65536

    @asynccontextmanager
    async def lifespan(_: Any):
        service.start()
        logger.info("serving %s (dim %d)%s", service.name, service.dim,
                    f" with a corpus of {len(service.index)} documents" if service.index is not None else "")
        try:
            yield
        finally:
            service.close()  # runs the queued jobs, then stops the worker
            logger.info("server stopped after %d batches (%d texts)", service.batcher.stats.batches,
                        service.batcher.stats.texts)

    app = FastAPI(title="sr3 embedding server", lifespan=lifespan)

    def info() -> dict[str, Any]:
        return {**service.info(), "max_inputs": limits.max_inputs, "max_chars": limits.max_chars,
                "max_topk": limits.max_topk, "reasoning_tokens": limits.reasoning_tokens,
                "default_input_type": default_input_type,  # what /v1/embeddings does without input_type
                "embedding_routes": {"/v1/embeddings": f"input_type, else {default_input_type}",
                                     "/documents/v1/embeddings": "document", "/queries/v1/embeddings": "query"}}

    add_operations(app, metrics=service.metrics, api_key=api_key, info=info)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(error_body(error.message, error.kind, error.param, error.code), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(list(error.errors()))
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(error.detail), code=str(error.status_code)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, error: Exception) -> JSONResponse:  # a fault of the server, not of the request
        logger.error("request failed: %s: %s", type(error).__name__, error)
        return JSONResponse(error_body(f"The server failed: {type(error).__name__}: {error}", "server_error"),
                            status_code=500)

    @app.exception_handler(BatcherClosed)
    async def _closing(_: Request, error: BatcherClosed) -> JSONResponse:
        return JSONResponse(error_body(str(error), "server_shutting_down"), status_code=503)

    @app.middleware("http")
    async def _body_limit(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(error_body(f"The body has {int(length)} bytes; this server takes at most "
                                           f"{max_body_bytes}."), status_code=413)
        return await call_next(request)

    def check_model(model: str) -> None:
        if model != service.name:
            raise RequestError(404, f"The model '{model}' does not exist; this server serves '{service.name}'.",
                               param="model", code="model_not_found")

    def reasoning_budget(asked: int | None) -> int:
        if asked is not None and asked > limits.reasoning_tokens:
            raise RequestError(400, f"max_reasoning_tokens is {asked}; this server writes at most "
                                    f"{limits.reasoning_tokens}.", param="max_reasoning_tokens")
        return asked or limits.reasoning_tokens

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is served."""
        stats = service.batcher.stats
        corpus = None if service.index is None else {"name": service.index.dataset.name, "documents": len(service.index)}
        return {"status": "ok", "model": service.name, "dim": service.dim, "corpus": corpus,
                "queued": service.batcher.pending, "batches": stats.batches, "texts": stats.texts}

    async def models() -> dict[str, Any]:
        """The served model, in the OpenAI list format."""
        return {"object": "list", "data": [{"id": service.name, "object": "model", "owned_by": "sr3", "created": 0}]}

    async def embed(request: EmbeddingRequest, side: str | None) -> EmbeddingResponse:
        """OpenAI-style embeddings; ``reasoning`` writes an analysis before each query embedding. ``side``: the input
        type of a route that fixes it (None: the request's, else the server's default)."""
        check_model(request.model)
        if side is not None and request.input_type not in (None, side):
            raise RequestError(400, f"This route embeds {side}s, but the request asks for input_type "
                                    f"{request.input_type!r}: leave input_type out, or send it to /v1/embeddings.",
                               param="input_type")
        if side == "document" and request.reasoning:
            raise RequestError(400, "This route embeds documents, which are never reasoned about: leave reasoning out, "
                                    "or send queries to /queries/v1/embeddings.", param="reasoning")
        texts = request.texts
        problem = limits.check_texts(texts, "input")
        if problem:
            raise RequestError(400, problem, param="input")
        if request.dimensions is not None and request.dimensions != service.dim:
            raise RequestError(400, f"dimensions is {request.dimensions}; this model's embeddings have {service.dim} "
                                    "(leave it out).", param="dimensions")
        input_type = "query" if request.reasoning else (side or request.input_type or default_input_type)
        budget = reasoning_budget(request.max_reasoning_tokens) if request.reasoning else None
        embedded = await service.embed(texts, input_type, budget, auto=request.reasoning == "auto")
        data = [Embedding(embedding=encode_vector(item.vector, request.encoding_format), index=i,
                          reasoning=item.reasoning if request.return_reasoning else None)
                for i, item in enumerate(embedded)]
        prompt = sum(item.prompt_tokens for item in embedded)
        return EmbeddingResponse(data=data, model=service.name,
                                 usage=Usage(prompt_tokens=prompt, total_tokens=prompt + sum(e.reasoning_tokens for e in embedded)))

    # An OpenAI client (or a RAG framework built on one) sends no input_type: a base URL per side gives each the
    # right prompt, e.g. OpenAI(base_url="http://host:port/documents/v1") for indexing, .../queries/v1 for search.
    def embeddings_route(side: str | None) -> Any:
        async def embeddings(request: EmbeddingRequest) -> EmbeddingResponse:
            return await embed(request, side)
        embeddings.__doc__ = embed.__doc__
        return embeddings

    for prefix, side in (("", None), ("/documents", "document"), ("/queries", "query")):
        app.add_api_route(f"{prefix}/v1/models", models, methods=["GET"])
        app.add_api_route(f"{prefix}/v1/embeddings", embeddings_route(side), methods=["POST"],
                          response_model=EmbeddingResponse, response_model_exclude_none=True)

    @app.post("/retrieve", response_model=RetrieveResponse)
    async def retrieve(request: RetrieveRequest) -> RetrieveResponse:
        """Search-R1's retriever: the ``topk`` best documents of each query, with scores if asked."""
        if service.index is None:
            raise RequestError(404, "This server has no corpus; start it with --corpus DATASET to use /retrieve.",
                               code="no_corpus")
        problem = limits.check_texts(request.queries, "queries")
        if problem:
            raise RequestError(400, problem, param="queries")
        k = request.topk or default_topk
        if k > limits.max_topk:
            raise RequestError(400, f"topk is {k}; this server returns at most {limits.max_topk}.", param="topk")
        hits = await service.retrieve(request.queries, k, limits.reasoning_tokens if request.reasoning else None,
                                      auto=request.reasoning == "auto")
        if request.return_scores:
            return RetrieveResponse(result=[[ScoredDocument(document=Document(**doc), score=score) for doc, score in row]
                                            for row in hits])
        return RetrieveResponse(result=[[Document(**doc) for doc, _ in row] for row in hits])

    return app
