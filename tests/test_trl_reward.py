"""The TRL adapter: rewards checked against ranks computed by hand, clear errors, and a real GRPOTrainer run."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sr3_agent.training.trl_reward import RetrievalReward, completion_sequence, grpo_dataset
from sr3_env import load_dataset, rewards
from sr3_env.errors import Sr3Error, UnknownIdError


@pytest.fixture
def data(tiny_beir):
    return load_dataset(tiny_beir, split="test")


def test_completion_sequence_cuts_at_the_first_stop_and_ends_with_the_token():
    assert completion_sequence([1, 2], [5, 6, 9, 7], stop_ids=[9, 8], embed_token_id=9) == [1, 2, 5, 6, 9]
    assert completion_sequence([1], [5, 8, 6], stop_ids=[9, 8], embed_token_id=9) == [1, 5, 9]
    assert completion_sequence([1], [5, 6], stop_ids=[9], embed_token_id=9) == [1, 5, 6, 9]  # truncated: appended


def test_rewards_equal_the_log_rank_of_the_gold_documents_under_the_current_model(tiny_embedder, data):
    reward = RetrievalReward(tiny_embedder, data, reward="log_rank", top_k=3)
    prompts = [tiny_embedder.prompt_text(data.query_texts[i], tiny_embedder.prompts.reasoning) for i in (0, 0, 1)]
    completions = ["cats and dogs", "wolves", "cities of europe"]
    values = reward(prompts=prompts, completions=completions, query_id=[data.query_ids[i] for i in (0, 0, 1)])
    assert isinstance(values, list) and len(values) == 3 and all(isinstance(v, float) for v in values)

    queries = reward.embed(prompts, completions)
    docs = tiny_embedder.encode_documents(data.documents)
    for value, vector, row in zip(values, queries, (0, 0, 1)):
        gold, _ = data.relevant_rows(data.query_ids[row])
        scores = docs @ vector
        ranks = [int((scores > scores[g]).sum()) + 1 for g in gold]  # 1-based rank of each gold document
        assert value == pytest.approx(rewards.log_rank(ranks, [1] * len(ranks), len(docs)), abs=1e-5)


def test_a_trainer_step_bumps_the_version_so_touched_rows_are_re_encoded(tiny_embedder, data):
    reward = RetrievalReward(tiny_embedder, data, top_k=3)
    prompts, completions, ids = ["p"], ["q"], [data.query_ids[0]]
    reward(prompts=prompts, completions=completions, query_id=ids, trainer_state=SimpleNamespace(global_step=0))
    assert reward.last_info["index"]["rows_reencoded"][0] == 0  # encoded with this very model at construction
    version = tiny_embedder.version
    reward(prompts=prompts, completions=completions, query_id=ids, trainer_state=SimpleNamespace(global_step=0))
    assert tiny_embedder.version == version  # same step: nothing changed
    reward(prompts=prompts, completions=completions, query_id=ids, trainer_state=SimpleNamespace(global_step=1))
    assert tiny_embedder.version == version + 1
    assert reward.last_info["index"]["rows_reencoded"][0] >= 3  # at least the top-k rows and the gold ones


def test_bad_inputs_fail_clearly(tiny_embedder, data):
    reward = RetrievalReward(tiny_embedder, data)
    with pytest.raises(Sr3Error, match="no 'query_id' column.*grpo_dataset"):
        reward(prompts=["p"], completions=["c"], answer=["x"])
    with pytest.raises(Sr3Error, match="2 completions but .*'query_id': 1"):
        reward(prompts=["p", "p"], completions=["c", "d"], query_id=[data.query_ids[0]])
    with pytest.raises(UnknownIdError):
        reward(prompts=["p"], completions=["c"], query_id=["no-such-query"])
    with pytest.raises(Sr3Error, match="string or a list of chat messages"):
        reward(prompts=[42], completions=["c"], query_id=[data.query_ids[0]])
    assert reward(prompts=[], completions=[], query_id=[]) == []


def test_conversational_prompts_and_completions_embed_like_the_text_form(tiny_embedder, data):
    reward = RetrievalReward(tiny_embedder, data)
    text = data.query_texts[0]
    messages = [{"role": "system", "content": tiny_embedder.prompts.reasoning}, {"role": "user", "content": text}]
    as_text = reward.embed([tiny_embedder.prompt_text(text, tiny_embedder.prompts.reasoning)], ["pets"])
    as_chat = reward.embed([messages], [[{"role": "assistant", "content": "pets"}]])
    np.testing.assert_allclose(as_chat, as_text, atol=1e-5)


def test_grpo_trainer_runs_with_the_reward_and_updates_the_model(tiny_embedder, data, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    embedder = tiny_embedder
    embedder.model.generation_config.eos_token_id = embedder.stop_token_ids
    reward = RetrievalReward(embedder, data, top_k=3)
    start = copy.deepcopy(embedder.model.state_dict())
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=4, learning_rate=1e-3, use_cpu=True, bf16=False, report_to=[],
                      logging_steps=1, save_strategy="no", temperature=1.0, seed=0)
    trainer = GRPOTrainer(model=embedder.model, processing_class=embedder.tokenizer, reward_funcs=reward,
                          train_dataset=grpo_dataset(embedder, data), args=args)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if f"rewards/{reward.__name__}/mean" in entry]
    assert len(logged) == 2 and all(np.isfinite(e[f"rewards/{reward.__name__}/mean"]) for e in logged)
    assert any("sr3/rank_mean" in e for e in logged)
    changed = [k for k, v in embedder.model.state_dict().items() if not torch.equal(v, start[k])]
    assert changed  # GRPO stepped the very model the reward embeds with
    assert embedder.version >= 1  # and the reward noticed the step
