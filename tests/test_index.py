"""The lazily refreshed index, checked against brute-force computation with the current encoder.

Everything uses `HashingEncoder` (dim 64) over ~200 synthetic texts, on the CPU, so it is exact
up to float32 rounding and fast. ``encoder.reseed`` stands for a training step that changes the
encoder's weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_CORPUS

from sr3_env.encoders import HashingEncoder
from sr3_env.errors import EncoderError
from sr3_env.index import IndexStats, LazyIndex, SearchResult

DIM = 64
N_TEXTS = 200
DEVICE = "cpu"
TOL = 1e-5


def make_texts(n: int = N_TEXTS, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ter", "sun", "pra", "vel", "on", "dus", "rif", "ma", "zo", "quen", "bi"]
    vocab = sorted({"".join(rng.choice(syllables, size=rng.integers(2, 4))) for _ in range(400)})
    return [" ".join(rng.choice(vocab, size=rng.integers(5, 12))) + f" doc{i}" for i in range(n)]


TEXTS = make_texts()


class CountingEncoder(HashingEncoder):
    """A hashing encoder that records every text it is asked to encode."""

    def __init__(self, dim: int = DIM, seed: int = 0) -> None:
        super().__init__(dim=dim, seed=seed)
        self.seen: list[str] = []

    def encode_documents(self, texts):
        self.seen.extend(texts)
        return super().encode_documents(texts)


def build(refresh: str = "lazy", encoder: HashingEncoder | None = None, texts=TEXTS, **kwargs) -> tuple[LazyIndex, HashingEncoder]:
    encoder = encoder if encoder is not None else CountingEncoder()
    index = LazyIndex(texts, encoder, refresh=refresh, device=DEVICE, **kwargs)
    if isinstance(encoder, CountingEncoder):
        encoder.seen.clear()
    return index, encoder


def random_queries(batch: int, seed: int = 1) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal((batch, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def text_queries(encoder, gold: list[np.ndarray], texts=TEXTS, seed: int = 2) -> np.ndarray:
    """Queries made of half the words of their first gold document: close to it, not equal."""
    rng = np.random.default_rng(seed)
    words = [texts[int(g[0])].split() for g in gold]
    picked = [" ".join(rng.choice(w, size=max(2, len(w) // 2), replace=False)) for w in words]
    return encoder.encode_queries(picked)


def random_gold(batch: int, n: int = N_TEXTS, seed: int = 3, max_gold: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(n, size=rng.integers(1, max_gold + 1), replace=False) for _ in range(batch)]


def exact_scores(encoder, queries, texts=TEXTS) -> np.ndarray:
    """Brute force: encode every text with the current encoder and score in float64."""
    corpus = encoder.encode_documents(texts).astype(np.float64)
    return np.asarray(queries, dtype=np.float64) @ corpus.T


def check_against_exact(result: SearchResult, encoder, queries, gold, k: int, texts=TEXTS) -> None:
    """Top-K and gold ranks equal the brute-force ones, ties (within TOL) aside."""
    exact = exact_scores(encoder, queries, texts)
    for b in range(len(queries)):
        row_scores = exact[b]
        best = np.sort(row_scores)[::-1][:k]
        np.testing.assert_allclose(result.top_scores[b], best, atol=TOL)
        np.testing.assert_allclose(row_scores[result.top_rows[b]], result.top_scores[b], atol=TOL)
        assert len(set(result.top_rows[b].tolist())) == k
        for rank, row, score in zip(result.gold_ranks[b], gold[b], result.gold_scores[b]):
            s = row_scores[row]
            assert abs(score - s) < TOL
            lo = 1 + int((row_scores > s + TOL).sum())
            hi = 1 + int((row_scores > s - TOL).sum())
            assert lo <= rank <= hi, (b, row, rank, lo, hi)


def fresh_rows_match_encoder(index: LazyIndex, encoder, rows) -> bool:
    rows = np.asarray(sorted(set(int(r) for r in rows)))
    fresh = encoder.encode_documents([index.texts[i] for i in rows])
    stored = index.embeddings[torch.as_tensor(rows)].cpu().numpy()
    return bool(np.allclose(stored, fresh, atol=1e-6)) and bool((index.row_versions[rows] == encoder.version).all())


# -- full refresh: exact ------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 10, 50])
def test_full_refresh_is_exact_after_reseed(k):
    index, encoder = build("full")
    gold = random_gold(8)
    for seed in (11, 12, 13):
        encoder.reseed(seed)
        queries = np.concatenate([random_queries(4, seed), text_queries(encoder, gold[4:], seed=seed)])
        result = index.search(queries, gold, k=k)
        check_against_exact(result, encoder, queries, gold, k)
        assert result.stats.stale_rows == 0 and result.stats.stale_fraction == 0.0
        assert result.stats.rows_reencoded == N_TEXTS
        assert fresh_rows_match_encoder(index, encoder, range(N_TEXTS))


def test_index_without_reseed_is_exact_under_every_policy():
    gold = random_gold(5)
    for refresh, extra in [("lazy", {}), ("full", {}), ("frozen", {}), ("periodic", {"refresh_every": 3})]:
        index, encoder = build(refresh, **extra)
        queries = text_queries(encoder, gold)
        check_against_exact(index.search(queries, gold, k=20), encoder, queries, gold, 20)


def test_k_is_capped_at_corpus_size():
    index, encoder = build("full", texts=TEXTS[:30])
    gold = random_gold(2, n=30)
    result = index.search(random_queries(2), gold, k=1000)
    assert result.top_rows.shape == (2, 30) and result.top_scores.shape == (2, 30)
    assert result.top_rows.dtype == np.int64 and result.top_scores.dtype == np.float32
    check_against_exact(result, encoder, random_queries(2), gold, 30, texts=TEXTS[:30])
    # the whole corpus is ranked: a gold's rank is its position in top_rows
    for b, g in enumerate(gold):
        for rank, row in zip(result.gold_ranks[b], g):
            assert abs(result.top_scores[b][rank - 1] - result.gold_scores[b][list(g).index(row)]) < TOL


# -- lazy refresh ------------------------------------------------------------------------------


def test_lazy_makes_candidates_and_gold_fresh_and_exactly_ordered():
    index, encoder = build("lazy")
    k = 15
    for seed in (21, 22, 23):
        encoder.reseed(seed)
        gold = random_gold(6, seed=seed)
        queries = text_queries(encoder, gold, seed=seed)
        result = index.search(queries, gold, k=k)
        touched = set(result.top_rows.reshape(-1).tolist()).union(*(set(g.tolist()) for g in gold))
        assert fresh_rows_match_encoder(index, encoder, touched)
        assert result.stats.stale_rows > 0  # the rest of the corpus was left alone
        exact = exact_scores(encoder, queries)
        for b in range(len(gold)):
            # scores of C ∪ G are the current encoder's, so their order is the current order
            rows = np.array(sorted(set(result.top_rows[b].tolist()) | set(gold[b].tolist())))
            np.testing.assert_allclose(result.top_scores[b], exact[b, result.top_rows[b]], atol=TOL)
            np.testing.assert_allclose(result.gold_scores[b], exact[b, gold[b]], atol=TOL)
            assert np.all(np.diff(result.top_scores[b]) <= TOL)  # best first
            order_index = rows[np.argsort(-exact[b, rows], kind="stable")]
            stored = index.embeddings[torch.as_tensor(rows)].double().numpy() @ queries[b].astype(np.float64)
            order_stored = rows[np.argsort(-stored, kind="stable")]
            np.testing.assert_allclose(exact[b, order_stored], exact[b, order_index], atol=TOL)
            # a gold inside the top-K sits at its rank in top_rows (ties aside)
            for rank, score in zip(result.gold_ranks[b], result.gold_scores[b]):
                if rank <= k:
                    assert abs(result.top_scores[b][rank - 1] - score) < TOL


def test_lazy_reencodes_exactly_the_stale_rows_of_candidates_and_gold():
    index, encoder = build("lazy")
    encoder.reseed(5)
    k = 10
    gold = random_gold(4, seed=7)
    queries = random_queries(4, seed=8)
    # the candidates the index will pick: top-K over the stored (stale) rows
    stale_scores = torch.as_tensor(queries) @ index.embeddings.T
    candidates = torch.topk(stale_scores, k, dim=1).indices.numpy()
    expected = set(candidates.reshape(-1).tolist()).union(*(set(g.tolist()) for g in gold))
    result = index.search(queries, gold, k=k)
    assert result.stats.rows_reencoded == len(expected)
    assert set(np.flatnonzero(~index.stale_mask()).tolist()) == expected
    assert sorted(encoder.seen) == sorted(TEXTS[i] for i in expected)  # each row once


def test_rows_reencoded_are_bounded_by_k_plus_gold_per_query():
    index, encoder = build("lazy")
    k = 7
    for seed in range(5):
        encoder.reseed(100 + seed)
        gold = random_gold(5, seed=seed)
        result = index.search(random_queries(5, seed=seed), gold, k=k)
        assert 0 < result.stats.rows_reencoded <= sum(k + len(g) for g in gold)
        assert len(encoder.seen) == len(set(encoder.seen)) == result.stats.rows_reencoded
        encoder.seen.clear()


def test_identical_queries_in_a_batch_reencode_each_row_once():
    index, encoder = build("lazy")
    encoder.reseed(1)
    k = 12
    q = random_queries(1, seed=4)
    g = np.array([0, 1])
    result = index.search(np.repeat(q, 2, axis=0), [g, g], k=k)
    once = len(set(result.top_rows[0].tolist()) | {0, 1})
    assert result.stats.rows_reencoded == once <= k + 2
    assert len(encoder.seen) == once == len(set(encoder.seen))
    np.testing.assert_array_equal(result.top_rows[0], result.top_rows[1])
    np.testing.assert_array_equal(result.gold_ranks[0], result.gold_ranks[1])
    # searching again only re-encodes rows never seen before (stale rows that the refreshed ones
    # no longer outscore), and it converges: then nothing is left to re-encode
    seen = set(encoder.seen)
    for _ in range(N_TEXTS // k + 1):
        encoder.seen.clear()
        again = index.search(np.repeat(q, 2, axis=0), [g, g], k=k)
        assert not seen & set(encoder.seen) and len(encoder.seen) == again.stats.rows_reencoded
        seen |= set(encoder.seen)
        if again.stats.rows_reencoded == 0:
            break
    assert again.stats.rows_reencoded == 0
    assert fresh_rows_match_encoder(index, encoder, again.top_rows.reshape(-1))


@pytest.mark.parametrize("refresh, extra", [("lazy", {}), ("full", {}), ("frozen", {}),
                                            ("periodic", {"refresh_every": 1}), ("lazy", {"refresh_budget": 50})])
def test_unchanged_encoder_never_reencodes(refresh, extra):
    index, encoder = build(refresh, **extra)
    for step in range(20):
        gold = random_gold(4, seed=step)
        result = index.search(random_queries(4, seed=step), gold, k=25)
        assert result.stats.rows_reencoded == 0
    assert result.stats.rows_reencoded_total == 0 and index.rows_reencoded_total == 0
    assert result.stats.encoder_calls == 0 and index.encoder_calls == 0
    assert result.stats.stale_fraction == 0.0
    assert encoder.seen == []


# -- frozen, periodic, budget ----------------------------------------------------------------


def test_frozen_never_reencodes():
    index, encoder = build("frozen", refresh_budget=0)
    before = index.embeddings.clone()
    for seed in range(4):
        encoder.reseed(seed + 1)
        gold = random_gold(3, seed=seed)
        result = index.search(random_queries(3, seed=seed), gold, k=10)
        assert result.stats.rows_reencoded == 0
        assert result.stats.stale_fraction == 1.0 and result.stats.stale_rows == N_TEXTS
    assert encoder.seen == [] and index.encoder_calls == 0
    assert torch.equal(before, index.embeddings)
    # frozen ranks are the exact ranks under the *original* encoder
    original = HashingEncoder(DIM, seed=0)
    queries = random_queries(3, seed=9)
    gold = random_gold(3, seed=9)
    check_against_exact(index.search(queries, gold, k=10), original, queries, gold, 10)


def test_periodic_does_a_full_refresh_every_n_versions():
    index, encoder = build("periodic", refresh_every=2)
    k = 5
    full_at = []
    for version in range(1, 7):
        encoder.reseed(1000 + version)
        assert encoder.version == version
        gold = random_gold(2, seed=version)
        queries = random_queries(2, seed=version)
        result = index.search(queries, gold, k=k)
        if result.stats.stale_rows == 0:
            full_at.append(version)
            assert result.stats.rows_reencoded == N_TEXTS
            check_against_exact(result, encoder, queries, gold, k)
        else:
            assert result.stats.rows_reencoded <= sum(k + len(g) for g in gold)
    assert full_at == [2, 4, 6]


def test_periodic_counts_versions_since_the_last_full_refresh():
    index, encoder = build("periodic", refresh_every=3)
    encoder.reseed(1)
    encoder.reseed(2)
    assert index.search(random_queries(1), [[0]], k=3).stats.stale_rows > 0  # 2 versions: lazy
    encoder.reseed(3)
    assert index.search(random_queries(1), [[0]], k=3).stats.stale_rows == 0  # 3: full
    encoder.reseed(4)
    assert index.search(random_queries(1), [[0]], k=3).stats.stale_rows > 0


def test_refresh_budget_drives_stale_fraction_to_zero():
    budget = 30
    index, encoder = build("lazy", refresh_budget=budget)
    encoder.reseed(7)
    fractions = []
    for step in range(math.ceil(N_TEXTS / budget) + 1):
        result = index.search(random_queries(1, seed=step), [[step]], k=3)
        fractions.append(result.stats.stale_fraction)
        assert result.stats.rows_reencoded <= 3 + 1 + budget
    assert all(a >= b for a, b in zip(fractions, fractions[1:]))
    assert fractions[0] <= 1 - budget / N_TEXTS
    assert fractions[-1] == 0.0
    assert index.rows_reencoded_total == N_TEXTS
    assert fresh_rows_match_encoder(index, encoder, range(N_TEXTS))


def test_refresh_budget_takes_the_stalest_rows_first():
    index, encoder = build("lazy")
    encoder.reseed(1)
    newer = np.arange(0, 100)
    index.refresh_rows(newer)  # rows 0..99 at version 1, rows 100..199 at version 0
    encoder.reseed(2)  # everything stale now
    assert index.stale_mask().all()
    assert index.refresh_stalest(40) == 40
    refreshed = np.flatnonzero(index.row_versions == 2)
    assert len(refreshed) == 40 and (refreshed >= 100).all()  # the version-0 rows went first
    assert index.refresh_stalest(0) == 0
    assert index.refresh_stalest(10_000) == N_TEXTS - 40
    assert not index.stale_mask().any()
    assert index.refresh_stalest(5) == 0


# -- candidate search, stats ----------------------------------------------------------------


def test_faiss_and_torch_candidate_search_agree():
    pytest.importorskip("faiss")
    gold = random_gold(6, seed=5)
    results = {}
    for search in ("torch", "faiss"):
        index, encoder = build("lazy", encoder=HashingEncoder(DIM, seed=0), candidate_search=search)
        queries = text_queries(encoder, gold)
        results[search] = [index.search(queries, gold, k=10)]
        encoder.reseed(3)
        results[search].append(index.search(queries, gold, k=10))
    for torch_result, faiss_result in zip(results["torch"], results["faiss"]):
        np.testing.assert_allclose(torch_result.top_scores, faiss_result.top_scores, atol=TOL)
        for a, b in zip(torch_result.top_rows, faiss_result.top_rows):
            assert set(a.tolist()) == set(b.tolist())
        for a, b in zip(torch_result.gold_ranks, faiss_result.gold_ranks):
            np.testing.assert_array_equal(a, b)


def test_faiss_candidate_search_with_full_refresh_is_exact():
    pytest.importorskip("faiss")
    index, encoder = build("full", candidate_search="faiss")
    encoder.reseed(4)
    gold = random_gold(3)
    queries = random_queries(3)
    check_against_exact(index.search(queries, gold, k=8), encoder, queries, gold, 8)


def test_stats_fields():
    index, encoder = build("lazy", encode_batch_size=4)
    start = index.stats()
    assert isinstance(start, IndexStats)
    assert start.as_dict() == {"rows_reencoded": 0, "rows_reencoded_total": 0, "stale_rows": 0, "stale_fraction": 0.0,
                               "encoder_calls": 0, "encoder_version": 0}
    encoder.reseed(9)
    assert index.stats().stale_rows == N_TEXTS and index.stats().stale_fraction == 1.0
    assert index.stats().encoder_version == 1
    total = calls = 0
    for step in range(3):
        result = index.search(random_queries(2, seed=step), random_gold(2, seed=step), k=6)
        n = result.stats.rows_reencoded
        total += n
        calls += math.ceil(n / 4)  # one refresh_rows per search, in batches of 4
        s = result.stats
        assert s.rows_reencoded_total == total == index.rows_reencoded_total
        assert s.encoder_calls == calls == index.encoder_calls
        assert s.stale_rows == int(index.stale_mask().sum()) == N_TEXTS - total
        assert s.stale_fraction == pytest.approx(s.stale_rows / N_TEXTS)
        assert s.encoder_version == encoder.version == 1
    assert len(index) == N_TEXTS and index.dim == DIM


def test_given_embeddings_skip_the_build_and_torch_queries_work():
    encoder = CountingEncoder()
    corpus = encoder.encode_documents(TEXTS)
    encoder.seen.clear()
    index = LazyIndex(TEXTS, encoder, embeddings=corpus, device=DEVICE)
    assert encoder.seen == []
    gold = random_gold(3)
    q = random_queries(3)
    a = index.search(q, gold, k=5)
    b = index.search(torch.as_tensor(q), gold, k=5)
    np.testing.assert_array_equal(a.top_rows, b.top_rows)
    check_against_exact(a, encoder, q, gold, 5)
    empty = index.search(q[:1], [[]], k=5)
    assert empty.gold_ranks[0].size == 0 and empty.gold_scores[0].size == 0


def test_tiny_corpus_index_retrieves_lexical_matches():
    texts = [f"{d['title']}\n{d['text']}" for d in TINY_CORPUS]
    encoder = HashingEncoder(DIM)
    index = LazyIndex(texts, encoder, device=DEVICE)
    q = encoder.encode_queries(["programming language with dynamic typing"])
    result = index.search(q, [[4]], k=3)
    assert result.gold_ranks[0].tolist() == [1]
    assert result.top_rows[0][0] == 4


# -- bad inputs ------------------------------------------------------------------------------


def test_bad_inputs_raise_useful_value_errors():
    index, _ = build("lazy")
    with pytest.raises(ValueError, match=rf"queries must have shape \(batch, {DIM}\), got \(2, 63\)"):
        index.search(np.zeros((2, DIM - 1), np.float32), [[0], [1]])
    with pytest.raises(ValueError, match="queries must have shape"):
        index.search(np.zeros(DIM, np.float32), [[0]])
    with pytest.raises(ValueError, match=rf"gold row {N_TEXTS} is outside the index \(0..{N_TEXTS - 1}\)"):
        index.search(random_queries(1), [[N_TEXTS]])
    with pytest.raises(ValueError, match="gold row -1 is outside"):
        index.search(random_queries(1), [[-1]])
    with pytest.raises(ValueError, match="one entry per query: 2 queries, 1 entries"):
        index.search(random_queries(2), [[0]])
    for k in (0, -3):
        with pytest.raises(ValueError, match=f"k must be at least 1, got {k}"):
            index.search(random_queries(1), [[0]], k=k)
    encoder = HashingEncoder(DIM)
    with pytest.raises(ValueError, match=r"Unknown refresh policy 'eager'; choose one of \['lazy', 'full', 'periodic', 'frozen'\]"):
        LazyIndex(TEXTS, encoder, refresh="eager", device=DEVICE)
    with pytest.raises(ValueError, match="refresh='periodic' needs refresh_every >= 1"):
        LazyIndex(TEXTS, encoder, refresh="periodic", device=DEVICE)
    with pytest.raises(ValueError, match="refresh='periodic' needs refresh_every >= 1"):
        LazyIndex(TEXTS, encoder, refresh="periodic", refresh_every=0, device=DEVICE)
    with pytest.raises(ValueError, match="refresh_every only applies to refresh='periodic'"):
        LazyIndex(TEXTS, encoder, refresh="lazy", refresh_every=2, device=DEVICE)
    with pytest.raises(ValueError, match="refresh_budget must be >= 0"):
        LazyIndex(TEXTS, encoder, refresh_budget=-1, device=DEVICE)
    with pytest.raises(ValueError, match="Unknown candidate_search 'annoy'"):
        LazyIndex(TEXTS, encoder, candidate_search="annoy", device=DEVICE)
    with pytest.raises(ValueError, match="at least one document"):
        LazyIndex([], encoder, device=DEVICE)


class BrokenEncoder(HashingEncoder):
    """Fine at version 0; after a reseed it returns ``mode``-broken output."""

    def __init__(self, mode: str) -> None:
        super().__init__(DIM)
        self.mode = mode

    def encode_documents(self, texts):
        out = super().encode_documents(texts)
        if self.version == 0:
            return out
        if self.mode == "shape":
            return out[:, :-1]
        if self.mode == "rows":
            return out[:-1]
        if self.mode == "nan":
            out[0, 0] = np.nan
            return out
        return "not numbers"


@pytest.mark.parametrize("mode, message", [("shape", r"returned shape \(\d+, 63\) for \d+ texts; expected \(\d+, 64\)"),
                                           ("rows", r"returned shape \(\d+, 64\) for \d+ texts"),
                                           ("nan", "NaN or inf in 1 of"),
                                           ("text", "not a numeric array")])
def test_broken_encoder_raises_encoder_error(mode, message):
    encoder = BrokenEncoder(mode)
    encoder.reseed(1)
    with pytest.raises(EncoderError, match=message):  # at build
        LazyIndex(TEXTS[:20], encoder, device=DEVICE)
    encoder = BrokenEncoder(mode)
    index = LazyIndex(TEXTS[:20], encoder, device=DEVICE)
    encoder.reseed(1)
    with pytest.raises(EncoderError, match="BrokenEncoder.encode_documents"):  # at a lazy refresh
        index.search(random_queries(1), [[0]], k=3)


def test_given_embeddings_of_wrong_shape_raise_encoder_error():
    with pytest.raises(EncoderError, match="the given corpus embeddings returned shape"):
        LazyIndex(TEXTS[:10], HashingEncoder(DIM), embeddings=np.zeros((9, DIM)), device=DEVICE)


# -- oracle ----------------------------------------------------------------------------------


def test_oracle_query_gets_rank_one_and_random_queries_usually_do_not():
    index, encoder = build("lazy")
    encoder.reseed(17)  # the oracle must follow the current encoder, not the stale rows
    corpus = encoder.encode_documents(TEXTS)
    rows = np.arange(0, N_TEXTS, 5)
    result = index.search(corpus[rows], [[r] for r in rows], k=5)
    for b, row in enumerate(rows):
        ties = int((corpus @ corpus[row] >= corpus[row] @ corpus[row] - TOL).sum())  # itself + duplicates
        assert 1 <= result.gold_ranks[b][0] <= ties
        assert ties > 1 or result.gold_ranks[b][0] == 1
    assert np.mean([r[0] == 1 for r in result.gold_ranks]) >= 0.95
    randoms = index.search(random_queries(len(rows), seed=99), [[r] for r in rows], k=5)
    hits = np.mean([r[0] == 1 for r in randoms.gold_ranks])
    assert hits < 0.2
    assert np.median([r[0] for r in randoms.gold_ranks]) > 10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_storage_scores_in_fp32_and_moves_ranks_only_within_its_rounding(dtype):
    """16-bit storage changes a score by at most the rounding of the two vectors; a gold rank can
    only move past rows whose fp32 score lies within that distance of the gold's (near-ties)."""
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((3000, 64)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)

    class Fixed:
        dim, version = 64, 0

        def encode_documents(self, texts):
            return corpus[[int(t) for t in texts]]

    texts = [str(i) for i in range(len(corpus))]
    gold = [[int(g)] for g in rng.integers(len(corpus), size=32)]
    q = corpus[[g[0] for g in gold]] + 0.1 * rng.standard_normal((32, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    full = LazyIndex(texts, Fixed(), device="cpu").search(q, gold, k=10)
    half = LazyIndex(texts, Fixed(), device="cpu", dtype=dtype).search(q, gold, k=10)
    assert half.top_scores.dtype == np.float32
    assert len(np.unique(half.top_scores)) > 0.9 * half.top_scores.size  # fp32 scores: no 16-bit ties
    eps = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}[dtype]
    # rounding moves a score of unit vectors by at most u(2+u) (Cauchy-Schwarz), a difference of two by twice that
    margin = 2 * eps * (2 + eps) + 1e-6
    scores = q @ corpus.T
    for b, g in enumerate(gold):
        near = np.abs(scores[b] - scores[b, g[0]]) <= margin
        assert abs(int(half.gold_ranks[b][0]) - int(full.gold_ranks[b][0])) <= near.sum() - 1


def test_gold_ranks_are_exact_inside_and_below_the_top_k():
    """Ranks of golds in the top-K list come from the list; the others from a pass over all rows."""
    rng = np.random.default_rng(3)
    corpus = rng.standard_normal((500, 16)).astype(np.float32)

    class Fixed:
        dim, version = 16, 0

        def encode_documents(self, texts):
            return corpus[[int(t) for t in texts]]

    q = rng.standard_normal((20, 16)).astype(np.float32)
    gold = [rng.choice(500, size=3, replace=False) for _ in range(20)]
    scores = q @ corpus.T
    best = np.argsort(-scores, axis=1)
    for b in range(0, 20, 2):
        gold[b][0] = best[b, b % 5]  # some golds inside the top-5, the rest mostly far below
    found = LazyIndex([str(i) for i in range(500)], Fixed(), device="cpu").search(q, gold, k=5)
    inside = outside = 0
    for b, rows in enumerate(gold):
        expected = 1 + (scores[b][None, :] > scores[b, rows][:, None]).sum(1)
        np.testing.assert_array_equal(found.gold_ranks[b], expected)
        inside += int((expected <= 5).sum())
        outside += int((expected > 5).sum())
    assert inside >= 10 and outside >= 10


@pytest.mark.parametrize("batch,n,k", [(4, 100_003, 10), (3, 5000, 100), (2, 20_000, 50), (5, 64 * 400, 100)])
def test_block_top_k_equals_torch_top_k(batch, n, k):
    from sr3_env.index import top_k

    scores = torch.randn(batch, n, generator=torch.Generator().manual_seed(n))
    scores[0, -1] = 100.0  # the best score in the last, partial block
    scores[1, :64] = 50.0 + torch.arange(64.0)  # one block holding many of the best
    expected = torch.topk(scores, k, dim=1)
    values, columns = top_k(scores, k)
    torch.testing.assert_close(values, expected.values, rtol=0, atol=0)
    torch.testing.assert_close(columns, expected.indices, rtol=0, atol=0)
