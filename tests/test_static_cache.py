"""Reasoning generated through a static key/value cache is what the dynamic cache generates, family by family.

`ReasoningEmbedder.generation_cache = "static"` on a CPU generates through the static cache without compiling
(`sr3_agent.model.static_cache`): the cache layout that CUDA's compiled decoding replays, checked here on every
family of the architecture matrix (`family_embedder`), after the shared prefix and over whole prompts. Greedy
tokens must be identical; sampling must draw from the same next-token distribution at every step (compared step by
step on the recorded scores) and, under one seed, give the same tokens. The compiled path itself is checked on a
CPU by a slow test, and on CUDA by `tests/test_gpu.py` with the helpers below.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from sr3_agent.config import ConfigError, EvalConfig, RLConfig
from sr3_agent.model import generation
from sr3_agent.model.embedder import ReasoningEmbedder
from sr3_agent.model.generation import FiniteScores
from sr3_agent.model.static_cache import SLOT_STEP, static_cache_problem, uses_static_cache
from sr3_agent.training.parts import add_lora
from sr3_env import load_dataset
from conftest import favour_embed_token

ATOL = 1e-4  # embeddings read from either cache (fp32; they agree to about 1e-7)
SAME_DISTRIBUTION = 1e-5  # total-variation distance between next-token distributions on a CPU (about 1e-7 seen)


@pytest.fixture(scope="module")
def queries() -> list[str]:
    return list(load_dataset("wordnet-revdict").query_texts[:4])


def with_cache(embedder: ReasoningEmbedder, setting: str) -> ReasoningEmbedder:
    """The embedder (the same model) generating with the ``setting`` cache."""
    twin = copy.copy(embedder)
    twin.generation_cache = setting
    return twin


class ScoreRecorder(FiniteScores):
    """`FiniteScores` that also keeps, at every step, the tokens so far and the next-token scores (on the CPU)."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []  # per step (N, tokens so far)
        self.scores: list[torch.Tensor] = []  # per step (N, V)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.inputs.append(input_ids.cpu())
        self.scores.append(scores.float().cpu())
        return super().__call__(input_ids, scores)


def recorded(monkeypatch, embedder: ReasoningEmbedder, *args, seed: int = 0, **kwargs):
    """(rollout, its `ScoreRecorder`) of ``embedder.generate_reasoning(*args, **kwargs)`` after ``torch.manual_seed(seed)``."""
    recorder = ScoreRecorder()
    with monkeypatch.context() as patch:
        patch.setattr(generation, "FiniteScores", lambda: recorder)
        torch.manual_seed(seed)
        rollout = embedder.generate_reasoning(*args, **kwargs)
    return rollout, recorder


def agreement(a: ScoreRecorder, b: ScoreRecorder) -> dict:
    """Two generations' recordings compared step by step, over the rows whose tokens so far are the same in both:

    ``distance``: the largest total-variation distance between their next-token distributions; ``compared``: how many
    (row, step) pairs that was; ``gaps``: for each row whose chosen tokens part at some step, the difference between
    the two tokens' scores in ``a`` at that step (near 0: a near-tie that rounding may send either way)."""
    distance, compared, gaps = 0.0, 0, []
    steps = min(len(a.scores), len(b.scores))
    for step in range(steps):
        same = (a.inputs[step] == b.inputs[step]).all(dim=1)  # (N,) the same tokens so far
        if same.any():
            pa, pb = a.scores[step][same].softmax(-1), b.scores[step][same].softmax(-1)
            distance = max(distance, 0.5 * float((pa - pb).abs().sum(-1).max()))
        compared += int(same.sum())
        if step + 1 < steps:  # the tokens chosen at this step end the next step's inputs
            chosen_a, chosen_b = a.inputs[step + 1][:, -1], b.inputs[step + 1][:, -1]
            for row in (same & (chosen_a != chosen_b)).nonzero().flatten().tolist():
                gaps.append(float(a.scores[step][row, chosen_a[row]] - a.scores[step][row, chosen_b[row]]))
    return {"distance": distance, "compared": compared, "gaps": gaps}


