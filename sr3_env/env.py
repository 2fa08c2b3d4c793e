"""`RetrievalEmbed-v0`: one query per episode; the action is its embedding; the reward comes from
the rank of the relevant documents under a lazily refreshed corpus index.

The full description (spaces, rewards, arguments, version history) is in ``docs/environment.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sr3_env.errors import InvalidOptionError, ResetNeeded
from sr3_env.task import RetrievalTask, TaskViews, check_render_mode, query_charset, validate_actions


def query_space(task: RetrievalTask) -> spaces.Text:
    lengths = [len(text) for text in task.dataset.query_texts]
    return spaces.Text(max_length=max(lengths), min_length=min(lengths), charset=query_charset(task.dataset))


def check_options(options: Any, known: str) -> Mapping[str, Any]:
    """``reset``'s options as a mapping whose only key may be ``known``; `InvalidOptionError` otherwise."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidOptionError(f"reset(options=...) takes a dict such as {{{known!r}: ...}} or None, got "
                                 f"{type(options).__name__}.")
    unknown = [key for key in options if key != known]
    if unknown:
        raise InvalidOptionError(f"Unknown reset option(s) {sorted(map(repr, unknown))}; the only option is {known!r}.")
    return options


class RetrievalEmbedEnv(TaskViews, gym.Env[str, np.ndarray]):
    """## Description

    Each episode is one query of a retrieval dataset. The agent answers with a query embedding;
    the environment normalises it, ranks the whole corpus against it with a lazily refreshed
    index (only stale rows among the top-K candidates and the gold documents are re-encoded with
    the current encoder), and rewards the rank of the relevant documents. The episode then ends.

    ## Action Space

    ``Box(-1, 1, (dim,), float32)``: the query embedding (``dim`` = the encoder's). Only its
    direction matters; any finite, non-zero vector of that shape is accepted.

    ## Observation Space

    ``Text``: the query, with a charset of printable ASCII plus every character of the queries.

    ## Rewards

    ``reciprocal_rank`` (default), ``ndcg@k``, ``recall@k``, ``log_rank`` = 1 - log(rank)/log(N),
    or a callable ``fn(ranks, relevance, n_docs) -> float``; see `sr3_env.rewards`. The training
    commands use ``log_rank`` instead (why: ``docs/environment.md``, Rewards).

    ## Starting State / Episode End

    A query drawn uniformly with the environment's seeded generator (or ``options["query_id"]``);
    the episode terminates after one step.

    ## Arguments

    See ``docs/environment.md``: ``dataset``, ``split``, ``encoder``, ``reward``, ``top_k``,
    ``refresh``, ``refresh_every``, ``refresh_budget``, ``index``, ``device``,
    ``candidate_search``, ``dtype``, ``process_group`` (docs/scaling.md: with a process group,
    the index is sharded and every process must step its environment in lockstep), ``render_mode``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, dataset: Any = "semanlink", split: str = "test", encoder: Any = "minilm", reward: Any = "reciprocal_rank",
                 top_k: int = 100, refresh: str = "lazy", refresh_every: int | None = None, refresh_budget: int = 0,
                 index: Any = None, device: str | None = None, candidate_search: str = "torch", dtype: Any = "float32",
                 process_group: Any = None, render_mode: str | None = None) -> None:
        check_render_mode(render_mode, self.metadata)
        self.task = RetrievalTask(dataset=dataset, split=split, encoder=encoder, reward=reward, top_k=top_k, refresh=refresh,
                                  refresh_every=refresh_every, refresh_budget=refresh_budget, index=index, device=device,
                                  candidate_search=candidate_search, dtype=dtype, process_group=process_group)
        self.render_mode = render_mode
        self.observation_space = query_space(self.task)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.task.dim,), dtype=np.float32)
        self._query_row: int | None = None
        self._done = True
        self._last_info: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = check_options(options, "query_id")
        if "query_id" in options:
            self.dataset.query_text(options["query_id"])  # raises UnknownIdError with suggestions
            self._query_row = self.dataset.query_row[options["query_id"]]
        else:
            self._query_row = int(self.np_random.integers(len(self.dataset.query_ids)))
        self._done, self._last_info = False, None
        return self.dataset.query_texts[self._query_row], {"query_id": self.dataset.query_ids[self._query_row]}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._query_row is None or self._done:
            raise ResetNeeded("Call reset() before step(): each episode is one query and ends after one step.")
        unit = validate_actions(action, (self.task.dim,))
        rewards, infos = self.task.score(np.asarray([self._query_row]), unit[None, :])
        reward, info = float(rewards[0]), infos[0]
        info["reward"] = reward
        self._done, self._last_info = True, info
        return self.dataset.query_texts[self._query_row], reward, True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._query_row is None:
            return "(call reset() first)\n"
        return self.task.render_text(self._query_row, self._last_info)
