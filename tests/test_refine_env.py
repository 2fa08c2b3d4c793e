"""What only RetrievalRefine-v0 has: turns, feedback documents, difference rewards, and the Rocchio
baseline. The protocol it shares with RetrievalEmbed-v0 is tested in test_env.py and test_vector.py."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sr3_env
from sr3_env import HashingEncoder, InvalidActionError, ResetNeeded
from sr3_env.baselines import RocchioPolicy
from sr3_env.rewards import get_reward


@pytest.fixture(scope="module")
def small_semanlink():
    return sr3_env.load_dataset("semanlink").subset(num_queries=30, num_docs=80, seed=0)


def make(dataset, **kwargs):
    kwargs.setdefault("encoder", HashingEncoder(dim=64))
    return gym.make("RetrievalRefine-v0", dataset=dataset, **kwargs)


def gold_embedding(env, query_id):
    base = env.unwrapped
    row = base.dataset.doc_row[next(iter(base.dataset.relevant(query_id)))]
    return base.index.embeddings[row].numpy()


def test_gym_make_with_no_arguments_passes_check_env():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("RetrievalRefine-v0")
    assert (env.unwrapped.max_turns, env.unwrapped.feedback_k) == (2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("feedback_k", [1, 3, 5])
def test_turn_two_observation_holds_the_texts_of_turn_one_top_ids(small_semanlink, feedback_k):
    env = make(small_semanlink, feedback_k=feedback_k)
    documents = small_semanlink.documents
    for seed in range(5):
        observation, _ = env.reset(seed=seed)
        assert observation["documents"] == ()
        observation, _, terminated, _, info = env.step(env.action_space.sample())
        assert not terminated and info["turn"] == 1
        expected = tuple(documents[small_semanlink.doc_row[d]] for d in info["top_ids"][:feedback_k])
        assert observation["documents"] == expected and len(expected) == feedback_k
        assert env.observation_space.contains(observation)


@pytest.mark.parametrize("max_turns", [1, 2, 4])
@pytest.mark.parametrize("reward", ["reciprocal_rank", "log_rank", "ndcg@10"])
def test_the_return_equals_the_last_turns_reward(small_semanlink, max_turns, reward):
    env = make(small_semanlink, max_turns=max_turns, reward=reward)
    one_turn = gym.make("RetrievalEmbed-v0", dataset=small_semanlink, encoder=HashingEncoder(dim=64), reward=reward)
    rng = np.random.default_rng(max_turns)
    fn = get_reward(reward)
    for query_id in small_semanlink.query_ids[:10]:
        env.reset(options={"query_id": query_id})
        total, previous = 0.0, 0.0
        for turn in range(1, max_turns + 1):
            action = rng.uniform(-1, 1, 64).astype(np.float32)
            _, step_reward, terminated, truncated, info = env.step(action)
            assert info["turn"] == turn and terminated == (turn == max_turns) and not truncated
            value = fn(info["gold_ranks"], [small_semanlink.qrels[query_id][d] for d in info["gold_ids"]], 80)
            assert info["rank_reward"] == pytest.approx(value, abs=1e-6)
            assert step_reward == pytest.approx(value - previous, abs=1e-6) == info["reward"]
            total, previous = total + step_reward, value
        one_turn.reset(options={"query_id": query_id})
        assert total == pytest.approx(info["rank_reward"], abs=1e-6)
        assert total == pytest.approx(one_turn.step(action)[1], abs=1e-6)  # v0's reward for the last embedding


def test_an_oracle_second_turn_ranks_the_gold_document_first(small_semanlink):
    env = make(small_semanlink)
    rng = np.random.default_rng(0)
    first, second, returns = [], [], []
    for query_id in small_semanlink.query_ids:
        env.reset(options={"query_id": query_id})
        _, reward_1, _, _, info_1 = env.step(rng.uniform(-1, 1, 64).astype(np.float32))
        _, reward_2, terminated, _, info_2 = env.step(gold_embedding(env, query_id))
        assert terminated
        first.append(info_1["rank"]), second.append(info_2["rank"]), returns.append(reward_1 + reward_2)
    assert np.mean(np.asarray(second) == 1) >= 0.95  # ties between identical documents aside
    assert np.mean(np.asarray(first) == 1) < 0.3
    assert np.mean(returns) >= 0.95


ACTIONS = hnp.arrays(np.float32, 64, elements=st.sampled_from([0.0, 1.0, -0.5, 1e-30, 3e38, np.nan, np.inf]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_any_actions_either_raise_without_using_a_turn_or_keep_the_return_exact(small_semanlink, actions, seed):
    """Invariant: a bad action raises InvalidActionError and the turn is not used; a finished episode's
    return equals the last turn's r(rank)."""
    env = make(small_semanlink, max_turns=3, top_k=10).unwrapped
    env.reset(seed=seed)
    turn, total, last = 0, 0.0, None
    for action in actions:
        if turn == 3:
            break
        try:
            _, reward, terminated, _, info = env.step(action)
        except InvalidActionError:
            continue
        turn, total, last = turn + 1, total + reward, info
        assert info["turn"] == turn and terminated == (turn == 3)
    if last is not None:
        assert total == pytest.approx(last["rank_reward"], abs=1e-6)


