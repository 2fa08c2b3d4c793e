"""Tests of `sr3_agent.evaluation.evaluate`: metrics against hand-computed values, runs, systems, caching, reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sr3_agent.evaluation.evaluate import (BM25System, DenseSystem, bm25_run, dense_run, evaluate_systems, ir_metrics,
                                markdown_table, minilm_system, sub_corpus, write_results)
from sr3_env import HashingEncoder, RetrievalDataset, load_dataset


def make_dataset(docs: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> RetrievalDataset:
    return RetrievalDataset(name="toy", split="test", doc_ids=list(docs), titles=[""] * len(docs), texts=list(docs.values()),
                            query_ids=list(queries), query_texts=list(queries.values()), qrels=qrels)


# ------------------------------------------------------------------------------------- ir_metrics
QRELS = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}


def test_perfect_run_scores_one():
    run = {"q1": {"a": 3.0, "x": 1.0}, "q2": {"b": 2.0}, "q3": {"c": 0.5, "y": 0.1}}
    assert ir_metrics(run, QRELS) == pytest.approx({"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0})


def test_relevant_at_rank_two_and_missing_query():
    # q1: relevant at rank 2 -> RR 1/2, nDCG 1/log2(3); q2: perfect; q3: absent from the run -> 0.
    run = {"q1": {"x": 2.0, "a": 1.0}, "q2": {"b": 1.0}}
    metrics = ir_metrics(run, QRELS)
    assert metrics["mrr@10"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0 + 0.0) / 3)
    assert metrics["recall@100"] == pytest.approx(2 / 3)
    single = ir_metrics({"q1": {"x": 2.0, "a": 1.0}}, {"q1": {"a": 1}})
    assert single == pytest.approx({"ndcg@10": 1 / math.log2(3), "recall@100": 1.0, "mrr@10": 0.5})


def test_mrr_cut_at_ten_and_graded_ndcg():
    ranked = {f"x{i:02d}": 100.0 - i for i in range(10)} | {"a": 1.0}  # relevant doc at rank 11
    metrics = ir_metrics({"q1": ranked}, {"q1": {"a": 1}})
    assert metrics["mrr@10"] == 0.0 and metrics["ndcg@10"] == 0.0 and metrics["recall@100"] == 1.0
    # graded: trec_eval's nDCG uses the grade as gain (linear), not 2^grade - 1
    graded = ir_metrics({"q": {"b": 2.0, "a": 1.0}}, {"q": {"a": 2, "b": 1}})
    assert graded["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))


def test_ties_break_by_doc_id_descending():
    tied = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert ir_metrics(tied, {"q": {"c": 1}})["mrr@10"] == 1.0
    assert ir_metrics(tied, {"q": {"a": 1}})["mrr@10"] == pytest.approx(1 / 3)


def test_ir_metrics_errors():
    with pytest.raises(ValueError, match="empty"):
        ir_metrics({}, QRELS)
    with pytest.raises(ValueError, match="qrels lacks"):
        ir_metrics({"q1": {"a": 1.0}, "zz": {"a": 1.0}}, QRELS)
    with pytest.raises(ValueError, match="finite"):
        ir_metrics({"q1": {"a": float("nan")}}, QRELS)


# -------------------------------------------------------------------------------------- dense_run
def random_dataset(n_queries: int, n_docs: int) -> RetrievalDataset:
    docs = {f"d{i}": f"doc {i}" for i in range(n_docs)}
    queries = {f"q{i}": f"query {i}" for i in range(n_queries)}
    return make_dataset(docs, queries, {q: {"d0": 1} for q in queries})


def test_dense_run_matches_numpy_argsort():
    dataset = random_dataset(7, 50)
    rng = np.random.default_rng(0)
    queries, docs = rng.normal(size=(7, 16)), rng.normal(size=(50, 16))
    run = dense_run(dataset, queries, docs, k=5)
    scores = queries @ docs.T
    for i, query_id in enumerate(dataset.query_ids):
        expected = [f"d{j}" for j in np.argsort(-scores[i])[:5]]
        got = sorted(run[query_id], key=run[query_id].get, reverse=True)
        assert got == expected
        assert [run[query_id][d] for d in got] == pytest.approx(sorted(scores[i], reverse=True)[:5], rel=1e-5)
    assert all(len(r) == 50 for r in dense_run(dataset, queries, docs, k=500).values())  # k capped at the corpus


def test_dense_run_shape_and_nan_errors():
    dataset = random_dataset(3, 10)
    queries, docs = np.ones((3, 4)), np.ones((10, 4))
    with pytest.raises(ValueError, match=r"doc_vectors returned shape \(9, 4\) for 10 texts; expected \(10, dim\)"):
        dense_run(dataset, queries, docs[:9])
    with pytest.raises(ValueError, match=r"expected \(3, 4\)"):
        dense_run(dataset, np.ones((3, 5)), docs)
    with pytest.raises(ValueError, match=r"expected \(3, 4\)"):
        dense_run(dataset, np.ones(4), docs)
    bad = queries.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 of 3 rows"):
        dense_run(dataset, bad, docs)
    with pytest.raises(ValueError, match="k must be"):
        dense_run(dataset, queries, docs, k=0)


# --------------------------------------------------------------------------------------- bm25_run
def test_bm25_ranks_the_rare_term_first():
    docs = {"d0": "the cat sat on the mat", "d1": "a zeppelin floated over the city",
            "d2": "the dog sat on the mat", "d3": "the city was quiet"}
    queries = {"q1": "the zeppelin over the city", "q2": "the of and"}
    dataset = make_dataset(docs, queries, {"q1": {"d1": 1}, "q2": {"d0": 1}})
    run = bm25_run(dataset, k=10)
    assert max(run["q1"], key=run["q1"].get) == "d1"
    assert set(run["q1"]) == {"d1", "d3"}  # documents sharing no query term are left out
    assert run["q2"] == {}  # only stopwords: nothing retrieved, scores 0
    assert ir_metrics(run, dataset.qrels)["mrr@10"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- systems
def test_dense_system_caches_corpus_embeddings(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_dataset(tiny_beir)
    encoder = HashingEncoder(dim=64)
    calls = {"documents": 0, "queries": 0}

    def encode_documents(texts):
        calls["documents"] += 1
        return encoder.encode_documents(texts)

    def encode_queries(texts):
        calls["queries"] += 1
        return encoder.encode_queries(texts)

    system = DenseSystem("hashing", encode_queries, encode_documents, cache_key="hashing-64/v0")
    first = system.run(dataset, k=5)
    second = system.run(dataset, k=5)
    assert calls == {"documents": 1, "queries": 2}
    assert first == second and all(len(r) == 5 for r in first.values())
    cached = list((tmp_path / "cache" / "eval").glob("*.npy"))
    assert len(cached) == 1 and dataset.fingerprint() in cached[0].name
    system.run(dataset.subset(num_docs=8), k=5)  # another corpus, another cache entry
    assert calls["documents"] == 2
    uncached = DenseSystem("no cache", encode_queries, encode_documents)
    uncached.run(dataset, k=5)
    uncached.run(dataset, k=5)
    assert calls["documents"] == 4


def test_minilm_system_wiring(monkeypatch):
    import sr3_env.encoders

    class FakeMiniLM:  # stands in for the real model (seconds to load)
        name = "all-MiniLM-L6-v2"

        def __init__(self, device=None, batch_size=64):
            self.device, self.batch_size = device, batch_size

        def encode_documents(self, texts):
            return np.ones((len(texts), 3), dtype=np.float32)

        encode_queries = encode_documents

    monkeypatch.setattr(sr3_env.encoders, "MiniLMEncoder", FakeMiniLM)
    system = minilm_system(device="cpu", batch_size=8)
    assert isinstance(system, DenseSystem) and system.cache_key == "all-MiniLM-L6-v2" and system.name == "all-MiniLM-L6-v2"
    assert system.encode_documents.__self__.batch_size == 8
    assert np.asarray(system.encode_queries(["a", "b"])).shape == (2, 3)


# ------------------------------------------------------------------------------------- evaluation
def test_evaluate_systems_and_reports(tiny_beir, tmp_path):
    dataset = load_dataset(tiny_beir)
    encoder = HashingEncoder(dim=128)
    systems = [BM25System(), DenseSystem("hashing|128", encoder.encode_queries, encoder.encode_documents)]
    rows = evaluate_systems(dataset, systems, k=10, note="a test note")
    assert [row["system"] for row in rows] == ["BM25", "hashing|128"]
    for row in rows:
        assert set(row) == {"system", "dataset", "split", "queries", "docs", "ndcg@10", "recall@100", "mrr@10", "seconds",
                            "note", "per_query_ndcg@10"}
        assert set(row["per_query_ndcg@10"]) == set(dataset.query_ids)
        assert np.mean(list(row["per_query_ndcg@10"].values())) == pytest.approx(row["ndcg@10"], abs=1e-5)
        assert (row["queries"], row["docs"], row["split"], row["note"]) == (3, 12, "test", "a test note")
        assert all(0.0 <= row[m] <= 1.0 for m in ("ndcg@10", "recall@100", "mrr@10"))
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| System |") and "nDCG@10" in table[0]
    assert len(table) == 2 + len(rows) + 2 and table[-1] == "Note: a test note."
    assert all(line.count(" | ") == 8 for line in (table[0], table[2], table[3]))  # 9 columns
    assert table[1].count("|") == 10 and "hashing\\|128" in table[3]  # the "|" in a name is escaped
    assert f"{rows[0]['ndcg@10']:.3f}" in table[2]
    path = write_results(rows, tmp_path / "deep" / "folder" / "results.json")
    assert json.loads(path.read_text()) == rows


def test_sub_corpus_keeps_gold_documents(tiny_beir):
    tiny = load_dataset(tiny_beir)  # 12 docs, 6 of them relevant to some query
    smaller, note = sub_corpus(tiny, num_docs=8, seed=1)
    assert len(smaller.doc_ids) == 8 and {"d0", "d1", "d2", "d3", "d4", "d5"} <= set(smaller.doc_ids)
    assert smaller.qrels == tiny.qrels
    assert note == "sub-corpus: 8 of 12 documents (every relevant document kept, seed 1)"
    assert sub_corpus(tiny, 3)[0].doc_ids == ["d0", "d1", "d2", "d3", "d4", "d5"]  # never fewer than the gold ones
    dataset = load_dataset("semanlink")
    smaller, note = sub_corpus(dataset, num_docs=200, seed=3)
    gold = {d for judged in dataset.qrels.values() for d in judged}
    assert gold <= set(smaller.doc_ids) and len(smaller.doc_ids) == max(200, len(gold))  # 313 of 314 docs are gold
    assert smaller.query_ids == dataset.query_ids
    assert note == f"sub-corpus: {len(smaller.doc_ids):,} of {len(dataset.doc_ids):,} documents (every relevant document kept, seed 3)"
    assert sub_corpus(dataset, None) == (dataset, None)
    assert sub_corpus(dataset, 10_000) == (dataset, None)
    with pytest.raises(ValueError, match="num_docs"):
        sub_corpus(dataset, 0)


def test_per_query_metrics_average_to_ir_metrics_and_missing_queries_score_zero():
    from sr3_agent.evaluation.evaluate import per_query_metrics

    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d1": 2.0, "d2": 1.0}}  # q3 missing
    values = per_query_metrics(run, qrels)
    assert values["mrr@10"] == {"q1": 1.0, "q2": 0.5, "q3": 0.0}
    assert values["ndcg@10"]["q1"] == 1.0 and values["ndcg@10"]["q2"] == pytest.approx(1 / np.log2(3))
    assert ir_metrics(run, qrels)["mrr@10"] == pytest.approx(0.5)


def test_paired_bootstrap_brackets_the_mean_difference():
    from sr3_agent.evaluation.evaluate import paired_bootstrap

    a = {f"q{i}": 0.5 for i in range(200)}
    b = {f"q{i}": 0.5 + (0.1 if i % 2 else 0.0) for i in range(200)}  # +0.05 on average
    result = paired_bootstrap(a, b, samples=2000)
    assert result["mean"] == pytest.approx(0.05) and result["queries"] == 200
    assert result["low"] < 0.05 < result["high"] and result["high"] - result["low"] < 0.03
    same = paired_bootstrap(a, a, samples=500)
    assert same["low"] == same["high"] == 0.0
    with pytest.raises(ValueError, match="share no query"):
        paired_bootstrap({"x": 1.0}, {"y": 1.0})
