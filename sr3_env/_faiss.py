"""FAISS flat inner-product search, imported only when ``candidate_search="faiss"`` is chosen."""

from __future__ import annotations

import numpy as np
import torch

from sr3_env.errors import DependencyNotInstalled


def knn_inner_product(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-``k`` rows of ``corpus`` by inner product with each query, as a (B, k) tensor.

    Searches the index's own matrix in place, so row updates need no index rebuild (FAISS GPU
    indexes cannot update rows; its brute-force search can read torch tensors directly).
    """
    try:
        import faiss
    except ImportError as error:
        raise DependencyNotInstalled("candidate_search='faiss' needs FAISS: `pip install faiss-cpu` "
                                     "(or `pip install sr3[gpu]` for faiss-gpu).") from error
    if corpus.is_cuda and hasattr(faiss, "StandardGpuResources"):
        import faiss.contrib.torch_utils  # noqa: F401  (lets faiss read torch tensors)

        resources = faiss.StandardGpuResources()
        _, ids = faiss.knn_gpu(resources, queries.float(), corpus.float(), k, metric=faiss.METRIC_INNER_PRODUCT)
        return ids.long()
    xq = np.ascontiguousarray(queries.float().cpu().numpy())
    xb = np.ascontiguousarray(corpus.float().cpu().numpy())
    _, ids = faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)
    return torch.as_tensor(ids, dtype=torch.int64, device=corpus.device)
