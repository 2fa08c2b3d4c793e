"""Rewards: pure functions of the ranks the gold documents got.

Every function here takes the 1-based ranks of a query's relevant documents (``ranks``), their
graded relevance (``relevance``, the qrels score, all > 0) and the corpus size ``n_docs``, and
returns a float. They never look at embeddings, so they are cheap to test by hand.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence

RewardFn = Callable[[Sequence[int], Sequence[int], int], float]
"""A reward: ``fn(ranks, relevance, n_docs) -> float`` (the 1-based ranks of a query's relevant documents,
their qrels grades, the corpus size)."""


def reciprocal_rank(ranks: Sequence[int], relevance: Sequence[int], n_docs: int) -> float:
    """1 / (best rank of any relevant document): 1.0 when a relevant document is first."""
    return 1.0 / min(ranks)


def ndcg_at_k(ranks: Sequence[int], relevance: Sequence[int], n_docs: int, k: int = 10) -> float:
    """nDCG@k with linear gains (the qrels score), as trec_eval's ``ndcg_cut`` and BEIR compute it.

    DCG = sum over relevant documents ranked within k of ``rel / log2(rank + 1)``; IDCG is the DCG
    of the ideal order (relevance descending at ranks 1, 2, ...).
    """
    dcg = sum(rel / math.log2(rank + 1) for rank, rel in zip(ranks, relevance) if rank <= k)
    ideal = sorted(relevance, reverse=True)[:k]
    idcg = sum(rel / math.log2(position + 2) for position, rel in enumerate(ideal))
    return dcg / idcg


def recall_at_k(ranks: Sequence[int], relevance: Sequence[int], n_docs: int, k: int = 100) -> float:
    """Fraction of the relevant documents ranked within the first k."""
    return sum(1 for rank in ranks if rank <= k) / len(ranks)


def log_rank(ranks: Sequence[int], relevance: Sequence[int], n_docs: int) -> float:
    """``1 - log(best rank) / log(n_docs)``: 1 at rank 1, 0 at the bottom, informative all the way down."""
    if n_docs <= 1:
        return 1.0
    return 1.0 - math.log(min(ranks)) / math.log(n_docs)


_NAMED: dict[str, RewardFn] = {
    "reciprocal_rank": reciprocal_rank,
    "log_rank": log_rank,
}
_WITH_CUTOFF: dict[str, Callable[..., float]] = {"ndcg": ndcg_at_k, "recall": recall_at_k}

STANDARD_METRICS = ("reciprocal_rank", "ndcg@10", "recall@100", "log_rank")
"""The metrics reported in every step's ``info["metrics"]``."""


def reward_names() -> list[str]:
    """Names `get_reward` accepts (``ndcg@k`` and ``recall@k`` take any positive k)."""
    return [*_NAMED, "ndcg@10", "recall@100"]


def get_reward(spec: str | RewardFn) -> RewardFn:
    """Turn a reward name (``"ndcg@10"``, ``"log_rank"``...) or a callable into a reward function.

    A callable must have the signature ``fn(ranks, relevance, n_docs) -> float``; its output is
    checked on every call by the environment.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"reward must be a name or a callable, got {type(spec).__name__}")
    name = spec.strip().lower()
    if name in _NAMED:
        return _NAMED[name]
    base, sep, cutoff = name.partition("@")
    if sep and base in _WITH_CUTOFF:
        if not cutoff.isdigit() or int(cutoff) < 1:
            raise ValueError(f"reward {spec!r}: the cut-off after '@' must be a positive integer, e.g. '{base}@10'")
        fn, k = _WITH_CUTOFF[base], int(cutoff)

        def reward_at_k(ranks: Sequence[int], relevance: Sequence[int], n_docs: int) -> float:
            return fn(ranks, relevance, n_docs, k=k)

        reward_at_k.__name__ = f"{base}@{k}"
        return reward_at_k
    close = difflib.get_close_matches(name, reward_names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown reward {spec!r}.{hint} Choose one of {reward_names()} or pass a callable fn(ranks, relevance, n_docs) -> float.")
