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

import asyncio
from typing import Any, Sequence

import numpy as np
import torch

from sr3_agent.model.embedder import ReasoningEmbedder
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


class CompletionEmbeddings:
    """What every Search-R3 reward for TRL shares: each completion's embedding and its query id.

    Args:
        embedder: wraps the model GRPOTrainer trains (pass ``embedder.model`` as the trainer's model).
        query_id_column: the dataset column holding each prompt's query id.
    """

    def __init__(self, embedder: ReasoningEmbedder, query_id_column: str = "query_id") -> None:
        self.embedder, self.query_id_column = embedder, query_id_column

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

    def query_ids(self, prompts: Sequence[Any], completions: Sequence[Any],
                  completion_ids: Sequence[Sequence[int]] | None, kwargs: dict[str, Any]) -> list[str]:
        """The query id of each completion, from TRL's dataset columns; every list checked for one entry each."""
        n, who = len(completions), type(self).__name__
        if self.query_id_column not in kwargs:
            raise Sr3Error(f"{who} needs the query id of each prompt, but the training dataset has no "
                           f"{self.query_id_column!r} column (got {sorted(k for k in kwargs if k != 'trainer_state')}). "
                           "Build it with sr3_agent.grpo_dataset, or pass query_id_column=<your column>.")
        query_ids = [str(q) for q in kwargs[self.query_id_column]]
        lengths = {"prompts": len(prompts), self.query_id_column: len(query_ids)}
        if completion_ids is not None:
            lengths["completion_ids"] = len(completion_ids)
        wrong = {name: size for name, size in lengths.items() if size != n}
        if wrong:
            raise Sr3Error(f"{who} got {n} completions but {wrong}: every list must hold one entry per completion.")
        return query_ids

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


class RetrievalReward(CompletionEmbeddings):
    """Reward completions by the rank the environment gives their embedding (see the module docstring).

    Args:
        embedder: wraps the model GRPOTrainer trains (pass ``embedder.model`` as the trainer's model).
        dataset: queries (their ids must be in the training dataset's ``query_id`` column) and corpus.
        reward: the reward, a name or a callable, as in ``RetrievalEmbed-v0``.
        top_k: candidates per search, as in ``RetrievalEmbed-v0``.
        refresh: the index's refresh policy, as in ``RetrievalEmbed-v0``.
        refresh_budget: stalest rows re-encoded after every search, as in ``RetrievalEmbed-v0``.
        query_id_column: the dataset column holding each prompt's query id.
    """

    def __init__(self, embedder: ReasoningEmbedder, dataset: RetrievalDataset, *, reward: str = "log_rank",
                 top_k: int = 10, refresh: str = "lazy", refresh_budget: int = 0,
                 query_id_column: str = "query_id") -> None:
        super().__init__(embedder, query_id_column)
        self.__name__ = f"retrieval_{reward}"  # TRL names the reward's logs after it
        self.dataset, self.reward, self.top_k = dataset, reward, top_k
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

    def _track_updates(self, trainer_state: Any) -> None:
        step = getattr(trainer_state, "global_step", None)
        if step is not None and self._seen_step is not None and step != self._seen_step:
            self.embedder.bump_version()  # the trainer stepped its optimiser: index rows are stale now
        if step is not None:
            self._seen_step = step

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        n = len(completions)
        query_ids = self.query_ids(prompts, completions, completion_ids, kwargs)
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


class RemoteRetrievalReward(CompletionEmbeddings):
    """Reward completions by the rank an OpenEnv server of ``RetrievalEmbed-v0`` gives their embedding.

    The trainer embeds each completion with the policy, as `RetrievalReward` does, and sends the
    vector as the action of one episode (``reset(query_id=...)``, then ``step({"embedding": ...})``)
    to ``python -m sr3_env.openenv`` on another process or machine, over ``connections`` WebSocket
    sessions at once, so that the server scores them in shared index searches.

    The server's document encoder must embed into the policy's space: start it with
    ``--encoder FOLDER``, a ``sr3 export`` of the model the run starts from. Its index is then a frozen
    snapshot of the policy's document embeddings, not `RetrievalReward`'s lazily refreshed one: as
    the policy trains, its queries move away from the snapshot. Re-export and restart the server to
    refresh it, or use `RetrievalReward` where the trainer can hold the index itself.

    Args:
        embedder: wraps the model GRPOTrainer trains.
        base_url: the server, e.g. ``http://127.0.0.1:8001``.
        api_key: the server's ``--api-key`` (default: ``$SR3_API_KEY``).
        connections: sessions open at once (at most the server's ``--max-concurrent-envs``).
        timeout: seconds a reset or step may take before the call fails.
        query_id_column: the dataset column holding each prompt's query id.
    """

    def __init__(self, embedder: ReasoningEmbedder, base_url: str, *, api_key: str | None = None,
                 connections: int = 8, timeout: float = 60.0, query_id_column: str = "query_id") -> None:
        from sr3_env.serving.operations import resolve_api_key

        if connections < 1:
            raise Sr3Error(f"connections must be >= 1, got {connections}.")
        super().__init__(embedder, query_id_column)
        self.__name__ = "remote_retrieval"  # TRL names the reward's logs after it
        self.base_url, self.api_key = base_url, resolve_api_key(api_key)
        self.connections, self.timeout = int(connections), float(timeout)
        self.last_infos: list[dict[str, Any]] = []  #: each step's info from the server in the latest call

    async def _episodes(self, query_ids: list[str], embeddings: np.ndarray) -> list[tuple[float, dict[str, Any]]]:
        from sr3_env.openenv.client import Sr3EnvClient

        results: list[tuple[float, dict[str, Any]] | None] = [None] * len(query_ids)

        async def session(rows: range) -> None:
            async with Sr3EnvClient(self.base_url, api_key=self.api_key, message_timeout_s=self.timeout) as env:
                for row in rows:
                    await env.reset(query_id=query_ids[row])
                    step = await env.step({"embedding": embeddings[row].tolist()})
                    results[row] = (float(step.reward), dict(step.observation["info"]))

        count = min(self.connections, len(query_ids))
        await asyncio.gather(*(session(range(k, len(query_ids), count)) for k in range(count)))
        return [result for result in results if result is not None]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        query_ids = self.query_ids(prompts, completions, completion_ids, kwargs)
        if not query_ids:
            return []
        embeddings = self.embed(prompts, completions, completion_ids)
        try:
            results = run_coroutine(self._episodes(query_ids, embeddings))
        except ConnectionError as error:
            raise Sr3Error(f"Could not reach the OpenEnv server at {self.base_url}: {error}. Start it with "
                           "`python -m sr3_env.openenv --encoder <sr3 export folder> ...` and pass its address.") from error
        except TimeoutError as error:
            raise Sr3Error(f"The OpenEnv server at {self.base_url} did not answer within {self.timeout} s; is it "
                           "overloaded (see its /metrics), or should timeout be larger?") from error
        except RuntimeError as error:  # the server's answer to a bad reset or step (unknown id, wrong length)
            raise Sr3Error(f"The OpenEnv server at {self.base_url} refused an episode: {error}") from error
        self.last_infos = [info for _, info in results]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):  # TRL averages these over each logging step
            log_metric("sr3/rank_mean", float(np.mean([info["rank"] for info in self.last_infos])))
        return [reward for reward, _ in results]


def run_coroutine(coroutine: Any) -> Any:
    """Run ``coroutine`` to its end from synchronous code, on a thread of its own if this one runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
