"""Approximate candidate search (``candidate_search="ivf"``): FAISS IVF candidates re-scored exactly."""

from __future__ import annotations

import numpy as np
import pytest

from sr3_env import LazyIndex

pytest.importorskip("faiss")

N, DIM = 3000, 24


class TableEncoder:
    """``"doc{i}"`` -> a random unit vector that moves a little with every version."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.base = rng.standard_normal((N, DIM)).astype(np.float32)
        self.drift = rng.standard_normal((4, N, DIM)).astype(np.float32)
        self.dim, self.version = DIM, 0

    def encode_documents(self, texts):
        rows = np.array([int(t[3:]) for t in texts])
        out = self.base[rows] + 0.3 * self.drift[self.version % 4, rows]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def rows(self, rows):
        return self.encode_documents([f"doc{i}" for i in rows])


TEXTS = [f"doc{i}" for i in range(N)]


def batch(encoder, size=16, seed=0):
    rng = np.random.default_rng(seed)
    gold = [rng.choice(N, size=2, replace=False) for _ in range(size)]
    q = encoder.rows([g[0] for g in gold]) + 0.08 * rng.standard_normal((size, DIM))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), gold


def test_ivf_visiting_every_cell_equals_the_exact_search():
    encoder = TableEncoder()
    exact = LazyIndex(TEXTS, encoder, device="cpu")
    ivf = LazyIndex(TEXTS, encoder, device="cpu", candidate_search="ivf", ivf_lists=16, ivf_probe=16, ann_candidates=300)
    q, gold = batch(encoder)
    a, b = exact.search(q, gold, k=10), ivf.search(q, gold, k=10)
    np.testing.assert_array_equal(a.top_rows, b.top_rows)
    np.testing.assert_allclose(a.top_scores, b.top_scores, atol=1e-6)
    for x, y in zip(a.gold_ranks, b.gold_ranks):  # ranks counted among the candidates: exact within them
        np.testing.assert_array_equal(np.minimum(x, 301), np.minimum(y, 301))


def test_ivf_ranks_never_exceed_exact_ranks_and_follow_the_refreshed_rows():
    encoder = TableEncoder()
    ivf = LazyIndex(TEXTS, encoder, device="cpu", candidate_search="ivf", ivf_lists=32, ivf_probe=8, ann_candidates=100)
    for step in range(3):
        q, gold = batch(encoder, seed=step)
        found = ivf.search(q, gold, k=10)
        exact_scores = q @ encoder.rows(np.arange(N)).T  # every row under the current encoder
        assert (found.stats.rows_reencoded > 0) == (step > 0)  # lazy: stale candidates and gold re-encoded
        for b, rows in enumerate(gold):
            exact_rank = 1 + (exact_scores[b] > exact_scores[b, rows][:, None]).sum(1)
            assert np.all(found.gold_ranks[b] <= exact_rank)  # a lower bound: only candidates are counted
            np.testing.assert_allclose(found.gold_scores[b], exact_scores[b, rows], atol=1e-5)  # gold re-encoded
            np.testing.assert_allclose(found.top_scores[b], exact_scores[b, found.top_rows[b]], atol=1e-5)
        hits = np.mean([len(set(found.top_rows[b]) & set(np.argsort(-exact_scores[b])[:10])) / 10 for b in range(len(q))])
        assert hits > 0.8  # candidate recall@10 of the approximate search on easy data
        encoder.version += 1
    assert ivf.stats().rows_reencoded_total > 0
    # the IVF structure holds the re-encoded vectors: refreshed rows are found by their new vectors
    fresh = np.flatnonzero(~ivf.stale_mask())[:5]
    _, ids = ivf._ivf.search(ivf.embeddings[fresh].numpy(), 1)
    np.testing.assert_array_equal(ids[:, 0], fresh)


def test_bad_ivf_settings_are_refused():
    encoder = TableEncoder()
    with pytest.raises(ValueError, match="ivf_lists"):
        LazyIndex(TEXTS, encoder, device="cpu", candidate_search="ivf", ivf_lists=N + 1)
    with pytest.raises(ValueError, match="ivf_probe"):
        LazyIndex(TEXTS, encoder, device="cpu", candidate_search="ivf", ivf_probe=0)
    with pytest.raises(ValueError, match="ann_candidates"):
        LazyIndex(TEXTS, encoder, device="cpu", candidate_search="ivf", ann_candidates=0)
