"""LazyIndex invariants (docs/environment.md, Description): exactness under `full`, fresh candidates under `lazy`, bounded
re-encoding, and no re-encoding at all while the encoder is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr3_env import EncoderError, HashingEncoder, LazyIndex

TEXTS = [f"document {i} about topic {i % 17} and subject {i % 5} with word{i % 23}" for i in range(200)]


class CountingEncoder(HashingEncoder):
    """The hashing encoder, counting the texts it encodes."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim=dim)
        self.encoded = 0

    def encode_documents(self, texts):
        self.encoded += len(texts)
        return super().encode_documents(texts)


def queries_and_gold(encoder, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    gold = [rng.choice(len(TEXTS), size=2, replace=False) for _ in range(batch)]
    q = encoder.encode_documents([TEXTS[g[0]] for g in gold]) + 0.3 * rng.standard_normal((batch, encoder.dim))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), gold


def exact_ranks(encoder, q, gold):
    scores = q @ encoder.encode_documents(TEXTS).T
    return [np.array([1 + (scores[b] > scores[b, g]).sum() for g in gs]) for b, gs in enumerate(gold)], scores


def test_full_refresh_gives_exact_ranks_after_the_encoder_changes():
    encoder = HashingEncoder(dim=32)
    index = LazyIndex(TEXTS, encoder, refresh="full")
    encoder.reseed(5)
    q, gold = queries_and_gold(encoder)
    result = index.search(q, gold, k=10)
    expected, scores = exact_ranks(encoder, q, gold)
    for got, want in zip(result.gold_ranks, expected):
        np.testing.assert_allclose(got, want, atol=1)  # ties and float order aside
    np.testing.assert_allclose(result.top_scores, -np.sort(-scores, axis=1)[:, :10], atol=1e-5)
    assert result.stats.stale_rows == 0


def test_lazy_refresh_makes_candidates_and_gold_fresh_and_exactly_ordered():
    encoder = HashingEncoder(dim=32)
    index = LazyIndex(TEXTS, encoder, refresh="lazy")
    encoder.reseed(9)
    q, gold = queries_and_gold(encoder)
    result = index.search(q, gold, k=15)
    current = encoder.encode_documents(TEXTS)
    touched = np.unique(np.concatenate([result.top_rows.ravel(), *gold]))
    np.testing.assert_allclose(index.embeddings[touched].numpy(), current[touched], atol=1e-6)
    assert (index.row_versions[touched] == encoder.version).all()
    for b in range(len(q)):  # the order among candidates and gold equals the current encoder's order
        rows = np.unique(np.concatenate([result.top_rows[b], gold[b]]))
        stored = index.embeddings[rows].numpy() @ q[b]
        np.testing.assert_array_equal(np.argsort(-stored, kind="stable"), np.argsort(-(current[rows] @ q[b]), kind="stable"))
    assert 0 < result.stats.stale_fraction < 1


def test_rows_reencoded_per_search_are_bounded_and_deduplicated():
    encoder = CountingEncoder()
    index = LazyIndex(TEXTS, encoder, refresh="lazy")
    encoder.reseed(1)
    q, gold = queries_and_gold(encoder, batch=4)
    encoder.encoded = 0
    result = index.search(q, gold, k=10)
    assert 0 < result.stats.rows_reencoded == encoder.encoded <= 4 * (10 + 2)
    encoder.reseed(2)
    same = np.repeat(q[:1], 3, axis=0)  # three identical queries share their candidates
    encoder.encoded = 0
    result = index.search(same, [gold[0]] * 3, k=10)
    assert 0 < encoder.encoded == result.stats.rows_reencoded <= 10 + 2


def test_an_unchanged_encoder_never_reencodes():
    encoder = CountingEncoder()
    for policy, extra in [("lazy", {}), ("full", {}), ("periodic", {"refresh_every": 1}), ("frozen", {})]:
        index = LazyIndex(TEXTS, encoder, refresh=policy, refresh_budget=5, **extra)
        encoder.encoded = 0
        for seed in range(5):
            q, gold = queries_and_gold(encoder, seed=seed)
            encoder.encoded = 0
            stats = index.search(q, gold, k=20).stats
            assert stats.rows_reencoded == 0 and stats.encoder_calls == 0
            assert encoder.encoded == 0, policy


