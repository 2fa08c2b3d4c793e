"""FAISS searches, imported only when ``candidate_search="faiss"`` or ``"ivf"`` is chosen."""

from __future__ import annotations

import numpy as np
import torch

from sr3_env.errors import require


def _import_faiss(what: str):
    require("faiss", what, "faiss", hint='On a GPU, `pip install "sr3[gpu]"` (faiss-gpu) instead: never both, '
                                         "they install the same module.")
    import faiss

    return faiss


def knn_inner_product(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-``k`` rows of ``corpus`` by inner product with each query, as a (B, k) tensor.

    Searches the index's own matrix in place, so row updates need no index rebuild (FAISS GPU
    indexes cannot update rows; its brute-force search can read torch tensors directly).
    """
    faiss = _import_faiss("candidate_search='faiss'")
    if corpus.is_cuda and hasattr(faiss, "StandardGpuResources"):
        import faiss.contrib.torch_utils  # noqa: F401  (lets faiss read torch tensors)

        resources = faiss.StandardGpuResources()
        _, ids = faiss.knn_gpu(resources, queries.float(), corpus.float(), k, metric=faiss.METRIC_INNER_PRODUCT)
        return ids.long()
    xq = np.ascontiguousarray(queries.float().cpu().numpy())
    xb = np.ascontiguousarray(corpus.float().cpu().numpy())
    _, ids = faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)
    return torch.as_tensor(ids, dtype=torch.int64, device=corpus.device)


class IVFCandidates:
    """Approximate candidates from a FAISS IVF-flat index over one block of rows.

    Rows are updated in place when the index re-encodes them (remove + add by row id, with a hash
    table from ids to list entries), so the candidates follow the refreshed rows. The coarse cells
    are trained once, on the rows at build time. FAISS GPU IVF indexes cannot remove rows, so this
    structure stays on the CPU even when the index matrix is on a GPU; the exact re-scoring of the
    candidates runs on the index's device.
    """

    def __init__(self, vectors: np.ndarray, first_row: int, *, lists: int | None = None, probe: int = 16,
                 seed: int = 0) -> None:
        faiss = _import_faiss("candidate_search='ivf'")
        rows, dim = vectors.shape
        lists = int(lists) if lists is not None else max(1, min(int(rows ** 0.5), rows // 64))
        if not 1 <= lists <= rows:
            raise ValueError(f"ivf_lists must be between 1 and the number of rows ({rows}), got {lists}.")
        if probe < 1:
            raise ValueError(f"ivf_probe must be >= 1, got {probe}.")
        self.quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self.quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if rows > 64 * lists:  # k-means on 64 points per cell: enough for cells, cheap to train
            sample = vectors[np.random.default_rng(seed).choice(rows, 64 * lists, replace=False)]
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.arange(rows, dtype=np.int64) + first_row)
        self.index.nprobe = int(probe)

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, count) approximate scores and row ids, best first (padding: -inf and -1)."""
        values, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), int(count))
        values[ids < 0] = -np.inf
        return values.astype(np.float32), ids.astype(np.int64)

    def update(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of ``rows`` (global ids)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        self.index.remove_ids(rows)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rows)
