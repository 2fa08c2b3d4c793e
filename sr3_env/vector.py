"""The batched `RetrievalEmbed-v0`: B queries scored in one index search per step.

Made by ``gym.make_vec("RetrievalEmbed-v0", num_envs=B, vectorization_mode="vector_entry_point")``.
Episodes last one step, so the environment resets each sub-environment in the same step
(``AutoresetMode.SAME_STEP``): ``step`` returns the next B queries, and the finished episodes'
queries and infos are in ``infos["final_obs"]`` and ``infos["final_info"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sr3_env.data import RetrievalDataset
from sr3_env.env import check_options, query_space
from sr3_env.errors import InvalidOptionError, ResetNeeded
from sr3_env.task import RetrievalTask, TaskViews, check_render_mode, validate_actions


def query_rows_from_options(dataset: RetrievalDataset, options: Any, num_envs: int) -> np.ndarray | None:
    """The rows of ``options["query_ids"]`` (one id per sub-environment), or None when not given.

    Raises `InvalidOptionError` for other options or a wrong count, `UnknownIdError` for an unknown id."""
    options = check_options(options, "query_ids")
    if "query_ids" not in options:
        return None
    given = options["query_ids"]
    if isinstance(given, (str, bytes)) or not isinstance(given, (Sequence, np.ndarray)):
        raise InvalidOptionError(f"options['query_ids'] must be a list of {num_envs} query ids (one per "
                                 f"sub-environment), got {type(given).__name__}.")
    ids = list(given)
    if len(ids) != num_envs:
        raise InvalidOptionError(f"options['query_ids'] must hold {num_envs} ids (one per sub-environment), got {len(ids)}.")
    for query_id in ids:
        dataset.query_text(query_id)  # raises UnknownIdError with suggestions
    return np.asarray([dataset.query_row[q] for q in ids], dtype=np.int64)


class RetrievalEmbedVectorEnv(TaskViews, VectorEnv):
    """``num_envs`` queries at a time over one shared corpus index. Arguments as `RetrievalEmbedEnv`."""

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, max_episode_steps: int | None = None,
                 **kwargs: Any) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}.")
        if max_episode_steps not in (None, 1):
            raise ValueError("Episodes of RetrievalEmbed-v0 last exactly one step; max_episode_steps cannot change that.")
        check_render_mode(render_mode, self.metadata)
        self.task = RetrievalTask(**kwargs)
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.single_observation_space = query_space(self.task)
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(self.task.dim,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._query_rows: np.ndarray | None = None
        self._last_infos: list[dict[str, Any]] | None = None

    def _draw(self, count: int) -> np.ndarray:
        return self.np_random.integers(len(self.dataset.query_ids), size=count)

    def _observations(self) -> tuple[str, ...]:
        return tuple(self.dataset.query_texts[row] for row in self._query_rows)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[tuple[str, ...], dict[str, Any]]:
        super().reset(seed=seed)
        rows = query_rows_from_options(self.dataset, options, self.num_envs)
        self._query_rows = rows if rows is not None else self._draw(self.num_envs)
        self._last_infos = None
        infos = {"query_id": np.asarray([self.dataset.query_ids[r] for r in self._query_rows], dtype=object),
                 "_query_id": np.ones(self.num_envs, dtype=bool)}
        return self._observations(), infos

    def step(self, actions: Any) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._query_rows is None:
            raise ResetNeeded("Call reset() before step().")
        unit = validate_actions(actions, (self.num_envs, self.task.dim))
        rewards, step_infos = self.task.score(self._query_rows, unit)
        finished = self._observations()
        for info, reward in zip(step_infos, rewards):
            info["reward"] = float(reward)
        self._last_infos = step_infos
        self._last_rows = self._query_rows
        self._query_rows = self._draw(self.num_envs)  # same-step autoreset: every episode just ended
        infos: dict[str, Any] = {}
        for i, info in enumerate(step_infos):
            infos = self._add_info(infos, {"final_obs": finished[i], "final_info": info}, i)
            infos = self._add_info(infos, {"query_id": self.dataset.query_ids[self._query_rows[i]]}, i)
        done = np.ones(self.num_envs, dtype=bool)
        return self._observations(), rewards, done, np.zeros(self.num_envs, dtype=bool), infos

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode != "ansi" or self._query_rows is None:
            return None
        if self._last_infos is None:
            return tuple(self.task.render_text(row, None) for row in self._query_rows)
        return tuple(self.task.render_text(row, info) for row, info in zip(self._last_rows, self._last_infos))
