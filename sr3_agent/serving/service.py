"""`EmbeddingService`: what the HTTP endpoints call. It owns the embedder (through the batcher's one
worker thread), the optional corpus index, and the served model's name.

Kinds of work the batcher groups texts by:

- ``("direct", "query")`` / ``("direct", "document")``: the embedder's direct embeddings;
- ``("reasoning", max_new_tokens)``: greedy reasoning, then the embedding at the embed token;
- ``("auto", max_new_tokens)``: the model decides per query whether to reason (`ReasoningEmbedder.auto_batch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sr3_agent.serving.corpus import CorpusIndex
from sr3_env.serving.batcher import MicroBatcher
from sr3_env.serving.operations import ServerMetrics

logger = logging.getLogger(__name__)


@dataclass
class Embedded:
    """One text's embedding, the tokens read and written for it, and its reasoning (if any)."""

    vector: np.ndarray  # (dim,) float32, L2-normalised
    prompt_tokens: int
    reasoning_tokens: int = 0
    reasoning: str | None = None


class EmbeddingService:
    """Embedding and retrieval over one embedder (see the module docstring).

    Args:
        embedder: a `ReasoningEmbedder`; only the batcher's worker thread uses it once serving starts.
        name: the model name clients send and see.
        index: the corpus for ``/retrieve`` (None: no corpus).
        max_batch: the batcher's largest batch of texts.
        max_wait: seconds the batcher waits for a batch to fill.
        max_queue: most texts waiting (None: no bound).
    """

    def __init__(self, embedder: Any, name: str, *, index: CorpusIndex | None = None, max_batch: int = 32,
                 max_wait: float = 0.005, max_queue: int | None = None) -> None:
        self.embedder = embedder
        self.name = name
        self.index = index
        self.metrics = ServerMetrics("texts_encoded", "Texts encoded (queries, documents, reasonings), all requests.")
        self.batcher = MicroBatcher(self._run, max_batch=max_batch, max_wait=max_wait, max_queue=max_queue,
                                    on_batch=self.metrics.observe_batch)
        self.metrics.watch_queue(lambda: self.batcher.waiting)

    @classmethod
    def loaded_on_worker(cls, load: Callable[[], tuple[Any, str, CorpusIndex | None]], **settings: Any
                         ) -> "EmbeddingService":
        """A started service whose ``(embedder, name, index)`` ``load()`` builds on the batcher's worker
        thread, so that every torch operation of the server runs on that one thread (`MicroBatcher.call`
        says why: on a CPU, a model loaded on one thread and run on another ran 1.5-2x slower)."""
        service = cls(None, "", **settings)
        service.start()
        try:
            service.embedder, service.name, service.index = service.batcher.call(load).result()
        except BaseException:
            service.close()
            raise
        return service

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def info(self) -> dict[str, Any]:
        """What is served, for ``GET /info``."""
        from sr3_env import __version__

        embedder = self.embedder
        dtype = getattr(embedder, "autocast_dtype", None)
        weights = str(next(embedder.model.parameters()).dtype).removeprefix("torch.")
        corpus = None if self.index is None else {"name": self.index.dataset.name, "documents": len(self.index)}
        return {"model": self.name, "dimension": self.dim, "max_length": int(embedder.max_length),
                "precision": {"weights": weights, "compute": "bf16" if dtype is not None else weights},
                "device": str(embedder.device), "corpus": corpus, "max_batch": self.batcher.max_batch,
                "max_queue": self.batcher.max_queue, "version": __version__, "backend": "sr3",
                "query_way": embedder.query_way if hasattr(embedder, "query_way") else "direct",
                "selection": getattr(embedder, "selection", None)}

    def start(self) -> None:
        self.batcher.start()

    def close(self) -> None:
        self.batcher.close()

    # -- on the worker thread ---------------------------------------------------------------------

    def _run(self, kind: Hashable, texts: list[str]) -> list[Embedded]:
        mode, option = kind  # type: ignore[misc]
        if mode == "direct":
            return self._direct(texts, option)
        if mode == "reasoning":
            return self._reasoning(texts, int(option))
        if mode == "auto":
            return self._auto(texts, int(option))
        raise ValueError(f"unknown kind of work {kind!r}")

    def _direct(self, texts: list[str], input_type: str) -> list[Embedded]:
        embedder = self.embedder
        if input_type == "query":
            vectors, instruction = embedder.encode_queries(texts, reasoning=False), embedder.prompts.query
        else:
            vectors, instruction = embedder.encode_documents(texts), embedder.prompts.document
        counts = [len(ids) + 1 for ids in embedder.prompt_ids(texts, instruction)]  # + the embed token
        return [Embedded(vector, count) for vector, count in zip(vectors, counts)]

    def _reasoning(self, texts: list[str], max_new_tokens: int) -> list[Embedded]:
        import torch

        embedder = self.embedder
        out: list[Embedded] = []
        for start in range(0, len(texts), embedder.batch_size):
            rollout = embedder.generate_reasoning(texts[start:start + embedder.batch_size], max_new_tokens=max_new_tokens)
            with torch.inference_mode():
                vectors = embedder.embed(rollout.input_ids, rollout.attention_mask).float().cpu().numpy()
            lengths = rollout.attention_mask.sum(dim=1).tolist()
            written = rollout.reasoning_lengths.tolist()
            out += [Embedded(v, int(n - w), int(w), text) for v, n, w, text in zip(vectors, lengths, written, rollout.reasoning)]
        return out

    def _auto(self, texts: list[str], max_new_tokens: int) -> list[Embedded]:
        """`ReasoningEmbedder.auto_batch`: where the model chose not to reason, its direct embedding
        (the direct prompt read, nothing written, no analysis)."""
        embedder = self.embedder
        out: list[Embedded] = []
        for start in range(0, len(texts), embedder.batch_size):
            chunk = texts[start:start + embedder.batch_size]
            vectors, rollout, direct = embedder.auto_batch(chunk, max_new_tokens=max_new_tokens)
            lengths, written = rollout.attention_mask.sum(dim=1).tolist(), rollout.reasoning_lengths.tolist()
            direct_lengths = iter(len(ids) + 1 for ids in embedder.prompt_ids([t for t, d in zip(chunk, direct) if d],
                                                                              embedder.prompts.query))
            out += [Embedded(v, next(direct_lengths), 0, None) if d else Embedded(v, int(n - w), int(w), text)
                    for v, n, w, text, d in zip(vectors, lengths, written, rollout.reasoning, direct)]
        return out

    # -- for the endpoints (event loop) -------------------------------------------------------------

    async def embed(self, texts: list[str], input_type: str, reasoning_tokens: int | None = None,
                    auto: bool = False) -> list[Embedded]:
        """Embed texts directly (``reasoning_tokens`` None) or queries after reasoning (with ``auto``, where
        the model chooses to)."""
        kind = (("direct", input_type) if reasoning_tokens is None
                else ("auto" if auto else "reasoning", int(reasoning_tokens)))
        return await asyncio.wrap_future(self.batcher.submit(kind, texts))

    async def retrieve(self, queries: list[str], k: int, reasoning_tokens: int | None = None, auto: bool = False
                       ) -> list[list[tuple[dict[str, str], float]]]:
        """The ``k`` best documents of each query with their scores."""
        if self.index is None:
            raise RuntimeError("no corpus is loaded")
        embedded = await self.embed(queries, "query", reasoning_tokens, auto)
        matrix = np.stack([item.vector for item in embedded])
        index = self.index
        scores, rows = await asyncio.wrap_future(self.batcher.call(lambda: index.search(matrix, k)))
        return [[(self.index.document(int(r)), float(s)) for r, s in zip(row, score)] for row, score in zip(rows, scores)]
