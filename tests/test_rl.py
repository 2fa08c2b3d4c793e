"""RL: the update's pieces on hand-made inputs, then short runs on a tiny random-weight model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sr3_agent.config import ConfigError, RLConfig
from sr3_agent.training.losses import clipped_policy_loss, group_advantages
from sr3_agent.training.rl import auxiliary_batch, policy_forward, rl_losses, score_margins, shaped_rewards, train_rl, zero_variance_share
from sr3_env import load_dataset


def test_policy_forward_scores_each_token_given_the_ones_before(tiny_embedder):
    rollout = tiny_embedder.generate_reasoning(["a cat", "rain"], max_new_tokens=4, temperature=1.0)
    logprobs, embeddings = policy_forward(tiny_embedder, rollout, grouped=False)  # grouped: tests/test_prefix_reuse.py
    assert logprobs.shape == (2, rollout.input_ids.shape[1] - 1) and embeddings.shape == (2, tiny_embedder.dim)
    with torch.no_grad():  # the plain HF forward of the first row alone, without padding
        row = rollout.input_ids[0][rollout.attention_mask[0].bool()].unsqueeze(0)
        logits = tiny_embedder.model(input_ids=row).logits[0, :-1]
        expected = torch.log_softmax(logits, -1).gather(-1, row[0, 1:, None])[:, 0]
    scored = rollout.reasoning_mask[:, 1:].any(dim=0)  # the reasoning's columns: the LM head runs from the first
    start = int(scored.nonzero().min())
    torch.testing.assert_close(logprobs[0, start:], expected[start - logprobs.shape[1]:], atol=1e-4, rtol=1e-4)
    assert (logprobs[:, :start] == 0).all()  # prompts are never scored
    torch.testing.assert_close(embeddings, torch.as_tensor(tiny_embedder.embed(rollout.input_ids, rollout.attention_mask)))


def test_auxiliary_batch_by_hand():
    gold = [np.array([3]), np.array([3]), np.array([5, 6])]
    top = [np.array([7, 3, 8]), np.array([3, 9, 7]), np.array([6, 3, 7])]
    positives, negatives, mask = auxiliary_batch(gold, top, negatives_per_query=1)
    assert positives.tolist() == [3, 3, 5]
    assert negatives.tolist() == [7, 9]  # first non-relevant of each (3 is a positive column already)
    # columns: 3, 3, 5, 7, 9. Rows 0 and 1 share document 3: each masks the other's column.
    assert mask.tolist() == [[False, True, False, False, False],
                             [True, False, False, False, False],
                             [False, False, False, False, False]]


def test_score_margins_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gold = [torch.tensor([[0.8, 0.6]]), torch.tensor([[1.0, 0.0], [0.6, 0.8]])]  # query 1 has two relevant rows
    top_scores = np.array([[0.9, 0.8, 0.1], [0.8, 0.7, 0.0]])
    top_is_gold = np.array([[False, True, False], [True, False, False]])
    # query 0: relevant at 0.8 below a 0.9 other -> -0.1; query 1: best relevant 0.8, best other 0.7 -> +0.1
    torch.testing.assert_close(score_margins(q, gold, top_scores, top_is_gold), torch.tensor([-0.1, 0.1]))
    # every top row relevant: the margin is taken over the k-th score, a lower bound of the best other
    all_gold = score_margins(q[:1], gold[:1], np.array([[0.8, 0.5]]), np.array([[True, True]]))
    torch.testing.assert_close(all_gold, torch.tensor([0.3]))


def test_shaped_rewards_and_zero_variance_groups():
    config = RLConfig(margin_weight=2.0, token_bonus=0.5, missing_token_reward=None)
    env, margins = np.array([1.0, 1.0, 0.5, 0.5], dtype=np.float32), torch.tensor([0.1, 0.0, 0.0, 0.0])
    rewards = shaped_rewards(env, margins, torch.tensor([True, False, False, False]), config)
    torch.testing.assert_close(rewards, torch.tensor([1.7, 1.0, 0.5, 0.5]))
    # a reasoning that never wrote the token gets the floor, whatever it retrieved
    floored = shaped_rewards(env, margins, torch.tensor([True, False, True, False]),
                             RLConfig(margin_weight=2.0, token_bonus=0.5, missing_token_reward=-1.0))
    torch.testing.assert_close(floored, torch.tensor([1.7, -1.0, 1.0, -1.0]))
    assert zero_variance_share(rewards, 2) == 0.5  # the second group's samples are tied
    assert RLConfig(margin_weight=0, token_bonus=0).margin_weight == 0
    with pytest.raises(ConfigError, match="margin_weight"):
        RLConfig(margin_weight=-1)


def test_token_loss_is_the_negative_log_probability_of_the_tokens_written_after_better_reasonings():
    logprobs = torch.log(torch.tensor([[0.5, 0.9, 0.2], [0.5, 0.5, 0.8], [0.1, 0.1, 0.1], [0.3, 0.3, 0.3]]))
    mask = torch.ones(4, 3, dtype=torch.bool)  # the last column scores the token
    advantages = torch.tensor([1.0, 0.5, 2.0, -1.0])
    rest = (torch.randn(4, 4), torch.randn(4, 4), torch.empty(0, 4), torch.zeros(4, 4, dtype=torch.bool))
    config = RLConfig(aux_weight=0, token_lm_weight=1.0)
    # rows 0 and 1 wrote it after a better-than-mean reasoning; row 2 did not write it, row 3 was worse than the mean
    losses = rl_losses(logprobs, None, advantages, mask, torch.tensor([True, True, False, True]), *rest, config)
    torch.testing.assert_close(losses["token"], -(torch.log(torch.tensor(0.2)) + torch.log(torch.tensor(0.8))) / 2)
    none_written = rl_losses(logprobs, None, advantages, mask, torch.zeros(4, dtype=torch.bool), *rest, config)
    assert none_written["token"].item() == 0.0
    assert "token" not in rl_losses(logprobs, None, advantages, mask, torch.ones(4, dtype=torch.bool), *rest,
                                    RLConfig(aux_weight=0, token_lm_weight=0))


def test_batched_policy_loss_equals_the_mean_of_per_sample_losses():
    torch.manual_seed(0)
    logprobs = torch.randn(4, 6, requires_grad=True)
    old = logprobs.detach() + 0.1 * torch.randn(4, 6)
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.2]), group_size=2)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    batched = clipped_policy_loss(logprobs, old, advantages, mask)
    single = torch.stack([clipped_policy_loss(logprobs[i:i + 1], old[i:i + 1], advantages[i:i + 1], mask[i:i + 1])
                          for i in range(4)]).mean()
    torch.testing.assert_close(batched, single)


@pytest.mark.parametrize("changes, message", [
    ({"group_size": 1}, "relative to the group"),
    ({"reasoning_temperature": 0}, "identical"),
    ({"refresh": "frozen"}, "stale documents"),
    ({"clip": 1.5}, "clip"),
])
def test_bad_configs_say_how_to_fix_them(changes, message):
    with pytest.raises(ConfigError, match=message):
        RLConfig(**changes)


def test_a_reward_that_prefers_a_behaviour_moves_the_policy(tiny_embedder):
    """Policy gradient alone (no environment): reward the share of even token ids in a reasoning."""
    policy = tiny_embedder
    with torch.no_grad():  # peaked next-token distributions (a random model's are flat over 49k tokens), so
        policy.model.get_output_embeddings().weight.mul_(20)  # a few steps can move mass between likely tokens
    optimizer = torch.optim.Adam(policy.model.parameters(), lr=3e-2)
    texts = ["a cat", "rain", "the stock market", "a river bank"]

    def even_share(rollout):
        ids = rollout.input_ids.masked_fill(~rollout.reasoning_mask, -1)
        return ((ids >= 0) & (ids % 2 == 0)).sum(1).float() / rollout.reasoning_mask.sum(1).clamp(min=1)

    torch.manual_seed(0)
    before = even_share(policy.generate_reasoning(texts, max_new_tokens=8, temperature=1.0, num_samples=8)).mean()
    for _ in range(15):
        rollout = policy.generate_reasoning(texts, max_new_tokens=8, temperature=1.0, num_samples=4)
        advantages = group_advantages(even_share(rollout), group_size=4)
        logprobs, _ = policy_forward(policy, rollout)
        loss = clipped_policy_loss(logprobs, logprobs.detach(), advantages, rollout.reasoning_mask[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = even_share(policy.generate_reasoning(texts, max_new_tokens=8, temperature=1.0, num_samples=8)).mean()
    assert after > before + 0.15, (before, after)


@pytest.fixture
def toy_sets():
    # training queries, and a dev set (the dev split of another bundled dataset: a training run never reads test)
    return (load_dataset("semanlink").subset(num_queries=8, num_docs=30, seed=0),
            load_dataset("python-docstrings", split="dev").subset(num_queries=4, num_docs=20, seed=1))


def _config(tmp_path, **changes):
    settings = dict(steps=3, queries_per_step=2, group_size=2, reasoning_tokens=4, top_k=5, learning_rate=1e-3,
                    output_dir=str(tmp_path / "rl"), eval_every=3, num_queries=None, corpus_docs=None)
    return RLConfig(**{**settings, **changes})


def test_rl_runs_changes_the_parameters_and_logs(tiny_embedder, toy_sets, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    start = copy.deepcopy(tiny_embedder.model.state_dict())
    trained = train_rl(_config(tmp_path), policy=tiny_embedder, dataset=toy_sets[0], dev=toy_sets[1], progress=False)
    kept = trained.selection["step"]  # the best of steps 0 and 3 on the dev set: its weights are the final model's
    assert kept in (0, 3) and trained.version == 3 + (kept != 3)  # putting back step 0 is one more weight change
    assert any(not torch.equal(start[k], v) for k, v in trained.model.state_dict().items()) == (kept == 3)
    tags = set(EventAccumulator(str(tmp_path / "rl" / "tensorboard")).Reload().Tags()["scalars"])
    assert {"charts/reward_mean", "charts/rank_mean", "charts/reasoning_length", "charts/embed_token_rate",
            "losses/policy", "losses/kl", "losses/aux", "index/rows_reencoded", "index/stale_fraction",
            "time/generation_s", "time/encoding_s", "time/scoring_s", "time/update_s", "dev/ndcg@10_reasoning",
            "charts/env_reward_mean", "charts/margin_mean", "charts/zero_variance_groups"} <= tags
    assert (tmp_path / "rl" / "final" / "config.json").is_file()


def test_rl_resume_continues_exactly(tiny_embedder, toy_sets, tmp_path):
    straight = train_rl(_config(tmp_path / "a", steps=4, save_every=2, eval_every=0), policy=copy.deepcopy(tiny_embedder),
                        dataset=toy_sets[0], progress=False)
    train_rl(_config(tmp_path / "b", steps=2, save_every=2, eval_every=0), policy=copy.deepcopy(tiny_embedder),
             dataset=toy_sets[0], progress=False)
    resumed = train_rl(_config(tmp_path / "b", steps=4, save_every=2, eval_every=0, resume=True),
                       policy=copy.deepcopy(tiny_embedder), dataset=toy_sets[0], progress=False)
    assert resumed.version == straight.version == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
