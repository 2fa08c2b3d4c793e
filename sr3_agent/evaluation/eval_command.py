"""``sr3 eval``: embedders (direct and with reasoning) side by side with BM25 and all-MiniLM-L6-v2.

Each dataset is cut to a seeded sample of queries and a sub-corpus that keeps every relevant
document (both stated in the table's notes), because encoding a large corpus with an LLM on a CPU
takes long: see `EvalConfig.corpus_docs`. Corpus embeddings are cached per model fingerprint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sr3_agent.config import EvalConfig
from sr3_agent.model.embedder import ReasoningEmbedder, fuse
from sr3_agent.model.precision import autocast_dtype_for
from sr3_agent.evaluation.evaluate import (BM25System, DenseSystem, Run, corpus_cache_key, dense_run, evaluate_systems,
                                minilm_system)
from sr3_agent.evaluation.feedback import Turn, refine_turns
from sr3_env import RetrievalDataset, load_dataset

logger = logging.getLogger(__name__)


class QueryPaths:
    """The ways an embedder embeds queries: direct, after reasoning, fused (both combined), auto
    (the model decides, query by query, whether to reason: `ReasoningEmbedder.encode_queries_auto`),
    and latent (its trained think tokens before the token, where it has some: ``encode_queries(latent=True)``).

    Each way is computed once per list of texts (the fused system reuses the other two);
    `embed_token_rate` is the share of the reasonings the model ended with the token itself. With
    ``turns`` > 1, `later_turns` gives the turns after the direct one (`sr3_agent.evaluation.feedback`)."""

    def __init__(self, embedder: ReasoningEmbedder, max_new_tokens: int, turns: int = 1, feedback_k: int = 3) -> None:
        self.embedder, self.max_new_tokens = embedder, max_new_tokens
        self.turns, self.feedback_k = turns, feedback_k
        self._later: tuple[tuple[str, ...], list[Turn]] | None = None
        self._texts: tuple[str, ...] | None = None
        self._vectors: np.ndarray | None = None
        self._direct: tuple[tuple[str, ...], np.ndarray] | None = None
        self.embed_token_rate: float | None = None
        self.reasoning_length: float | None = None  #: mean tokens written before the token
        self._auto: tuple[tuple[str, ...], np.ndarray, tuple[float, float, float]] | None = None

    def direct(self, texts: list[str]) -> np.ndarray:
        if self._direct is None or self._direct[0] != tuple(texts):
            self._direct = tuple(texts), self.embedder.encode_queries(texts, reasoning=False)
        return self._direct[1]

    def reasoning(self, texts: list[str]) -> np.ndarray:
        if self._texts != tuple(texts):
            embedder = self.embedder
            embedder.reset_reasoning_counters()
            self._vectors = embedder.encode_queries(texts, reasoning=True, max_new_tokens=self.max_new_tokens)
            self._texts, self.embed_token_rate = tuple(texts), 1.0 - embedder.missing_embed_token_rate
            self.reasoning_length = embedder.mean_reasoning_length
        return self._vectors

    def latent(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode_queries(texts, latent=True)

    def fused(self, texts: list[str]) -> np.ndarray:
        return fuse(self.direct(texts), self.reasoning(texts))

    def auto(self, texts: list[str]) -> np.ndarray:
        if self._auto is None or self._auto[0] != tuple(texts):
            embedder = self.embedder
            embedder.reset_reasoning_counters()
            vectors, reasoned = embedder.encode_queries_auto(texts, max_new_tokens=self.max_new_tokens)
            stats = (1.0 - embedder.missing_embed_token_rate, embedder.mean_reasoning_length, float(reasoned.mean()))
            self._auto = tuple(texts), vectors, stats
        return self._auto[1]

    def auto_stats(self) -> tuple[float, float, float]:
        """(embed-token rate, mean reasoning tokens, share of the queries reasoned on) of the last `auto`."""
        return self._auto[2]

    def later_turns(self, dataset: RetrievalDataset, doc_vectors: np.ndarray) -> list[Turn]:
        """Turns 2..``turns`` of ``dataset``'s queries against ``doc_vectors``; turn 1 is `direct`."""
        key = (dataset.fingerprint(), *dataset.query_texts)
        if self._later is None or self._later[0] != key:
            first = self.direct(list(dataset.query_texts))
            self._later = key, refine_turns(self.embedder, dataset, doc_vectors, first, turns=self.turns,
                                            feedback_k=self.feedback_k, max_new_tokens=self.max_new_tokens)
        return self._later[1]


