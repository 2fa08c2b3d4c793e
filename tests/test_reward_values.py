"""Rewards on hand-computed values."""

import math

import pytest

from sr3_env.rewards import get_reward, log_rank, ndcg_at_k, recall_at_k, reciprocal_rank


def test_reciprocal_rank_uses_the_best_gold():
    assert reciprocal_rank([4, 2], [1, 1], 100) == 0.5


def test_ndcg_with_graded_relevance():
    # gold A (rel 2) at rank 3, gold B (rel 1) at rank 1: DCG = 2/log2(4) + 1/log2(2) = 2; IDCG = 2/1 + 1/log2(3)
    assert ndcg_at_k([3, 1], [2, 1], 100, k=10) == pytest.approx(2.0 / (2.0 + 1 / math.log2(3)))
    assert ndcg_at_k([11], [1], 100, k=10) == 0.0 and ndcg_at_k([1], [3], 100, k=10) == 1.0


def test_recall_and_log_rank():
    assert recall_at_k([1, 50, 101], [1, 1, 1], 1000, k=100) == pytest.approx(2 / 3)
    assert log_rank([1], [1], 1000) == 1.0 and log_rank([1000], [1], 1000) == pytest.approx(0.0)
    assert log_rank([10], [1], 100) == pytest.approx(0.5)


def test_get_reward_parses_names_and_explains_mistakes():
    assert get_reward("recall@5")([5, 6], [1, 1], 10) == 0.5
    assert get_reward("NDCG@1")([1], [1], 10) == 1.0
    with pytest.raises(ValueError, match="positive integer"):
        get_reward("ndcg@x")
    with pytest.raises(ValueError, match="Did you mean 'log_rank'"):
        get_reward("logrank")