def assert_same_rollouts(static, dynamic) -> None:
    assert torch.equal(static.input_ids, dynamic.input_ids) and torch.equal(static.attention_mask, dynamic.attention_mask)
    assert torch.equal(static.reasoning_mask, dynamic.reasoning_mask) and torch.equal(static.emitted, dynamic.emitted)
    assert (static.embeddings is None) == (dynamic.embeddings is None)
    if static.embeddings is not None:  # read from each generation's own cache
        torch.testing.assert_close(static.embeddings, dynamic.embeddings, atol=ATOL, rtol=0)


@pytest.mark.parametrize("reuse_prefix", [True, False], ids=["after-prefix", "whole-prompts"])
def test_greedy_tokens_are_the_same_through_a_static_cache(family_embedder, queries, reuse_prefix):
    family_embedder.reuse_prefix = reuse_prefix
    static = with_cache(family_embedder, "static")
    dynamic = with_cache(family_embedder, "dynamic").generate_reasoning(queries, max_new_tokens=6)
    rollout = static.generate_reasoning(queries, max_new_tokens=6)
    assert_same_rollouts(rollout, dynamic)
    # the static cache was used, with room for the prompts, the tokens and the embed token read after them
    assert static._static_cache_length % SLOT_STEP == 0 and static._static_cache_length >= rollout.input_ids.shape[1]


def test_sampling_through_a_static_cache_draws_from_the_same_distributions(family_embedder, queries, monkeypatch):
    dynamic, dynamic_scores = recorded(monkeypatch, with_cache(family_embedder, "dynamic"), queries[:3],
                                       max_new_tokens=6, temperature=1.0, num_samples=3)
    static, static_scores = recorded(monkeypatch, with_cache(family_embedder, "static"), queries[:3],
                                     max_new_tokens=6, temperature=1.0, num_samples=3)
    compared = agreement(dynamic_scores, static_scores)
    assert compared["compared"] == 9 * len(dynamic_scores.scores) == 9 * 6  # every row at every step
    assert compared["distance"] < SAME_DISTRIBUTION and compared["gaps"] == []
    assert_same_rollouts(static, dynamic)  # one seed, one draw per step from the same distribution


def test_rows_that_stop_early_read_their_embeddings_from_either_cache(tiny_embedder, queries):
    """A bias on the embed token's logit makes some rows write it early, so each static cache holds tokens after it
    that the read must ignore, and rows stop at different steps (on the dynamic path they leave the batch then, so
    the later draws of one seed differ from the static path's: each path is checked against a second pass)."""
    favour_embed_token(tiny_embedder)
    for setting in ("dynamic", "static"):
        torch.manual_seed(1)
        rollout = with_cache(tiny_embedder, setting).generate_reasoning(
            queries, max_new_tokens=10, temperature=1.0, num_samples=2, min_new_tokens=0)
        assert rollout.emitted.any() and (rollout.reasoning_lengths > rollout.reasoning_lengths.min()).any()
        with torch.no_grad():
            second_pass = tiny_embedder.embed(rollout.input_ids, rollout.attention_mask)
        torch.testing.assert_close(rollout.embeddings, second_pass, atol=ATOL, rtol=0)


def test_a_lora_model_generates_the_same_tokens_through_a_static_cache(tiny_embedder, queries):
    tiny_embedder.model = add_lora(tiny_embedder.model, RLConfig(lora=True, lora_rank=4))
    for name, parameter in tiny_embedder.model.named_parameters():
        if "lora_B" in name:  # adapters that change the outputs (peft starts them at zero)
            torch.nn.init.normal_(parameter, std=0.5)
    dynamic = with_cache(tiny_embedder, "dynamic").generate_reasoning(queries, max_new_tokens=5)
    static = with_cache(tiny_embedder, "static")
    assert_same_rollouts(static.generate_reasoning(queries, max_new_tokens=5), dynamic)
    assert static._static_cache_length > 0  # generated through the static cache, adapters and all


