"""``sr3 eval``: embedders (direct and with reasoning) side by side with BM25 and all-MiniLM-L6-v2.

Each dataset is cut to a seeded sample of queries and a sub-corpus that keeps every relevant
document (both stated in the table's notes), because encoding a large corpus with an LLM on a CPU
takes long: see `EvalConfig.corpus_docs`. Corpus embeddings are cached per model fingerprint.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sr3_agent.config import EvalConfig
from sr3_agent.embedder import ReasoningEmbedder, autocast_dtype_for, fuse
from sr3_agent.evaluate import BM25System, DenseSystem, evaluate_systems, minilm_system
from sr3_env import RetrievalDataset, load_dataset

logger = logging.getLogger(__name__)


class QueryPaths:
    """The three ways an embedder embeds queries: direct, after reasoning, and fused (both combined).

    Each way is computed once per list of texts (the fused system reuses the other two);
    `embed_token_rate` is the share of the reasonings the model ended with the token itself."""

    def __init__(self, embedder: ReasoningEmbedder, max_new_tokens: int) -> None:
        self.embedder, self.max_new_tokens = embedder, max_new_tokens
        self._texts: tuple[str, ...] | None = None
        self._vectors: np.ndarray | None = None
        self._direct: tuple[tuple[str, ...], np.ndarray] | None = None
        self.embed_token_rate: float | None = None
        self.reasoning_length: float | None = None  #: mean tokens written before the token

    def direct(self, texts: list[str]) -> np.ndarray:
        if self._direct is None or self._direct[0] != tuple(texts):
            self._direct = tuple(texts), self.embedder.encode_queries(texts)
        return self._direct[1]

    def reasoning(self, texts: list[str]) -> np.ndarray:
        if self._texts != tuple(texts):
            embedder = self.embedder
            embedder.missing_embed_token = embedder.reasoning_rollouts = embedder.reasoning_tokens_written = 0
            self._vectors = embedder.encode_queries(texts, reasoning=True, max_new_tokens=self.max_new_tokens)
            self._texts, self.embed_token_rate = tuple(texts), 1.0 - embedder.missing_embed_token_rate
            self.reasoning_length = embedder.reasoning_tokens_written / max(embedder.reasoning_rollouts, 1)
        return self._vectors

    def fused(self, texts: list[str]) -> np.ndarray:
        return fuse(self.direct(texts), self.reasoning(texts))


def embedder_systems(paths: QueryPaths, label: str, *, reasoning: bool) -> list[DenseSystem]:
    """An embedder as one system (direct queries) or three (also after reasoning, and fused).

    All share the documents (always embedded directly), hence one cache key.
    """
    embedder = paths.embedder
    key = f"{embedder.name}@{embedder.fingerprint()}"
    names = ("direct", "reasoning", "fused") if reasoning else ("direct",)
    return [DenseSystem(f"{label} ({name})", getattr(paths, name), embedder.encode_documents, key) for name in names]


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
    return (f"{embedder.name} base" if spec == "base" else spec), embedder


def run_eval(config: EvalConfig, embedders: list[tuple[str, ReasoningEmbedder]] | None = None) -> list[dict[str, Any]]:
    """Evaluate as configured; ``embedders`` (label, model) pairs replace ``config.models`` when given."""
    embedders = embedders if embedders is not None else [load_embedder(spec, config) for spec in config.models]
    systems: list[Any] = []
    reasoning_paths: dict[str, QueryPaths] = {}  # system name -> the paths that wrote its reasonings
    for label, embedder in embedders:
        paths = QueryPaths(embedder, config.max_new_tokens)
        own = embedder_systems(paths, label, reasoning=config.reasoning)
        reasoning_paths.update({system.name: paths for system in own[1:]})
        systems += own
    if config.baselines:
        systems += [BM25System(), minilm_system()]
    rows = []
    for name in config.datasets:
        dataset, note = evaluation_set(name, config)
        rows += evaluate_systems(dataset, systems, note=note)
        for row in rows[-len(systems):]:
            if row["system"] in reasoning_paths:
                paths = reasoning_paths[row["system"]]
                row["embed_token_rate"] = round(paths.embed_token_rate, 4)
                row["reasoning_length"] = round(paths.reasoning_length, 2)
    return rows
