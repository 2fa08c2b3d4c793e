"""bf16 mixed precision (`precision="bf16"`): the decoder computes in bf16 under autocast, the
weights, optimiser, hidden states returned and losses stay fp32; SFT and RL train with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr3_agent.config import ConfigError, RLConfig, SFTConfig
from sr3_agent.model.precision import autocast_dtype_for, native_bf16
from sr3_agent.training.rl import train_rl
from sr3_agent.training.sft import train_sft
from sr3_env import load_dataset


def test_precision_settings_resolve_per_device():
    assert autocast_dtype_for("fp32", "cpu") is None
    assert autocast_dtype_for("bf16", "cpu") is torch.bfloat16
    cpu_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert native_bf16("cpu") == cpu_bf16
    assert autocast_dtype_for("auto", "cpu") is (torch.bfloat16 if cpu_bf16 else None)  # bf16 where the CPU has bf16 units
    assert not native_bf16("meta") and autocast_dtype_for("auto", "meta") is None
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype_for("fp16", "cpu")
    with pytest.raises(ConfigError, match="loss scaler"):
        SFTConfig(precision="fp16")


def test_bf16_autocast_changes_the_computation_not_the_types(tiny_embedder):
    ids, mask = tiny_embedder.direct_batch(["a short document", "another one"], tiny_embedder.prompts.document)
    full = tiny_embedder.hidden_states(ids, mask)
    tiny_embedder.autocast_dtype = torch.bfloat16
    mixed = tiny_embedder.hidden_states(ids, mask)
    assert mixed.dtype == torch.float32 and next(tiny_embedder.model.parameters()).dtype == torch.float32
    assert not torch.equal(mixed, full)  # really computed in bf16 ...
    torch.testing.assert_close(mixed, full, atol=0.1, rtol=0.05)  # ... and close to fp32
    vectors = tiny_embedder.encode_documents(["a short document"])
    assert vectors.dtype == np.float32 and np.isfinite(vectors).all()


def test_sft_and_rl_train_in_bf16_mixed_precision(tiny_embedder, tmp_path):
    data = load_dataset("semanlink").subset(num_queries=8, num_docs=30, seed=0)
    before = [p.detach().clone() for p in tiny_embedder.model.parameters()]
    sft = train_sft(SFTConfig(steps=2, batch_size=4, num_queries=None, corpus_docs=None, mine_top_k=4, hard_negatives=1,
                              reasoning_tokens=4, output_dir=str(tmp_path / "sft"), precision="bf16"),
                    embedder=tiny_embedder, dataset=data, progress=False)
    assert sft.autocast_dtype is torch.bfloat16
    rl = train_rl(RLConfig(steps=2, queries_per_step=2, group_size=2, reasoning_tokens=4, top_k=5, eval_every=0,
                           num_queries=None, corpus_docs=None, output_dir=str(tmp_path / "rl"), precision="bf16"),
                  policy=sft, dataset=data, progress=False)
    after = list(rl.model.parameters())
    assert all(p.dtype == torch.float32 for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