def test_a_model_without_a_static_cache_generates_with_the_dynamic_one_and_says_so_once(queries, caplog):
    """MiniMax keeps a cache of its own kind (linear-attention states), which transformers cannot make static."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from sr3_agent.model.tiny_models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = AutoConfig.for_model("minimax", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                  num_local_experts=2, num_experts_per_tok=1, max_position_embeddings=512,
                                  tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    embedder = ReasoningEmbedder(AutoModelForCausalLM.from_config(config).eval(), tokenizer, name="tiny-minimax")
    embedder.reuse_prefix = False  # its own cache has no shared-prefix form either
    assert static_cache_problem(embedder._causal_lm()) is not None
    dynamic = with_cache(embedder, "dynamic").generate_reasoning(queries[:2], max_new_tokens=4)
    embedder.generation_cache = "static"
    with caplog.at_level(logging.WARNING):
        rollouts = [embedder.generate_reasoning(queries[:2], max_new_tokens=4) for _ in range(2)]
    said = [r.getMessage() for r in caplog.records if "dynamic cache" in r.getMessage()]
    assert len(said) == 1 and "tiny-minimax" in said[0] and "cache of its own kind" in said[0]
    assert not uses_static_cache(embedder) and not hasattr(embedder, "_static_cache_length")
    for rollout in rollouts:
        assert_same_rollouts(rollout, dynamic)


def test_auto_keeps_the_dynamic_cache_on_a_cpu_and_a_wrong_setting_is_refused(tiny_embedder, queries, caplog):
    assert tiny_embedder.generation_cache == "auto" and tiny_embedder.device.type == "cpu"
    with caplog.at_level(logging.INFO):
        tiny_embedder.generate_reasoning(queries[:1], max_new_tokens=2)
    assert not uses_static_cache(tiny_embedder) and not hasattr(tiny_embedder, "_static_cache_length")
    assert not [r for r in caplog.records if "cache" in r.getMessage()]  # the designed choice, not a fallback
    tiny_embedder.generation_cache = "compiled"
    with pytest.raises(ValueError, match="generation_cache must be auto, static or dynamic; got 'compiled'"):
        tiny_embedder.generate_reasoning(queries[:1], max_new_tokens=2)
    with pytest.raises(ConfigError, match="generation_cache must be auto, static or dynamic"):
        EvalConfig(generation_cache="Static")


@pytest.mark.slow
@pytest.mark.parametrize("reuse_prefix", [True, False], ids=["after-prefix", "whole-prompts"])
def test_compiled_decoding_on_a_cpu_gives_the_same_tokens(tiny_embedder, queries, reuse_prefix):
    """The compiled path that CUDA takes, forced onto the CPU (transformers' compile config for every device;
    inductor, about a minute to compile on 2 cores)."""
    from transformers import CompileConfig

    tiny_embedder.reuse_prefix = reuse_prefix
    dynamic = with_cache(tiny_embedder, "dynamic").generate_reasoning(queries, max_new_tokens=6)
    compile_config = CompileConfig(mode="default")  # reduce-overhead is CUDA graphs: nothing to capture on a CPU
    compile_config._compile_all_devices = True
    tiny_embedder.model.generation_config.compile_config = compile_config
    static = with_cache(tiny_embedder, "static")
    for _ in range(2):  # compiled, then replayed
        assert_same_rollouts(static.generate_reasoning(queries, max_new_tokens=6), dynamic)
    assert hasattr(tiny_embedder.model, "_compiled_call")  # generate did compile its decoding step


def test_the_setting_reaches_training_every_stage_and_the_evaluation(tiny_embedder, tmp_path):
    from sr3_agent.config import TrainConfig
    from sr3_agent.evaluation.eval_command import load_embedder
    from sr3_agent.training.harness import start_run
    from sr3_agent.training.train_command import stage_configs

    stages, evaluation, _ = stage_configs(TrainConfig(generation_cache="dynamic", rs_steps=1, output_dir=str(tmp_path)))
    assert [config.generation_cache for _, config in stages] + [evaluation.generation_cache] == ["dynamic"] * 4
    data = load_dataset("semanlink").subset(num_queries=4, num_docs=12, seed=0)
    run = start_run(RLConfig(generation_cache="static", steps=1, eval_every=0, num_queries=None, corpus_docs=None,
                             output_dir=str(tmp_path / "rl")), embedder=copy.deepcopy(tiny_embedder), dataset=data)
    assert run.embedder.generation_cache == "static"
    if run.writer is not None:
        run.writer.close()
    tiny_embedder.save_pretrained(tmp_path / "model")
    _, loaded = load_embedder(str(tmp_path / "model"), EvalConfig(generation_cache="static", device="cpu"))
    assert loaded.generation_cache == "static"
