"""The memory budget (`sr3_agent.training.memory`): exact parameter and LoRA counts for every family of the
architecture matrix, and a budget that moves the way each setting should move it."""

from __future__ import annotations

import dataclasses

import pytest

from sr3_agent.model.tiny_models import TINY_FAMILIES
from sr3_agent.config import RLConfig
from sr3_agent.training.memory import RunSizes, largest_fitting, model_shape, stage_budgets
from sr3_agent.training.parts import add_lora


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_parameter_and_lora_counts_are_exact(_family_embedders, family):
    model = _family_embedders(family).model
    shape = model_shape(model.config)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    adapted = add_lora(model, RLConfig(lora=True, lora_rank=4))
    assert 4 * shape.lora_parameters == sum(p.numel() for p in adapted.parameters() if p.requires_grad)


def test_the_budget_moves_as_each_setting_should():
    from transformers import Qwen2Config

    shape = model_shape(Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                                    num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True))
    assert 1.5e9 < shape.parameters < 1.6e9  # Qwen2.5-1.5B: 1.54B
    base = RunSizes()
    total = lambda stage, **changes: stage_budgets(shape, dataclasses.replace(base, **changes))[stage]["total"]  # noqa: E731
    for stage in ("sft", "rl"):
        assert total(stage) < total(stage, lora=False)
        assert total(stage) < total(stage, activation_checkpointing=False)
    assert total("rl") < total("rl", queries_per_step=16) < total("rl", queries_per_step=16, group_size=16)
    assert total("sft") < total("sft", max_length=1024)
    full = dataclasses.replace(base, lora=False)
    assert stage_budgets(shape, base)["rl"]["reference"] == 0 < stage_budgets(shape, full)["rl"]["reference"]
    fits = largest_fitting(shape, base, 80, "queries_per_step", "rl")
    assert total("rl", queries_per_step=fits) <= 80 < total("rl", queries_per_step=2 * fits)
    assert largest_fitting(shape, base, 1, "queries_per_step", "rl") == 0  # the weights alone do not fit 1 GiB
