"""Reasonings learned from the model's own best attempts (rejection sampling, as in STaR, ReST, RAFT).

For each query the model samples several reasonings. Each is cut after its first complete
sentence or line, or at a word start within a few tokens (`cut_length`), so that a kept reasoning
is short and teaches the model where to stop and write ``<|embed_token|>``. Each cut reasoning is embedded and ranked against the query's
relevant documents in the lazily refreshed training index, beside the query's direct embedding;
`keep_choice` keeps the best of the group, if the rule accepts it. SFT then trains on the kept
reasonings: the language-model loss on the reasoning and the token, the contrastive loss on its
embedding (`sr3_agent.training.sft`).

    sample (B·K) ─ cut at a sentence end ─ embed ─ rank in the index ─ keep ≤ 1 per query
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sr3_agent.model.embedder import ReasoningEmbedder

#: Which sampled reasoning a query keeps: ``all`` (its single sample, cut, unselected), ``best``
#: (the best-ranked of its samples), ``beats_direct`` (the best, only where it ranks the relevant
#: document above the direct embedding, or both rank it first).
KEEP_RULES = ("all", "best", "beats_direct")

_SENTENCE_ENDS = (".", "!", "?", ";")


@functools.lru_cache(maxsize=8)
def token_kinds(tokenizer: Any) -> tuple[frozenset[int], frozenset[int]]:
    """Two sets of token ids: those that end a sentence or a line (their text holds a newline, or
    ends, spaces aside, with ``. ! ? ;``) and those that start a word (their text starts with a space)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    ends = frozenset(i for i, text in enumerate(texts) if "\n" in text or text.rstrip().endswith(_SENTENCE_ENDS))
    starts = frozenset(i for i, text in enumerate(texts) if text[:1].isspace())
    return ends, starts


def cut_length(ids: Sequence[int], ends: frozenset[int], starts: frozenset[int], min_tokens: int,
               max_tokens: int) -> int:
    """How many of a reasoning's tokens to keep (at least 1 when ``ids`` is not empty):

    - up to and including its first sentence or line end between ``min_tokens`` and ``max_tokens``;
    - else, when it is longer than ``max_tokens``, up to the last word start within ``max_tokens + 1``
      tokens (never mid-word);
    - else all of it."""
    for position, token in enumerate(ids[:max_tokens]):
        if position + 1 >= min_tokens and token in ends:
            return position + 1
    if len(ids) <= max_tokens:
        return len(ids)
    return next((p for p in range(max_tokens, 0, -1) if ids[p] in starts), max_tokens)


def keep_choice(candidate_ranks: np.ndarray, direct_ranks: np.ndarray, rule: str) -> np.ndarray:
    """(B,) the index of the kept sample of each query, -1 where none is kept.

    ``candidate_ranks`` is (B, K): the rank each sample's embedding gives the query's relevant
    document (smaller is better; ``inf`` for a sample that was cut away); ``direct_ranks`` is (B,).
    Ties between samples go to the earlier one. With ``all`` each query keeps its first usable sample."""
    if rule not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {rule!r}.")
    ranks = np.asarray(candidate_ranks, dtype=np.float64)
    direct = np.asarray(direct_ranks, dtype=np.float64)
    if ranks.ndim != 2 or direct.shape != (len(ranks),):
        raise ValueError(f"candidate_ranks must be (B, K) and direct_ranks (B,), got {ranks.shape} and {direct.shape}.")
    usable = np.isfinite(ranks)
    if rule == "all":
        first = usable.argmax(axis=1)
        return np.where(usable.any(axis=1), first, -1)
    best = ranks.argmin(axis=1)
    best_rank = ranks[np.arange(len(ranks)), best]
    accepted = np.isfinite(best_rank)
    if rule == "beats_direct":
        accepted &= (best_rank < direct) | (best_rank == 1)
    return np.where(accepted, best, -1)


@dataclass
class Picked:
    """What `pick_reasonings` chose for a batch of queries."""

    reasonings: list[list[int] | None]  #: (B,) the kept reasoning's token ids, or None (embed directly)
    candidate_ranks: np.ndarray  #: (B, K) rank of the relevant document under each sample (inf: empty)
    direct_ranks: np.ndarray  #: (B,) rank under the direct embedding (nan when not searched)
    lengths: np.ndarray  #: (B, K) tokens of each cut sample (0: empty)
    emitted: np.ndarray  #: (B, K) bool: the model wrote the token itself within the length cap

    @property
    def kept_fraction(self) -> float:
        return float(np.mean([r is not None for r in self.reasonings])) if self.reasonings else 0.0


