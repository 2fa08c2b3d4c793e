"""Policies that need no training, to run in the environments as baselines.

`RocchioPolicy` is classical pseudo-relevance feedback on a frozen encoder's vectors: the first turn
embeds the query; every later turn moves the query vector towards the documents the previous turn
retrieved, ``q' = alpha * q + beta * mean(d_1..d_k)``, L2-normalised. It reads only the
observation of `RetrievalRefine-v0`, so it runs in the single and the vectorised environment alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sr3_env.encoders import Encoder, as_matrix, encode_queries


class RocchioPolicy:
    """Rocchio pseudo-relevance feedback: ``q' = alpha * q + beta * mean(top-k document vectors)``.

    Args:
        encoder: the frozen encoder whose vectors are moved (queries through ``encode_queries``
            when it has one, documents through ``encode_documents``).
        alpha: weight of the query vector (> 0).
        beta: weight of the mean of the feedback documents' vectors (>= 0). ``beta = 0`` repeats
            the first turn.
        k: feedback documents used (the first ``k`` of the observation); None: all shown.
        document_vectors: optional ``{document text: vector}``, e.g. the rows of the environment's
            index (`from_env`), so that feedback documents are looked up instead of re-encoded.

    The policy is stateless: every turn starts from the query's own vector ``q`` (not from the
    previous turn's ``q'``) and uses the documents of the observation. Vectors are L2-normalised
    before they are combined, so ``alpha`` and ``beta`` weigh directions.
    """

    def __init__(self, encoder: Encoder, alpha: float = 1.0, beta: float = 0.75, k: int | None = None,
                 document_vectors: Mapping[str, np.ndarray] | None = None) -> None:
        for name, value, rule in (("alpha", alpha, "> 0"), ("beta", beta, ">= 0")):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number {rule}, got {value!r}.")
        if alpha == 0:
            raise ValueError("alpha must be > 0: the first turn has no feedback documents, so alpha * q is its whole action.")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer (feedback documents used) or None for all shown, got {k!r}.")
        self.encoder, self.alpha, self.beta, self.k = encoder, float(alpha), float(beta), k
        self.document_vectors = document_vectors if document_vectors is not None else {}
        self._query_vectors: dict[str, np.ndarray] = {}

    @classmethod
    def from_env(cls, env: gym.Env | gym.vector.VectorEnv, **kwargs: Any) -> RocchioPolicy:
        """A policy on the environment's own encoder; with a frozen encoder (MiniLM), the feedback
        documents' vectors are read from the environment's index instead of being re-encoded."""
        base = env.unwrapped
        encoder, index, dataset = base.encoder, base.index, base.dataset
        vectors: dict[str, np.ndarray] = {}
        if getattr(encoder, "frozen", False) and not index.shard.distributed and not index.stale_mask().any():
            rows = index.embeddings.float().cpu().numpy()
            vectors = dict(zip(dataset.documents, rows))
        return cls(encoder, document_vectors=vectors, **kwargs)

    def _queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({text for text in texts if text not in self._query_vectors})
        if missing:
            self._query_vectors.update(zip(missing, _unit(encode_queries(self.encoder, missing))))
        return np.stack([self._query_vectors[text] for text in texts])

    def _documents(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({text for text in texts if text not in self.document_vectors})
        found = dict(zip(missing, _unit(as_matrix(self.encoder.encode_documents(missing), len(missing), self.encoder.dim,
                                                  f"{type(self.encoder).__name__}.encode_documents")))) if missing else {}
        return np.stack([found[text] if text in found else _unit(self.document_vectors[text][None, :])[0] for text in texts])

    def act_batch(self, observations: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """(B, dim) float32 actions for a vector environment's observations ``{"query": (B,), "documents": (B,)}``."""
        queries, shown = list(observations["query"]), list(observations["documents"])
        if len(queries) != len(shown):
            raise ValueError(f"observations hold {len(queries)} queries but {len(shown)} document lists; expected one per sub-environment.")
        actions = self.alpha * self._queries(queries)  # (B, dim)
        feedback = [tuple(docs)[:self.k] if self.k is not None else tuple(docs) for docs in shown]
        if self.beta and any(feedback):
            flat = [text for docs in feedback for text in docs]
            vectors = self._documents(flat)  # (sum of k_b, dim)
            start = 0
            for b, docs in enumerate(feedback):
                if docs:
                    actions[b] += self.beta * vectors[start:start + len(docs)].mean(axis=0)
                    start += len(docs)
        return _unit(actions).astype(np.float32)

    def __call__(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The (dim,) action for one observation ``{"query": str, "documents": tuple of str}``."""
        return self.act_batch({"query": [observation["query"]], "documents": [observation["documents"]]})[0]


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
