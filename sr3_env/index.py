"""The lazily refreshed corpus index.

It holds the corpus embedding matrix ``E`` (N x d, a torch tensor on CUDA when there is one) and,
for every row, the encoder version that produced it. When the encoder changes, rows go *stale*;
a search re-encodes only the rows that matter for that search (docs/environment.md):

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

Scaling out (docs/scaling.md): the rows can be sharded over the processes of a ``torch.distributed``
group (each process holds and refreshes its own block; a gold rank is one all-reduce of counts,
the top-K a k-way merge; results equal the single-process index); the matrix can be stored in
fp16/bf16 on a GPU; and ``candidate_search="ivf"`` replaces the full scan by FAISS IVF candidates
re-scored exactly, for corpora too large to scan every step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from sr3_env.encoders import Encoder, as_matrix
from sr3_env.sharding import Shard, merge_top_k

logger = logging.getLogger(__name__)

REFRESH_POLICIES = ("lazy", "full", "periodic", "frozen")
"""The values of ``refresh`` (see the module docstring): when stale rows are re-encoded."""
CANDIDATE_SEARCH = ("torch", "faiss", "ivf")
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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


def _matmul_fp32(queries: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``queries @ rows.T`` as float32, whatever the storage dtype: fp16/bf16 products accumulate and
    return in fp32 (scores rounded to 16 bits would tie many rows). On CUDA the 16-bit matrix is
    read as it is; on a CPU it is widened to fp32 first (slower than fp32 storage: use fp32 there)."""
    if rows.dtype in (torch.float16, torch.bfloat16):
        if rows.is_cuda:
            return torch.mm(queries, rows.T, out_dtype=torch.float32)
        return queries.float() @ rows.float().T
    return queries @ rows.T


