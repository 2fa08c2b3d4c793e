"""The corpus behind ``/retrieve``: document embeddings computed once per model and kept on disk, and
exact inner-product search over them (on the GPU when the embedder is there).

The embeddings are cached exactly as ``sr3 eval`` caches them (`DenseSystem.corpus_embeddings`, keyed
by the model's weight fingerprint and the corpus' fingerprint), so a model evaluated on a corpus is
served from it without encoding again, and the other way round.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from sr3_env.data import RetrievalDataset

logger = logging.getLogger(__name__)


class CorpusIndex:
    """Document embeddings of one corpus and exact top-k search over them.

    Args:
        dataset: the corpus (``doc_ids``, ``titles``, ``texts``).
        vectors: ``(len(dataset.doc_ids), dim)`` float32 document embeddings, L2-normalised.
        device: where the matrix lives for search.
    """

    def __init__(self, dataset: RetrievalDataset, vectors: np.ndarray, device: Any = "cpu") -> None:
        import torch

        if vectors.shape[0] != len(dataset.doc_ids):
            raise ValueError(f"{vectors.shape[0]} embeddings for {len(dataset.doc_ids)} documents.")
        self.dataset = dataset
        self.matrix = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)

    @classmethod
    def build(cls, embedder: Any, dataset: RetrievalDataset) -> "CorpusIndex":
        """Embed ``dataset``'s documents with ``embedder`` (or read them from the cache)."""
        from sr3_agent.evaluation.evaluate import DenseSystem, corpus_cache_key

        start = time.perf_counter()
        system = DenseSystem(embedder.name, embedder.encode_queries, embedder.encode_documents,
                             corpus_cache_key(embedder))  # the key sr3 eval uses for the same model
        vectors = system.corpus_embeddings(dataset)
        logger.info("corpus %s: %d documents ready in %.1f s (cache %s)", dataset.name, len(vectors),
                    time.perf_counter() - start, system.cache_path(dataset))
        return cls(dataset, vectors, device=embedder.device)

    def __len__(self) -> int:
        return len(self.dataset.doc_ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and rows of the ``k`` best documents of each query: two ``(len(queries), k)`` arrays,
        best first (``k`` is capped at the corpus size)."""
        import torch

        k = min(int(k), len(self))
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.matrix.device)
        with torch.inference_mode():
            scores, rows = torch.topk(q @ self.matrix.T, k, dim=1)
        return scores.float().cpu().numpy(), rows.cpu().numpy()

    def document(self, row: int) -> dict[str, str]:
        """A document as Search-R1's corpus holds it: ``{"id", "contents"}``, the title on the first line."""
        data = self.dataset
        return {"id": data.doc_ids[row], "contents": f"{data.titles[row]}\n{data.texts[row]}"}
