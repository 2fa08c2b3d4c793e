"""`RetrievalRefine-v0`: the multi-turn `RetrievalEmbed-v0`. The agent sees what its last embedding
retrieved and embeds the query again.

The full description (spaces, rewards, arguments, version history) is in ``docs/environment.md``.
The scoring, the lazily refreshed index and the checks of actions and options are those of
`RetrievalEmbed-v0` (`sr3_env.task.RetrievalTask`); this module adds turns and feedback only.
"""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sr3_env.env import check_options, query_space
from sr3_env.errors import ResetNeeded
from sr3_env.task import RetrievalTask, TaskViews, check_render_mode, query_charset, validate_actions

Observation = dict[str, Any]  # {"query": str, "documents": tuple[str, ...]}


def check_turn_arguments(max_turns: Any, feedback_k: Any, top_k: Any) -> tuple[int, int]:
    """``max_turns`` (>= 1) and ``feedback_k`` (0..top_k) as ints, or a ValueError saying how to fix them."""
    for name, value, lowest in (("max_turns", max_turns, 1), ("feedback_k", feedback_k, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
            raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}.")
    if isinstance(top_k, numbers.Integral) and feedback_k > top_k:
        raise ValueError(f"feedback_k={feedback_k} exceeds top_k={top_k}: the documents shown are taken from the top_k "
                         f"candidates. Lower feedback_k or raise top_k to at least {feedback_k}.")
    return int(max_turns), int(feedback_k)


def document_space(task: RetrievalTask) -> spaces.Text:
    """A `Text` space that holds every document of the corpus (title, newline, text)."""
    documents = task.dataset.documents
    lengths = [len(text) for text in documents]
    charset = query_charset(task.dataset).union(*map(set, documents))
    return spaces.Text(max_length=max(lengths), min_length=min(lengths), charset=charset)


def refine_observation_space(task: RetrievalTask) -> spaces.Dict:
    """``Dict(query=Text, documents=Sequence(Text))``: the query and the texts shown as feedback."""
    return spaces.Dict({"query": query_space(task), "documents": spaces.Sequence(document_space(task), stack=False)})


class TurnFeedback:
    """Turn rewards and feedback texts, shared by the single and the vectorised environment."""

    def __init__(self, task: RetrievalTask, feedback_k: int) -> None:
        self.task = task
        self.feedback_k = min(feedback_k, task.top_k)
        self.documents = task.dataset.documents  # built once: the property makes a new list per call

    def documents_of(self, info: dict[str, Any]) -> tuple[str, ...]:
        """The texts of the first ``feedback_k`` documents of a turn's ``top_ids``, best first."""
        doc_row = self.task.dataset.doc_row
        return tuple(self.documents[doc_row[doc_id]] for doc_id in info["top_ids"][:self.feedback_k])

    @staticmethod
    def complete_info(info: dict[str, Any], value: float, previous: float, turn: int) -> float:
        """Add ``turn``, ``rank_reward`` = r(rank_t) and ``reward`` = r(rank_t) - r(rank_{t-1}) to ``info``."""
        reward = float(value) - float(previous)
        info.update(turn=turn, rank_reward=float(value), reward=reward)
        return reward

    def render(self, query_row: int, info: dict[str, Any] | None, turn: int, max_turns: int) -> str:
        header = f"turn {turn} of {max_turns}\n"
        return header + self.task.render_text(query_row, info)


class RetrievalRefineEnv(TaskViews, gym.Env[Observation, np.ndarray]):
    """## Description

    Each episode is one query of a retrieval dataset and lasts ``max_turns`` turns. On every turn
    the agent answers with a query embedding, which is ranked against the whole corpus exactly as
    in `RetrievalEmbed-v0` (one search of the lazily refreshed index). The next observation shows
    the texts of the ``feedback_k`` documents that embedding retrieved, so the agent can read them
    and try again (Rocchio feedback, agentic search).

    ## Action Space

    ``Box(-1, 1, (dim,), float32)``, as in `RetrievalEmbed-v0`: only the direction matters; any
    finite, non-zero vector of that shape is accepted.

    ## Observation Space

    | key | space | value |
    |---|---|---|
    | ``query`` | ``Text`` (printable ASCII plus every character of the queries) | the query |
    | ``documents`` | ``Sequence(Text)`` (charset: the above plus every character of the corpus) | texts (title, newline, text) of the top ``feedback_k`` documents of the previous turn, best first; ``()`` on the first turn |

    ## Rewards

    Turn t earns ``r(rank_t) - r(rank_{t-1})`` with ``r(rank_0) = 0``, for any reward ``r`` of
    `RetrievalEmbed-v0` (``reciprocal_rank`` by default), so the return of an episode is the
    reward of its last turn's embedding: a later turn is worth taking only if it ranks better.

    ## Starting State

    A query drawn uniformly with the environment's seeded generator (or ``options["query_id"]``);
    ``documents`` is empty.

    ## Episode End

    Terminates after ``max_turns`` steps; ``step`` again before ``reset`` raises `ResetNeeded`.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``max_turns`` | 2 | turns (embeddings) per query |
    | ``feedback_k`` | 3 | documents shown after each turn (at most ``top_k``) |
    | the others | | as `RetrievalEmbed-v0`: ``dataset``, ``split``, ``encoder``, ``reward``, ``top_k``, ``refresh``, ``refresh_every``, ``refresh_budget``, ``index``, ``device``, ``candidate_search``, ``dtype``, ``process_group``, ``render_mode`` |

    ## Vectorized environment

    ``gym.make_vec("RetrievalRefine-v0", num_envs=B, vectorization_mode="vector_entry_point")``:
    `sr3_env.refine_vector.RetrievalRefineVectorEnv`, one index search per turn for all B queries.

    ## Version History

    - v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, dataset: Any = "semanlink", split: str = "test", encoder: Any = "minilm", reward: Any = "reciprocal_rank",
                 max_turns: int = 2, feedback_k: int = 3, top_k: int = 100, refresh: str = "lazy",
                 refresh_every: int | None = None, refresh_budget: int = 0, index: Any = None, device: str | None = None,
                 candidate_search: str = "torch", dtype: Any = "float32", process_group: Any = None,
                 render_mode: str | None = None) -> None:
        check_render_mode(render_mode, self.metadata)
        self.max_turns, feedback_k = check_turn_arguments(max_turns, feedback_k, top_k)
        self.task = RetrievalTask(dataset=dataset, split=split, encoder=encoder, reward=reward, top_k=top_k, refresh=refresh,
                                  refresh_every=refresh_every, refresh_budget=refresh_budget, index=index, device=device,
                                  candidate_search=candidate_search, dtype=dtype, process_group=process_group)
        self.feedback = TurnFeedback(self.task, feedback_k)
        self.render_mode = render_mode
        self.observation_space = refine_observation_space(self.task)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.task.dim,), dtype=np.float32)
        self._query_row: int | None = None
        self._turn = 0
        self._previous = 0.0  # r(rank) of the previous turn
        self._shown: tuple[str, ...] = ()
        self._last_info: dict[str, Any] | None = None

    @property
    def feedback_k(self) -> int:
        return self.feedback.feedback_k

    def _observation(self) -> Observation:
        return {"query": self.dataset.query_texts[self._query_row], "documents": self._shown}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        options = check_options(options, "query_id")
        if "query_id" in options:
            self.dataset.query_text(options["query_id"])  # raises UnknownIdError with suggestions
            self._query_row = self.dataset.query_row[options["query_id"]]
        else:
            self._query_row = int(self.np_random.integers(len(self.dataset.query_ids)))
        self._turn, self._previous, self._shown, self._last_info = 0, 0.0, (), None
        return self._observation(), {"query_id": self.dataset.query_ids[self._query_row]}

    def step(self, action: Any) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if self._query_row is None or self._turn >= self.max_turns:
            raise ResetNeeded(f"Call reset() before step(): each episode is one query and ends after max_turns="
                              f"{self.max_turns} step{'s' if self.max_turns > 1 else ''}.")
        unit = validate_actions(action, (self.task.dim,))
        values, infos = self.task.score(np.asarray([self._query_row]), unit[None, :])
        self._turn += 1
        info = infos[0]
        reward = self.feedback.complete_info(info, values[0], self._previous, self._turn)
        self._previous, self._shown, self._last_info = float(values[0]), self.feedback.documents_of(info), info
        return self._observation(), reward, self._turn >= self.max_turns, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._query_row is None:
            return "(call reset() first)\n"
        return self.feedback.render(self._query_row, self._last_info, self._turn, self.max_turns)
