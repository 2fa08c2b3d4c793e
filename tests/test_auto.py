"""The ``auto`` way: the model decides whether to reason (writes ``<|embed_token|>`` at once, and the
query gets its direct embedding, or reasons first); RL keeps the direct path among each group's options."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sr3_agent.config import ConfigError, EvalConfig, RLConfig
from sr3_agent.evaluation.eval_command import run_eval
from sr3_agent.evaluation.evaluate import markdown_table
from sr3_agent.model.generation import direct_choices, with_direct_option
from sr3_agent.training.losses import clipped_policy_loss, group_advantages
from sr3_agent.training.rl import chose_direct_rate, direct_where_chosen, policy_forward, train_rl
from sr3_env import load_dataset

TEXTS = ["a small dog", "rain in spring", "the tallest mountain"]


def _steer(embedder, token_id: int) -> None:
    """Make ``token_id`` the model's greedy choice at every position: an untied LM head with zero
    weights and a bias on that token (the rest of the model is untouched)."""
    model = embedder.model
    hidden, vocab = model.config.hidden_size, model.get_output_embeddings().weight.shape[0]
    head = torch.nn.Linear(hidden, vocab, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.config.tie_word_embeddings = False
    model.set_output_embeddings(head)


def test_the_last_sample_of_each_group_becomes_the_choice_not_to_reason(tiny_embedder):
    torch.manual_seed(0)
    rollout = tiny_embedder.generate_reasoning(TEXTS[:2], max_new_tokens=5, temperature=1.0, num_samples=3)
    out = with_direct_option(tiny_embedder, rollout)
    assert direct_choices(out).tolist() == [False, False, True] * 2  # sampled rows reason (min_reasoning_tokens)
    for row in range(6):
        real = out.input_ids[row][out.attention_mask[row].bool()].tolist()
        prompt = real[:int(out.prompt_lengths[row])]
        if row % 3 == 2:  # the prompt, then the token written at once, marked as the model's choice
            assert real == prompt + [tiny_embedder.embed_token_id] and bool(out.emitted[row])
            assert out.reasoning_mask[row].nonzero().flatten().tolist() == [out.input_ids.shape[1] - 1]
            assert out.reasoning[row] == ""
        else:  # unchanged
            before = rollout.input_ids[row][rollout.attention_mask[row].bool()].tolist()
            assert real == before and out.reasoning[row] == rollout.reasoning[row]
            assert int(out.reasoning_mask[row].sum()) == int(rollout.reasoning_mask[row].sum())
            assert bool(out.emitted[row]) == bool(rollout.emitted[row])
    assert chose_direct_rate(out) == 0.0


def test_auto_gives_the_direct_embedding_where_the_model_writes_the_token_at_once(tiny_embedder):
    _steer(tiny_embedder, tiny_embedder.embed_token_id)
    vectors, reasoned = tiny_embedder.encode_queries_auto(TEXTS, max_new_tokens=4)
    assert not reasoned.any()
    np.testing.assert_allclose(vectors, tiny_embedder.encode_queries(TEXTS), atol=1e-5)


def test_auto_gives_the_reasoned_embedding_where_the_model_reasons(tiny_embedder):
    ordinary = tiny_embedder.tokenizer.convert_tokens_to_ids("the")
    _steer(tiny_embedder, ordinary)
    vectors, reasoned = tiny_embedder.encode_queries_auto(TEXTS, max_new_tokens=4)
    assert reasoned.all() and tiny_embedder.missing_embed_token_rate == 1.0  # it ran to the cap every time
    np.testing.assert_allclose(vectors, tiny_embedder.encode_queries(TEXTS, reasoning=True, max_new_tokens=4), atol=1e-5)


def test_greedy_auto_is_deterministic(tiny_embedder):
    first, reasoned = tiny_embedder.encode_queries_auto(TEXTS, max_new_tokens=4)
    again, reasoned_again = tiny_embedder.encode_queries_auto(TEXTS, max_new_tokens=4)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(reasoned, reasoned_again)


def test_direct_where_chosen_puts_the_direct_embedding_with_gradients(tiny_embedder):
    torch.manual_seed(0)
    rollout = with_direct_option(tiny_embedder, tiny_embedder.generate_reasoning(TEXTS[:2], max_new_tokens=4,
                                                                                  temperature=1.0, num_samples=2))
    tiny_embedder.model.train()
    _, embeddings = policy_forward(tiny_embedder, rollout)
    mixed = direct_where_chosen(tiny_embedder, TEXTS[:2], rollout, embeddings)
    assert mixed.requires_grad
    direct = tiny_embedder.encode_queries(TEXTS[:2])
    np.testing.assert_allclose(mixed[[1, 3]].detach().numpy(), direct, atol=1e-5)
    torch.testing.assert_close(mixed[[0, 2]], embeddings[[0, 2]])


def test_rl_learns_to_choose_the_direct_path_when_it_pays(tiny_embedder):
    """A reward that prefers not reasoning raises the sampled share of direct choices: the forced
    direct sample of each group is what the policy gradient learns from."""
    policy = tiny_embedder
    with torch.no_grad():  # peaked next-token distributions, as in tests/test_rl.py's test of a preferred behaviour
        policy.model.get_output_embeddings().weight.mul_(20)
    optimizer = torch.optim.Adam(policy.model.parameters(), lr=3e-2)
    torch.manual_seed(0)

    def sample():
        return with_direct_option(policy, policy.generate_reasoning(TEXTS, max_new_tokens=3, temperature=1.0,
                                                                    num_samples=4, min_new_tokens=0))

    before = np.mean([chose_direct_rate(sample()) for _ in range(3)])
    for _ in range(10):
        rollout = sample()
        advantages = group_advantages(direct_choices(rollout).float(), group_size=4)
        policy.model.train()
        logprobs, _ = policy_forward(policy, rollout)
        loss = clipped_policy_loss(logprobs, logprobs.detach(), advantages, rollout.reasoning_mask[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = np.mean([chose_direct_rate(sample()) for _ in range(3)])
    assert after > before + 0.3, (before, after)


def test_rl_with_auto_runs_and_logs_the_direct_choices(tiny_embedder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = load_dataset("semanlink").subset(num_queries=8, num_docs=30, seed=0)
    config = RLConfig(steps=2, queries_per_step=2, group_size=2, reasoning_tokens=4, top_k=5, eval_every=0, auto=True,
                      output_dir=str(tmp_path / "rl"), num_queries=None, corpus_docs=None)
    trained = train_rl(config, policy=copy.deepcopy(tiny_embedder), dataset=data, progress=False)
    assert trained.version == 2
    events = EventAccumulator(str(tmp_path / "rl" / "tensorboard")).Reload()
    rates = [e.value for e in events.Scalars("charts/chose_direct_rate")]
    assert len(rates) == 2 and all(0.0 <= r <= 1.0 for r in rates)


def test_auto_trains_one_turn():
    with pytest.raises(ConfigError, match="--turns 1 with --auto"):
        RLConfig(auto=True, turns=2)


def test_eval_reports_auto_with_the_share_it_reasoned_on(tiny_embedder, tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    config = EvalConfig(datasets=[str(tiny_beir)], num_queries=None, corpus_docs=None, reasoning_tokens=4,
                        baselines=False, auto=True)
    rows = run_eval(config, embedders=[("tiny", tiny_embedder)])
    assert [r["system"] for r in rows] == ["tiny (direct)", "tiny (reasoning)", "tiny (fused)", "tiny (auto)"]
    assert 0.0 <= rows[3]["reasoned_share"] <= 1.0 and "reasoned_share" not in rows[1]
    assert "| Reasoned |" in markdown_table(rows)
    assert "Reasoned" not in markdown_table(rows[:3])  # the table is as before without auto
