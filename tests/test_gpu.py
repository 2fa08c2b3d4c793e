"""GPU checks: run only where CUDA is available (``pytest -m gpu``); skipped elsewhere.

The index on the GPU (fp32, and fp16/bf16 storage with fp32 scores), faiss-gpu candidate search,
and the policy's encoding, generation and training steps on CUDA in bf16.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sr3_env import LazyIndex, load_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


class Fixed:
    version = 0

    def __init__(self, corpus: np.ndarray) -> None:
        self.corpus, self.dim = corpus, corpus.shape[1]

    def encode_documents(self, texts):
        return self.corpus[[int(t) for t in texts]]


def _data(n=20000, d=128, batch=64, seed=0):
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((n, d)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    gold = [[int(g)] for g in rng.integers(n, size=batch)]
    q = corpus[[g[0] for g in gold]] + 0.1 * rng.standard_normal((batch, d)).astype(np.float32)
    return corpus, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), gold


def test_the_gpu_index_equals_the_cpu_index():
    corpus, q, gold = _data()
    texts = [str(i) for i in range(len(corpus))]
    cpu = LazyIndex(texts, Fixed(corpus), device="cpu").search(q, gold, k=50)
    gpu_index = LazyIndex(texts, Fixed(corpus), device="cuda")
    assert gpu_index.embeddings.is_cuda
    gpu = gpu_index.search(q, gold, k=50)
    np.testing.assert_array_equal(gpu.top_rows[:, :10], cpu.top_rows[:, :10])
    for a, b in zip(gpu.gold_ranks, cpu.gold_ranks):  # fp32 on both; summation order may move near-ties by 1
        assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_storage_on_the_gpu_moves_ranks_only_within_its_rounding(dtype):
    corpus, q, gold = _data()
    texts = [str(i) for i in range(len(corpus))]
    full = LazyIndex(texts, Fixed(corpus), device="cuda").search(q, gold, k=10)
    half_index = LazyIndex(texts, Fixed(corpus), device="cuda", dtype=dtype)
    assert half_index.embeddings.dtype == dtype
    half = half_index.search(q, gold, k=10)
    assert half.top_scores.dtype == np.float32
    eps = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}[dtype]
    margin = 2 * eps * (2 + eps) + 1e-6  # unit vectors: a score moves by at most u(2+u), a difference twice that
    scores = q @ corpus.T
    for b, g in enumerate(gold):
        near = np.abs(scores[b] - scores[b, g[0]]) <= margin
        assert abs(int(half.gold_ranks[b][0]) - int(full.gold_ranks[b][0])) <= near.sum() - 1


def test_faiss_gpu_candidates_equal_the_torch_ones():
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("faiss-gpu is not installed")
    corpus, q, gold = _data()
    texts = [str(i) for i in range(len(corpus))]
    a = LazyIndex(texts, Fixed(corpus), device="cuda").search(q, gold, k=20)
    b = LazyIndex(texts, Fixed(corpus), device="cuda", candidate_search="faiss").search(q, gold, k=20)
    np.testing.assert_array_equal(a.top_rows[:, :5], b.top_rows[:, :5])


def test_the_policy_encodes_generates_and_trains_on_cuda_in_bf16_mixed_precision(tiny_embedder, tmp_path):
    from sr3_agent.config import RLConfig, SFTConfig
    from sr3_agent.training.rl import train_rl
    from sr3_agent.training.sft import train_sft

    embedder = copy.deepcopy(tiny_embedder)
    embedder.model.to("cuda")
    embedder.autocast_dtype = torch.bfloat16
    data = load_dataset("semanlink").subset(num_queries=8, num_docs=30, seed=0)
    vectors = embedder.encode_documents(data.documents[:4])
    assert vectors.dtype == np.float32 and np.isfinite(vectors).all()
    rollout = embedder.generate_reasoning(data.query_texts[:2], max_new_tokens=4, temperature=1.0, num_samples=2)
    assert rollout.input_ids.is_cuda
    before = [p.detach().clone() for p in embedder.model.parameters()]
    sft = train_sft(SFTConfig(steps=2, batch_size=4, num_queries=None, corpus_docs=None, mine_top_k=4, hard_negatives=1,
                              reasoning_tokens=4, output_dir=str(tmp_path / "sft"), device="cuda", precision="auto"),
                    embedder=embedder, dataset=data, progress=False)
    rl = train_rl(RLConfig(steps=2, queries_per_step=2, group_size=2, reasoning_tokens=4, eval_every=0, num_queries=None,
                           corpus_docs=None, output_dir=str(tmp_path / "rl"), device="cuda", precision="auto"),
                  policy=sft, dataset=data, progress=False)
    assert rl.device.type == "cuda"
    assert rl.autocast_dtype is (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    assert any(not torch.equal(a, b) for a, b in zip(before, rl.model.parameters()))


# -- reasoning through the static cache with compiled decoding (the `auto` setting on CUDA) ---------------------------

@pytest.mark.parametrize("reuse_prefix", [True, False], ids=["after-prefix", "whole-prompts"])
def test_compiled_greedy_generation_on_cuda_gives_the_dynamic_caches_tokens(tiny_embedder, reuse_prefix, monkeypatch):
    """fp32; compiled kernels may round differently from eager ones, so a row may part only at a near-tie."""
    from test_static_cache import agreement, recorded, with_cache

    embedder = copy.deepcopy(tiny_embedder)
    embedder.model.to("cuda")
    embedder.reuse_prefix = reuse_prefix
    queries = list(load_dataset("wordnet-revdict").query_texts[:8])
    dynamic, dynamic_scores = recorded(monkeypatch, with_cache(embedder, "dynamic"), queries, max_new_tokens=16)
    auto = with_cache(embedder, "auto")
    for _ in range(2):  # compiled, then replayed
        static, static_scores = recorded(monkeypatch, auto, queries, max_new_tokens=16)
    assert hasattr(embedder.model, "_compiled_call")  # auto compiled the decoding step on CUDA
    compared = agreement(dynamic_scores, static_scores)
    assert compared["distance"] < 1e-3 and all(abs(gap) < 1e-3 for gap in compared["gaps"]), compared
    same = sum(torch.equal(a[m.bool()], b[n.bool()]) for a, m, b, n in
               zip(static.input_ids, static.attention_mask, dynamic.input_ids, dynamic.attention_mask))
    assert same >= len(queries) - len(compared["gaps"])


def test_compiled_sampling_on_cuda_draws_from_the_dynamic_caches_distributions(tiny_embedder, monkeypatch):
    from test_static_cache import agreement, recorded, with_cache

    embedder = copy.deepcopy(tiny_embedder)
    embedder.model.to("cuda")
    queries = list(load_dataset("wordnet-revdict").query_texts[:4])
    settings = dict(max_new_tokens=12, temperature=1.0, num_samples=4)
    _, dynamic_scores = recorded(monkeypatch, with_cache(embedder, "dynamic"), queries, **settings)
    _, static_scores = recorded(monkeypatch, with_cache(embedder, "auto"), queries, **settings)
    compared = agreement(dynamic_scores, static_scores)
    # every row's first step at least (the same prompt), and every later step whose tokens so far agree
    assert compared["compared"] >= 16 and compared["distance"] < 1e-3, compared
