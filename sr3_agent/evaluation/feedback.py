"""Later turns of multi-turn retrieval (`RetrievalRefine-v0`): what the agent reads and how it embeds again.

Turn 1 embeds the query directly. On each later turn the model's prompt holds the query and the
texts of the ``feedback_k`` documents its previous embedding retrieved, best first, each cut so that
the whole prompt fits the embedder's ``max_length``; under the reasoning instruction the model writes
a short reasoning and embeds again at ``<|embed_token|>``.

`feedback_text` builds that text (pure); `refine_turns` runs the later turns offline over a corpus's
vectors (``sr3 eval --turns``, the held-out curve of ``sr3 rl --turns 2``); `train_rl` plays them in
the environment itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.evaluation.evaluate import dense_run
from sr3_env import RetrievalDataset

#: Tokens of a shown document at most, even when the prompt has room for more.
MAX_DOC_TOKENS = 64
#: The line between the query and the documents.
HEADER = "Search results for it:"


def feedback_text(query: str, documents: Sequence[str], tokenizer: Any, room: int) -> str:
    """The user text of a later turn: the query, then the shown documents numbered best first, each
    on one line and cut to an equal share of ``room`` tokens (the user text's budget; at most
    `MAX_DOC_TOKENS` each, at least 1). With no documents it is the query alone."""
    if not documents:
        return query
    flat = [" ".join(str(text).split()) for text in documents]  # titles and texts on one line each
    head = f"{query}\n\n{HEADER}"
    used = len(tokenizer(head, add_special_tokens=False)["input_ids"]) + 3 * len(flat)  # "\n1. " per document
    share = min(MAX_DOC_TOKENS, max(1, (room - used) // len(flat)))
    lines = [head]
    for number, text in enumerate(flat, start=1):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        lines.append(f"{number}. " + (text if len(ids) <= share else tokenizer.decode(ids[:share]).rstrip() + " ..."))
    return "\n".join(lines)


def feedback_room(embedder: ReasoningEmbedder) -> int:
    """Tokens left for the user text of a reasoning prompt: ``max_length`` minus the template around it."""
    return embedder.max_length - len(embedder.prompt_ids([""], embedder.prompts.reasoning)[0])


def feedback_texts(embedder: ReasoningEmbedder, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[str]:
    """`feedback_text` of each query with the documents shown to it, cut to the embedder's room."""
    room = feedback_room(embedder)
    return [feedback_text(query, shown, embedder.tokenizer, room) for query, shown in zip(queries, documents)]


def shown_documents(dataset: RetrievalDataset, query_vectors: np.ndarray, doc_vectors: np.ndarray, k: int
                    ) -> list[tuple[str, ...]]:
    """The texts of each query's top ``k`` documents under exact inner-product search, best first."""
    run = dense_run(dataset, query_vectors, doc_vectors, k=k)
    documents, doc_row = dataset.documents, dataset.doc_row
    return [tuple(documents[doc_row[doc_id]] for doc_id in run[query_id]) for query_id in dataset.query_ids]


@dataclass
class Turn:
    """One later turn of every query: the texts it read, its (N, D) embeddings and the reasonings' token statistics."""

    texts: list[str]
    vectors: np.ndarray
    embed_token_rate: float
    reasoning_length: float  #: mean tokens written before the token


def refine_turns(embedder: ReasoningEmbedder, dataset: RetrievalDataset, doc_vectors: np.ndarray, first: np.ndarray, *,
                 turns: int, feedback_k: int, max_new_tokens: int) -> list[Turn]:
    """Turns 2..``turns`` of every query of ``dataset`` (greedy reasoning), each reading the top
    ``feedback_k`` documents that the previous turn's embeddings retrieved from ``doc_vectors``;
    ``first`` holds turn 1's embeddings. Returns one `Turn` per later turn."""
    if turns < 1 or feedback_k < 1:
        raise ValueError(f"turns and feedback_k must be >= 1, got {turns} and {feedback_k}.")
    out, previous = [], first
    for _ in range(turns - 1):
        shown = shown_documents(dataset, previous, doc_vectors, feedback_k)
        texts = feedback_texts(embedder, dataset.query_texts, shown)
        embedder.reset_reasoning_counters()
        previous = embedder.encode_queries(texts, reasoning=True, max_new_tokens=max_new_tokens)
        out.append(Turn(texts, previous, 1.0 - embedder.missing_embed_token_rate, embedder.mean_reasoning_length))
    return out
