"""Offline retrieval evaluation: runs of BM25 and dense systems, scored with ``pytrec_eval``.

A *run* is ``{query_id: {doc_id: score}}``, higher scores first. `ir_metrics` scores a run
against a dataset's qrels (nDCG@10, Recall@100, MRR@10), `evaluate_systems` runs several systems
on one dataset and returns one row per system, and `markdown_table` / `write_results` report them.

Typical use::

    dataset, note = sub_corpus(load_dataset("semanlink"), num_docs=None)
    rows = evaluate_systems(dataset, [BM25System(), minilm_system()], note=note)
    print(markdown_table(rows))
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sr3_env.data import RetrievalDataset, load_dataset
from sr3_env.cache import cache_dir, load_matrix, save_matrix
from sr3_env.encoders import as_matrix

logger = logging.getLogger(__name__)

#: ``{query_id: {doc_id: score}}``.
Run = dict[str, dict[str, float]]

METRICS = ("ndcg@10", "recall@100", "mrr@10")


# ----------------------------------------------------------------------------------------- metrics
def _trec_order(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Documents in the order trec_eval ranks them: score descending, ties by doc id descending."""
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def ir_metrics(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 of ``run`` over every query of ``qrels``: the means of
    `per_query_metrics`."""
    return {measure: sum(values.values()) / len(values) for measure, values in per_query_metrics(run, qrels).items()}


def per_query_metrics(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]]
                      ) -> dict[str, dict[str, float]]:
    """nDCG@10, Recall@100 and MRR@10 of ``run`` for each query of ``qrels``, via ``pytrec_eval``:
    ``{measure: {query_id: value}}``.

    Measures are trec_eval's ``ndcg_cut_10`` (linear gain: the grade itself), ``recall_100``, and
    ``recip_rank`` on the run cut to each query's top 10 (MRR@10). A query of ``qrels`` that the
    run lacks (or for which it retrieves nothing) scores 0 on every measure: the mean is over all
    ``len(qrels)`` queries, not only those that trec_eval sees.

    Ties: trec_eval ignores the order of the dicts and ranks equal scores by doc id, *descending*
    (of ``a``, ``b``, ``c`` tied, ``c`` comes first); the top-10 cut for MRR@10 follows the same rule.

    Raises:
        ValueError: if ``run`` or ``qrels`` is empty, the run holds query ids that ``qrels`` lacks,
            or a score is not a finite number.
    """
    import pytrec_eval

    if not qrels:
        raise ValueError("qrels is empty: there is no query to evaluate.")
    if not run:
        raise ValueError(f"The run is empty; expected {{query_id: {{doc_id: score}}}} for the {len(qrels)} queries of qrels.")
    unknown = [q for q in run if q not in qrels]
    if unknown:
        raise ValueError(f"The run holds {len(unknown)} query ids that qrels lacks (e.g. {unknown[:3]}); "
                         "evaluate a run against the qrels of the same split.")
    clean_run: Run = {}
    for query_id, scores in run.items():
        clean = {str(doc_id): float(score) for doc_id, score in scores.items()}
        if not all(np.isfinite(list(clean.values()))):
            raise ValueError(f"The run's scores for query {query_id!r} hold NaN or inf; every score must be finite.")
        if clean:  # an empty ranking scores 0, like a missing query
            clean_run[str(query_id)] = clean
    clean_qrels = {str(q): {str(d): int(g) for d, g in judged.items()} for q, judged in qrels.items()}
    per_query = pytrec_eval.RelevanceEvaluator(clean_qrels, {"ndcg_cut.10", "recall.100"}).evaluate(clean_run)
    top10 = {q: dict(_trec_order(scores)[:10]) for q, scores in clean_run.items()}
    reciprocal = pytrec_eval.RelevanceEvaluator(clean_qrels, {"recip_rank"}).evaluate(top10)
    return {
        "ndcg@10": {q: per_query.get(q, {}).get("ndcg_cut_10", 0.0) for q in clean_qrels},
        "recall@100": {q: per_query.get(q, {}).get("recall_100", 0.0) for q in clean_qrels},
        "mrr@10": {q: reciprocal.get(q, {}).get("recip_rank", 0.0) for q in clean_qrels},
    }


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], samples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean of ``b - a`` over the queries both score, and its bootstrap confidence interval
    (queries resampled with replacement, percentile interval)."""
    queries = sorted(set(a) & set(b))
    if not queries:
        raise ValueError("The two systems share no query; compare runs on the same queries.")
    diff = np.array([b[q] - a[q] for q in queries], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(len(diff), size=(samples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2
    return {"mean": float(diff.mean()), "low": float(np.quantile(means, tail)), "high": float(np.quantile(means, 1 - tail)),
            "queries": len(queries)}


# -------------------------------------------------------------------------------------------- runs
def dense_run(dataset: RetrievalDataset, query_vectors: Any, doc_vectors: Any, k: int = 100) -> Run:
    """Exact inner-product search (float32, torch): the top ``k`` documents of every query.

    Args:
        dataset: gives the query ids (rows of ``query_vectors``) and doc ids (rows of ``doc_vectors``).
        query_vectors: ``(len(dataset.query_ids), dim)`` array or tensor.
        doc_vectors: ``(len(dataset.doc_ids), dim)`` array or tensor.
        k: documents per query (capped at the corpus size).
    """
    import torch

    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    docs = as_matrix(doc_vectors, len(dataset.doc_ids), None, "doc_vectors")
    queries = as_matrix(query_vectors, len(dataset.query_ids), docs.shape[1], "query_vectors")
    k = min(int(k), len(dataset.doc_ids))
    doc_matrix = torch.from_numpy(docs)
    run: Run = {}
    batch = max(1, 2**26 // max(1, len(dataset.doc_ids)))  # about 256 MB of scores at a time
    for start in range(0, len(queries), batch):
        scores = torch.from_numpy(queries[start:start + batch]) @ doc_matrix.T
        top_scores, top_rows = torch.topk(scores, k, dim=1)
        for offset, (row_scores, rows) in enumerate(zip(top_scores.tolist(), top_rows.tolist())):
            run[dataset.query_ids[start + offset]] = {dataset.doc_ids[r]: s for r, s in zip(rows, row_scores)}
    return run


def bm25_run(dataset: RetrievalDataset, k: int = 100) -> Run:
    """BM25 (``bm25s``, Lucene variant, k1=1.5, b=0.75) over ``dataset.documents``, English stopwords removed.

    Documents with score 0 (no query term in common) are left out of the run, as a Lucene or
    Elasticsearch BM25 would never return them; a query made only of stopwords or unseen words
    therefore retrieves nothing and scores 0.
    """
    import bm25s

    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    k = min(int(k), len(dataset.doc_ids))  # bm25s raises when k exceeds the corpus size
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(dataset.documents, stopwords="en", show_progress=False), show_progress=False)
    # Query tokens as strings: token ids from a second `tokenize` call would follow another vocabulary.
    query_tokens = bm25s.tokenize(dataset.query_texts, stopwords="en", return_ids=False, show_progress=False)
    rows, scores = retriever.retrieve(query_tokens, k=k, show_progress=False)
    return {query_id: {dataset.doc_ids[int(r)]: float(s) for r, s in zip(row, score) if s > 0}
            for query_id, row, score in zip(dataset.query_ids, rows, scores)}


# ----------------------------------------------------------------------------------------- systems
class System(Protocol):
    """What `evaluate_systems` needs: a ``name`` and ``run(dataset, k) -> Run``."""

    name: str

    def run(self, dataset: RetrievalDataset, k: int = 100) -> Run: ...


@dataclass
class BM25System:
    """The lexical baseline: `bm25_run`."""

    name: str = "BM25"

    def run(self, dataset: RetrievalDataset, k: int = 100) -> Run:
        """The BM25 run of ``dataset``'s queries (see `bm25_run`)."""
        return bm25_run(dataset, k)


def corpus_cache_key(embedder: Any) -> str:
    """The key under which a model's corpus embeddings are cached (`DenseSystem.cache_key`): its name
    and weight fingerprint, so ``sr3 eval`` and ``sr3 serve`` share them."""
    return f"{embedder.name}@{embedder.fingerprint()}"


@dataclass
class DenseSystem:
    """A bi-encoder: queries and documents embedded by two functions, ranked by inner product.

    With a ``cache_key`` (it must change whenever the encoder's weights do, e.g. ``"model@step-500"``),
    corpus embeddings are kept as ``.npy`` under ``cache_dir()/eval/``, keyed by the key and the
    corpus fingerprint, so a given model encodes a given corpus once.
    """

    name: str
    encode_queries: Callable[[list[str]], Any]
    encode_documents: Callable[[list[str]], Any]
    cache_key: str | None = None

    def cache_path(self, dataset: RetrievalDataset) -> Path | None:
        """Where the corpus embeddings of ``dataset`` are cached (None without a ``cache_key``)."""
        if self.cache_key is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.cache_key)[:80]
        digest = hashlib.sha256(self.cache_key.encode()).hexdigest()[:8]  # "a/b" and "a_b" stay apart
        return cache_dir() / "eval" / f"{slug}-{digest}-{dataset.fingerprint()}.npy"

    def corpus_embeddings(self, dataset: RetrievalDataset) -> np.ndarray:
        """The ``(docs, dim)`` float32 embeddings of ``dataset.documents``, from the cache when there."""
        path = self.cache_path(dataset)
        cached = None if path is None else load_matrix(path, len(dataset.doc_ids))
        if cached is not None:
            return cached
        start = time.perf_counter()
        vectors = as_matrix(self.encode_documents(dataset.documents), len(dataset.doc_ids), None,
                            f"{self.name}: encode_documents")
        seconds = time.perf_counter() - start
        logger.info("%s: encoded %d documents of %s in %.1f s (%.0f docs/s)", self.name, len(vectors), dataset.name,
                    seconds, len(vectors) / max(seconds, 1e-9))
        if path is not None:
            save_matrix(path, vectors)
        return vectors

    def run(self, dataset: RetrievalDataset, k: int = 100) -> Run:
        """The top-``k`` documents of every query of ``dataset`` (see `dense_run`)."""
        docs = self.corpus_embeddings(dataset)
        start = time.perf_counter()
        queries = self.encode_queries(list(dataset.query_texts))
        logger.info("%s: encoded %d queries in %.1f s", self.name, len(dataset.query_texts), time.perf_counter() - start)
        return dense_run(dataset, queries, docs, k)


def minilm_system(name: str = "all-MiniLM-L6-v2", device: str | None = None, batch_size: int = 64) -> DenseSystem:
    """The frozen all-MiniLM-L6-v2 baseline as a `DenseSystem` (corpus embeddings cached).

    The model is loaded here (several seconds), so that encoding timings do not include it.
    """
    from sr3_env.encoders import MiniLMEncoder

    start = time.perf_counter()
    encoder = MiniLMEncoder(device=device, batch_size=batch_size)
    logger.info("loaded %s in %.1f s", MiniLMEncoder.name, time.perf_counter() - start)
    return DenseSystem(name=name, encode_queries=encoder.encode_queries, encode_documents=encoder.encode_documents,
                       cache_key=MiniLMEncoder.name)


# ------------------------------------------------------------------------------------- evaluation
def sub_corpus(dataset: RetrievalDataset, num_docs: int | None, seed: int = 0) -> tuple[RetrievalDataset, str | None]:
    """A smaller corpus for quick evaluation, and a note saying how it was made.

    Keeps every relevant document of every query plus random others up to ``num_docs`` (see
    `RetrievalDataset.subset`). Returns ``(dataset, None)`` unchanged when ``num_docs`` is None or
    not smaller than the corpus.
    """
    total = len(dataset.doc_ids)
    if num_docs is None or num_docs >= total:
        return dataset, None
    if num_docs < 1:
        raise ValueError(f"num_docs must be at least 1 (or None for the whole corpus), got {num_docs}.")
    smaller = dataset.subset(num_docs=num_docs, seed=seed)
    note = f"sub-corpus: {len(smaller.doc_ids):,} of {total:,} documents (every relevant document kept, seed {seed})"
    logger.info("%s: %s", dataset.name, note)
    return smaller, note


def evaluate_systems(dataset: RetrievalDataset | str, systems: Sequence[System], k: int = 100,
                     note: str | None = None) -> list[dict[str, Any]]:
    """Run and score each system on ``dataset``: one row per system.

    Rows hold ``system``, ``dataset``, ``split``, ``queries``, ``docs``, ``ndcg@10``,
    ``recall@100``, ``mrr@10``, ``seconds`` (wall time of the run, encoding included), ``note`` and
    ``per_query_ndcg@10`` (for paired comparisons: `paired_bootstrap`).
    """
    from tqdm.auto import tqdm

    dataset = load_dataset(dataset)
    rows = []
    bar = tqdm(systems, desc=f"evaluating on {dataset.name}", unit="system", disable=len(systems) < 2)
    for system in bar:
        bar.set_postfix_str(system.name)
        start = time.perf_counter()
        run = system.run(dataset, k)
        seconds = time.perf_counter() - start
        per_query = per_query_metrics(run, dataset.qrels)
        metrics = {measure: sum(values.values()) / len(values) for measure, values in per_query.items()}
        logger.info("%s on %s: %s (%.1f s)", system.name, dataset.name,
                    ", ".join(f"{key}={value:.3f}" for key, value in metrics.items()), seconds)
        rows.append({"system": system.name, "dataset": dataset.name, "split": dataset.split,
                     "queries": len(dataset.query_ids), "docs": len(dataset.doc_ids), **metrics,
                     "seconds": round(seconds, 3), "note": note,
                     "per_query_ndcg@10": {q: round(v, 6) for q, v in per_query["ndcg@10"].items()}})
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of `evaluate_systems` rows (metrics to 3 decimals), their notes below it."""
    rated = any("embed_token_rate" in row for row in rows)  # reasoning rows: the share ended with the token
    chosen = any("reasoned_share" in row for row in rows)  # auto rows: the share of queries reasoned on
    header = ["System", "Dataset", "Split", "Queries", "Docs", "nDCG@10", "Recall@100", "MRR@10",
              *(["Token rate", "Reasoning tokens"] if rated else []), *(["Reasoned"] if chosen else []), "Seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for row in rows:
        rate = ([f"{row['embed_token_rate']:.2f}", f"{row.get('reasoning_length', float('nan')):.1f}"]
                if "embed_token_rate" in row else ["", ""]) if rated else []
        share = ([f"{row['reasoned_share']:.2f}" if "reasoned_share" in row else ""] if chosen else [])
        cells = [str(row["system"]), str(row["dataset"]), str(row["split"]), f"{row['queries']:,}", f"{row['docs']:,}",
                 *(f"{row[m]:.3f}" for m in METRICS), *rate, *share, f"{row['seconds']:.1f}"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    notes = list(dict.fromkeys(row["note"] for row in rows if row.get("note")))
    return "\n".join(lines + ([""] + [f"Note: {n}." for n in notes] if notes else [])) + "\n"


def write_results(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as a JSON list to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dict(row) for row in rows], indent=2,
                               default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n", encoding="utf-8")
    return path