def test_frozen_never_reencodes_and_periodic_refreshes_every_n_versions():
    encoder = CountingEncoder()
    frozen = LazyIndex(TEXTS, encoder, refresh="frozen")
    periodic = LazyIndex(TEXTS, encoder, refresh="periodic", refresh_every=2)
    full_refreshes = []
    for version in range(1, 5):
        encoder.reseed(version)
        q, gold = queries_and_gold(encoder, seed=version)
        assert frozen.search(q, gold, k=5).stats.rows_reencoded == 0
        stats = periodic.search(q, gold, k=5).stats
        full_refreshes.append(stats.stale_rows == 0)
    assert full_refreshes == [False, True, False, True]
    assert frozen.stale_mask().all()


def test_refresh_budget_cycles_the_corpus_to_fresh():
    encoder = HashingEncoder(dim=32)
    index = LazyIndex(TEXTS, encoder, refresh="lazy", refresh_budget=50)
    encoder.reseed(3)
    fractions = []
    for seed in range(5):
        q, gold = queries_and_gold(encoder, batch=1, seed=seed)
        fractions.append(index.search(q, gold, k=5).stats.stale_fraction)
    assert fractions[-1] == 0.0 and fractions == sorted(fractions, reverse=True)


def test_faiss_and_torch_candidate_search_agree():
    encoder = HashingEncoder(dim=32)
    q, gold = queries_and_gold(encoder)
    by_torch = LazyIndex(TEXTS, encoder).search(q, gold, k=10)
    by_faiss = LazyIndex(TEXTS, encoder, candidate_search="faiss").search(q, gold, k=10)
    np.testing.assert_allclose(by_torch.top_scores, by_faiss.top_scores, atol=1e-5)
    assert [list(r) for r in by_torch.gold_ranks] == [list(r) for r in by_faiss.gold_ranks]


def test_oracle_query_gets_rank_one():
    encoder = HashingEncoder(dim=64)
    index = LazyIndex(TEXTS, encoder)
    rows = np.arange(0, 200, 7)
    result = index.search(index.embeddings[rows].numpy(), [[r] for r in rows], k=5)
    assert all(r[0] == 1 for r in result.gold_ranks)
    random = np.random.default_rng(0).standard_normal((len(rows), 64)).astype(np.float32)
    assert np.mean([r[0] == 1 for r in index.search(random, [[r] for r in rows], k=5).gold_ranks]) < 0.2


def test_bad_inputs_raise_useful_errors():
    encoder = HashingEncoder(dim=16)
    index = LazyIndex(TEXTS[:20], encoder)
    with pytest.raises(ValueError, match=r"\(batch, 16\)"):
        index.search(np.ones((2, 8), np.float32), [[0], [1]])
    with pytest.raises(ValueError, match="outside the index"):
        index.search(np.ones((1, 16), np.float32), [[25]])
    with pytest.raises(ValueError, match="one entry per query"):
        index.search(np.ones((2, 16), np.float32), [[0]])
    with pytest.raises(ValueError, match="periodic"):
        LazyIndex(TEXTS, encoder, refresh="periodic")
    with pytest.raises(ValueError, match="Unknown refresh"):
        LazyIndex(TEXTS, encoder, refresh="sometimes")
    with pytest.raises(EncoderError, match=r"expected \(20, 16\)"):
        LazyIndex(TEXTS[:20], encoder, embeddings=np.ones((20, 8)))

    class NaNEncoder(HashingEncoder):
        def encode_documents(self, texts):
            out = super().encode_documents(texts)
            out[0, 0] = np.nan
            return out

    with pytest.raises(EncoderError, match="NaN"):
        LazyIndex(TEXTS[:20], NaNEncoder(dim=16))


def test_index_accepts_torch_queries():
    encoder = HashingEncoder(dim=16)
    index = LazyIndex(TEXTS, encoder)
    q = torch.as_tensor(encoder.encode_documents(TEXTS[:2]))
    assert [r[0] for r in index.search(q, [[0], [1]], k=3).gold_ranks] == [1, 1]
