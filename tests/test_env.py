"""The environment protocol, one suite for every environment, and what only RetrievalEmbed-v0 has.

`EnvProtocolSuite` holds the protocol tests (registration, spaces, determinism, bad actions and
arguments, the oracle, rendering, check_env). As in dm_env's ``test_utils``, an environment gets the
whole suite by subclassing it and overriding `make_env` (plus a few one-line adapters for its
observation); `TestRetrievalEmbedV0` and `TestRetrievalRefineV0` below do that.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sr3_env
from sr3_env import HashingEncoder, InvalidActionError, ResetNeeded, UnknownIdError
from sr3_env.env import RetrievalEmbedEnv
from sr3_env.refine import RetrievalRefineEnv
from sr3_env.wrappers import QueryEmbeddingObservation


@pytest.fixture(scope="module")
def small_semanlink():
    return sr3_env.load_dataset("semanlink").subset(num_queries=30, num_docs=80, seed=0)


def make(dataset, **kwargs):
    kwargs.setdefault("encoder", HashingEncoder(dim=64))
    return gym.make("RetrievalEmbed-v0", dataset=dataset, **kwargs)


def gold_embedding(env, query_id):
    base = env.unwrapped
    row = base.dataset.doc_row[next(iter(base.dataset.relevant(query_id)))]
    return base.index.embeddings[row].numpy()


class EnvProtocolSuite:
    """The protocol every retrieval environment keeps. Subclasses set `env_id` and `env_class` and may
    override `make_env`, `query_of`, `query_space_of` and `episode_length`."""

    env_id: str
    env_class: type

    def make_env(self, dataset: Any, **kwargs: Any) -> gym.Env:
        """The environment under test on ``dataset`` (a 64-dimensional hashing encoder unless given)."""
        kwargs.setdefault("encoder", HashingEncoder(dim=64))
        return gym.make(self.env_id, dataset=dataset, **kwargs)

    def query_of(self, observation: Any) -> str:
        """The query text held by an observation."""
        return observation

    def query_space_of(self, env: gym.Env) -> gym.Space:
        """The part of the observation space that holds the query."""
        return env.observation_space

    def episode_length(self, env: gym.Env) -> int:
        return 1

    def test_make_with_no_arguments_uses_semanlink_and_minilm(self):
        env = gym.make(self.env_id)
        assert env.unwrapped.dataset.name == "semanlink"
        assert type(env.unwrapped.encoder).__name__ == "MiniLMEncoder"
        assert env.action_space.shape == (384,)
        observation, info = env.reset(seed=0)
        assert env.observation_space.contains(observation)
        _, reward, terminated, truncated, info = env.step(gold_embedding(env, info["query_id"]))
        assert terminated == (self.episode_length(env) == 1) and not truncated
        assert info["rank"] == 1 and reward == pytest.approx(1.0)

    def test_module_prefixed_id_imports_the_package(self):
        env = gym.make(f"sr3_env:{self.env_id}", encoder="hashing")
        assert isinstance(env.unwrapped, self.env_class)

    def test_every_query_fits_the_observation_space(self):
        env = gym.make(self.env_id, dataset="wordnet-revdict", encoder=HashingEncoder(dim=8))
        space = self.query_space_of(env)
        assert all(space.contains(text) for text in env.unwrapped.dataset.query_texts)

    def test_reset_is_deterministic_under_a_seed(self, small_semanlink):
        env_a, env_b = self.make_env(small_semanlink), self.make_env(small_semanlink)
        draws_a = [env_a.reset(seed=7)[1]["query_id"]] + [env_a.reset()[1]["query_id"] for _ in range(5)]
        draws_b = [env_b.reset(seed=7)[1]["query_id"]] + [env_b.reset()[1]["query_id"] for _ in range(5)]
        assert draws_a == draws_b
        assert len(set(draws_a)) > 1

    def test_reset_option_picks_the_query_and_rejects_unknown_ids(self, small_semanlink):
        env = self.make_env(small_semanlink)
        query_id = small_semanlink.query_ids[3]
        observation, info = env.reset(options={"query_id": query_id})
        assert info["query_id"] == query_id and self.query_of(observation) == small_semanlink.query_text(query_id)
        with pytest.raises(UnknownIdError, match="Did you mean"):
            env.reset(options={"query_id": query_id + "x"})
        with pytest.raises(ValueError, match="query_id"):
            env.reset(options={"query": query_id})

    def test_oracle_gets_rank_one_and_random_actions_do_not(self, small_semanlink):
        env = self.make_env(small_semanlink)
        oracle, random_ranks = [], []
        rng = np.random.default_rng(0)
        for query_id in small_semanlink.query_ids:
            env.reset(options={"query_id": query_id})
            _, _, _, _, info = env.step(gold_embedding(env, query_id))
            oracle.append(info["rank"])
            env.reset(options={"query_id": query_id})
            _, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            random_ranks.append(info["rank"])
        assert np.mean(np.asarray(oracle) == 1) >= 0.95  # ties between identical documents aside
        assert np.mean(np.asarray(random_ranks) == 1) < 0.3
        assert np.mean(random_ranks) > 5 * np.mean(oracle)

    def test_info_carries_ranks_top_ids_metrics_and_index_stats(self, small_semanlink):
        env = self.make_env(small_semanlink, reward="ndcg@10", top_k=20)
        _, info = env.reset(seed=1)
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert set(info) >= {"query_id", "gold_ids", "gold_ranks", "rank", "top_ids", "top_scores", "metrics", "index"}
        assert len(info["top_ids"]) == 20 and np.all(np.diff(info["top_scores"]) <= 1e-6)
        assert info["rank"] == min(info["gold_ranks"])
        assert reward == pytest.approx(info["metrics"]["ndcg@10"])  # the first turn: nothing to subtract
        assert set(info["index"]) >= {"rows_reencoded", "rows_reencoded_total", "stale_fraction", "encoder_calls"}
        for doc_id, rank in zip(info["gold_ids"], info["gold_ranks"]):
            if rank <= 20:
                assert info["top_ids"][rank - 1] == doc_id or info["top_scores"][rank - 1] == pytest.approx(
                    info["top_scores"][info["top_ids"].index(doc_id)])

    @pytest.mark.parametrize("reward", ["reciprocal_rank", "ndcg@10", "recall@100", "log_rank"])
    def test_rewards_are_in_unit_interval(self, small_semanlink, reward):
        env = self.make_env(small_semanlink, reward=reward)
        env.reset(seed=0)
        _, value, _, _, _ = env.step(env.action_space.sample())
        assert 0.0 <= value <= 1.0

    @pytest.mark.parametrize("action, message", [
        (np.zeros(64, np.float32), "zero vector"),
        (np.full(64, np.nan, np.float32), "NaN or inf"),
        (np.r_[np.ones(63), np.inf].astype(np.float32), "NaN or inf"),
        (np.ones(63, np.float32), r"expected \(64,\)"),
        (np.ones((1, 64), np.float32), r"expected \(64,\)"),
        (np.array(["a"] * 64), "cannot be cast"),
        (np.ones(64, np.complex64), "real-valued"),
    ])
    def test_bad_actions_raise_a_value_error_that_says_what_was_expected(self, small_semanlink, action, message):
        env = self.make_env(small_semanlink)
        env.reset(seed=0)
        with pytest.raises(InvalidActionError, match=message) as caught:
            env.step(action)
        assert isinstance(caught.value, ValueError)

    def test_step_before_reset_and_after_the_episode_raises(self, small_semanlink):
        env = self.make_env(small_semanlink).unwrapped
        with pytest.raises(ResetNeeded, match="reset"):
            env.step(np.ones(64, np.float32))
        env.reset(seed=0)
        for _ in range(self.episode_length(env)):
            env.step(np.ones(64, np.float32))
        with pytest.raises(ResetNeeded):
            env.step(np.ones(64, np.float32))

    def test_actions_are_normalised_so_scale_does_not_matter(self, small_semanlink):
        env = self.make_env(small_semanlink)
        action = np.random.default_rng(0).uniform(-1, 1, 64).astype(np.float32)
        env.reset(options={"query_id": small_semanlink.query_ids[0]})
        info_a = env.step(action)[4]
        env.reset(options={"query_id": small_semanlink.query_ids[0]})
        info_b = env.step(action * 0.01)[4]
        assert info_a["top_ids"] == info_b["top_ids"] and info_a["rank"] == info_b["rank"]

    def test_render_ansi_shows_query_top_documents_and_gold_rank(self, small_semanlink):
        env = self.make_env(small_semanlink, render_mode="ansi")
        observation, info = env.reset(seed=0)
        assert self.query_of(observation) in env.render()
        env.step(gold_embedding(env, info["query_id"]))
        text = env.render()
        assert "best gold rank: 1" in text and "*gold*" in text

    def test_bad_arguments_say_how_to_fix_them(self, small_semanlink):
        with pytest.raises(ValueError, match="Did you mean 'ndcg@10'"):
            self.make_env(small_semanlink, reward="ndgc@10")
        with pytest.raises(ValueError, match="periodic"):
            self.make_env(small_semanlink, refresh="periodic")
        with pytest.raises(ValueError, match="encoder"):
            self.make_env(small_semanlink, encoder="bert")
        with pytest.raises(ValueError, match="render_mode"):
            self.env_class(dataset=small_semanlink, encoder="hashing", render_mode="human")
        with pytest.raises(sr3_env.DatasetNotFoundError, match="semanlink"):
            gym.make(self.env_id, dataset="semanlnk", encoder="hashing")

    def test_a_user_callable_encoder_and_reward_work(self, small_semanlink):
        hashing = HashingEncoder(dim=16)
        env = self.make_env(small_semanlink, encoder=lambda texts: hashing.encode_documents(texts),
                            reward=lambda ranks, relevance, n_docs: float(min(ranks) <= 3))
        assert env.action_space.shape == (16,)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(np.ones(16, np.float32))
        assert reward == float(info["rank"] <= 3)

    def test_a_reward_callable_that_returns_no_scalar_fails_clearly(self, small_semanlink):
        env = self.make_env(small_semanlink, reward=lambda ranks, relevance, n_docs: [1.0, 2.0])
        env.reset(seed=0)
        with pytest.raises(sr3_env.Sr3Error, match="one float per query"):
            env.step(np.ones(64, np.float32))

    def test_gymnasium_check_env_passes_without_warnings(self, small_semanlink):
        from gymnasium.utils.env_checker import check_env

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(self.make_env(small_semanlink).unwrapped, skip_render_check=False)


class TestRetrievalEmbedV0(EnvProtocolSuite):
    env_id = "RetrievalEmbed-v0"
    env_class = RetrievalEmbedEnv


class TestRetrievalRefineV0(EnvProtocolSuite):
    env_id = "RetrievalRefine-v0"
    env_class = RetrievalRefineEnv

    def query_of(self, observation: Any) -> str:
        return observation["query"]

    def query_space_of(self, env: gym.Env) -> gym.Space:
        return env.observation_space["query"]

    def episode_length(self, env: gym.Env) -> int:
        return env.unwrapped.max_turns


# -- RetrievalEmbed-v0 only: the query-embedding wrapper and stable-baselines3 --------------------

def test_the_wrapped_env_passes_gymnasium_check_env(small_semanlink):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The one expected warning: check_env notes that a wrapped env differs from its unwrapped
        # one, which is the point of the wrapper. Anything else still fails the test.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(QueryEmbeddingObservation(make(small_semanlink)))


def test_stable_baselines3_check_env_passes_on_the_wrapped_env(small_semanlink):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(QueryEmbeddingObservation(make(small_semanlink)), warn=True)


def test_stable_baselines3_check_env_rejects_text_observations_clearly(small_semanlink):
    from stable_baselines3.common.env_checker import check_env

    with pytest.raises((AssertionError, ValueError)):  # SB3 cannot read text: that is why the wrapper exists
        check_env(make(small_semanlink).unwrapped)
