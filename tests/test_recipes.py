"""Config files (`sr3 COMMAND --config FILE`) and the paper's recipe: its CPU dry run with a tiny random
Qwen2 of the same family (Qwen2.5's chat template, the recipe's LoRA, activation checkpointing, bf16,
512-token prompts and group size), two steps a stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_QRELS, write_beir

from sr3_agent.cli import main
from sr3_agent.config import ConfigError, RLConfig, TrainConfig
from sr3_agent.model.prefix_reuse import split_prefix
from sr3_agent.model.tiny_models import tiny_model
from sr3_agent.recipes import bundled_recipes, read_config_file

#: Qwen2.5-Instruct's chat-template layout (tools left out): a default system message when none is given.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def test_the_paper_recipe_is_bundled_and_valid():
    assert "qwen2.5-1.5b" in bundled_recipes()
    values = read_config_file("qwen2.5-1.5b", TrainConfig)
    config = TrainConfig(**values)
    assert config.model == "Qwen/Qwen2.5-1.5B-Instruct" and config.precision == "bf16"
    assert config.lora and config.activation_checkpointing and config.max_length == 512
    assert config.eval_docs is None and config.eval_queries is None and config.group_size == 8


def test_the_paper_recipe_trains_lora_at_lora_scale_rates():
    """LoRA trains at about ten times the rates of training all weights (capped at QLoRA's 2e-4): each stage of the
    recipe gets its rate, above the default of training all weights."""
    from sr3_agent.training.train_command import stage_configs

    config = TrainConfig(**read_config_file("qwen2.5-1.5b", TrainConfig))
    stages = dict(stage_configs(config)[0])
    assert {name: stage.learning_rate for name, stage in stages.items()} == {"sft": 2e-4, "rs": 2e-4, "rl": 1e-4}
    defaults = dict(stage_configs(TrainConfig())[0])
    assert all(stages[name].learning_rate > defaults[name].learning_rate for name in stages)
    assert all(stage.lora and stage.lora_rank == 64 and stage.lora_alpha == 32 for stage in stages.values())


@pytest.mark.parametrize("text, message", [
    ("lora_rnak = 4\n", "Did you mean 'lora_rank'?"),
    ("lora = 1\n", "must be bool"),
    ("steps = 2.5\n", "must be int"),
    ("steps = \n", "not a valid TOML file"),
])
def test_a_bad_config_file_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_config_file(str(path), RLConfig)


def test_a_missing_config_file_names_the_bundled_recipes():
    with pytest.raises(ConfigError, match="qwen2.5-1.5b"):
        read_config_file("no-such-recipe", TrainConfig)


def test_the_command_line_overrides_the_file(tmp_path, capsys):
    path = tmp_path / "rl.toml"
    path.write_text('steps = 3\nlearning-rate = 1e-4\nnum_queries = "none"\n')
    with pytest.raises(SystemExit) as exit_info:  # a bad value on the command line still fails clearly
        main(["rl", "--config", str(path), "--group-size", "1"])
    assert exit_info.value.code == 2 and "group_size" in capsys.readouterr().err
    from sr3_agent.cli import build_parser
    from sr3_agent.config import config_from_args

    parser = build_parser()
    parser.commands["rl"].set_defaults(**read_config_file(str(path), RLConfig))
    config = config_from_args(RLConfig, parser.parse_args(["rl", "--steps", "5"]))
    assert (config.steps, config.learning_rate, config.num_queries) == (5, 1e-4, None)


@pytest.fixture
def tiny_qwen(tmp_path):
    """A tiny random Qwen2 folder with Qwen2.5's chat template (the SmolLM2 tokenizer's ChatML tokens)."""
    from transformers import AutoTokenizer

    from sr3_agent.model.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model())
    tokenizer.chat_template = QWEN25_TEMPLATE
    model = tiny_model("qwen2", tokenizer)
    folder = tmp_path / "tiny-qwen2"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_paper_recipe_runs_two_steps_on_cpu(tiny_qwen, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    data = write_beir(tmp_path / "beir", qrels={"train": TINY_QRELS, "test": TINY_QRELS})
    out = tmp_path / "run"
    argv = ["train", "--config", "qwen2.5-1.5b", "--model", str(tiny_qwen), "--dataset", str(data), "--device", "cpu",
            "--corpus-docs", "none", "--sft-steps", "2", "--sft-batch-size", "2", "--rs-steps", "2", "--rl-steps", "2",
            "--queries-per-step", "2", "--no-baselines", "--min-token-rate", "0", "--output-dir", str(out)]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in rows][:4] == ["SFT (direct)", "SFT+RS (direct)", "SFT+RS (reasoning)", "SFT+RS (fused)"]
    for stage in ("sft", "rs", "rl"):  # every stage ran the recipe's settings
        saved = json.loads((out / stage / "config.json").read_text())
        assert (saved["lora"], saved["lora_rank"], saved["activation_checkpointing"]) == (True, 64, True)
        assert (saved["precision"], saved["max_length"], saved["steps"]) == ("bf16", 512, 2)
        assert saved["learning_rate"] == {"sft": 2e-4, "rs": 2e-4, "rl": 1e-4}[stage]
    rl = json.loads((out / "rl" / "config.json").read_text())
    assert (rl["group_size"], rl["reasoning_tokens"]) == (8, 128)
    assert "sr3 train finished in" in capsys.readouterr().out


def test_activation_checkpointing_gives_the_same_losses_and_gradients(family_embedder):
    """Under checkpointing the training forwards take the plain path (a checkpointed layer drops its
    cache, which the shared-prefix layout needs); losses and gradients are those of no checkpointing."""
    from sr3_agent.training.rl import policy_forward
    from sr3_agent.training.parts import enable_activation_checkpointing

    torch.manual_seed(0)
    rollout = family_embedder.generate_reasoning(["a small dog", "rain in spring"], max_new_tokens=5, temperature=1.0,
                                                 num_samples=2)
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_activation_checkpointing(family_embedder.model)
        family_embedder.model.train()
        family_embedder.model.zero_grad(set_to_none=True)
        logprobs, embeddings = policy_forward(family_embedder, rollout)
        mask = rollout.reasoning_mask[:, 1:]
        loss = logprobs[mask].sum() + embeddings.sum()
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in family_embedder.model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-5, rtol=1e-3, msg=f"gradient of {name}")


def test_under_checkpointing_in_training_mode_documents_take_the_plain_path(family_embedder):
    """The index re-encodes documents (no gradients) while the model is in training mode; under
    checkpointing some transformers versions (5.17) then return no cache, so the shared-prefix path is
    not taken, and the vectors are the plain path's."""
    from sr3_agent.training.parts import enable_activation_checkpointing

    texts = ["a small dog", "rain in spring, and wind"]
    instruction = family_embedder.prompts.document
    with torch.no_grad():
        expected = family_embedder.encode_documents(texts)
        enable_activation_checkpointing(family_embedder.model)
        family_embedder.model.train()
        assert split_prefix(family_embedder, family_embedder.prompt_ids(texts, instruction), instruction) is None
        np.testing.assert_allclose(family_embedder.encode_documents(texts), expected, atol=1e-5)


def test_under_checkpointing_in_training_mode_reasoning_runs_in_eval_mode(family_embedder):
    """Generation and the cache-read step after it run with the model in eval mode (some transformers
    versions drop a checkpointed layer's cache in training mode even without gradients), and the
    model is back in training mode after."""
    from sr3_agent.training.parts import enable_activation_checkpointing

    modes: list[bool] = []
    family_embedder._decoder().register_forward_pre_hook(lambda module, args: modes.append(module.training))
    enable_activation_checkpointing(family_embedder.model)
    family_embedder.model.train()
    rollout = family_embedder.generate_reasoning(["a small dog", "rain in spring"], max_new_tokens=4, temperature=0.0)
    assert modes and not any(modes)
    assert family_embedder.model.training and rollout.input_ids.shape[0] == 2