@torch.no_grad()
def reasoning_embeddings(embedder: ReasoningEmbedder, texts: Sequence[str], reasonings: Sequence[Sequence[int]]
                         ) -> torch.Tensor:
    """(N, D) embeddings of each text after the given reasoning (token ids) and the token, without gradients."""
    prompts = embedder.prompt_ids(texts, embedder.prompts.reasoning)
    sequences = [prompt + list(reasoning) + [embedder.embed_token_id] for prompt, reasoning in zip(prompts, reasonings)]
    was_training = embedder.model.training
    embedder.model.eval()
    try:
        vectors = []
        for start in range(0, len(sequences), embedder.batch_size):
            ids, mask = embedder.pad_left(sequences[start:start + embedder.batch_size])
            vectors.append(embedder.embed(ids, mask))
    finally:
        embedder.model.train(was_training)
    return torch.cat(vectors)


def pick_reasonings(embedder: ReasoningEmbedder, texts: Sequence[str], gold: Sequence[np.ndarray], search: Any, *,
                    samples: int, max_new_tokens: int, temperature: float, min_tokens: int, max_tokens: int,
                    rule: str, collective: bool = False) -> Picked:
    """Sample ``samples`` reasonings per text, cut each (`cut_length`), and keep at most one per text
    by ``rule``.

    ``search(vectors, gold)`` ranks (N, D) query vectors against each one's relevant rows and returns
    their best ranks (N,), e.g. a `sr3_env.LazyIndex` search; it is not called with rule ``all``. With
    ``collective`` (an index sharded over data-parallel processes, whose every search all of them must join) it is
    called exactly once whatever the batch, with no rows where this process has nothing to rank."""
    B = len(texts)
    if B == 0:
        if collective and rule != "all":
            search(torch.empty(0, embedder.dim), [])
        return Picked([], np.empty((0, samples)), np.empty(0), np.empty((0, samples), dtype=np.int64),
                      np.empty((0, samples), dtype=bool))
    # a reasoning has at least min_tokens tokens: the token is held back until then (a model trained to
    # write it right after a direct prompt would otherwise write it first here too)
    rollout = embedder.generate_reasoning(texts, max_new_tokens=max_new_tokens, temperature=temperature,
                                          num_samples=samples, min_new_tokens=min(min_tokens, max_new_tokens))
    ends, starts = token_kinds(embedder.tokenizer)
    generated = [row[mask].tolist() for row, mask in zip(rollout.input_ids, rollout.reasoning_mask)]
    generated = [ids[:-1] if emitted else ids for ids, emitted in zip(generated, rollout.emitted.tolist())]
    cuts = [cut_length(ids, ends, starts, min_tokens, max_tokens) if ids else None for ids in generated]
    lengths = np.array([cut or 0 for cut in cuts], dtype=np.int64).reshape(B, samples)
    usable = [i for i, cut in enumerate(cuts) if cut is not None]
    ranks = np.full(B * samples, np.inf)
    direct = np.full(B, np.nan)
    if rule != "all" and (usable or collective):
        vectors = (reasoning_embeddings(embedder, [texts[i // samples] for i in usable],
                                        [generated[i][:cuts[i]] for i in usable]) if usable
                   else torch.empty(0, embedder.dim, device=embedder.device))
        direct_vectors = torch.as_tensor(embedder.encode_queries(list(texts), reasoning=False), device=vectors.device)
        found = search(torch.cat([vectors, direct_vectors]), [gold[i // samples] for i in usable] + list(gold))
        ranks[usable] = found[:len(usable)]
        direct = np.asarray(found[len(usable):], dtype=np.float64)
    elif usable:
        ranks[usable] = 0.0  # unranked, but usable: `all` keeps the first
    choice = keep_choice(ranks.reshape(B, samples), direct, rule)
    reasonings = [None if c < 0 else generated[b * samples + c][:cuts[b * samples + c]] for b, c in enumerate(choice)]
    return Picked(reasonings, ranks.reshape(B, samples), direct, lengths, rollout.emitted.numpy().reshape(B, samples))
