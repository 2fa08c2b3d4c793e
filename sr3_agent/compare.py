"""``sr3 eval``: embedders (direct and with reasoning) side by side with BM25 and all-MiniLM-L6-v2.

Each dataset is cut to a seeded sample of queries and a sub-corpus that keeps every relevant
document (both stated in the table's notes), because encoding a large corpus with an LLM on a CPU
takes long: see `EvalConfig.corpus_docs`. Corpus embeddings are cached per model fingerprint.
"""

from __future__ import annotations

import logging
from typing import Any

from sr3_agent.config import EvalConfig
from sr3_agent.embedder import ReasoningEmbedder
from sr3_agent.evaluate import BM25System, DenseSystem, evaluate_systems, minilm_system
from sr3_env import RetrievalDataset, load_dataset

logger = logging.getLogger(__name__)


def embedder_systems(embedder: ReasoningEmbedder, label: str, *, reasoning: bool, max_new_tokens: int) -> list[DenseSystem]:
    """The embedder as one or two systems: direct queries, and queries embedded after reasoning.

    Both share the documents (always embedded directly), hence one cache key.
    """
    key = f"{embedder.name}@{embedder.fingerprint()}"
    systems = [DenseSystem(f"{label} (direct)", lambda texts: embedder.encode_queries(texts), embedder.encode_documents, key)]
    if reasoning:
        systems.append(DenseSystem(
            f"{label} (reasoning)", lambda texts: embedder.encode_queries(texts, reasoning=True, max_new_tokens=max_new_tokens),
            embedder.encode_documents, key))
    return systems


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
    return (f"{embedder.name} base" if spec == "base" else spec), embedder


def run_eval(config: EvalConfig, embedders: list[tuple[str, ReasoningEmbedder]] | None = None) -> list[dict[str, Any]]:
    """Evaluate as configured; ``embedders`` (label, model) pairs replace ``config.models`` when given."""
    embedders = embedders if embedders is not None else [load_embedder(spec, config) for spec in config.models]
    systems: list[Any] = []
    for label, embedder in embedders:
        systems += embedder_systems(embedder, label, reasoning=config.reasoning, max_new_tokens=config.max_new_tokens)
    if config.baselines:
        systems += [BM25System(), minilm_system()]
    rows = []
    for name in config.datasets:
        dataset, note = evaluation_set(name, config)
        for label, embedder in embedders:
            embedder.missing_embed_token = embedder.reasoning_rollouts = 0
        rows += evaluate_systems(dataset, systems, note=note)
        for row in rows[-len(systems):]:
            embedder = next((e for label, e in embedders if row["system"] == f"{label} (reasoning)"), None)
            if embedder is not None:
                row["missing_embed_token_rate"] = round(embedder.missing_embed_token_rate, 4)
    return rows
