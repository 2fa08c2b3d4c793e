"""Rewards, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest

from sr3_env.rewards import (STANDARD_METRICS, get_reward, log_rank, ndcg_at_k, recall_at_k, reciprocal_rank,
                             reward_names)


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("ranks, expected", [([1], 1.0), ([4], 0.25), ([7, 3, 50], 1 / 3), ([100], 0.01)])
def test_reciprocal_rank(ranks, expected):
    assert reciprocal_rank(ranks, [1] * len(ranks), 1000) == approx(expected)


def test_ndcg_single_gold():
    assert ndcg_at_k([1], [1], 100) == approx(1.0)
    assert ndcg_at_k([2], [1], 100) == approx(1 / math.log2(3))  # 0.6309...
    assert ndcg_at_k([3], [1], 100) == approx(0.5)
    assert ndcg_at_k([7], [2], 100) == approx(1 / 3)  # grade cancels: 2/log2(8) / 2
    assert ndcg_at_k([10], [1], 100) == approx(1 / math.log2(11))
    assert ndcg_at_k([11], [1], 100) == 0.0  # past the cut-off


def test_ndcg_graded_multiple_golds():
    # grade 2 at rank 3, grade 1 at rank 1: DCG = 1/1 + 2/2 = 2; IDCG = 2/1 + 1/log2(3)
    expected = 2.0 / (2.0 + 1 / math.log2(3))
    assert ndcg_at_k([3, 1], [2, 1], 100) == approx(expected)
    assert ndcg_at_k([3, 1], [2, 1], 100) == pytest.approx(0.76019, abs=1e-5)  # 2 / 2.63093
    # ideal order gives 1, whatever order the golds are listed in
    assert ndcg_at_k([1, 2], [2, 1], 100) == approx(1.0)
    assert ndcg_at_k([2, 1], [1, 2], 100) == approx(1.0)
    # swapped: grade 1 first, grade 2 second: DCG = 1 + 2/log2(3)
    assert ndcg_at_k([2, 1], [2, 1], 100) == approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # three equal golds at ranks 1, 3, 7: DCG = 1 + 1/2 + 1/3; IDCG = 1 + 1/log2(3) + 1/2
    assert ndcg_at_k([1, 3, 7], [1, 1, 1], 100) == approx((1 + 0.5 + 1 / 3) / (1 + 1 / math.log2(3) + 0.5))


def test_ndcg_cut_off():
    # k=5: the gold at rank 7 no longer counts; IDCG over min(k, |gold|) positions
    assert ndcg_at_k([1, 3, 7], [1, 1, 1], 100, k=5) == approx((1 + 0.5) / (1 + 1 / math.log2(3) + 0.5))
    assert ndcg_at_k([6], [3], 100, k=5) == 0.0
    assert ndcg_at_k([5], [3], 100, k=5) == approx(1 / math.log2(6))
    # more golds than k: the ideal keeps only the k best grades
    assert ndcg_at_k([1], [1], 100, k=1) == 1.0
    assert ndcg_at_k([2, 1], [2, 1], 100, k=1) == approx(1 / 2)  # DCG = 1 (grade 1 at 1); IDCG = 2


def test_recall_at_k():
    assert recall_at_k([1], [1], 100) == 1.0
    assert recall_at_k([101], [1], 1000) == 0.0
    assert recall_at_k([100], [1], 1000) == 1.0
    assert recall_at_k([1, 5, 6, 200], [1, 2, 1, 1], 1000, k=5) == approx(0.5)
    assert recall_at_k([3, 9, 20], [1, 1, 1], 1000, k=10) == approx(2 / 3)


def test_log_rank():
    assert log_rank([1], [1], 1000) == 1.0
    assert log_rank([1000], [1], 1000) == approx(0.0)
    assert log_rank([10], [1], 1000) == approx(1 - 1 / 3)  # log 10 / log 1000
    assert log_rank([100, 10], [1, 1], 1000) == approx(2 / 3)  # best rank counts
    assert log_rank([32], [1], 1024) == approx(0.5)
    assert log_rank([1], [1], 1) == 1.0  # one-document corpus
    # strictly decreasing in the rank
    values = [log_rank([r], [1], 500) for r in range(1, 501)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_get_reward_by_name():
    assert get_reward("reciprocal_rank") is reciprocal_rank
    assert get_reward("  Log_Rank ") is log_rank
    ndcg10 = get_reward("ndcg@10")
    assert ndcg10.__name__ == "ndcg@10"
    assert ndcg10([11], [1], 100) == 0.0 and ndcg10([10], [1], 100) == approx(1 / math.log2(11))
    recall5 = get_reward("recall@5")
    assert recall5.__name__ == "recall@5"
    assert recall5([1, 5, 6, 200], [1, 1, 1, 1], 1000) == approx(0.5)
    assert get_reward("NDCG@3")([3, 4], [1, 1], 10) == approx(0.5 / (1 + 1 / math.log2(3)))


def test_get_reward_callable_passes_through():
    def mine(ranks, relevance, n_docs):
        return 0.5

    assert get_reward(mine) is mine


@pytest.mark.parametrize("spec", ["ndcg@x", "ndcg@0", "recall@", "recall@-1", "ndcg@1.5"])
def test_get_reward_rejects_bad_cut_offs(spec):
    with pytest.raises(ValueError, match="cut-off after '@' must be a positive integer"):
        get_reward(spec)


@pytest.mark.parametrize("spec, suggestion", [("reciprocal_rnk", "reciprocal_rank"), ("logrank", "log_rank"),
                                              ("ndgc@10", "ndcg@10")])
def test_get_reward_unknown_name_suggests(spec, suggestion):
    with pytest.raises(ValueError, match=f"Unknown reward '{spec}'. Did you mean '{suggestion}'"):
        get_reward(spec)


def test_get_reward_unknown_name_lists_choices_and_rejects_non_strings():
    with pytest.raises(ValueError, match=r"Choose one of \['reciprocal_rank', 'log_rank', 'ndcg@10', 'recall@100'\]"):
        get_reward("zzzz")
    with pytest.raises(TypeError, match="name or a callable"):
        get_reward(10)


def test_standard_metrics_are_all_accepted():
    assert set(reward_names()) >= {"reciprocal_rank", "log_rank"}
    for name in STANDARD_METRICS:
        value = get_reward(name)([1], [1], 100)
        assert value == 1.0