def top_k(scores: torch.Tensor, k: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(scores, k, dim=1)`` (values, column indices, best first), faster on a CPU.

    The k best of a row lie in the k blocks (of ``block`` columns) with the highest maxima: any
    other block's elements have k block maxima at least as high above them. So on a CPU the row is
    reduced to block maxima (one vectorised pass), the k best blocks are picked and the top-k is
    taken among their k * block columns. Values are exact; among exactly tied scores the order
    may differ from ``torch.topk`` (which does not define it either). CUDA's top-k is already fast.
    """
    batch, n = scores.shape
    blocks = n // block
    if scores.is_cuda or blocks < 4 * k:
        return torch.topk(scores, k, dim=1, sorted=True)
    maxima = scores[:, :blocks * block].unflatten(1, (blocks, block)).amax(dim=2)  # (B, n / block)
    chosen = torch.topk(maxima, k, dim=1, sorted=False).indices
    columns = (chosen.unsqueeze(2) * block + torch.arange(block, device=scores.device)).reshape(batch, -1)
    if blocks * block < n:  # the last, partial block is always a candidate
        columns = torch.cat([columns, torch.arange(blocks * block, n, device=scores.device).expand(batch, -1)], dim=1)
    best = torch.topk(torch.gather(scores, 1, columns), k, dim=1, sorted=True)
    return best.values, torch.gather(columns, 1, best.indices)


class LazyIndex:
    """Corpus embeddings that follow a changing encoder without re-encoding the whole corpus.

    Args:
        texts: the document texts, one per row (with a process group: all of them, on every process).
        encoder: any `Encoder`; its ``version`` tells which rows are stale.
        refresh: ``"lazy"``, ``"full"``, ``"periodic"`` or ``"frozen"`` (module docstring).
        refresh_every: for ``"periodic"``, the number of encoder versions between full refreshes.
        refresh_budget: stalest rows re-encoded after every search (0: none).
        embeddings: the corpus (all N rows) already encoded by ``encoder`` at its current version
            (skips the build; with a process group, each process keeps its own rows).
        device: where ``E`` lives (default: CUDA when available, else CPU).
        dtype: storage dtype of ``E``: float32 (default; the only sensible choice on a CPU, where
            16-bit products are slower) or float16/bfloat16 on a GPU (half the memory and memory
            traffic; products accumulate and return in fp32, see docs/scaling.md for the rank check).
        candidate_search: ``"torch"`` (top-K from the score matrix that the ranks need anyway; the
            fastest exact search on a CPU, see docs/performance.md), ``"faiss"`` (FAISS flat
            inner-product search; faiss-gpu when installed) or ``"ivf"`` (approximate: FAISS IVF
            candidates, then exact re-scoring of them; for corpora too large to scan per step).
        ann_candidates: with ``"ivf"``, candidates per query (default: 10 * k).
        ivf_lists: with ``"ivf"``, IVF cells (default about sqrt(rows)).
        ivf_probe: with ``"ivf"``, cells visited per query (default 16).
        process_group: a ``torch.distributed`` process group (or ``"world"``) to shard the rows
            over: each process holds and refreshes a contiguous block of rows, and `search` becomes
            collective (every process calls it, each with its own queries).
        encode_batch_size: texts per ``encode_documents`` call.
    """

    def __init__(self, texts: Sequence[str], encoder: Encoder, *, refresh: str = "lazy", refresh_every: int | None = None,
                 refresh_budget: int = 0, embeddings: Any = None, device: str | torch.device | None = None,
                 dtype: torch.dtype | str = torch.float32, candidate_search: str = "torch", ann_candidates: int | None = None,
                 ivf_lists: int | None = None, ivf_probe: int = 16, process_group: Any = None,
                 encode_batch_size: int = 256) -> None:
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
        dtype = STORAGE_DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
        if dtype not in STORAGE_DTYPES.values():
            raise ValueError(f"dtype must be one of {list(STORAGE_DTYPES)} (or the torch dtype), got {dtype!r}.")
        if ann_candidates is not None and int(ann_candidates) < 1:
            raise ValueError(f"ann_candidates must be >= 1, got {ann_candidates}.")
        if len(texts) == 0:
            raise ValueError("The index needs at least one document.")
        self.texts = list(texts)
        self.encoder = encoder
        self.refresh_policy = refresh
        self.refresh_every = refresh_every
        self.refresh_budget = int(refresh_budget)
        self.candidate_search = candidate_search
        self.ann_candidates = None if ann_candidates is None else int(ann_candidates)
        self.encode_batch_size = int(encode_batch_size)
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.shard = Shard.of(len(self.texts), process_group)
        self.rows_reencoded_total = 0
        self.encoder_calls = 0
        version = int(encoder.version)
        if embeddings is None:
            local = self._encode_all()
        else:
            local = as_matrix(embeddings, len(self.texts), encoder.dim,
                              "the given corpus embeddings")[self.shard.start:self.shard.stop]
        self.embeddings = torch.as_tensor(local, dtype=dtype).to(self.device)  #: this process's rows
        self.row_versions = np.full(len(self.shard), version, dtype=np.int64)  #: version of each of those rows
        self._last_full_refresh_version = version
        self.encoder_calls = 0  # the build is not a refresh
        self._ivf = None
        if candidate_search == "ivf":
            from sr3_env._faiss import IVFCandidates

            self._ivf = IVFCandidates(self.embeddings.float().cpu().numpy(), self.shard.start, lists=ivf_lists,
                                      probe=ivf_probe)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def stale_mask(self) -> np.ndarray:
        """Boolean mask of this process's rows made by an older encoder version."""
        return self.row_versions != int(self.encoder.version)

    def stats(self, rows_reencoded: int = 0) -> IndexStats:
        """Bookkeeping over all rows (collective with a process group: sums over the processes)."""
        counts = torch.tensor([int(self.stale_mask().sum()), rows_reencoded, self.rows_reencoded_total,
                               self.encoder_calls], dtype=torch.int64, device=self.device)
        stale, reencoded, total, calls = self.shard.all_sum(counts).tolist()
        return IndexStats(rows_reencoded=reencoded, rows_reencoded_total=total, stale_rows=stale,
                          stale_fraction=stale / len(self), encoder_calls=calls,
                          encoder_version=int(self.encoder.version))

    # -- re-encoding (each process re-encodes only its own rows) ----------------------------

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        for start in range(0, len(texts), self.encode_batch_size):
            chunk = texts[start:start + self.encode_batch_size]
            self.encoder_calls += 1
            out[start:start + len(chunk)] = as_matrix(self.encoder.encode_documents(chunk), len(chunk), self.encoder.dim,
                                                      f"{type(self.encoder).__name__}.encode_documents")
        return out

    def _encode_all(self) -> np.ndarray:
        if len(self.shard) > 5000:
            logger.info("encoding %d documents with %s", len(self.shard), type(self.encoder).__name__)
        return self._encode(self.texts[self.shard.start:self.shard.stop])

    def refresh_rows(self, rows: Any) -> np.ndarray:
        """Re-encode those of ``rows`` (global row ids) that this process holds and that are stale;
        return the rows re-encoded."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        rows = rows[(rows >= self.shard.start) & (rows < self.shard.stop)]
        version = int(self.encoder.version)
        stale = rows[self.row_versions[rows - self.shard.start] != version]
        if stale.size:
            fresh = self._encode([self.texts[i] for i in stale])
            local = stale - self.shard.start
            self.embeddings[torch.as_tensor(local, device=self.device)] = torch.as_tensor(fresh, dtype=self.dtype).to(self.device)
            self.row_versions[local] = version
            self.rows_reencoded_total += int(stale.size)
            if self._ivf is not None:
                self._ivf.update(stale, fresh)
        return stale

    def refresh_all(self) -> int:
        """Re-encode every stale row of this process (a full refresh); return how many were re-encoded."""
        count = self.refresh_rows(self.shard.start + np.flatnonzero(self.stale_mask())).size
        self._last_full_refresh_version = int(self.encoder.version)
        return int(count)

    def refresh_stalest(self, budget: int) -> int:
        """Re-encode up to ``budget`` of the stalest rows (oldest version first, then lowest row id);
        collective with a process group (the same rows as one process would pick)."""
        stale = np.flatnonzero(self.stale_mask())
        if budget <= 0:
            return 0
        versions = self.row_versions[stale]
        picked = stale[np.lexsort((stale, versions))[:budget]] + self.shard.start
        if self.shard.distributed:  # every shard's own stalest, then the stalest of those
            shared = self.shard.all_gather_objects((self.row_versions[picked - self.shard.start], picked))
            versions, picked = (np.concatenate(parts) for parts in zip(*shared))
            picked = picked[np.lexsort((picked, versions))[:budget]]
        return int(self.refresh_rows(picked).size)

    # -- rows, state --------------------------------------------------------------------------

    def rows_embeddings(self, rows: Any) -> torch.Tensor:
        """(len(rows), dim) float32 current rows (global ids) as stored, on the index's device.
        Collective with a process group: every process calls it (each with its own rows)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise ValueError(f"row {int(rows.min() if rows.min() < 0 else rows.max())} is outside the index (0..{len(self) - 1}).")
        if not self.shard.distributed:
            return self.embeddings[torch.as_tensor(rows, device=self.device)].float()
        wanted = self.shard.all_gather_objects(rows)
        every = np.concatenate(wanted)
        out = torch.zeros((every.size, self.dim), dtype=torch.float32, device=self.device)
        mine = np.flatnonzero((every >= self.shard.start) & (every < self.shard.stop))
        out[torch.as_tensor(mine, device=self.device)] = \
            self.embeddings[torch.as_tensor(every[mine] - self.shard.start, device=self.device)].float()
        self.shard.all_sum(out)
        begin = sum(len(w) for w in wanted[:self.shard.rank])
        return out[begin:begin + rows.size]

    def state_dict(self) -> dict[str, Any]:
        """This process's rows and the encoder version that made each (what a checkpoint keeps)."""
        return {"embeddings": self.embeddings.cpu(), "row_versions": self.row_versions.copy(),
                "rows": (self.shard.start, self.shard.stop)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore rows saved by `state_dict` (the same shard of the same corpus)."""
        rows = tuple(state.get("rows", (0, len(self))))
        if rows != (self.shard.start, self.shard.stop) or tuple(state["embeddings"].shape) != tuple(self.embeddings.shape):
            raise ValueError(f"The saved index holds rows {rows[0]}..{rows[1]} of shape {tuple(state['embeddings'].shape)}; "
                             f"this process holds rows {self.shard.start}..{self.shard.stop} of shape "
                             f"{tuple(self.embeddings.shape)}. Resume with the same data and number of processes.")
        self.embeddings.copy_(torch.as_tensor(state["embeddings"], dtype=self.dtype))
        self.row_versions[:] = state["row_versions"]
        if self._ivf is not None:
            self._ivf.update(np.arange(self.shard.start, self.shard.stop), self.embeddings.float().cpu().numpy())

    # -- search ------------------------------------------------------------------------------

    def _columns_top_k(self, scores: torch.Tensor, columns: torch.Tensor | None, queries: torch.Tensor, k: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """This shard's top-``k`` (values, global rows) of each query, merged over the shards.
        ``columns``: the global row of each score column (``None``: every row of the shard, in order)."""
        k_local = min(k, scores.shape[1])
        if self.candidate_search == "faiss" and columns is None:
            from sr3_env._faiss import knn_inner_product

            local = knn_inner_product(queries, self.embeddings, k_local)
            values = torch.gather(scores, 1, local)
        else:
            values, local = top_k(scores, k_local)
        rows = local + self.shard.start if columns is None else columns[local]
        if not self.shard.distributed:
            return values, rows
        pad = k - k_local  # shards may hold fewer than k rows: pad so every shard sends (B, k)
        if pad:
            values = torch.cat([values, values.new_full((values.shape[0], pad), float("-inf"))], dim=1)
            rows = torch.cat([rows, rows.new_full((rows.shape[0], pad), -1)], dim=1)
        return merge_top_k(self.shard.all_gather(values), self.shard.all_gather(rows), k)

    def _rank_gold(self, scores: torch.Tensor, columns: torch.Tensor | None, top_values: torch.Tensor,
                   gold: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each gold row's score, and 1 + the number of rows scoring strictly higher, from the same
        score matrix; with shards, the owner's score is shared and the counts are summed (all-reduce).

        A gold scoring at least the k-th best score has every row above it in the top-K list, so
        its rank is counted there; only the others need a pass over the whole score row."""
        batch = scores.shape[0]
        width = max((g.size for g in gold), default=0)
        width = int(self.shard.all_sum(torch.tensor([width], device=self.device)).item()) if self.shard.distributed \
            else width  # every shard must run the same collectives
        if width == 0:
            return [np.empty(0, np.int64)] * batch, [np.empty(0, np.float32)] * batch
        padded = np.full((batch, width), -1, dtype=np.int64)
        for b, g in enumerate(gold):
            padded[b, :g.size] = g
        if columns is None:  # every row of the shard, in order
            position = padded - self.shard.start
            owned = (padded >= self.shard.start) & (padded < self.shard.stop)
            position[~owned] = 0
        else:  # a sorted subset of the shard's rows, which holds every gold row of the shard
            column_rows = columns.cpu().numpy()
            position = np.clip(np.searchsorted(column_rows, padded), 0, len(column_rows) - 1)
            owned = (padded >= 0) & (column_rows[position] == padded)
        gold_score = torch.gather(scores, 1, torch.as_tensor(position, device=scores.device))
        gold_score = self.shard.all_sum(gold_score * torch.as_tensor(owned, device=scores.device))  # (B, W)
        in_top = gold_score >= top_values[:, -1:]  # (B, W); the same on every shard
        counts = torch.zeros((batch, width), dtype=torch.int64, device=scores.device)
        for j in range(width):  # a pass over (B', N) per gold column, for the B' golds below the top-K
            below = (~in_top[:, j]).nonzero().flatten()
            if below.numel():
                counts[below, j] = (scores[below] > gold_score[below, j:j + 1]).sum(dim=1)
        counts = self.shard.all_sum(counts)
        top_counts = (top_values.unsqueeze(1) > gold_score.unsqueeze(2)).sum(dim=2)  # (B, W)
        ranks_np = (torch.where(in_top, top_counts, counts) + 1).cpu().numpy()
        scores_np = gold_score.cpu().numpy()
        return [ranks_np[b, :g.size] for b, g in enumerate(gold)], [scores_np[b, :g.size] for b, g in enumerate(gold)]

    def _check_gold(self, gold_rows: Sequence[Any], batch: int) -> list[np.ndarray]:
        if len(gold_rows) != batch:
            raise ValueError(f"gold_rows must hold one entry per query: {batch} queries, {len(gold_rows)} entries.")
        gold = [np.asarray(g, dtype=np.int64).reshape(-1) for g in gold_rows]
        every = np.concatenate(gold) if gold else np.empty(0, np.int64)
        if every.size and (every.min() < 0 or every.max() >= len(self)):
            bad = int(every[(every < 0) | (every >= len(self))][0])
            raise ValueError(f"gold row {bad} is outside the index (0..{len(self) - 1}).")
        return gold

    def _candidate_columns(self, queries: torch.Tensor, gold: list[np.ndarray], k: int) -> tuple[torch.Tensor | None, int]:
        """With ``"ivf"``: the sorted rows of this shard to score exactly (every shard's approximate
        candidates, merged, plus the gold rows), after re-encoding those that are stale, and how
        many were re-encoded. ``None``: score every row."""
        if self._ivf is None:
            return None, 0
        count = min(self.ann_candidates or 10 * k, len(self.shard))
        values, rows = self._ivf.search(queries.float().cpu().numpy(), count)
        rows = torch.as_tensor(rows, device=self.device)
        if self.shard.distributed:
            _, rows = merge_top_k(self.shard.all_gather(torch.as_tensor(values, device=self.device)),
                                  self.shard.all_gather(rows), count)
        wanted = np.unique(np.concatenate([rows.cpu().numpy().reshape(-1), *gold]))
        wanted = wanted[(wanted >= self.shard.start) & (wanted < self.shard.stop)]
        reencoded = int(self.refresh_rows(wanted).size) if self.refresh_policy in ("lazy", "periodic") else 0
        return torch.as_tensor(wanted, device=self.device), reencoded

    def search(self, queries: Any, gold_rows: Sequence[Any], k: int = 100) -> SearchResult:
        """Score a batch of query embeddings and rank their gold documents (module docstring).

        Args:
            queries: (B, dim) array or tensor (used as given: normalise it first for cosine).
            gold_rows: B sequences of row indices, the relevant documents of each query.
            k: number of top candidates per query (capped at the corpus size).

        With ``candidate_search="ivf"`` only the approximate candidates and the gold rows are scored:
        top-K and ranks are exact among them, and a gold rank counts only the candidates above it
        (exact when every row above it is a candidate; docs/scaling.md measures how often).
        With a process group the call is collective; each process gets the results of its own queries.
        """
        q = torch.as_tensor(np.asarray(queries, dtype=np.float32) if not torch.is_tensor(queries) else queries)
        q = q.detach().to(self.device, self.dtype)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (batch, {self.dim}), got {tuple(q.shape)}.")
        gold = self._check_gold(gold_rows, q.shape[0])
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        q, own = self.shard.gather_rows(q)  # every shard scores every process's queries
        if self.shard.distributed:
            gold = [g for per_rank in self.shard.all_gather_objects(gold) for g in per_rank]

        reencoded = 0
        if self.refresh_policy == "full" or (
                self.refresh_policy == "periodic"
                and int(self.encoder.version) - self._last_full_refresh_version >= int(self.refresh_every)):
            reencoded += self.refresh_all()

        columns, count = self._candidate_columns(q, gold, k)  # None: every row of the shard
        reencoded += count
        if columns is None:
            scores = _matmul_fp32(q, self.embeddings)  # (B, N_shard): every row, stale or not
        else:
            scores = _matmul_fp32(q, self.embeddings[columns - self.shard.start])
        values, top = self._columns_top_k(scores, columns, q, k)  # (B, k) candidates C
        if self._ivf is None and self.refresh_policy in ("lazy", "periodic"):
            fresh = np.empty(0, np.int64)
            if self.stale_mask().any():  # stale rows of C ∪ G held here, deduplicated across the batch
                fresh = self.refresh_rows(np.concatenate([top.cpu().numpy().reshape(-1), *gold]))
            reencoded += int(fresh.size)
            if fresh.size:
                local = torch.as_tensor(fresh - self.shard.start, device=self.device)
                scores[:, local] = _matmul_fp32(q, self.embeddings[local])
            if fresh.size or self.shard.distributed:  # (every shard merges again if any shard changed)
                values, top = self._columns_top_k(scores, columns, q, k)

        gold_ranks, gold_scores = self._rank_gold(scores, columns, values, gold)
        if self.refresh_budget:
            reencoded += self.refresh_stalest(self.refresh_budget)
        stats = self.stats(reencoded)
        return SearchResult(top_rows=top[own].cpu().numpy().astype(np.int64), top_scores=values[own].cpu().numpy(),
                            gold_ranks=gold_ranks[own], gold_scores=gold_scores[own], stats=stats)
