"""The latent way: k trained think tokens between the query prompt and ``<|embed_token|>`` (one forward).

Its fast path (the shared prefix, then each text's rest with its think tokens) is checked against the
plain forward on every architecture in tests/test_prefix_reuse.py; here: the tokens, their persistence,
the layout, SFT training them, the eval row and the errors.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from sr3_agent.config import ConfigError, EvalConfig, SFTConfig, TrainConfig
from sr3_agent.evaluation.eval_command import run_eval
from sr3_agent.model.embedder import CONFIG_FILE, ReasoningEmbedder, latent_token_names
from sr3_agent.training.distributed import Processes
from sr3_agent.training.sft import latent_rows, query_sequences, train_sft
from sr3_agent.training.train_command import stage_configs
from sr3_env import load_dataset
from sr3_env.errors import EncoderError

TEXTS = ["dog", "a small domesticated carnivore that barks", "x"]


def rows_of(embedder: ReasoningEmbedder, ids: list[int]) -> torch.Tensor:
    return embedder.model.get_input_embeddings().weight[ids].detach().clone()


def test_adding_tokens_grows_the_vocabulary_with_rows_at_the_mean(tiny_embedder):
    old = tiny_embedder.model.get_input_embeddings().weight.detach().clone()
    tiny_embedder.add_latent_tokens(3)
    ids = tiny_embedder.latent_token_ids
    assert tiny_embedder.latent_tokens == 3 and ids == tiny_embedder.tokenizer.convert_tokens_to_ids(latent_token_names(3))
    assert len(set(ids)) == 3 and tiny_embedder.embed_token_id not in ids
    assert tiny_embedder.model.get_input_embeddings().num_embeddings == len(tiny_embedder.tokenizer) == len(old) + 3
    torch.testing.assert_close(rows_of(tiny_embedder, ids), old.mean(dim=0).expand(3, -1))
    tiny_embedder.add_latent_tokens(3)  # again: nothing changes
    assert tiny_embedder.model.get_input_embeddings().num_embeddings == len(old) + 3
    with pytest.raises(ValueError, match="cannot be removed"):
        tiny_embedder.add_latent_tokens(2)


def test_think_tokens_are_saved_and_reloaded(tiny_embedder, tmp_path):
    tiny_embedder.add_latent_tokens(2)
    with torch.no_grad():  # rows a training would have moved
        tiny_embedder.model.get_input_embeddings().weight[tiny_embedder.latent_token_ids] += 0.5
    expected = tiny_embedder.encode_queries(TEXTS, latent=True)
    tiny_embedder.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / CONFIG_FILE).read_text())["latent_tokens"] == 2
    loaded = ReasoningEmbedder.from_pretrained(tmp_path / "model", device="cpu")
    assert loaded.latent_token_ids == tiny_embedder.latent_token_ids
    np.testing.assert_allclose(loaded.encode_queries(TEXTS, latent=True), expected, atol=1e-5)
    more = ReasoningEmbedder.from_pretrained(tmp_path / "model", device="cpu", latent_tokens=4)
    assert more.latent_tokens == 4 and more.latent_token_ids[:2] == tiny_embedder.latent_token_ids


def test_a_model_saved_without_think_tokens_saves_no_setting(tiny_embedder, tmp_path):
    tiny_embedder.save_pretrained(tmp_path / "model")
    assert "latent_tokens" not in json.loads((tmp_path / "model" / CONFIG_FILE).read_text())
    assert ReasoningEmbedder.from_pretrained(tmp_path / "model", device="cpu").latent_tokens == 0


def test_the_latent_layout_is_prompt_think_tokens_embed_token(tiny_embedder):
    tiny_embedder.add_latent_tokens(3)
    prompt = tiny_embedder.prompt_ids(TEXTS[:1], tiny_embedder.prompts.query)[0]
    layout = prompt + tiny_embedder.latent_suffix() + [tiny_embedder.embed_token_id]
    assert tiny_embedder.tokenizer.decode(layout[len(prompt):]) == "<|think_0|><|think_1|><|think_2|><|embed_token|>"
    with torch.no_grad():
        expected = tiny_embedder.embed(*tiny_embedder.pad_left([layout])).numpy()
    np.testing.assert_allclose(tiny_embedder.encode_queries(TEXTS[:1], latent=True), expected, atol=1e-5)
    assert np.abs(tiny_embedder.encode_queries(TEXTS[:1]) - expected).max() > 1e-4  # not the direct embedding


def test_zero_think_tokens_leave_every_way_as_it_was(tiny_embedder):
    twin = copy.deepcopy(tiny_embedder)
    assert tiny_embedder.latent_tokens == 0
    before = twin.encode_queries(TEXTS), twin.encode_documents(TEXTS)
    tiny_embedder.add_latent_tokens(0)
    assert tiny_embedder.model.get_input_embeddings().num_embeddings == twin.model.get_input_embeddings().num_embeddings
    np.testing.assert_array_equal(tiny_embedder.encode_queries(TEXTS), before[0])
    np.testing.assert_array_equal(tiny_embedder.encode_documents(TEXTS), before[1])
    tiny_embedder.add_latent_tokens(2)  # new rows do not move the other ways either
    np.testing.assert_allclose(tiny_embedder.encode_queries(TEXTS), before[0], atol=1e-6)


def test_asking_a_model_without_think_tokens_for_latent_says_how_to_add_them(tiny_embedder):
    with pytest.raises(EncoderError, match=r"add_latent_tokens\(k\).*latent_tokens=k"):
        tiny_embedder.encode_queries(TEXTS, latent=True)
    tiny_embedder.add_latent_tokens(1)
    with pytest.raises(ValueError, match="way of its own"):
        tiny_embedder.encode_queries(TEXTS, reasoning=True, latent=True)


def test_an_embedder_built_with_tokens_its_tokenizer_lacks_says_how_to_add_them(tiny_embedder):
    with pytest.raises(EncoderError, match=r"add_latent_tokens\(2\)"):
        ReasoningEmbedder(tiny_embedder.model, tiny_embedder.tokenizer, latent_tokens=2)


def test_sft_query_sequences_put_the_think_tokens_in_the_direct_rows_only(tiny_embedder):
    tiny_embedder.add_latent_tokens(2)
    think = tiny_embedder.latent_suffix()
    sequences, _ = query_sequences(tiny_embedder, TEXTS[:2], [None, [7, 8]], think)
    assert sequences[0][-3:] == [*think, tiny_embedder.embed_token_id]
    assert sequences[1][-3:] == [7, 8, tiny_embedder.embed_token_id]
    assert query_sequences(tiny_embedder, TEXTS[:2], [None, [7, 8]])[0][0][-2] not in think


def test_query_sequences_keep_the_plain_direct_layout_where_told(tiny_embedder):
    tiny_embedder.add_latent_tokens(2)
    think = tiny_embedder.latent_suffix()
    sequences, _ = query_sequences(tiny_embedder, TEXTS, [None, None, [7]], think, thinks=[False, True, True])
    plain, _ = query_sequences(tiny_embedder, TEXTS, [None, None, [7]])
    assert sequences[0] == plain[0]  # no think tokens
    assert sequences[1] == plain[1][:-1] + [*think, tiny_embedder.embed_token_id]
    assert sequences[2] == plain[2]  # a reasoned row never gets them


def test_latent_rows_draw_the_share_asked_for_and_nothing_at_one():
    one = Processes()
    assert latent_rows(16, 1.0, [0, 3, 2], one) is None
    rows = latent_rows(4000, 0.5, [0, 3, 2], one)
    assert rows.dtype == bool and 0.45 < rows.mean() < 0.55
    np.testing.assert_array_equal(rows, latent_rows(4000, 0.5, [0, 3, 2], one))  # the same step: the same rows
    assert not np.array_equal(rows, latent_rows(4000, 0.5, [0, 4, 2], one))


@pytest.mark.parametrize("fraction, error", [(0.0, r"\(0, 1\]"), (1.5, r"\(0, 1\]"), (0.5, "--latent-tokens")])
def test_a_latent_fraction_out_of_range_or_without_think_tokens_is_refused(fraction, error):
    with pytest.raises(ConfigError, match=error):
        SFTConfig(latent_fraction=fraction)
    with pytest.raises(ConfigError, match=error):
        TrainConfig(latent_fraction=fraction)


def test_the_main_job_passes_the_latent_share_to_both_sft_stages():
    stages, _, _ = stage_configs(TrainConfig(latent_tokens=8, latent_fraction=0.5, output_dir="out"))
    assert [(name, c.latent_tokens, c.latent_fraction) for name, c in stages if name != "rl"] == [
        ("sft", 8, 0.5), ("rs", 8, 0.5)]


def _config(tmp_path, **changes) -> SFTConfig:
    settings = dict(steps=2, batch_size=4, num_queries=None, corpus_docs=None, learning_rate=1e-2, mine_top_k=4,
                    hard_negatives=1, output_dir=str(tmp_path / "run"), save_every=10, log_every=1,
                    reasoning_fraction=0.0, reasoning_tokens=4, latent_tokens=2, precision="fp32")
    return SFTConfig(**{**settings, **changes})


@pytest.fixture
def toy_set():
    return load_dataset("semanlink").subset(num_queries=8, num_docs=20, seed=0)


@pytest.mark.parametrize("lora, fraction", [(False, 1.0), (True, 1.0), (False, 0.5)],
                         ids=["full", "lora", "half-latent"])
def test_sft_trains_the_think_tokens(tiny_embedder, toy_set, tmp_path, lora, fraction):
    start = copy.deepcopy(tiny_embedder)
    start.add_latent_tokens(2)
    initial = rows_of(start, start.latent_token_ids)
    trained = train_sft(_config(tmp_path, lora=lora, lora_rank=4, latent_fraction=fraction), embedder=tiny_embedder,
                        dataset=toy_set, progress=False)
    saved = ReasoningEmbedder.from_pretrained(tmp_path / "run" / "final", device="cpu")  # LoRA merged
    assert trained.latent_tokens == saved.latent_tokens == 2
    assert (rows_of(saved, saved.latent_token_ids) - initial).abs().max() > 1e-4
    np.testing.assert_allclose(saved.encode_queries(TEXTS, latent=True), trained.encode_queries(TEXTS, latent=True),
                               atol=1e-4)


def test_a_negative_count_of_think_tokens_is_refused():
    with pytest.raises(ConfigError, match="latent_tokens"):
        SFTConfig(latent_tokens=-1)


def test_eval_adds_a_latent_row_for_a_model_with_think_tokens(tiny_embedder, tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    config = EvalConfig(datasets=[str(tiny_beir)], num_queries=None, corpus_docs=None, reasoning_tokens=4,
                        baselines=False)
    rows = run_eval(config, embedders=[("tiny", copy.deepcopy(tiny_embedder))])
    assert [r["system"] for r in rows] == ["tiny (direct)", "tiny (reasoning)", "tiny (fused)"]
    tiny_embedder.add_latent_tokens(3)
    rows = run_eval(config, embedders=[("tiny", tiny_embedder)])
    assert [r["system"] for r in rows] == ["tiny (direct)", "tiny (reasoning)", "tiny (fused)", "tiny (latent)"]
    assert rows[3]["reasoning_length"] == 3.0 and rows[3]["embed_token_rate"] == 1.0
    assert 0.0 <= rows[3]["ndcg@10"] <= 1.0


def test_sr3_train_passes_the_think_tokens_to_its_sft_stages_and_compares_the_latent_row():
    from sr3_agent.config import TrainConfig
    from sr3_agent.training.train_command import comparison_pairs, stage_configs

    stages, _, _ = stage_configs(TrainConfig(latent_tokens=4))
    assert [(name, getattr(c, "latent_tokens", None)) for name, c in stages] == [("sft", 4), ("rs", 4), ("rl", None)]
    assert all(c.latent_tokens == 0 for name, c in stage_configs(TrainConfig())[0] if name != "rl")
    assert ("SFT (direct)", "SFT (latent)") in comparison_pairs(["SFT", "SFT+RL"], latent=True)
    assert not any("latent" in b for _, b in comparison_pairs(["SFT", "SFT+RL"]))
