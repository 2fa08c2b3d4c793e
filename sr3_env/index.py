"""The lazily refreshed corpus index.

It holds the corpus embedding matrix ``E`` (N x d, a torch tensor on CUDA when there is one) and,
for every row, the encoder version that produced it. When the encoder changes, rows go *stale*;
a search re-encodes only the rows that matter for that search (DESIGN.md):

1. score the queries against all rows, stale or not, and take each query's top-K candidates C;
2. re-encode, with the current encoder, the stale rows of C and of the gold documents G, and write
   them back (deduplicated across the batch);
3. rescore those rows; the rank of a gold document is 1 + the number of rows scoring strictly
   higher, taken from the same score matrix (so ties and rounding cannot make it disagree with
   the top-K list);
4. optionally re-encode a budget of the stalest rows, so the whole corpus cycles through fresh
   encodings over time.

Policies: ``lazy`` (the above), ``full`` (re-encode every stale row before searching: exact and
slow), ``periodic`` (a full refresh every ``refresh_every`` encoder versions, lazy in between),
``frozen`` (never re-encode: the fixed-retriever baseline).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from sr3_env.encoders import Encoder, as_matrix

logger = logging.getLogger(__name__)

REFRESH_POLICIES = ("lazy", "full", "periodic", "frozen")
CANDIDATE_SEARCH = ("torch", "faiss")


@dataclass(frozen=True)
class IndexStats:
    """Bookkeeping of the index after a search (also in the environment's ``info["index"]``)."""

    rows_reencoded: int  #: rows re-encoded by this search (candidates, gold, budget, full refresh)
    rows_reencoded_total: int  #: rows re-encoded since the index was built (the build not counted)
    stale_rows: int  #: rows made by an older encoder version, after this search
    stale_fraction: float  #: stale_rows / number of rows
    encoder_calls: int  #: calls to ``encode_documents`` since the index was built (the build not counted)
    encoder_version: int  #: the encoder version the fresh rows carry

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """What one batched search returns (B queries)."""

    top_rows: np.ndarray  #: (B, k) int64, best first
    top_scores: np.ndarray  #: (B, k) float32
    gold_ranks: list[np.ndarray]  #: per query, the 1-based rank of each gold row, in the order given
    gold_scores: list[np.ndarray]  #: per query, the score of each gold row
    stats: IndexStats


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class LazyIndex:
    """Corpus embeddings that follow a changing encoder without re-encoding the whole corpus.

    Args:
        texts: the document texts, one per row.
        encoder: any `Encoder`; its ``version`` tells which rows are stale.
        refresh: ``"lazy"``, ``"full"``, ``"periodic"`` or ``"frozen"`` (module docstring).
        refresh_every: for ``"periodic"``, the number of encoder versions between full refreshes.
        refresh_budget: stalest rows re-encoded after every search (0: none).
        embeddings: the corpus already encoded by ``encoder`` at its current version (skips the build).
        device: where ``E`` lives (default: CUDA when available, else CPU).
        dtype: storage dtype of ``E`` (default float32; fp16/bf16 only make sense on a GPU).
        candidate_search: ``"torch"`` (top-K from the score matrix that the ranks need anyway; the
            fastest exact search on a CPU, see docs/performance.md) or ``"faiss"`` (FAISS flat
            inner-product search; faiss-gpu when installed).
        encode_batch_size: texts per ``encode_documents`` call.
    """

    def __init__(self, texts: Sequence[str], encoder: Encoder, *, refresh: str = "lazy", refresh_every: int | None = None,
                 refresh_budget: int = 0, embeddings: Any = None, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, candidate_search: str = "torch", encode_batch_size: int = 256) -> None:
        if refresh not in REFRESH_POLICIES:
            raise ValueError(f"Unknown refresh policy {refresh!r}; choose one of {list(REFRESH_POLICIES)}.")
        if refresh == "periodic" and (refresh_every is None or int(refresh_every) < 1):
            raise ValueError("refresh='periodic' needs refresh_every >= 1 (encoder versions between full refreshes).")
        if refresh != "periodic" and refresh_every is not None:
            raise ValueError(f"refresh_every only applies to refresh='periodic' (got refresh={refresh!r}); drop it or use 'periodic'.")
        if int(refresh_budget) < 0:
            raise ValueError(f"refresh_budget must be >= 0, got {refresh_budget}.")
        if candidate_search not in CANDIDATE_SEARCH:
            raise ValueError(f"Unknown candidate_search {candidate_search!r}; choose one of {list(CANDIDATE_SEARCH)}.")
        if len(texts) == 0:
            raise ValueError("The index needs at least one document.")
        self.texts = list(texts)
        self.encoder = encoder
        self.refresh_policy = refresh
        self.refresh_every = refresh_every
        self.refresh_budget = int(refresh_budget)
        self.candidate_search = candidate_search
        self.encode_batch_size = int(encode_batch_size)
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.rows_reencoded_total = 0
        self.encoder_calls = 0
        version = int(encoder.version)
        if embeddings is None:
            embeddings = self._encode_all()
        else:
            embeddings = as_matrix(embeddings, len(self.texts), encoder.dim, "the given corpus embeddings")
        self.embeddings = torch.as_tensor(embeddings, dtype=dtype).to(self.device)
        self.row_versions = np.full(len(self.texts), version, dtype=np.int64)
        self._last_full_refresh_version = version
        self.encoder_calls = 0  # the build is not a refresh

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def stale_mask(self) -> np.ndarray:
        """Boolean mask of rows made by an older encoder version."""
        return self.row_versions != int(self.encoder.version)

    def stats(self, rows_reencoded: int = 0) -> IndexStats:
        stale = int(self.stale_mask().sum())
        return IndexStats(rows_reencoded=rows_reencoded, rows_reencoded_total=self.rows_reencoded_total, stale_rows=stale,
                          stale_fraction=stale / len(self), encoder_calls=self.encoder_calls,
                          encoder_version=int(self.encoder.version))

    # -- re-encoding -------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        for start in range(0, len(texts), self.encode_batch_size):
            chunk = texts[start:start + self.encode_batch_size]
            self.encoder_calls += 1
            out[start:start + len(chunk)] = as_matrix(self.encoder.encode_documents(chunk), len(chunk), self.encoder.dim,
                                                      f"{type(self.encoder).__name__}.encode_documents")
        return out

    def _encode_all(self) -> np.ndarray:
        if len(self.texts) > 5000:
            logger.info("encoding %d documents with %s", len(self.texts), type(self.encoder).__name__)
        return self._encode(self.texts)

    def refresh_rows(self, rows: Any) -> np.ndarray:
        """Re-encode those of ``rows`` that are stale; return the rows re-encoded."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        version = int(self.encoder.version)
        stale = rows[self.row_versions[rows] != version]
        if stale.size:
            fresh = self._encode([self.texts[i] for i in stale])
            index = torch.as_tensor(stale, device=self.device)
            self.embeddings[index] = torch.as_tensor(fresh, dtype=self.dtype).to(self.device)
            self.row_versions[stale] = version
            self.rows_reencoded_total += int(stale.size)
        return stale

    def refresh_all(self) -> int:
        """Re-encode every stale row (a full refresh); return how many were re-encoded."""
        count = self.refresh_rows(np.flatnonzero(self.stale_mask())).size
        self._last_full_refresh_version = int(self.encoder.version)
        return int(count)

    def refresh_stalest(self, budget: int) -> int:
        """Re-encode up to ``budget`` of the stalest rows (oldest version first)."""
        stale = np.flatnonzero(self.stale_mask())
        if budget <= 0 or stale.size == 0:
            return 0
        if stale.size > budget:
            stale = stale[np.argpartition(self.row_versions[stale], budget - 1)[:budget]]
        return int(self.refresh_rows(stale).size)

    # -- search ------------------------------------------------------------------------------

    def _top_k(self, scores: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
        if self.candidate_search == "faiss":
            from sr3_env._faiss import knn_inner_product

            return knn_inner_product(queries, self.embeddings, k)
        return torch.topk(scores, k, dim=1, sorted=True).indices

    def search(self, queries: Any, gold_rows: Sequence[Any], k: int = 100) -> SearchResult:
        """Score a batch of query embeddings and rank their gold documents (module docstring).

        Args:
            queries: (B, dim) array or tensor (used as given: normalise it first for cosine).
            gold_rows: B sequences of row indices, the relevant documents of each query.
            k: number of top candidates per query (capped at the corpus size).
        """
        q = torch.as_tensor(np.asarray(queries, dtype=np.float32) if not torch.is_tensor(queries) else queries)
        q = q.to(self.device, self.dtype)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (batch, {self.dim}), got {tuple(q.shape)}.")
        if len(gold_rows) != q.shape[0]:
            raise ValueError(f"gold_rows must hold one entry per query: {q.shape[0]} queries, {len(gold_rows)} entries.")
        gold = [np.asarray(g, dtype=np.int64).reshape(-1) for g in gold_rows]
        for g in gold:
            if g.size and (g.min() < 0 or g.max() >= len(self)):
                raise ValueError(f"gold row {int(g.min() if g.min() < 0 else g.max())} is outside the index (0..{len(self) - 1}).")
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")

        reencoded = 0
        if self.refresh_policy == "full" or (
                self.refresh_policy == "periodic"
                and int(self.encoder.version) - self._last_full_refresh_version >= int(self.refresh_every)):
            reencoded += self.refresh_all()

        scores = (q @ self.embeddings.T).float()  # (B, N): every row, stale or not
        top = self._top_k(scores, q, k)  # (B, k) candidates C
        if self.refresh_policy in ("lazy", "periodic"):
            touched = np.unique(np.concatenate([top.cpu().numpy().reshape(-1), *gold]))
            fresh = self.refresh_rows(touched)  # stale rows of C ∪ G, deduplicated across the batch
            if fresh.size:
                reencoded += int(fresh.size)
                fresh_t = torch.as_tensor(fresh, device=self.device)
                scores[:, fresh_t] = (q @ self.embeddings[fresh_t].T).float()
                top = torch.topk(scores, k, dim=1, sorted=True).indices

        top_scores = torch.gather(scores, 1, top)
        gold_ranks, gold_scores = self._rank_gold(scores, gold)
        if self.refresh_budget:
            reencoded += self.refresh_stalest(self.refresh_budget)
        return SearchResult(top_rows=top.cpu().numpy().astype(np.int64), top_scores=top_scores.cpu().numpy(),
                            gold_ranks=gold_ranks, gold_scores=gold_scores, stats=self.stats(reencoded))

    def _rank_gold(self, scores: torch.Tensor, gold: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """1 + number of rows scoring strictly higher than each gold row, from the same score matrix."""
        batch = scores.shape[0]
        width = max((g.size for g in gold), default=0)
        if width == 0:
            return [np.empty(0, np.int64)] * batch, [np.empty(0, np.float32)] * batch
        padded = np.zeros((batch, width), dtype=np.int64)
        for b, g in enumerate(gold):
            padded[b, :g.size] = g
        gold_score = torch.gather(scores, 1, torch.as_tensor(padded, device=scores.device))  # (B, G)
        ranks = torch.empty((batch, width), dtype=torch.int64, device=scores.device)
        for j in range(width):  # one pass over (B, N) per gold column; most queries have one gold
            ranks[:, j] = (scores > gold_score[:, j:j + 1]).sum(dim=1) + 1
        ranks_np, scores_np = ranks.cpu().numpy(), gold_score.cpu().numpy()
        return [ranks_np[b, :g.size] for b, g in enumerate(gold)], [scores_np[b, :g.size] for b, g in enumerate(gold)]
