"""`RetrievalEmbed-v0` and `RetrievalRefine-v0` as OpenEnv environments: one `RetrievalSession` per
WebSocket session, every session over one `EnvironmentHub`.

The hub builds the Gymnasium environment once (dataset, encoder, lazily refreshed index, reward),
on the batcher's worker thread, and scores the actions of all sessions through one `MicroBatcher`: the steps that arrive together
run as one index search (`RetrievalTask.score` on the stacked actions), exactly as a vector
environment's step does, and only the batcher's worker thread touches the index, so the lazy
refresh needs no lock. A session is a shallow copy of the hub's environment with its own episode
and random generator; the Gymnasium code (checks, rewards, feedback, infos) is the one users run
in-process.
"""

from __future__ import annotations

import copy
import difflib
import uuid
from collections.abc import Hashable
from typing import Any

import numpy as np
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import EnvironmentMetadata

from sr3_env.errors import InvalidOptionError, ResetNeeded
from sr3_env.openenv.models import EmbedAction, RetrievalObservation, RetrievalState
from sr3_env.serving.batcher import MicroBatcher
from sr3_env.serving.operations import ServerMetrics

ENV_IDS = ("RetrievalEmbed-v0", "RetrievalRefine-v0")
"""The environments the server can run (its ``--env``)."""


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars as lists and numbers, tuples as lists (for JSON)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class BatchedTask:
    """A `RetrievalTask` whose ``score`` goes through the hub's batcher; everything else is the task's own."""

    def __init__(self, task: Any, batcher: MicroBatcher) -> None:
        self._task, self._batcher = task, batcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def score(self, query_rows: np.ndarray, unit_actions: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        items = list(zip(np.asarray(query_rows).tolist(), unit_actions))
        results = self._batcher.submit("score", items).result()
        return np.asarray([reward for reward, _ in results], dtype=np.float32), [info for _, info in results]


class EnvironmentHub:
    """What every session shares: one Gymnasium environment's task (dataset, encoder, index) and the batcher.

    Args:
        env_id: ``RetrievalEmbed-v0`` or ``RetrievalRefine-v0``.
        max_batch: the batcher's largest batch of steps.
        max_wait: seconds the batcher waits for a batch to fill.
        max_queue: most steps waiting (None: no bound).
        env_kwargs: the environment's arguments (``dataset``, ``encoder``, ``reward``, ``top_k``, ...).
    """

    def __init__(self, env_id: str = "RetrievalEmbed-v0", *, max_batch: int = 256, max_wait: float = 0.002,
                 max_queue: int | None = 1024, **env_kwargs: Any) -> None:
        if env_id not in ENV_IDS:
            close = difflib.get_close_matches(env_id, ENV_IDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown environment {env_id!r}; this server runs one of {list(ENV_IDS)}.{hint}")
        if env_id == "RetrievalEmbed-v0":
            from sr3_env.env import RetrievalEmbedEnv as env_class
        else:
            from sr3_env.refine import RetrievalRefineEnv as env_class
        self.env_id = env_id
        self.metrics = ServerMetrics("steps_scored", "Actions (query embeddings) scored, all sessions.")
        self.batcher = MicroBatcher(self._score, max_batch=max_batch, max_wait=max_wait, max_queue=max_queue,
                                    on_batch=self.metrics.observe_batch, unit="steps", name="sr3-env-batcher").start()
        self.metrics.watch_queue(lambda: self.batcher.waiting)
        try:  # the encoder and the index are built on the worker, the one thread that runs torch (MicroBatcher.call)
            self.template = self.batcher.call(lambda: env_class(**env_kwargs)).result()
        except BaseException:
            self.batcher.close()
            raise
        self.task = self.template.task
        self.template.task = BatchedTask(self.task, self.batcher)

    def _score(self, _: Hashable, items: list[tuple[int, np.ndarray]]) -> list[tuple[float, dict[str, Any]]]:
        rows = np.asarray([row for row, _ in items], dtype=np.int64)
        rewards, infos = self.task.score(rows, np.stack([unit for _, unit in items]))
        return list(zip(rewards.tolist(), infos))

    def new_env(self) -> Any:
        """A session's environment: the hub's, with its own episode and (unseeded) random generator."""
        env = copy.copy(self.template)
        env._np_random, env._np_random_seed = None, None
        return env

    @property
    def max_turns(self) -> int:
        return int(getattr(self.template, "max_turns", 1))

    def info(self) -> dict[str, Any]:
        """What this server runs, for ``GET /info``."""
        from sr3_env import __version__

        return {"env_id": self.env_id, **self.task.describe(), "max_turns": self.max_turns,
                "max_batch": self.batcher.max_batch, "max_queue": self.batcher.max_queue, "version": __version__,
                "backend": "sr3_env.openenv"}

    def start(self) -> None:
        self.batcher.start()

    def close(self) -> None:
        self.batcher.close()


class RetrievalSession(Environment[EmbedAction, RetrievalObservation, RetrievalState]):
    """One client's episodes (an OpenEnv environment over the hub's Gymnasium environment)."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # sessions share the index only through the batcher's one thread

    def __init__(self, hub: EnvironmentHub) -> None:
        super().__init__()
        self.hub = hub
        self.env = hub.new_env()
        self._state = RetrievalState(env_id=hub.env_id, max_turns=hub.max_turns)
        self._closed = False

    def _observation(self, observation: Any, query_id: str, *, reward: float | None, done: bool,
                     info: dict[str, Any]) -> RetrievalObservation:
        if isinstance(observation, dict):  # RetrievalRefine-v0: {"query", "documents"}
            query, documents = observation["query"], list(observation["documents"])
        else:
            query, documents = observation, []
        return RetrievalObservation(query=query, query_id=query_id, documents=documents, turn=self._state.step_count,
                                    info=jsonable(info), reward=reward, done=done)

    def _check_open(self) -> None:
        if self._closed:
            raise ResetNeeded("This session was closed (idle past the server's --session-timeout, or shut down); "
                              "open a new one (reconnect the client).")

    def reset(self, seed: int | None = None, episode_id: str | None = None, query_id: str | None = None,
              **kwargs: Any) -> RetrievalObservation:
        """A new episode: a query drawn with the session's generator (``seed`` seeds it), or ``query_id``."""
        self._check_open()
        if kwargs:
            raise InvalidOptionError(f"Unknown reset argument(s) {sorted(kwargs)}; reset takes seed, episode_id and query_id.")
        observation, info = self.env.reset(seed=seed, options=None if query_id is None else {"query_id": query_id})
        self._state = RetrievalState(episode_id=episode_id or uuid.uuid4().hex, step_count=0, env_id=self.hub.env_id,
                                     query_id=info["query_id"], max_turns=self.hub.max_turns)
        return self._observation(observation, info["query_id"], reward=None, done=False, info={})

    def step(self, action: EmbedAction, timeout_s: float | None = None, **kwargs: Any) -> RetrievalObservation:
        """Score the embedding; the observation carries the reward, ``done`` and the step's info."""
        self._check_open()
        observation, reward, terminated, truncated, info = self.env.step(np.asarray(action.embedding, dtype=np.float64))
        self._state.step_count += 1
        return self._observation(observation, self._state.query_id or "", reward=float(reward),
                                 done=bool(terminated or truncated), info=info)

    @property
    def state(self) -> RetrievalState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        from sr3_env import __version__

        task = self.hub.task.describe()
        return EnvironmentMetadata(
            name=self.hub.env_id, version=__version__, documentation_url="docs/environment.md",
            description=(f"{self.hub.env_id}: each episode is a query of {task['dataset']} ({task['queries']} queries, "
                         f"{task['documents']} documents); the action is its embedding ({{'embedding': [{task['dim']} "
                         f"floats]}}); the reward ({task['reward']}) comes from the rank of its relevant documents "
                         "under a lazily refreshed index shared by every session."))

    def close(self) -> None:
        self._closed = True
