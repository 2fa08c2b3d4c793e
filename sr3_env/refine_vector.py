"""The batched `RetrievalRefine-v0`: B queries, one index search per turn for the whole batch.

Made by ``gym.make_vec("RetrievalRefine-v0", num_envs=B, vectorization_mode="vector_entry_point")``.
All B episodes start together and last ``max_turns`` steps, so they also end together. On their
last turn the environment resets every sub-environment in the same step
(``AutoresetMode.SAME_STEP``): ``step`` returns the next B queries (with no documents), and the
finished episodes' observations and infos are in ``infos["final_obs"]`` and ``infos["final_info"]``.
On the earlier turns the step infos are at the top level of ``infos``, as in any vector environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sr3_env.errors import ResetNeeded
from sr3_env.refine import TurnFeedback, check_turn_arguments, refine_observation_space
from sr3_env.task import RetrievalTask, TaskViews, check_render_mode, validate_actions
from sr3_env.vector import query_rows_from_options

BatchObservation = dict[str, tuple]  # {"query": (B strings), "documents": (B tuples of strings)}


class RetrievalRefineVectorEnv(TaskViews, VectorEnv):
    """``num_envs`` queries at a time over one shared corpus index. Arguments as `RetrievalRefineEnv`."""

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, max_episode_steps: int | None = None,
                 max_turns: int = 2, feedback_k: int = 3, **kwargs: Any) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}.")
        max_turns, feedback_k = check_turn_arguments(max_turns, feedback_k, kwargs.get("top_k", 100))
        if max_episode_steps not in (None, max_turns):
            raise ValueError(f"Episodes of RetrievalRefine-v0 last max_turns={max_turns} steps; pass max_turns="
                             f"{max_episode_steps} instead of max_episode_steps.")
        check_render_mode(render_mode, self.metadata)
        self.task = RetrievalTask(**kwargs)
        self.feedback = TurnFeedback(self.task, feedback_k)
        self.max_turns = max_turns
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.single_observation_space = refine_observation_space(self.task)
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(self.task.dim,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._query_rows: np.ndarray | None = None
        self._start_episodes(None)
        self._last_rows: np.ndarray | None = None
        self._last_infos: list[dict[str, Any]] | None = None

    @property
    def feedback_k(self) -> int:
        return self.feedback.feedback_k

    def _start_episodes(self, rows: np.ndarray | None) -> None:
        self._query_rows = rows
        self._turn = 0
        self._previous = np.zeros(self.num_envs, dtype=np.float32)  # r(rank) of the previous turn
        self._shown: list[tuple[str, ...]] = [()] * self.num_envs

    def _observations(self) -> BatchObservation:
        return {"query": tuple(self.dataset.query_texts[row] for row in self._query_rows), "documents": tuple(self._shown)}

    def _query_id_infos(self, infos: dict[str, Any]) -> dict[str, Any]:
        for i, row in enumerate(self._query_rows):
            infos = self._add_info(infos, {"query_id": self.dataset.query_ids[row]}, i)
        return infos

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[BatchObservation, dict[str, Any]]:
        super().reset(seed=seed)
        rows = query_rows_from_options(self.dataset, options, self.num_envs)
        self._start_episodes(rows if rows is not None else self.np_random.integers(len(self.dataset.query_ids), size=self.num_envs))
        self._last_rows, self._last_infos = None, None
        return self._observations(), self._query_id_infos({})

    def step(self, actions: Any) -> tuple[BatchObservation, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._query_rows is None:
            raise ResetNeeded("Call reset() before step().")
        unit = validate_actions(actions, (self.num_envs, self.task.dim))
        values, step_infos = self.task.score(self._query_rows, unit)  # one index search for the whole batch
        self._turn += 1
        rewards = np.asarray([self.feedback.complete_info(info, value, previous, self._turn)
                              for info, value, previous in zip(step_infos, values, self._previous)], dtype=np.float32)
        self._previous = values.astype(np.float32)
        self._shown = [self.feedback.documents_of(info) for info in step_infos]
        self._last_rows, self._last_infos = self._query_rows, step_infos
        infos: dict[str, Any] = {}
        if self._turn < self.max_turns:
            for i, info in enumerate(step_infos):
                infos = self._add_info(infos, info, i)
            not_done = np.zeros(self.num_envs, dtype=bool)
            return self._observations(), rewards, not_done, not_done.copy(), infos
        finished = self._observations()
        self._start_episodes(self.np_random.integers(len(self.dataset.query_ids), size=self.num_envs))  # same-step autoreset
        for i, info in enumerate(step_infos):
            final_obs = {"query": finished["query"][i], "documents": finished["documents"][i]}
            infos = self._add_info(infos, {"final_obs": final_obs, "final_info": info}, i)
        infos = self._query_id_infos(infos)
        return self._observations(), rewards, np.ones(self.num_envs, dtype=bool), np.zeros(self.num_envs, dtype=bool), infos

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode != "ansi" or self._query_rows is None:
            return None
        if self._last_infos is None:
            return tuple(self.feedback.render(row, None, 0, self.max_turns) for row in self._query_rows)
        turn = self._turn or self.max_turns  # after the last turn the new episodes are at turn 0: show the finished ones
        return tuple(self.feedback.render(row, info, turn, self.max_turns)
                     for row, info in zip(self._last_rows, self._last_infos))
