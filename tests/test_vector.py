"""The vectorised environments: B queries scored in one index search per step, same-step autoreset.

`VectorProtocolSuite` is the protocol; `TestRetrievalEmbedVectorV0` and `TestRetrievalRefineVectorV0`
run it by overriding the factory (dm_env ``test_utils`` style). An episode of the refine environment
lasts ``max_turns`` steps, so the suite steps through whole episodes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sr3_env
from sr3_env import HashingEncoder, InvalidActionError


@pytest.fixture(scope="module")
def dataset():
    return sr3_env.load_dataset("semanlink").subset(num_queries=30, num_docs=80, seed=0)


class VectorProtocolSuite:
    """Subclasses set `env_id`, `vector_class` and `episode_length` and may override `make_vec`."""

    env_id: str
    vector_class: str
    episode_length: int = 1

    def make_vec(self, dataset: Any, num_envs: int = 4, **kwargs: Any) -> gym.vector.VectorEnv:
        kwargs.setdefault("encoder", HashingEncoder(dim=32))
        return gym.make_vec(self.env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", dataset=dataset, **kwargs)

    def make_single(self, dataset: Any, **kwargs: Any) -> gym.Env:
        kwargs.setdefault("encoder", HashingEncoder(dim=32))
        return gym.make(self.env_id, dataset=dataset, **kwargs)

    def test_make_vec_scores_all_queries_in_one_index_call_per_step(self, dataset):
        envs = self.make_vec(dataset, num_envs=5)
        assert type(envs.unwrapped).__name__ == self.vector_class
        observations, infos = envs.reset(seed=0)
        assert envs.observation_space.contains(observations)
        queries = self.queries(observations)
        calls = []
        search = envs.unwrapped.index.search
        envs.unwrapped.index.search = lambda *args, **kwargs: calls.append(len(args[0])) or search(*args, **kwargs)
        for turn in range(1, self.episode_length + 1):
            next_observations, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
            assert calls == [5] * turn
            assert rewards.shape == (5,) and not truncated.any()
            assert terminated.all() == (turn == self.episode_length) and terminated.all() == terminated.any()
            assert envs.observation_space.contains(next_observations)
        assert [self.query_of(final) for final in infos["final_obs"]] == queries
        assert infos["final_info"]["rank"].shape == (5,) and infos["final_info"]["_rank"].all()

    def queries(self, observations: Any) -> list[str]:
        """The query texts of a batch of observations."""
        return list(observations)

    def query_of(self, observation: Any) -> str:
        """The query text of one sub-environment's observation."""
        return observation

    def test_vector_and_single_envs_agree_over_whole_episodes(self, dataset):
        envs = self.make_vec(dataset, num_envs=3)
        ids = dataset.query_ids[:3]
        envs.reset(options={"query_ids": ids})
        actions = np.random.default_rng(0).uniform(-1, 1, (self.episode_length, 3, 32)).astype(np.float32)
        vector = [envs.step(actions[t]) for t in range(self.episode_length)]
        single = self.make_single(dataset)
        for i, query_id in enumerate(ids):
            single.reset(options={"query_id": query_id})
            for t in range(self.episode_length):
                _, reward, _, _, info = single.step(actions[t, i])
                _, rewards, _, _, infos = vector[t]
                step_info = infos["final_info"] if t == self.episode_length - 1 else infos
                assert reward == pytest.approx(rewards[i]) and info["rank"] == step_info["rank"][i]

    def test_vector_reset_is_deterministic_and_checks_options(self, dataset):
        a, b = self.make_vec(dataset), self.make_vec(dataset)
        assert a.reset(seed=3)[0] == b.reset(seed=3)[0]
        with pytest.raises(ValueError, match="4 ids"):
            a.reset(options={"query_ids": dataset.query_ids[:2]})
        with pytest.raises(sr3_env.UnknownIdError, match="Did you mean"):
            a.reset(options={"query_ids": [dataset.query_ids[0] + "x"] * 4})

    def test_vector_bad_actions(self, dataset):
        envs = self.make_vec(dataset, num_envs=2)
        envs.reset(seed=0)
        with pytest.raises(InvalidActionError, match=r"expected \(2, 32\)"):
            envs.step(np.ones(32, np.float32))
        bad = np.ones((2, 32), np.float32)
        bad[1] = 0
        with pytest.raises(InvalidActionError, match="zero vector"):
            envs.step(bad)
        bad[1] = np.nan
        with pytest.raises(InvalidActionError, match="NaN or inf"):
            envs.step(bad)

    def test_step_before_reset_raises(self, dataset):
        with pytest.raises(sr3_env.ResetNeeded, match="reset"):
            self.make_vec(dataset, num_envs=2).step(np.ones((2, 32), np.float32))


class TestRetrievalEmbedVectorV0(VectorProtocolSuite):
    env_id = "RetrievalEmbed-v0"
    vector_class = "RetrievalEmbedVectorEnv"


class TestRetrievalRefineVectorV0(VectorProtocolSuite):
    env_id = "RetrievalRefine-v0"
    vector_class = "RetrievalRefineVectorEnv"
    episode_length = 2

    def queries(self, observations: Any) -> list[str]:
        return list(observations["query"])

    def query_of(self, observation: Any) -> str:
        return observation["query"]

    def test_three_turns_and_final_observations(self, dataset):
        envs = self.make_vec(dataset, num_envs=2, max_turns=3, feedback_k=2)
        observations, _ = envs.reset(seed=0)
        assert observations["documents"] == ((), ())
        for _ in range(3):
            observations, rewards, terminated, _, infos = envs.step(envs.action_space.sample())
        assert terminated.all() and list(infos["final_info"]["turn"]) == [3, 3]
        assert observations["documents"] == ((), ())  # the next episodes start
        for i in range(2):
            final = infos["final_obs"][i]
            top = infos["final_info"]["top_ids"][i][:2]
            assert final["documents"] == tuple(envs.unwrapped.dataset.documents[dataset.doc_row[d]] for d in top)

    def test_max_episode_steps_other_than_max_turns_is_refused(self, dataset):
        with pytest.raises(ValueError, match="pass max_turns=5"):
            self.make_vec(dataset, num_envs=2, max_episode_steps=5)
