"""RetrievalEmbed-v0: registration, spaces, determinism, bad actions, the oracle, check_env."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import sr3_env
from sr3_env import HashingEncoder, InvalidActionError, ResetNeeded, UnknownIdError
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


def test_make_with_no_arguments_uses_semanlink_and_minilm():
    env = gym.make("RetrievalEmbed-v0")
    assert env.unwrapped.dataset.name == "semanlink"
    assert type(env.unwrapped.encoder).__name__ == "MiniLMEncoder"
    assert env.action_space.shape == (384,)
    query, info = env.reset(seed=0)
    assert env.observation_space.contains(query)
    _, reward, terminated, truncated, info = env.step(gold_embedding(env, info["query_id"]))
    assert terminated and not truncated
    assert info["rank"] == 1 and reward == pytest.approx(1.0)


def test_module_prefixed_id_imports_the_package():
    env = gym.make("sr3_env:RetrievalEmbed-v0", encoder="hashing")
    assert isinstance(env.unwrapped, sr3_env.env.RetrievalEmbedEnv)


def test_every_query_fits_the_observation_space():
    env = gym.make("RetrievalEmbed-v0", dataset="wordnet-revdict", encoder=HashingEncoder(dim=8))
    space = env.observation_space
    assert all(space.contains(text) for text in env.unwrapped.dataset.query_texts)


def test_reset_is_deterministic_under_a_seed(small_semanlink):
    env_a, env_b = make(small_semanlink), make(small_semanlink)
    draws_a = [env_a.reset(seed=7)[1]["query_id"]] + [env_a.reset()[1]["query_id"] for _ in range(5)]
    draws_b = [env_b.reset(seed=7)[1]["query_id"]] + [env_b.reset()[1]["query_id"] for _ in range(5)]
    assert draws_a == draws_b
    assert len(set(draws_a)) > 1


def test_reset_option_picks_the_query_and_rejects_unknown_ids(small_semanlink):
    env = make(small_semanlink)
    query_id = small_semanlink.query_ids[3]
    text, info = env.reset(options={"query_id": query_id})
    assert info["query_id"] == query_id and text == small_semanlink.query_text(query_id)
    with pytest.raises(UnknownIdError, match="Did you mean"):
        env.reset(options={"query_id": query_id + "x"})
    with pytest.raises(ValueError, match="query_id"):
        env.reset(options={"query": query_id})


def test_oracle_gets_rank_one_and_random_actions_do_not(small_semanlink):
    env = make(small_semanlink)
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


def test_info_carries_ranks_top_ids_metrics_and_index_stats(small_semanlink):
    env = make(small_semanlink, reward="ndcg@10", top_k=20)
    _, info = env.reset(seed=1)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert set(info) >= {"query_id", "gold_ids", "gold_ranks", "rank", "top_ids", "top_scores", "metrics", "index"}
    assert len(info["top_ids"]) == 20 and np.all(np.diff(info["top_scores"]) <= 1e-6)
    assert info["rank"] == min(info["gold_ranks"])
    assert reward == pytest.approx(info["metrics"]["ndcg@10"])
    assert set(info["index"]) >= {"rows_reencoded", "rows_reencoded_total", "stale_fraction", "encoder_calls"}
    for doc_id, rank in zip(info["gold_ids"], info["gold_ranks"]):
        if rank <= 20:
            assert info["top_ids"][rank - 1] == doc_id or info["top_scores"][rank - 1] == pytest.approx(
                info["top_scores"][info["top_ids"].index(doc_id)])


@pytest.mark.parametrize("reward", ["reciprocal_rank", "ndcg@10", "recall@100", "log_rank"])
def test_rewards_are_in_unit_interval(small_semanlink, reward):
    env = make(small_semanlink, reward=reward)
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
def test_bad_actions_raise_a_value_error_that_says_what_was_expected(small_semanlink, action, message):
    env = make(small_semanlink)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=message) as caught:
        env.step(action)
    assert isinstance(caught.value, ValueError)


def test_step_before_reset_and_after_the_episode_raises(small_semanlink):
    env = make(small_semanlink).unwrapped
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(np.ones(64, np.float32))
    env.reset(seed=0)
    env.step(np.ones(64, np.float32))
    with pytest.raises(ResetNeeded):
        env.step(np.ones(64, np.float32))


def test_actions_are_normalised_so_scale_does_not_matter(small_semanlink):
    env = make(small_semanlink)
    action = np.random.default_rng(0).uniform(-1, 1, 64).astype(np.float32)
    env.reset(options={"query_id": small_semanlink.query_ids[0]})
    info_a = env.step(action)[4]
    env.reset(options={"query_id": small_semanlink.query_ids[0]})
    info_b = env.step(action * 0.01)[4]
    assert info_a["top_ids"] == info_b["top_ids"] and info_a["rank"] == info_b["rank"]


def test_render_ansi_shows_query_top_documents_and_gold_rank(small_semanlink):
    env = make(small_semanlink, render_mode="ansi")
    query, info = env.reset(seed=0)
    assert query in env.render()
    env.step(gold_embedding(env, info["query_id"]))
    text = env.render()
    assert "best gold rank: 1" in text and "*gold*" in text


def test_bad_arguments_say_how_to_fix_them(small_semanlink):
    with pytest.raises(ValueError, match="Did you mean 'ndcg@10'"):
        make(small_semanlink, reward="ndgc@10")
    with pytest.raises(ValueError, match="periodic"):
        make(small_semanlink, refresh="periodic")
    with pytest.raises(ValueError, match="encoder"):
        make(small_semanlink, encoder="bert")
    with pytest.raises(sr3_env.DatasetNotFoundError, match="semanlink"):
        gym.make("RetrievalEmbed-v0", dataset="semanlnk", encoder="hashing")


def test_a_user_callable_encoder_and_reward_work(small_semanlink):
    hashing = HashingEncoder(dim=16)
    env = make(small_semanlink, encoder=lambda texts: hashing.encode_documents(texts),
               reward=lambda ranks, relevance, n_docs: float(min(ranks) <= 3))
    assert env.action_space.shape == (16,)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.ones(16, np.float32))
    assert reward == float(info["rank"] <= 3)


def test_a_reward_callable_that_returns_no_scalar_fails_clearly(small_semanlink):
    env = make(small_semanlink, reward=lambda ranks, relevance, n_docs: [1.0, 2.0])
    env.reset(seed=0)
    with pytest.raises(sr3_env.Sr3Error, match="one float per query"):
        env.step(np.ones(64, np.float32))


def test_gymnasium_check_env_passes_without_warnings(small_semanlink):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(small_semanlink).unwrapped, skip_render_check=False)
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
