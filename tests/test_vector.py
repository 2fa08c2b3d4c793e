"""The vectorised environment: B queries scored in one index search, same-step autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sr3_env
from sr3_env import HashingEncoder, InvalidActionError


@pytest.fixture(scope="module")
def dataset():
    return sr3_env.load_dataset("semanlink").subset(num_queries=30, num_docs=80, seed=0)


def make_vec(dataset, num_envs=4, **kwargs):
    kwargs.setdefault("encoder", HashingEncoder(dim=32))
    return gym.make_vec("RetrievalEmbed-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", dataset=dataset, **kwargs)


def test_make_vec_scores_all_queries_in_one_index_call(dataset):
    envs = make_vec(dataset, num_envs=5)
    assert type(envs.unwrapped).__name__ == "RetrievalEmbedVectorEnv"
    observations, infos = envs.reset(seed=0)
    assert len(observations) == 5 and envs.observation_space.contains(observations)
    calls = []
    search = envs.unwrapped.index.search
    envs.unwrapped.index.search = lambda *args, **kwargs: calls.append(len(args[0])) or search(*args, **kwargs)
    next_observations, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
    assert calls == [5]
    assert rewards.shape == (5,) and terminated.all() and not truncated.any()
    assert list(infos["final_obs"]) == list(observations)
    assert infos["final_info"]["rank"].shape == (5,) and infos["final_info"]["_rank"].all()
    assert envs.observation_space.contains(next_observations)


def test_vector_and_single_envs_agree(dataset):
    envs = make_vec(dataset, num_envs=3)
    ids = dataset.query_ids[:3]
    envs.reset(options={"query_ids": ids})
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 32)).astype(np.float32)
    _, rewards, _, _, infos = envs.step(actions)
    single = gym.make("RetrievalEmbed-v0", dataset=dataset, encoder=HashingEncoder(dim=32))
    for i, query_id in enumerate(ids):
        single.reset(options={"query_id": query_id})
        _, reward, _, _, info = single.step(actions[i])
        assert reward == pytest.approx(rewards[i]) and info["rank"] == infos["final_info"]["rank"][i]


def test_vector_reset_is_deterministic_and_checks_options(dataset):
    a, b = make_vec(dataset), make_vec(dataset)
    assert a.reset(seed=3)[0] == b.reset(seed=3)[0]
    with pytest.raises(ValueError, match="4 ids"):
        a.reset(options={"query_ids": dataset.query_ids[:2]})


def test_vector_bad_actions(dataset):
    envs = make_vec(dataset, num_envs=2)
    envs.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"expected \(2, 32\)"):
        envs.step(np.ones(32, np.float32))
    bad = np.ones((2, 32), np.float32)
    bad[1] = 0
    with pytest.raises(InvalidActionError, match="zero vector"):
        envs.step(bad)
