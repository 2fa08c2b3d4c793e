"""A diverging run stops with a clear error before a NaN reaches the weights, and generation from a model
whose scores are NaN says so instead of failing deep in torch (on a GPU: a device-side assert)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from sr3_agent import SFTConfig, train_sft
from sr3_agent.model.generation import GenerationError
from sr3_agent.training.harness import TrainingDiverged, check_finite_gradients
from sr3_env import load_dataset


def test_finite_gradients_pass_and_a_nan_gradient_is_refused(tmp_path):
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    (weight * 2).sum().backward()
    check_finite_gradients(optimizer, {"total": torch.tensor(6.0)}, 1, tmp_path)  # finite: nothing happens
    weight.grad[1] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"Step 7: .*total nan, lm 0\.5.*--learning-rate.*--precision fp32"):
        check_finite_gradients(optimizer, {"total": torch.tensor(float("nan")), "lm": torch.tensor(0.5)}, 7, tmp_path)
    weight.grad[1] = float("inf")
    with pytest.raises(TrainingDiverged):
        check_finite_gradients(optimizer, {"total": torch.tensor(1.0)}, 2, tmp_path)


def test_a_step_that_diverges_is_refused_and_the_weights_stay_the_last_good_ones(tiny_embedder, tmp_path):
    data = load_dataset("semanlink").subset(num_queries=8, num_docs=20, seed=0)
    after_first: dict[str, torch.Tensor] = {}

    def poison(module, args, output):  # from the second step on, training forwards overflow
        if after_first and torch.is_grad_enabled():
            return output * float("inf")
        return output

    def remember(optimizer, args, kwargs):
        if not after_first:
            after_first.update({k: v.detach().clone() for k, v in tiny_embedder.model.state_dict().items()})

    hooks = [tiny_embedder.model.get_input_embeddings().register_forward_hook(poison),
             register_optimizer_step_post_hook(remember)]
    config = SFTConfig(steps=3, batch_size=4, num_queries=None, corpus_docs=None, mine_top_k=4, hard_negatives=1,
                       output_dir=str(tmp_path / "run"), save_every=1, log_every=1, reasoning_fraction=0.0,
                       precision="fp32")
    try:
        with pytest.raises(TrainingDiverged, match="Step 2: the gradients are NaN or infinite"):
            train_sft(config, embedder=tiny_embedder, dataset=data, progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert after_first, "the first step ran"
    for name, value in tiny_embedder.model.state_dict().items():  # step 2 changed nothing
        assert torch.equal(value, after_first[name]), name
        assert torch.isfinite(value).all(), name
    assert (Path(config.output_dir) / "checkpoint-0000001").is_dir() and not (Path(config.output_dir) / "final").exists()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_from_nan_scores_is_a_clear_error(tiny_embedder, temperature):
    broken = copy.deepcopy(tiny_embedder)
    with torch.no_grad():
        broken.model.get_output_embeddings().weight[5] = float("nan")
    with pytest.raises(GenerationError, match="NaN or infinite.*--precision fp32"):
        broken.generate_reasoning(["a word for a large body of water"], max_new_tokens=4, temperature=temperature)
    tiny_embedder.generate_reasoning(["a word for a large body of water"], max_new_tokens=4, temperature=temperature)
