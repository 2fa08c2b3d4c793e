"""`sr3 eval` and `sr3 sft` from the command line, and the embedder inside the environment."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from sr3_agent.cli import build_parser, main
from sr3_agent.evaluation.eval_command import evaluation_set, load_embedder, run_eval
from sr3_agent.config import ConfigError, EvalConfig, SFTConfig, field_docs


def test_run_eval_puts_systems_side_by_side(tiny_embedder, tiny_beir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    config = EvalConfig(datasets=[str(tiny_beir)], num_queries=None, corpus_docs=None, reasoning_tokens=4, baselines=False)
    rows = run_eval(config, embedders=[("tiny", tiny_embedder)])
    assert [r["system"] for r in rows] == ["tiny (direct)", "tiny (reasoning)", "tiny (fused)"]
    assert rows[1]["embed_token_rate"] == rows[2]["embed_token_rate"] == 0.0  # a random model never writes the token
    assert "embed_token_rate" not in rows[0] and 0 < rows[1]["reasoning_length"] <= 4
    assert tiny_embedder.reasoning_rollouts == 3  # one reasoning per query, shared by the reasoning and fused rows
    for row in rows:
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["queries"] == 3 and row["docs"] == 12
    assert len(list((tmp_path / "cache" / "eval").glob("*.npy"))) == 1  # documents encoded once for both systems


def test_eval_loads_models_in_the_configured_precision(tiny_embedder, tmp_path):
    tiny_embedder.save_pretrained(tmp_path / "model")
    _, bf16 = load_embedder(str(tmp_path / "model"), EvalConfig(precision="bf16", device="cpu"))
    _, fp32 = load_embedder(str(tmp_path / "model"), EvalConfig(precision="fp32", device="cpu"))
    assert bf16.autocast_dtype == torch.bfloat16 and fp32.autocast_dtype is None
    assert bf16.fingerprint() != fp32.fingerprint()  # their corpus embeddings are cached apart
    texts = ["a small dog", "the capital of France"]
    cosine = (bf16.encode_documents(texts) * fp32.encode_documents(texts)).sum(axis=1)
    assert np.all(cosine > 0.99) and np.all(cosine < 1 - 1e-7)  # bf16 rounding: close, not the same vectors
    with pytest.raises(ConfigError, match="precision"):
        EvalConfig(precision="fp16")


def test_fuse_is_the_normalised_weighted_mean():
    from sr3_agent.model.embedder import fuse

    direct, reasoned = np.array([[1.0, 0.0], [0.6, 0.8]]), np.array([[0.0, 1.0], [0.6, 0.8]])
    np.testing.assert_allclose(fuse(direct, reasoned), [[0.5 ** 0.5, 0.5 ** 0.5], [0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(fuse(direct, reasoned, weight=0.0), direct, rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        fuse(direct, reasoned[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fuse(direct, reasoned, weight=2.0)


def test_fused_queries_combine_both_paths(tiny_embedder):
    from sr3_agent.model.embedder import fuse

    texts = ["a cat", "rain on the roof"]
    both = fuse(tiny_embedder.encode_queries(texts), tiny_embedder.encode_queries(texts, reasoning=True, max_new_tokens=3))
    np.testing.assert_allclose(tiny_embedder.encode_queries(texts, reasoning=True, max_new_tokens=3, fused=True), both,
                               atol=1e-5)
    with pytest.raises(ValueError, match="reasoning=True"):
        tiny_embedder.encode_queries(texts, fused=True)


def test_evaluation_set_states_the_cut():
    config = EvalConfig(num_queries=50, corpus_docs=200)
    dataset, note = evaluation_set("semanlink", config)
    assert len(dataset.query_ids) == 50 and len(dataset.doc_ids) >= 50
    assert "50 of 432 queries" in note and "every relevant one kept" in note
    for query_id in dataset.query_ids:
        assert set(dataset.qrels[query_id]) <= set(dataset.doc_ids)
    whole, none = evaluation_set("semanlink", EvalConfig(num_queries=None, corpus_docs=None))
    assert none is None and len(whole.doc_ids) == 314


def test_help_comes_from_the_field_docstrings(capsys):
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(field_docs(SFTConfig)["mine_top_k"].split()) in text
    assert "(default: 0.05)" in text
    # a docstring that states its default itself is not followed by a second, less helpful one
    with pytest.raises(SystemExit):
        main(["rl", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "name/folder (default: bundled). --dataset" in text and "(default: None)" not in text


def test_list_and_optional_options_parse():
    args = build_parser().parse_args(["eval", "--models", "base", "runs/x/final", "--corpus-docs", "none", "--no-reasoning"])
    assert args.models == ["base", "runs/x/final"] and args.corpus_docs is None and args.reasoning is False


def test_a_bad_combination_exits_with_the_fix(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sft", "--hard-negatives", "0"])
    assert exit_info.value.code == 2
    assert "--triplet-weight 0" in capsys.readouterr().err


def test_eval_command_writes_json(tiny_beir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SR3_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "results.json"
    main(["eval", "--models", "--datasets", str(tiny_beir), "--num-queries", "none", "--corpus-docs", "none",
          "--output", str(out)])
    rows = json.loads(out.read_text())
    assert [r["system"] for r in rows] == ["BM25", "all-MiniLM-L6-v2"]
    assert "| BM25 |" in capsys.readouterr().out


def test_the_embedder_is_an_environment_encoder(tiny_embedder, tiny_beir):
    env = gym.make("RetrievalEmbed-v0", dataset=str(tiny_beir), encoder=tiny_embedder, reward="reciprocal_rank")
    query, info = env.reset(seed=0)
    action = tiny_embedder.encode_queries([query])[0]
    _, reward, terminated, _, info = env.step(action)
    assert terminated and 0 < reward <= 1 and info["index"]["encoder_version"] == tiny_embedder.version
    tiny_embedder.bump_version()  # the weights "changed": the next step re-encodes what it touches
    env.reset(seed=1)
    _, _, _, _, info = env.step(action)
    assert info["index"]["rows_reencoded"] > 0