@dataclass
class TurnSystem:
    """Turn ``turn`` (>= 2) of an embedder in multi-turn retrieval: it reads what its previous turn
    retrieved, reasons and embeds again (`sr3_agent.evaluation.feedback`); turn 1 is its direct system. With
    ``fused``, the query is that turn's embedding fused with the direct one (`fuse`), as the fused
    row does for one-turn reasoning."""

    name: str
    paths: QueryPaths
    direct: DenseSystem  #: the same embedder's direct system, whose corpus embeddings (cached) both use
    turn: int
    fused: bool = False
    last: Turn | None = None  #: this turn of the last run

    def run(self, dataset: RetrievalDataset, k: int = 100) -> Run:
        docs = self.direct.corpus_embeddings(dataset)
        self.last = self.paths.later_turns(dataset, docs)[self.turn - 2]
        queries = fuse(self.paths.direct(list(dataset.query_texts)), self.last.vectors) if self.fused else self.last.vectors
        return dense_run(dataset, queries, docs, k)

    def token_stats(self) -> tuple[float, float]:
        """(embed-token rate, mean reasoning tokens) of this turn's last run."""
        return self.last.embed_token_rate, self.last.reasoning_length


def embedder_systems(paths: QueryPaths, label: str, *, reasoning: bool, auto: bool = False
                     ) -> list[DenseSystem | TurnSystem]:
    """An embedder as one system (direct queries) or three (also after reasoning, and fused), and
    auto (with ``auto``), and latent (where the embedder has think tokens), then one per later turn
    (``paths.turns`` > 1), each followed by its fused variant when ``reasoning``.

    All share the documents (always embedded directly), hence one cache key.
    """
    embedder = paths.embedder
    key = corpus_cache_key(embedder)
    names = ((("direct", "reasoning", "fused") if reasoning else ("direct",)) + (("auto",) if auto else ())
             + (("latent",) if embedder.latent_tokens else ()))
    systems = [DenseSystem(f"{label} ({name})", getattr(paths, name), embedder.encode_documents, key) for name in names]
    variants = (False, True) if reasoning else (False,)
    return systems + [TurnSystem(f"{label} (turn {turn}{' fused' if fused else ''})", paths, systems[0], turn, fused)
                      for turn in range(2, paths.turns + 1) for fused in variants]


def evaluation_set(name: str, config: EvalConfig) -> tuple[RetrievalDataset, str | None]:
    """The dataset cut as configured, and a note saying how (None when used whole)."""
    full = load_dataset(name, split=config.split)
    if config.num_queries is None and config.corpus_docs is None:
        return full, None
    cut = full.subset(num_queries=config.num_queries, num_docs=config.corpus_docs, seed=config.seed)
    parts = []
    if len(cut.query_ids) < len(full.query_ids):
        parts.append(f"{len(cut.query_ids):,} of {len(full.query_ids):,} queries")
    if len(cut.doc_ids) < len(full.doc_ids):
        parts.append(f"sub-corpus of {len(cut.doc_ids):,} of {len(full.doc_ids):,} documents (every relevant one kept)")
    note = f"{full.name}: " + ", ".join(parts) + f", seed {config.seed}" if parts else None
    return cut, note


def load_embedder(spec: str, config: EvalConfig) -> tuple[str, ReasoningEmbedder]:
    """'base' (the configured base model) or a folder written by ``sr3 sft`` / ``save_pretrained``."""
    source = config.base_model if spec == "base" else spec
    embedder = ReasoningEmbedder.from_pretrained(source, device=config.device, max_length=config.max_length,
                                                 batch_size=config.batch_size)
    embedder.autocast_dtype = autocast_dtype_for(config.precision, embedder.device)
    embedder.generation_cache = config.generation_cache
    return (f"{embedder.name} base" if spec == "base" else spec), embedder


def run_eval(config: EvalConfig, embedders: list[tuple[str, ReasoningEmbedder]] | None = None) -> list[dict[str, Any]]:
    """Evaluate as configured; ``embedders`` (label, model) pairs replace ``config.models`` when given."""
    embedders = embedders if embedders is not None else [load_embedder(spec, config) for spec in config.models]
    systems: list[Any] = []
    token_stats: dict[str, Callable[[], tuple[float, ...]]] = {}  # system name -> its reasonings' statistics
    for label, embedder in embedders:
        paths = QueryPaths(embedder, config.reasoning_tokens, config.turns, config.feedback_k)
        own = embedder_systems(paths, label, reasoning=config.reasoning, auto=config.auto)
        for system in own[1:]:
            if isinstance(system, TurnSystem):
                token_stats[system.name] = system.token_stats
            elif system.name.endswith("(auto)"):
                token_stats[system.name] = paths.auto_stats
            elif system.name.endswith("(latent)"):  # its cost: the think tokens it reads, always ended by the token
                token_stats[system.name] = lambda embedder=embedder: (1.0, float(embedder.latent_tokens))
            else:
                token_stats[system.name] = lambda paths=paths: (paths.embed_token_rate, paths.reasoning_length)
        systems += own
    if config.baselines:
        systems += [BM25System(), minilm_system()]
    rows = []
    for name in config.datasets:
        dataset, note = evaluation_set(name, config)
        rows += evaluate_systems(dataset, systems, note=note)
        for row in rows[-len(systems):]:
            if row["system"] in token_stats:
                rate, length, *reasoned = token_stats[row["system"]]()
                row["embed_token_rate"], row["reasoning_length"] = round(rate, 4), round(length, 2)
                if reasoned:  # auto: the share of the queries the model chose to reason on
                    row["reasoned_share"] = round(reasoned[0], 4)
    return rows