def test_stepping_after_the_last_turn_raises_and_says_how_many_turns(small_semanlink):
    env = make(small_semanlink, max_turns=3).unwrapped
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.ones(64, np.float32))
    with pytest.raises(ResetNeeded, match="max_turns=3"):
        env.step(np.ones(64, np.float32))


@pytest.mark.parametrize("kwargs, message", [
    ({"max_turns": 0}, "max_turns must be an integer >= 1"),
    ({"max_turns": 1.5}, "max_turns must be an integer >= 1"),
    ({"max_turns": True}, "max_turns must be an integer >= 1"),
    ({"feedback_k": -1}, "feedback_k must be an integer >= 0"),
    ({"feedback_k": 20, "top_k": 10}, "raise top_k to at least 20"),
])
def test_bad_turn_arguments_say_how_to_fix_them(small_semanlink, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(small_semanlink, **kwargs)
    with pytest.raises(ValueError, match=message):
        gym.make_vec("RetrievalRefine-v0", num_envs=2, vectorization_mode="vector_entry_point", dataset=small_semanlink,
                     encoder="hashing", **kwargs)


def test_render_names_the_turn(small_semanlink):
    env = make(small_semanlink, render_mode="ansi")
    env.reset(seed=0)
    assert env.render().startswith("turn 0 of 2")
    env.step(np.ones(64, np.float32))
    assert env.render().startswith("turn 1 of 2")


# -- the Rocchio baseline -----------------------------------------------------------------------

def unit(vector):
    return vector / np.linalg.norm(vector)


def test_rocchio_moves_the_query_towards_the_mean_of_the_shown_documents():
    encoder = HashingEncoder(dim=64)
    policy = RocchioPolicy(encoder, alpha=1.0, beta=0.5, k=2)
    docs = ("Cats are small mammals.", "Dogs descend from wolves.", "Paris is in France.")
    q = encoder.encode_queries(["pets"])[0]
    d = encoder.encode_documents(docs[:2])
    assert np.allclose(policy({"query": "pets", "documents": ()}), unit(q), atol=1e-6)
    assert np.allclose(policy({"query": "pets", "documents": docs}), unit(q + 0.5 * d.mean(axis=0)), atol=1e-6)
    batch = policy.act_batch({"query": ("pets", "pets"), "documents": ((), docs)})
    assert batch.shape == (2, 64) and batch.dtype == np.float32
    assert np.allclose(batch[1], policy({"query": "pets", "documents": docs}), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0}, "alpha must be > 0"), ({"beta": -1.0}, "beta must be a finite number >= 0"),
    ({"beta": float("nan")}, "beta must be a finite number"), ({"k": 0}, "k must be a positive integer"),
])
def test_rocchio_rejects_bad_weights(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RocchioPolicy(HashingEncoder(dim=8), **kwargs)


def test_rocchio_reads_the_index_of_a_frozen_encoder_and_runs_in_the_vector_env(small_semanlink, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path))  # frozen encoders cache corpus embeddings

    class FrozenHashing(HashingEncoder):
        frozen = True

    envs = gym.make_vec("RetrievalRefine-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        dataset=small_semanlink, encoder=FrozenHashing(dim=64), feedback_k=3)
    policy = RocchioPolicy.from_env(envs, beta=0.75)
    assert len(policy.document_vectors) == len(set(small_semanlink.documents))
    fresh = RocchioPolicy(HashingEncoder(dim=64), beta=0.75)  # the same encoder, re-encoding the documents
    observations, _ = envs.reset(seed=0)
    for _ in range(2):
        actions = policy.act_batch(observations)
        assert np.allclose(actions, fresh.act_batch(observations), atol=1e-5)
        observations, rewards, terminated, _, infos = envs.step(actions)
    assert terminated.all() and list(infos["final_info"]["turn"]) == [2] * 4


def test_rocchio_with_no_feedback_weight_repeats_the_first_turn(small_semanlink):
    env = make(small_semanlink)
    policy = RocchioPolicy.from_env(env, beta=0.0)
    for query_id in small_semanlink.query_ids[:10]:
        observation, _ = env.reset(options={"query_id": query_id})
        observation, _, _, _, first = env.step(policy(observation))
        _, reward, _, _, second = env.step(policy(observation))
        assert second["rank"] == first["rank"] and reward == pytest.approx(0.0, abs=1e-6)


def test_the_rocchio_script_runs_at_a_tiny_budget(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "rocchio_eval.py"
    spec = importlib.util.spec_from_file_location("rocchio_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--encoder", "hashing", "--datasets", "semanlink", "--max-queries", "12", "--num-envs", "5",
                        "--k", "1", "3", "--output", str(tmp_path / "rocchio.json")])
    assert [row["k"] for row in rows] == [1, 3] and all(row["queries"] == 12 for row in rows)
    assert all(row["MRR"]["low"] <= row["MRR"]["diff"] <= row["MRR"]["high"] for row in rows)
    assert "| semanlink |" in capsys.readouterr().out and (tmp_path / "rocchio.json").is_file()
