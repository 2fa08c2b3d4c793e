"""Rejection sampling of reasonings: cutting, the keep rules, and `pick_reasonings` against a brute-force ranking."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sr3_agent.config import ConfigError, SFTConfig
from sr3_agent.training.rejection import cut_length, keep_choice, pick_reasonings, reasoning_embeddings, token_kinds
from sr3_agent.training.sft import train_sft
from sr3_env import load_dataset

INF = np.inf


@pytest.fixture(scope="module")
def wordnet():
    return load_dataset("wordnet-revdict")


@pytest.fixture(scope="module")
def toy_set():
    return load_dataset("semanlink").subset(num_queries=16, num_docs=40, seed=0)


def test_token_kinds_find_sentence_ends_and_word_starts(tiny_embedder):
    tokenizer = tiny_embedder.tokenizer
    ends, starts = token_kinds(tokenizer)
    last = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"][-1]  # noqa: E731
    assert {last("."), last("\n"), last("?")} <= ends
    assert not {last(" cat"), last(" the"), last(",")} & ends
    assert {last(" cat"), last(" the")} <= starts and last("cat") not in starts


def test_cut_length_by_hand():
    ends, starts = frozenset({9}), frozenset({5})
    assert cut_length([1, 2, 9, 3, 9], ends, starts, min_tokens=1, max_tokens=8) == 3
    assert cut_length([9, 2, 9, 3], ends, starts, min_tokens=2, max_tokens=8) == 3  # a leading end is too early
    assert cut_length([1, 2, 3], ends, starts, min_tokens=1, max_tokens=8) == 3  # short: kept whole
    assert cut_length([1, 5, 2, 5, 3, 3, 3], ends, starts, min_tokens=1, max_tokens=4) == 3  # before the word at 3
    assert cut_length([1, 2, 2, 2, 2, 2, 9], ends, starts, min_tokens=1, max_tokens=4) == 4  # no word start: at the cap
    assert cut_length([1, 2, 2, 2, 9], ends, starts, min_tokens=1, max_tokens=4) == 4  # the end comes too late


def test_keep_rules_by_hand():
    ranks = np.array([[3, 1, 2], [5, INF, 4], [INF, INF, INF], [1, 1, 3]])
    direct = np.array([2, 3, 1, 1])
    assert keep_choice(ranks, direct, "best").tolist() == [1, 2, -1, 0]
    assert keep_choice(ranks, direct, "beats_direct").tolist() == [1, -1, -1, 0]  # rank 1 ties count
    assert keep_choice(ranks, direct, "all").tolist() == [0, 0, -1, 0]
    with pytest.raises(ValueError, match="keep must be one of"):
        keep_choice(ranks, direct, "some")
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        keep_choice(ranks[0], direct, "best")


def _brute_force_ranks(embedder, documents, vectors, gold):
    docs = torch.as_tensor(embedder.encode_documents(documents))
    scores = vectors @ docs.T
    return np.array([int((scores[i] > scores[i, rows].max()).sum()) + 1 for i, rows in enumerate(gold)])


@pytest.mark.parametrize("rule", ["best", "beats_direct"])
def test_pick_reasonings_keeps_the_best_ranked_cut_sample(tiny_embedder, wordnet, rule):
    torch.manual_seed(1)
    documents, texts = wordnet.documents[:24], wordnet.query_texts[:6]  # a real query per real document
    gold = [np.array([i]) for i in range(len(texts))]
    searched = []

    def search(vectors, golds):  # ranks over the whole small corpus, by brute force
        searched.append(len(vectors))
        return _brute_force_ranks(tiny_embedder, documents, vectors, golds)

    picked = pick_reasonings(tiny_embedder, texts, gold, search, samples=6, max_new_tokens=8, temperature=1.5,
                             min_tokens=1, max_tokens=6, rule=rule)
    assert picked.candidate_ranks.shape == picked.lengths.shape == picked.emitted.shape == (6, 6)
    assert searched and np.isfinite(picked.candidate_ranks).sum() == (picked.lengths > 0).sum()
    direct = _brute_force_ranks(tiny_embedder, documents, torch.as_tensor(tiny_embedder.encode_queries(texts)), gold)
    np.testing.assert_array_equal(picked.direct_ranks, direct)
    for b, reasoning in enumerate(picked.reasonings):
        ranks = picked.candidate_ranks[b]
        if reasoning is None:
            assert not np.isfinite(ranks).any() or (rule == "beats_direct" and ranks.min() >= direct[b] and ranks.min() > 1)
            continue
        assert 1 <= len(reasoning) <= 6 and len(reasoning) in picked.lengths[b]
        # the kept reasoning's own embedding gives the best rank of the group
        vector = reasoning_embeddings(tiny_embedder, [texts[b]], [reasoning])
        assert _brute_force_ranks(tiny_embedder, documents, vector, [gold[b]])[0] == ranks.min()
        if rule == "beats_direct":
            assert ranks.min() < direct[b] or ranks.min() == 1
    assert any(r is not None for r in picked.reasonings)


def test_rejection_sampling_config_errors_say_how_to_fix_them():
    with pytest.raises(ConfigError, match="--reasoning-temperature > 0"):
        SFTConfig(reasoning_samples=4, keep="best", reasoning_temperature=0)
    with pytest.raises(ConfigError, match="--reasoning-samples 1"):
        SFTConfig(reasoning_samples=4, keep="all")
    with pytest.raises(ConfigError, match="keep must be"):
        SFTConfig(keep="most")


def test_sft_with_rejection_sampling_trains_and_logs(tiny_embedder, toy_set, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = SFTConfig(steps=4, batch_size=8, learning_rate=1e-3, infonce_temperature=0.1, mine_top_k=4, hard_negatives=1,
                       output_dir=str(tmp_path / "run"), save_every=10, log_every=1, reasoning_fraction=1.0,
                       reasoning_tokens=8, reasoning_temperature=1.5, reasoning_samples=4, keep="best",
                       min_reasoning_tokens=1, kept_reasoning_tokens=5, lm_weight=1.0)
    start = copy.deepcopy(tiny_embedder.model.state_dict())
    trained = train_sft(config, embedder=tiny_embedder, dataset=toy_set, progress=False)
    assert trained.version == 4
    assert any(not torch.equal(start[k], v) for k, v in trained.model.state_dict().items())
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    kept = [e.value for e in events.Scalars("charts/reasoning_kept")]
    assert kept == [1.0] * 4  # with `best`, every query keeps one of its (non-empty) samples
    assert all(0 < e.value <= 5 for e in events.Scalars("charts/reasoning_length"))
    assert {"charts/reasoning_length", "charts/embed_token_rate", "losses/lm"} <= set(events.Tags()["scalars"])
