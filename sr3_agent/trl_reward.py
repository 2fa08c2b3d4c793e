"""Search-R3 rewards inside TRL: a ``reward_funcs`` entry for ``trl.GRPOTrainer``.

TRL samples the reasonings and runs GRPO; `RetrievalReward` turns each completion into an
embedding (prompt + completion + ``<|embed_token|>``, hidden state of the token) and asks the
``RetrievalEmbed-v0`` vector environment for its reward: a function of the rank of the query's
relevant documents in a lazily refreshed index whose document encoder is the policy itself.

    embedder = ReasoningEmbedder.from_pretrained("runs/sft/final")
    data = load_dataset("wordnet-revdict", split="train").subset(num_queries=256, num_docs=1000, seed=0)
    embedder.model.generation_config.eos_token_id = embedder.stop_token_ids  # stop at the embed token
    trainer = GRPOTrainer(model=embedder.model, processing_class=embedder.tokenizer,
                          reward_funcs=RetrievalReward(embedder, data), train_dataset=grpo_dataset(embedder, data),
                          args=GRPOConfig(...))

What differs from ``sr3 rl``: GRPO's gradient reaches the reasoning tokens only. The embedding is
read from the same network, so it moves with the shared weights, but nothing trains it directly
(``sr3 rl`` adds an auxiliary contrastive loss for that). The reward notices each optimiser step
through ``trainer_state.global_step`` and bumps the embedder's version, so the index re-encodes
the rows it touches instead of ranking against an outdated model.

With ``beta > 0`` GRPOTrainer loads its reference model again from ``model.name_or_path``; load
the embedder from a folder written by ``save_pretrained`` (as ``sr3 sft`` does), not from a bare
causal LM, so that the reference also has the ``<|embed_token|>`` row.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from sr3_agent.embedder import ReasoningEmbedder
from sr3_env import LazyIndex, RetrievalDataset
from sr3_env.errors import Sr3Error
from sr3_env.vector import RetrievalEmbedVectorEnv


def grpo_dataset(embedder: ReasoningEmbedder, dataset: RetrievalDataset) -> Any:
    """A ``datasets.Dataset`` for GRPOTrainer: ``prompt`` (the embedder's chat-templated reasoning
    prompt, as plain text) and ``query_id`` (which `RetrievalReward` needs to find the gold documents)."""
    import datasets

    return datasets.Dataset.from_dict({
        "prompt": [embedder.prompt_text(text, embedder.prompts.reasoning) for text in dataset.query_texts],
        "query_id": list(dataset.query_ids)})


def completion_sequence(prompt_ids: Sequence[int], completion_ids: Sequence[int], stop_ids: Sequence[int],
                        embed_token_id: int) -> list[int]:
    """Prompt, then the completion up to its first stop token (the embed token or end of turn), then
    the embed token: the sequence whose last hidden state is the embedding."""
    completion = list(completion_ids)
    stop = next((i for i, token in enumerate(completion) if token in stop_ids), len(completion))
    return list(prompt_ids) + completion[:stop] + [embed_token_id]


class RetrievalReward:
    """Reward completions by the rank the environment gives their embedding (see the module docstring).

    Args:
        embedder: wraps the model GRPOTrainer trains (pass ``embedder.model`` as the trainer's model).
        dataset: queries (their ids must be in the training dataset's ``query_id`` column) and corpus.
        reward, top_k, refresh, refresh_budget: as in ``RetrievalEmbed-v0``.
        query_id_column: the dataset column holding each prompt's query id.
    """

    def __init__(self, embedder: ReasoningEmbedder, dataset: RetrievalDataset, *, reward: str = "log_rank",
                 top_k: int = 10, refresh: str = "lazy", refresh_budget: int = 0,
                 query_id_column: str = "query_id") -> None:
        self.__name__ = f"retrieval_{reward}"  # TRL names the reward's logs after it
        self.embedder, self.dataset, self.reward, self.top_k = embedder, dataset, reward, top_k
        self.query_id_column = query_id_column
        self.index = LazyIndex(dataset.documents, embedder, refresh=refresh, refresh_budget=refresh_budget,
                               device=embedder.device)
        self._envs: dict[int, RetrievalEmbedVectorEnv] = {}
        self._seen_step: int | None = None
        self.last_info: dict[str, Any] = {}  #: the environment's final_info of the latest call (ranks, top ids, ...)

    def env(self, size: int) -> RetrievalEmbedVectorEnv:
        """The vector environment for ``size`` completions at once (all share one index)."""
        if size not in self._envs:
            self._envs[size] = RetrievalEmbedVectorEnv(num_envs=size, dataset=self.dataset, index=self.index,
                                                       reward=self.reward, top_k=self.top_k)
        return self._envs[size]

    def _prompt_ids(self, prompt: Any) -> list[int]:
        tokenizer = self.embedder.tokenizer
        if isinstance(prompt, str):
            return tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):  # conversational
            return tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                 return_dict=True)["input_ids"]
        raise Sr3Error(f"A prompt must be a string or a list of chat messages, got {type(prompt).__name__}.")

    def _completion_ids(self, completion: Any) -> list[int]:
        text = completion if isinstance(completion, str) else "".join(m.get("content", "") for m in completion)
        return self.embedder.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _track_updates(self, trainer_state: Any) -> None:
        step = getattr(trainer_state, "global_step", None)
        if step is not None and self._seen_step is not None and step != self._seen_step:
            self.embedder.bump_version()  # the trainer stepped its optimiser: index rows are stale now
        if step is not None:
            self._seen_step = step

    @torch.no_grad()
    def embed(self, prompts: Sequence[Any], completions: Sequence[Any],
              completion_ids: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """(N, dim) embeddings of prompt + completion + embed token."""
        ids = completion_ids if completion_ids is not None else [self._completion_ids(c) for c in completions]
        embedder = self.embedder
        sequences = [completion_sequence(self._prompt_ids(p), c, embedder.stop_token_ids, embedder.embed_token_id)
                     for p, c in zip(prompts, ids)]
        out = np.empty((len(sequences), embedder.dim), dtype=np.float32)
        was_training = embedder.model.training
        embedder.model.eval()
        try:
            for start in range(0, len(sequences), embedder.batch_size):
                input_ids, mask = embedder.pad_left(sequences[start:start + embedder.batch_size])
                out[start:start + len(input_ids)] = embedder.embed(input_ids, mask).float().cpu().numpy()
        finally:
            embedder.model.train(was_training)
        return out

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        n = len(completions)
        if self.query_id_column not in kwargs:
            raise Sr3Error(f"RetrievalReward needs the query id of each prompt, but the training dataset has no "
                           f"{self.query_id_column!r} column (got {sorted(k for k in kwargs if k != 'trainer_state')}). "
                           "Build it with sr3_agent.grpo_dataset, or pass query_id_column=<your column>.")
        query_ids = [str(q) for q in kwargs[self.query_id_column]]
        lengths = {"prompts": len(prompts), self.query_id_column: len(query_ids)}
        if completion_ids is not None:
            lengths["completion_ids"] = len(completion_ids)
        wrong = {name: size for name, size in lengths.items() if size != n}
        if wrong:
            raise Sr3Error(f"RetrievalReward got {n} completions but {wrong}: every list must hold one entry per "
                           "completion.")
        if n == 0:
            return []
        self._track_updates(kwargs.get("trainer_state"))
        embeddings = self.embed(prompts, completions, completion_ids)
        if embeddings.shape != (n, self.index.encoder.dim):
            raise Sr3Error(f"The embeddings have shape {embeddings.shape}; the environment expects "
                           f"({n}, {self.index.encoder.dim}). Is the embedder the index's encoder?")
        env = self.env(n)
        env.reset(options={"query_ids": query_ids})  # unknown ids raise UnknownIdError with suggestions
        _, rewards, _, _, infos = env.step(embeddings)
        if rewards.shape != (n,):
            raise Sr3Error(f"The environment returned rewards of shape {rewards.shape} for {n} completions.")
        self.last_info = infos["final_info"]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):  # TRL averages these over each logging step
            log_metric("sr3/rank_mean", float(np.mean(self.last_info["rank"])))
            log_metric("sr3/rows_reencoded", float(np.asarray(self.last_info["index"]["rows_reencoded"])[0]))
        return [float(r) for r in rewards]
